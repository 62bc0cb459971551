"""The request as a value, stage keys, the record's config, and the names that moved.

Fast: nothing trains. ``request.prepare`` validates and loads the tiny data
but writes nothing; models are abstract (``jax.eval_shape``).
"""

import dataclasses
import zlib

import jax
import numpy as np
import pytest

from tests.support import tiny
from jaxunlearn import auditor, deprecation, evaluators, methods, plugins, request, results
from jaxunlearn import audits, stages, tuning
from jaxunlearn.errors import WorkdirError


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
  return tiny.write_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


def _abstract_original(prep) -> stages.Trained:
  v = stages.abstract_variables(prep.model, prep.cfg.train, prep.data.input_shape)
  return stages.Trained(v["params"], v["batch_stats"], None, {}, "original")


def _request(prep) -> request.Request:
  return request.Request(prep, b"secret", {"seed": 0}, _abstract_original(prep))


def test_request_is_frozen_and_holds_no_copy_of_prepared_fields(npz, tmp_path):
  prep = request.prepare(tiny.config(npz), tmp_path / "work")
  assert not (tmp_path / "work").exists()   # prepare writes nothing
  req = _request(prep)
  own = {f.name for f in dataclasses.fields(request.Request)}
  assert own == {"prep", "secret", "fingerprint", "original"}
  assert not own & {f.name for f in dataclasses.fields(request.Prepared)}
  for name in ("cfg", "workdir", "data", "x_train", "y_train", "transforms", "splits", "model",
               "mesh", "plans", "evaluators"):
    assert getattr(req, name) is getattr(prep, name), name
  with pytest.raises(dataclasses.FrozenInstanceError):
    req.secret = b"other"
  with pytest.raises(AttributeError):
    req.cfg = None
  assert not req.x_train.flags.writeable
  assert req.cache.root == prep.workdir / "checkpoints"


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("name", ["original", "retrain", "audit/none", "evaluator/mia"])
def test_stage_key_is_fold_in_of_the_crc32_of_the_name(seed, name):
  want = jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))
  got = stages.stage_key(seed, name)
  np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))


def test_stage_key_bits_are_pinned():
  # The original's key of every work dir made at seed 0: changing it retrains everything.
  np.testing.assert_array_equal(jax.random.key_data(stages.stage_key(0, "original")),
                                np.array([809222335, 2372741679], np.uint32))


def test_request_key_is_the_stage_key(npz, tmp_path):
  req = _request(request.prepare(tiny.config(npz, seed=5), tmp_path / "work"))
  np.testing.assert_array_equal(jax.random.key_data(req.key("reference")),
                                jax.random.key_data(stages.stage_key(5, "reference")))


@pytest.mark.parametrize("workdir", [None, "", "   "])
def test_prepare_refuses_an_empty_workdir_name(npz, workdir):
  with pytest.raises(WorkdirError, match="--workdir is empty"):
    request.prepare(tiny.config(npz), workdir)


# The two functions results.config_in_use replaced, as they were: the record must not change.

def _run_config_before(req, plan) -> dict:
  d = req.cfg.to_dict()
  d["unlearn"] = plan.block.to_dict()
  for name in evaluators.names():
    if name in d and name not in req.evaluators and evaluators.get(name)().config() is not None:
      del d[name]
  for name in methods.names():
    if name != plan.name:
      d["unlearn"].pop(name, None)
  d.pop("audit", None)
  return d


def _audit_config_before(req) -> dict:
  d = req.cfg.to_dict()
  for name in evaluators.names():
    if name in d and not evaluators.get(name)().enabled(req.cfg) and \
        evaluators.get(name)().config() is not None:
      del d[name]
  d.pop("eval", None)
  used = {p.name for p in req.plans.values()}
  for name in methods.names():
    if name not in used:
      d["unlearn"].pop(name, None)
  for name in audits.names():
    if name not in req.cfg.audit.statistics:
      d["audit"].pop(name, None)
  return d


@pytest.mark.parametrize("evaluators_listed", [("mia", "loss_attack"), ()])
def test_config_in_use_of_a_run(npz, tmp_path, evaluators_listed):
  cfg = tiny.config(npz)
  cfg.eval.evaluators = evaluators_listed
  req = _request(request.prepare(cfg, tmp_path / "work"))
  (plan,) = req.plans.values()
  d = results.config_in_use(req, plan)
  assert d == _run_config_before(req, plan)
  assert "audit" not in d and "eval" in d
  assert ("mia" in d) == ("mia" in evaluators_listed)
  assert not set(d["unlearn"]) & (set(methods.names()) - {plan.name})


