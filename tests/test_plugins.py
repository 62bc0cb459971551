"""Plugins (methods, evaluators, audit statistics, datasets): README's examples as written,
registries, layering."""

import ast
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support import tiny
from jaxunlearn import cli, evaluators, methods, pipeline
from jaxunlearn.errors import ConfigError

README = tiny.REPO_ROOT / "README.md"
PACKAGE = tiny.REPO_ROOT / "jaxunlearn"


def readme_block(heading: str, lang: str) -> str:
  """The first ```lang block after ``heading`` in README.md."""
  text = README.read_text()
  start = text.index(heading)
  match = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
  return match.group(1)


def readme_command(heading: str) -> list[str]:
  """The ``--config.*`` overrides of README's command under ``heading``."""
  import shlex
  cmd = readme_block(heading, "bash").replace("\\\n", " ")
  return [a for a in shlex.split(cmd) if a.startswith("--config.")]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
  """README's two plugin files, written as given, importable."""
  for heading, name in (("### Adding a method", "my_methods.py"),
                        ("### Adding an evaluator", "my_evaluators.py"),
                        ("### Adding an audit statistic", "my_statistics.py"),
                        ("### Adding a dataset", "my_datasets.py")):
    (tmp_path / name).write_text(readme_block(heading, "python"))
  monkeypatch.syspath_prepend(str(tmp_path))
  return tmp_path


def _copy_finished(tmp_path) -> tuple[Path, Path]:
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  return npz, workdir


@pytest.mark.slow
def test_readme_method_runs_end_to_end_through_the_cli(plugin_dir, tmp_path, capsys):
  npz, workdir = _copy_finished(tmp_path)
  overrides = readme_command("### Adding a method")
  assert "--config.plugins=(\"my_methods\",)" in overrides
  assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, *overrides)]) == 0, \
      capsys.readouterr().err
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "my_ga"
  assert results["hparams"] == {"beta": 0.95, "output_temperature": 1.0}
  assert "reference" not in results["stages"]        # it asks for no reference model
  assert results["stages"]["unlearned"].startswith("unlearned-")
  # The method really ran: its metric is in the unlearned stage's history.
  history = results["models"]["unlearned"]
  assert history["acc_test"] >= 0
  from jaxunlearn import checkpoint
  meta = checkpoint.metadata(workdir / "checkpoints" / results["stages"]["unlearned"])
  assert "ce_forget" in meta["history"][0] and meta["method"] == "my_ga"


@pytest.mark.slow
def test_readme_evaluator_section_in_results(plugin_dir, tmp_path, capsys):
  npz, workdir = _copy_finished(tmp_path)
  overrides = readme_command("### Adding an evaluator")
  assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, *overrides)]) == 0, \
      capsys.readouterr().err
  results = json.loads((workdir / "results.json").read_text())
  section = results["forget_confidence"]
  assert set(section) == {"original", "retrain", "reference", "unlearned"}
  assert all(0.0 < v["p_label"] <= 1.0 for v in section.values())
  assert "## Confidence on D_f" in (workdir / "results.md").read_text()


@pytest.mark.slow
def test_readme_statistic_runs_in_an_audit(plugin_dir, tmp_path, capsys):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  workdir = tmp_path / "work"
  overrides = readme_command("### Adding an audit statistic")
  assert "--config.plugins=(\"my_statistics\",)" in overrides
  args = ["audit", f"--config={tiny.CONFIG}", f"--workdir={workdir}",
          f"--config.dataset=npz:{npz}", "--config.audit.num_models=3",
          "--config.audit.chunk_size=3", "--config.audit.methods=('finetune',)",
          "--config.label_flip.enabled=True", "--config.train.epochs=30", *overrides]
  assert cli.main(["jaxunlearn", *args]) == 0, capsys.readouterr().err
  out = capsys.readouterr().out
  saved = json.loads((workdir / "audit.json").read_text())
  assert saved["statistics"] == ["epsilon", "loss_gap"]
  section = saved["loss_gap"]
  assert set(section) == {"none", "finetune"}
  # The originals fit the flipped D_f: their loss there is below retraining's.
  assert section["none"]["median_log_ratio"] < 0.0
  assert np.isfinite(section["finetune"]["median_log_ratio"])
  assert "## Loss on D_f against retraining" in (workdir / "audit.md").read_text()
  assert "F (single): oracle=" in out
  # The record field is part of the chunks' names: chunks saved without it are not reused.
  import my_statistics
  from jaxunlearn import populations
  pop = populations.Population("retrain", 3, member=None,
                               fields=(("forget_loss", my_statistics.forget_loss),))
  without = populations.Population("retrain", 3, member=None)
  assert populations.member_stage(pop, 0, 3) != populations.member_stage(without, 0, 3)


