"""The command line explains itself: help for every command, every config field described."""

import pytest

from tests.support import tiny
from jaxunlearn import cli, config, plugins


def test_top_level_help_lists_every_command_with_one_line(capsys):
  assert cli.main(["jaxunlearn", "--help"]) == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
    assert len(line.split()) > 3, line


@pytest.mark.parametrize("command", ["run", "audit", "config"])
def test_command_help_gives_the_flags_and_how_to_set_fields(command, capsys):
  assert cli.main(["jaxunlearn", command, "--help"]) == 0
  out = capsys.readouterr().out
  assert f"usage: jaxunlearn {command}" in out
  assert "--config FILE" in out and "--config.FIELD=VALUE" in out
  assert "jaxunlearn config --config FILE" in out
  if command != "config":
    assert "--workdir DIR" in out and "--wait" in out


def test_config_prints_every_field_with_value_and_description(capsys):
  assert cli.main(["jaxunlearn", "config", f"--config={tiny.CONFIG}",
                   "--config.unlearn.lam=0.3"]) == 0
  lines = capsys.readouterr().out.splitlines()
  by_name = {line.split()[0]: line for line in lines}
  cfg = plugins.check_config(tiny.config("x.npz"))
  fields = [name for name, _ in config.flat_items(cfg)]
  assert set(by_name) == set(fields)
  assert "0.3" in by_name["unlearn.lam"] and "the paper's lambda" in by_name["unlearn.lam"]
  # Every built-in field, core or plugin, has a description.
  for name, value, doc in plugins.describe(cfg):
    assert doc, f"{name} has no description"


def test_config_refuses_a_bad_field_in_one_line(capsys):
  assert cli.main(["jaxunlearn", "config", f"--config={tiny.CONFIG}",
                   "--config.unlearn.lam=5.0"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "unlearn.lam" in err


def test_lists_honour_plugins(tmp_path, monkeypatch, capsys):
  (tmp_path / "listed_plugin.py").write_text(
      "from jaxunlearn import evaluators, methods\n"
      "@methods.register('listed_method')\n"
      "class M(methods.get('finetune')):\n"
      "  description = 'a listed method'\n"
      "@evaluators.register('listed_evaluator')\n"
      "class E(evaluators.Evaluator):\n"
      "  title = 'a listed evaluator'\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  assert cli.main(["jaxunlearn", "methods", "--config.plugins=('listed_plugin',)"]) == 0
  assert "listed_method" in capsys.readouterr().out
  assert cli.main(["jaxunlearn", "evaluators", "--config.plugins=('listed_plugin',)"]) == 0
  assert "listed_evaluator" in capsys.readouterr().out
  for kind in ("statistics", "datasets", "models", "transforms"):
    assert cli.main(["jaxunlearn", kind]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_a_renamed_field_still_works_with_one_deprecation_line(tmp_path, capsys):
  npz, finished, _ = tiny.finished_run()
  args = tiny.cli_args(npz, tmp_path / "w", "--config.unlearn.method=bad_teacher",
                       "--config.unlearn.bad_teacher.retain_fraction=0.5",
                       "--config.eval.evaluators=()", "--config.retrain.enabled=False")
  assert cli.main(["jaxunlearn", *args]) == 0
  err = capsys.readouterr().err
  notes = [x for x in err.splitlines() if "retain_fraction" in x]
  assert len(notes) == 1 and "remain_fraction" in notes[0]
  import json
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert results["hparams"]["remain_fraction"] == 0.5