@pytest.mark.parametrize("statistics", [("epsilon", "ulira"), ("epsilon",)])
def test_config_in_use_of_an_audit(npz, tmp_path, statistics):
  cfg = plugins.check_config(tiny.config(npz))
  cfg.audit.methods = ("lightweight", "ft=finetune")
  cfg.audit.statistics = statistics
  prep = request.prepare(cfg, tmp_path / "work", methods=auditor.method_specs(cfg))
  req = _request(prep)
  d = results.config_in_use(req, audit=True)
  assert d == _audit_config_before(req)
  assert "eval" not in d and "audit" in d
  assert ("ulira" in d["audit"]) == ("ulira" in statistics)
  assert {"lightweight", "finetune"} & set(d["unlearn"]) <= {"lightweight", "finetune"}


def test_config_in_use_takes_a_plan_or_audit_not_both(npz, tmp_path):
  req = _request(request.prepare(tiny.config(npz), tmp_path / "work"))
  (plan,) = req.plans.values()
  with pytest.raises(Exception, match="not both or neither"):
    results.config_in_use(req)
  with pytest.raises(Exception, match="not both or neither"):
    results.config_in_use(req, plan, audit=True)


MOVED = [
    (request, "stage_key", stages.stage_key),
    (request, "abstract_variables", stages.abstract_variables),
    (request, "train_stage", stages.train_stage),
    (request, "environment", results.environment),
    ("pipeline", "retrain_stage", stages.retrain_stage),
    ("pipeline", "find_reference", stages.find_reference),
    ("pipeline", "reference_stage", stages.reference_stage),
    ("pipeline", "unlearn_stage", stages.unlearn_stage),
    ("pipeline", "method_inputs", stages.method_inputs),
    ("pipeline", "summarize", results.summarize),
    ("pipeline", "config_in_use", results.config_in_use),
    ("pipeline", "unlearn_cost", results.unlearn_cost),
    ("pipeline", "write_results", results.write_results),
    (auditor, "markdown", results.audit_markdown),
    (auditor, "config_in_use", None),
    (plugins, "validate", plugins.check_config),
    (plugins, "load", plugins.import_modules),
    ("config", "validate", "check_schema"),
]


@pytest.mark.parametrize("module, old, new", MOVED,
                         ids=[f"{m if isinstance(m, str) else m.__name__}.{o}" for m, o, _ in MOVED])
def test_a_moved_name_still_works_with_one_deprecation_line(module, old, new, capsys):
  import importlib
  if isinstance(module, str):
    module = importlib.import_module(f"jaxunlearn.{module}")
  if isinstance(new, str):
    new = getattr(module, new)
  deprecation._TOLD.discard(f"{module.__name__}.{old}")
  capsys.readouterr()
  first, second = getattr(module, old), getattr(module, old)
  if new is not None:
    assert first is new and second is new
  else:
    assert callable(first)
  lines = [line for line in capsys.readouterr().err.splitlines() if line]
  assert len(lines) == 1 and f"{module.__name__}.{old} is now" in lines[0], lines


def test_an_unknown_name_is_still_an_attribute_error():
  from jaxunlearn import pipeline
  with pytest.raises(AttributeError):
    pipeline.no_such_name  # noqa: B018


def test_check_config_leaves_the_callers_config_unchanged(npz):
  cfg = tiny.config(npz)
  with cfg.unlocked():
    del cfg["mia"]                                  # a plugin block check_config fills in
    cfg.audit.plot_examples = 3                     # an old field name it renames
  before = cfg.to_dict()
  checked = plugins.check_config(cfg)
  assert cfg.to_dict() == before
  assert "mia" in checked and checked.audit.epsilon.plot_examples == 3


def test_run_audit_and_tune_leave_the_callers_config_unchanged(npz):
  cfg = tiny.config(npz)
  with cfg.unlocked():
    del cfg["mia"]
  before = cfg.to_dict()
  # Both stop at the empty work dir name, after the point where they used to change the config.
  with pytest.raises(WorkdirError):
    auditor.run_audit(cfg, "")
  assert cfg.to_dict() == before
  with pytest.raises(WorkdirError):
    tuning.tune(cfg, "", progress=True)
  assert cfg.to_dict() == before