@pytest.mark.slow
def test_readme_dataset_runs_by_name(plugin_dir, tmp_path, capsys):
  overrides = readme_command("### Adding a dataset")
  assert "--config.dataset=blobs" in overrides
  workdir = tmp_path / "work"
  args = ["run", f"--config={tiny.CONFIG}", f"--workdir={workdir}", *overrides]
  assert cli.main(["jaxunlearn", *args]) == 0, capsys.readouterr().err
  results = json.loads((workdir / "results.json").read_text())
  assert results["dataset"] == "blobs" and results["n_train"] == 600
  assert results["models"]["original"]["acc_test"] > 0.5     # above chance (1/3)
  assert cli.main(["jaxunlearn", "datasets", "--config.plugins=('my_datasets',)"]) == 0
  assert "blobs" in capsys.readouterr().out


def test_a_taken_name_is_refused_unless_replaced(tmp_path, monkeypatch, capsys):
  (tmp_path / "clash_plugin.py").write_text(
      "from jaxunlearn import methods\n"
      "@methods.register('lightweight')\n"
      "class Mine(methods.Method):\n"
      "  inputs = ('x_remain', 'y_remain')\n"
      "  def loss(self, params, apply_fn, batch, hp, extra):\n"
      "    return methods.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain), {}\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = _copy_finished(tmp_path)
  args = tiny.cli_args(npz, workdir, "--config.plugins=('clash_plugin',)",
                       "--config.eval.evaluators=()")
  assert cli.main(["jaxunlearn", *args]) == 2
  err = capsys.readouterr().err
  assert "already registered" in err and "replace=True" in err and len(err.splitlines()) == 1
  assert methods.get("lightweight").__module__ == "jaxunlearn.methods.lightweight"


@pytest.mark.slow
def test_a_replaced_builtin_is_named_in_results_and_summary(tmp_path, monkeypatch, capsys):
  from jaxunlearn import registry
  builtin = methods.get("finetune")
  (tmp_path / "replace_plugin.py").write_text(
      "from jaxunlearn import methods\n"
      "@methods.register('finetune', replace=True)\n"
      "class MyFinetune(methods.get('finetune')):\n"
      "  description = 'mine'\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = _copy_finished(tmp_path)
  args = tiny.cli_args(npz, workdir, "--config.plugins=('replace_plugin',)",
                       "--config.unlearn.method=finetune", "--config.eval.evaluators=()")
  try:
    assert cli.main(["jaxunlearn", *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
  finally:   # put the built-in back for the other tests
    methods.base._REGISTRY._plugins["finetune"] = builtin
    methods.base._REGISTRY._replaced.pop("finetune", None)
  results = json.loads((workdir / "results.json").read_text())
  assert results["replaced"] == {"unlearning method finetune": "replace_plugin.MyFinetune"}
  assert "replaced built-ins: unlearning method finetune by replace_plugin.MyFinetune" in out
  assert registry.replaced() == {}
  # The same class registered again (a module imported twice) is no conflict.
  methods.register("finetune")(builtin)


@pytest.mark.slow
def test_an_existing_method_under_another_name(tmp_path, monkeypatch, capsys):
  (tmp_path / "alias_plugin.py").write_text(
      "from jaxunlearn import methods\n"
      "methods.register('my_ft')(methods.get('finetune'))\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = _copy_finished(tmp_path)
  args = tiny.cli_args(npz, workdir, "--config.plugins=('alias_plugin',)",
                       "--config.unlearn.method=my_ft", "--config.eval.evaluators=()")
  assert cli.main(["jaxunlearn", *args]) == 0, capsys.readouterr().err
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "my_ft" and results["evaluators"] == ["accuracy"]


def test_missing_plugin_is_one_clear_line(tmp_path, capsys):
  npz = tiny.write_npz(tmp_path / "t.npz")
  args = tiny.cli_args(npz, tmp_path / "w", "--config.plugins=('no_such_module_xyz',)")
  assert cli.main(["jaxunlearn", *args]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no_such_module_xyz" in err and "PYTHONPATH" in err
  assert not (tmp_path / "w").exists()


def test_registries_reject_what_is_not_a_plugin():
  with pytest.raises(TypeError, match="Method"):
    methods.register("bad")(lambda: None)
  with pytest.raises(TypeError, match="Evaluator"):
    evaluators.register("bad")(object)
  with pytest.raises(ConfigError, match="unknown input"):
    methods.register("bad2")(type("M", (methods.Method,), {"inputs": ("x_everything",)}))
  with pytest.raises(ConfigError, match="unknown unlearning method 'nope'"):
    methods.get("nope")
  with pytest.raises(ConfigError, match="already registered"):
    methods.register("finetune")(methods.get("lightweight"))
  assert {"lightweight", "finetune"} <= set(methods.names())


def test_only_methods_that_use_a_reference_get_one():
  assert methods.get("lightweight")().needs_reference
  assert not methods.get("finetune")().needs_reference


@pytest.mark.slow
def test_evaluator_inputs_are_read_only(tmp_path):
  npz, workdir = _copy_finished(tmp_path)
  seen = {}

  @evaluators.register("probe_read_only")
  class Probe(evaluators.Evaluator):
    def evaluate(self, inp):
      for name in ("x_train", "y_train", "x_test", "forget_idx"):
        with pytest.raises(ValueError, match="read-only"):
          getattr(inp, name)[0] = 0
      with pytest.raises(ValueError, match="read-only"):
        inp.logits["original"]["test"][0, 0] = 0.0
      with pytest.raises(TypeError):
        inp.models["x"] = None
      with pytest.raises(Exception):
        inp.cfg.seed = 5
      seen["key"] = np.asarray(__import__("jax").random.key_data(inp.key))
      return {"ok": True}

  cfg = tiny.config(npz, eval__evaluators=("probe_read_only",))
  results = pipeline.run(cfg, workdir)
  assert results["probe_read_only"] == {"ok": True} and "key" in seen


# --- layering, from the import statements ------------------------------------------


def _graph() -> dict[str, set[str]]:
  """``{module: package modules it imports}`` from every import statement, lazy ones too.

  ``from pkg import name`` counts as importing ``pkg.name`` when that is a module,
  else ``pkg`` (as Python resolves it).
  """
  mods = {}
  for f in PACKAGE.rglob("*.py"):
    parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
    mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

  def owner(name):
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name

  graph = {}
  for name, f in mods.items():
    targets = set()
    for node in ast.walk(ast.parse(f.read_text())):
      if isinstance(node, ast.Import):
        targets.update(owner(a.name) for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
          for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
          base = f"{pkg}.{base}" if base else pkg
        for a in node.names:
          full = f"{base}.{a.name}"
          targets.add(full if full in mods else owner(base))
    graph[name] = {t for t in targets if t and t != name}
  return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle of ``graph`` (a depth-first search), or None."""
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return path + [node, nxt]
      if nxt not in state:
        found = visit(nxt, path + [node])
        if found:
          return found
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [])
      if found:
        return found
  return None


ORCHESTRATION = {"jaxunlearn.pipeline", "jaxunlearn.cli", "jaxunlearn.request",
                 "jaxunlearn.auditor", "jaxunlearn.tuning", "jaxunlearn.plugins"}
PLUGIN_PACKAGES = ("jaxunlearn.methods", "jaxunlearn.evaluators", "jaxunlearn.audits")


def test_no_import_circle_and_plugins_never_import_the_request_or_the_cli():
  graph = _graph()
  assert "jaxunlearn.methods.base" in graph and "jaxunlearn.evaluators.mia" in graph
  assert "jaxunlearn.audits.epsilon" in graph
  for name, targets in graph.items():
    if name.startswith(PLUGIN_PACKAGES):
      assert not targets & ORCHESTRATION, (name, targets & ORCHESTRATION)
  assert find_circle(graph) is None, find_circle(graph)
  # The schema knows no plugin.
  assert not any(t.startswith(PLUGIN_PACKAGES) for t in graph["jaxunlearn.config"]), \
      graph["jaxunlearn.config"]
  # The registries import no plugin.
  assert not any(t.startswith("jaxunlearn.methods.") for t in graph["jaxunlearn.methods.base"])
  assert not any(t.startswith("jaxunlearn.evaluators.")
                 for t in graph["jaxunlearn.evaluators.base"])


def test_the_circle_check_finds_a_circle(tmp_path):
  # The checker itself, on a package whose lazy import closes a circle.
  pkg = tmp_path / "jaxunlearn"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from jaxunlearn import b\n")
  (pkg / "b.py").write_text("def f():\n  from jaxunlearn import a\n")
  global PACKAGE
  saved, PACKAGE = PACKAGE, pkg
  try:
    graph = _graph()
  finally:
    PACKAGE = saved
  assert graph["jaxunlearn.a"] == {"jaxunlearn.b"}
  assert find_circle(graph) == ["jaxunlearn.a", "jaxunlearn.b", "jaxunlearn.a"]


def test_the_layer_check_sees_an_import_inside_a_function(tmp_path):
  pkg = tmp_path / "jaxunlearn"
  (pkg / "methods").mkdir(parents=True)
  for f in ("__init__.py", "methods/__init__.py", "request.py", "config.py"):
    (pkg / f).write_text("")
  (pkg / "methods" / "mine.py").write_text("def f():\n  from jaxunlearn import request\n")
  (pkg / "config.py").write_text("def g():\n  import jaxunlearn.methods.mine\n")
  global PACKAGE
  saved, PACKAGE = PACKAGE, pkg
  try:
    graph = _graph()
  finally:
    PACKAGE = saved
  assert graph["jaxunlearn.methods.mine"] & ORCHESTRATION == {"jaxunlearn.request"}
  assert any(t.startswith(PLUGIN_PACKAGES) for t in graph["jaxunlearn.config"])


# --- replaced plugins (issue 25.1) ---------------------------------------------------------
# A stage's name carries the implementation that made it: a replaced or edited plugin never
# reuses another implementation's stage; the package's own plugins keep their names.

# A replacement of the paper's method with another loss (only the KL term, doubled).
REPLACEMENT = """\
from jaxunlearn import methods


@methods.register("lightweight", replace=True)
class DoubledKL(methods.get("lightweight")):
  def loss(self, params, apply_fn, batch, hp, extra):
    kl = methods.kl_per_example(batch.ref_probs, apply_fn(params, batch.x_forget)).mean()
    return 2.0 * kl, {"kl": kl}
"""


def _plugin_module(tmp_path, monkeypatch, name: str, text: str):
  """``name`` written as ``text`` into ``tmp_path`` and imported (again, if it was)."""
  import importlib
  import sys
  (tmp_path / f"{name}.py").write_text(text)
  monkeypatch.syspath_prepend(str(tmp_path))
  importlib.invalidate_caches()
  if name in sys.modules:
    return importlib.reload(sys.modules[name])
  return importlib.import_module(name)


def _spec_key(name: str = "lightweight") -> str:
  from jaxunlearn import hashing, plan
  block = tiny.config("unused.npz").unlearn
  block.method = name
  return hashing.spec_hash(plan.make_plan("x", block).spec())


def _no_training(monkeypatch):
  from jaxunlearn import train, unlearn

  def refuse(*args, **kwargs):
    raise AssertionError("a stage was trained where a saved one should serve")
  monkeypatch.setattr(train, "fit", refuse)
  monkeypatch.setattr(unlearn, "unlearn", refuse)


@pytest.mark.slow
def test_a_replaced_method_trains_fresh_and_the_builtin_keeps_its_stage(tmp_path, monkeypatch):
  npz, workdir = _copy_finished(tmp_path)
  _, _, finished = tiny.finished_run()
  builtin = methods.get("lightweight")
  cfg = tiny.config(npz, eval__evaluators=())
  _plugin_module(tmp_path, monkeypatch, "doubled_kl", REPLACEMENT)
  mine = pipeline.run(cfg, workdir)
  assert mine["replaced"] == {"unlearning method lightweight": "doubled_kl.DoubledKL"}
  assert mine["stages"]["unlearned"] != finished["stages"]["unlearned"]
  assert mine["models"]["unlearned"] != finished["models"]["unlearned"]   # trained, not served
  assert mine["models"]["original"] == finished["models"]["original"]     # the same original
  # The built-in registered again finds its own stage, not the replacement's: nothing trains.
  methods.register("lightweight", replace=True)(builtin)
  _no_training(monkeypatch)
  again = pipeline.run(cfg, workdir)
  assert again["stages"]["unlearned"] == finished["stages"]["unlearned"]
  assert again["models"] == finished["models"] and again["replaced"] == {}


def test_the_builtins_keep_their_keys_and_a_replacement_gets_its_own(tmp_path, monkeypatch):
  from jaxunlearn import models, registry, transforms
  builtin_key = _spec_key()
  assert methods.implementation("lightweight") is None
  assert all(reg.implementation(n) is None for reg in registry._ALL for n in reg.names())
  assert models.implementation("mlp") is None and transforms.implementation("label_flip") is None
  builtin = methods.get("lightweight")
  _plugin_module(tmp_path, monkeypatch, "doubled_kl", REPLACEMENT)
  impl = methods.implementation("lightweight")
  assert impl["class"] == "doubled_kl.DoubledKL" and len(impl["source"]) == 12
  assert _spec_key() != builtin_key
  methods.register("lightweight", replace=True)(builtin)
  assert _spec_key() == builtin_key
  # A built-in under another built-in's name is another implementation too.
  methods.register("lightweight", replace=True)(methods.get("finetune"))
  assert methods.implementation("lightweight") == {
      "class": registry.qualified_name(methods.get("finetune"))}


OUTSIDE = """\
from jaxunlearn import methods


@methods.register("outside_method")
class Outside(methods.get("finetune")):
{body}
"""


def test_an_edited_outside_plugin_gets_a_new_key_unless_it_declares_a_version(
    tmp_path, monkeypatch):
  write = lambda body: _plugin_module(tmp_path, monkeypatch, "outside_plugin",  # noqa: E731
                                      OUTSIDE.format(body=body))
  write("  description = 'first'")
  first = _spec_key("outside_method")
  write("  description = 'first'")
  assert _spec_key("outside_method") == first        # the same source: the same key
  write("  description = 'edited, longer'")
  assert _spec_key("outside_method") != first        # its source changed
  # A declared version is the key: edits that keep it keep the key, a new one changes it.
  write("  version = '1'\n  description = 'first'")
  assert methods.implementation("outside_method") == {"class": "outside_plugin.Outside",
                                                      "version": "1"}
  versioned = _spec_key("outside_method")
  write("  version = '1'\n  description = 'edited, but the same results'")
  assert _spec_key("outside_method") == versioned
  write("  version = '2'\n  description = 'first'")
  assert _spec_key("outside_method") != versioned


def test_a_plugin_without_source_or_version_is_refused_when_planned():
  import types
  from jaxunlearn import plan
  module = types.ModuleType("made_in_memory")
  exec("from jaxunlearn import methods\n"
       "@methods.register('sourceless')\n"
       "class Sourceless(methods.get('finetune')):\n"
       "  pass\n", module.__dict__)
  block = tiny.config("unused.npz").unlearn
  block.method = "sourceless"
  with pytest.raises(ConfigError, match=r"sourceless.*version = \"1\""):
    plan.make_plan("x", block)
  methods.get("sourceless").version = 3
  assert plan.make_plan("x", block).spec()["implementation"]["version"] == "3"


def test_an_audit_population_carries_the_implementation(tmp_path, monkeypatch):
  from jaxunlearn import auditor, populations, request
  npz, workdir = _copy_finished(tmp_path)
  cfg = tiny.config(npz, audit__num_models=2, audit__chunk_size=2)
  specs = [request.MethodSpec("paper", cfg.unlearn)]
  seen = []
  monkeypatch.setattr(auditor.Auditor, "run",
                      lambda self, pop, masks=None: seen.append(
                          populations.member_stage(pop, 0, 2)) or {})

  def stage_name() -> str:
    with request.open_request(cfg, workdir, methods=specs) as req:
      auditor.Auditor(req).unlearn_population("paper_pop", "paper")
    return seen[-1]

  builtin_stage = stage_name()
  builtin = methods.get("lightweight")
  _plugin_module(tmp_path, monkeypatch, "doubled_kl", REPLACEMENT)
  assert stage_name() != builtin_stage
  methods.register("lightweight", replace=True)(builtin)
  assert stage_name() == builtin_stage


RECORD_FIELD = """\
import jax.numpy as jnp


def forget_margin(logits, labels):
  return {body}
"""


def test_an_edited_record_field_is_another_record(tmp_path, monkeypatch):
  from jaxunlearn import audits, populations
  write = lambda body: _plugin_module(tmp_path, monkeypatch, "record_plugin",  # noqa: E731
                                      RECORD_FIELD.format(body=body))

  def stage(fn) -> str:
    pop = populations.Population("retrain", 3, member=None, fields=(("margin", fn),))
    return populations.member_stage(pop, 0, 3)

  first = stage(write("jnp.max(logits, -1)").forget_margin)
  assert stage(write("jnp.max(logits, -1)").forget_margin) == first
  edited = write("jnp.max(logits, -1) - jnp.min(logits, -1)").forget_margin
  assert stage(edited) != first
  edited.version = "1"
  assert audits.RECORD.schema({"margin": edited})[-1][-1]["version"] == "1"
  # The package's own fields are named as they always were.
  assert audits.RECORD.schema({})[0] == ["phi", "jaxunlearn.audits.phi.logit_confidence"]


def test_a_replaced_model_is_refused_on_a_work_dir_of_the_builtin(tmp_path, monkeypatch):
  from jaxunlearn import models
  npz, workdir = _copy_finished(tmp_path)
  _no_training(monkeypatch)
  _plugin_module(tmp_path, monkeypatch, "my_mlp",
                 "from jaxunlearn import models\n"
                 "models.register('mlp', replace=True)(type('MyMLP', (models.MLP,), {}))\n")
  from jaxunlearn.errors import WorkdirError
  with pytest.raises(WorkdirError, match="model_implementation"):
    pipeline.run(tiny.config(npz, eval__evaluators=()), workdir)
  assert models.implementation("mlp")["class"] == "my_mlp.MyMLP"


def test_a_replaced_evaluator_caches_apart(tmp_path):
  from jaxunlearn import stages
  cache = stages.StageCache(tmp_path)
  assert cache.scoped(None).path("shadows-abc") == tmp_path / "shadows-abc"
  mine = cache.scoped({"class": "mine.MIA", "source": "0123456789ab"})
  other = cache.scoped({"class": "mine.MIA", "source": "ba9876543210"})
  assert mine.path("shadows-abc") != cache.path("shadows-abc")
  assert mine.path("shadows-abc") != other.path("shadows-abc")
  assert mine.path("shadows-abc").parent == tmp_path
