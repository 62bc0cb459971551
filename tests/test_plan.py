"""jaxunlearn.plan on abstract shapes: make_plan's refusals, parse_spec, spec(), needs and
the run's shape. Nothing here trains or compiles; a run is at most traced by jax.eval_shape."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn import methods, models, plan
from jaxunlearn.errors import ConfigError
from jaxunlearn.plugins import default_config

INPUT_SHAPE = (8, 8, 1)
NUM_CLASSES = 4


def block(method="lightweight", **fields):
  """The default ``unlearn`` block with ``method`` and ``fields`` set."""
  u = default_config().unlearn
  u.method = method
  for k, v in fields.items():
    u[k] = v
  return u


@pytest.fixture(scope="module")
def mlp():
  """A tiny MLP's abstract parameters: ``(model, params, batch_stats)``; nothing is run."""
  model = models.get_model("mlp", NUM_CLASSES, hidden=(8,))
  variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *INPUT_SHAPE))),
                             jax.random.key(0))
  return model, variables["params"], variables.get("batch_stats", {})


# --- make_plan -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", methods.names())
def test_every_builtin_makes_a_plan_that_needs_the_methods_inputs(name):
  p = plan.make_plan("mine", block(name))
  assert p.label == "mine" and p.name == name and p.stop == "epochs"
  # What the method reads at its default options (matching's D_r teacher only with its
  # anchor="teacher").
  assert p.needs == frozenset(methods.get(name)().used_inputs())
  assert p.needs <= frozenset(methods.get(name).inputs)
  assert p.needs_reference == ("ref_probs" in p.needs)
  assert p.needs_heldout == bool(p.needs & {"x_heldout", "y_heldout"})
  assert isinstance(p.block, ml_collections.FrozenConfigDict)
  assert p.hparams["learning_rate"] == 0.01
  assert all(isinstance(v, float) for v in p.hparams.values())


def test_the_stop_rule_adds_its_inputs_to_the_needs():
  assert plan.make_plan("a", block("finetune")).needs == {"x_remain", "y_remain"}
  calibrated = plan.make_plan("a", block("finetune", stop="calibrated"))
  assert calibrated.stop == "calibrated" and calibrated.needs_heldout
  assert calibrated.needs == {"x_remain", "y_remain", "x_forget", "y_forget", "x_heldout",
                              "y_heldout"}
  kl = plan.make_plan("a", block("lightweight", tol=0.1))      # tol > 0 with stop='epochs'
  assert kl.stop == "kl_tol" and kl.needs == plan.make_plan("a", block("lightweight")).needs


REFUSED = [
    # (unlearn block fields, where, words in the message)
    (dict(method="finetune", tol=0.1), "", ("unlearn.tol", "reference", "tol=0")),
    (dict(method="finetune", tol=0.1), "entry 'x'", ("entry 'x': tol", "reference")),
    (dict(method="finetune", steps=10), "", ("unlearn.steps=10", "epoch_over='steps'",
                                             "'finetune' counts epochs")),
    (dict(method="finetune", steps=10), "entry 'x'", ("entry 'x': steps=10",)),
    (dict(method="lightweight", stop="kl_tol"), "", ("stop='kl_tol' needs a tolerance",)),
    (dict(method="lightweight", stop="kl_tol"), "entry 'x'", ("entry 'x': stop='kl_tol'",)),
    (dict(method="lightweight", learning_rate=0.0), "", ("learning_rate",)),
    (dict(method="lightweight", learning_rate=0.0), "entry 'x'", ("entry 'x'", "learning_rate")),
    (dict(method="lightweight", epochs=0), "", ("epochs",)),
    (dict(method="lightweight", forget_batch_size=0), "", ("forget_batch_size",)),
    (dict(method="lightweight", optimizer="lion"), "", ("optimizer", "one of")),
    (dict(method="no_such_method"), "", ("no_such_method",)),
    (dict(method="no_such_method"), "entry 'x'", ("entry 'x'", "no_such_method")),
]


@pytest.mark.parametrize("fields, where, words", REFUSED)
def test_make_plan_refuses_naming_the_field_and_where(fields, where, words):
  with pytest.raises(ConfigError) as e:
    plan.make_plan("x", block(**fields), where=where)
  for word in words:
    assert word in str(e.value), (word, str(e.value))
  if where:
    assert str(e.value).startswith(where)


def test_make_plan_leaves_its_block_alone():
  u = block("lightweight", lam=0.3)
  before = u.to_dict()
  p = plan.make_plan("x", u)
  assert u.to_dict() == before and p.hparams["lam"] == 0.3
  with pytest.raises((AttributeError, TypeError, ValueError)):
    p.block.lam = 0.5              # the plan's copy is frozen


# --- spec() and the run's shape ------------------------------------------------------------------


def test_spec_holds_what_a_run_depends_on_and_nothing_else():
  p = plan.make_plan("x", block("lightweight", lam=0.2))
  spec = p.spec()
  assert json.loads(json.dumps(spec)) == spec                    # JSON-able as it is
  assert set(spec) == set(plan.RUN_FIELDS) - {"calibrate_every"} | {"hparams", "options"}
  assert spec["method"] == "lightweight" and spec["stop"] == "epochs"
  assert spec["hparams"] == {"lam": 0.2}                         # learning_rate is a run field
  assert spec["learning_rate"] == 0.01
  assert spec["options"] == {"kl_reduction": "mean"}
  # The label and the other methods' blocks are not part of it.
  other = block("lightweight", lam=0.2)
  other.scrub.alpha = 0.9
  assert plan.make_plan("another_label", other).spec() == spec
  assert plan.make_plan("x", block("lightweight", lam=0.3)).spec() != spec
  assert plan.make_plan("x", block("lightweight", lam=0.2, epochs=3)).spec() != spec


def test_spec_names_steps_and_calibrate_every_only_where_they_count():
  steps = plan.make_plan("x", block("importance_retrain", steps=7)).spec()
  assert steps["steps"] == 7 and "epochs" not in steps
  assert "steps" not in plan.make_plan("x", block("importance_retrain")).spec()
  calibrated = plan.make_plan("x", block("finetune", stop="calibrated", calibrate_every=3))
  assert calibrated.spec()["calibrate_every"] == 3 and calibrated.spec()["stop"] == "calibrated"


def test_shape_args_and_run_shape():
  p = plan.make_plan("x", block("lightweight", epochs=3, forget_batch_size=4,
                                remain_batch_size=16))
  assert p.shape_args(200) == {"epochs": 3, "forget_batch_size": 4, "remain_batch_size": 16,
                               "steps": 0}
  shape = p.run_shape(n_forget=12, n_remain=200)
  assert shape == plan.make_plan("y", p.block.as_configdict()).run_shape(12, 200)
  assert shape != p.run_shape(n_forget=12, n_remain=400)
  steps = plan.make_plan("x", block("importance_retrain", steps=5, remain_batch_size=16))
  assert steps.shape_args(200)["steps"] == 5


# --- parse_spec --------------------------------------------------------------------------------


def test_parse_spec_sets_the_unlearn_fields_and_the_methods_own():
  base = block()
  label, u = plan.parse_spec("paper=lightweight:lam=0.02,epochs=3,kl_reduction='sum'", base)
  assert label == "paper" and u.method == "lightweight"
  assert u.lam == 0.02 and u.epochs == 3               # lam is shared: the block's own field
  assert u.kl_reduction == "sum"                       # an option of lightweight's, shared too
  assert (base.lam, base.epochs, base.kl_reduction) == (0.01, 2, "mean")  # base unchanged
  p = plan.make_plan(label, u)
  assert p.hparams["lam"] == 0.02 and p.spec()["options"] == {"kl_reduction": "sum"}
  _, u = plan.parse_spec("bad_teacher:temperature=2", base)
  assert u.bad_teacher.temperature == 2.0 and isinstance(u.bad_teacher.temperature, float)


def test_parse_spec_without_a_label_is_labelled_by_its_method():
  label, u = plan.parse_spec("finetune", block())
  assert label == "finetune" and u.method == "finetune"
  label, u = plan.parse_spec(" ft = finetune : learning_rate=1 ", block())
  assert label == "ft" and u.learning_rate == 1.0 and isinstance(u.learning_rate, float)


def test_parse_spec_reads_nan_and_inf_as_numbers_and_refuses_them():
  for text in ("nan", "inf"):
    with pytest.raises(ConfigError, match="learning_rate' must be a finite number"):
      plan.parse_spec(f"finetune:learning_rate={text}", block())


@pytest.mark.parametrize("spec, words", [
    ("finetune:nope=1", ("unknown field 'nope'",)),
    ("nope", ("unknown method 'nope'",)),
    ("x=finetune:method=lightweight", ("label=lightweight",)),
    ("lightweight:lam=abc", ("'lam' must be a number",)),
    ("lightweight:lam=True", ("'lam' must be a number",)),
    ("finetune:epochs", ("is not field=value",)),
    ("finetune:optimizer=3", ("optimizer",)),
    ("oracle=finetune", ("needs a label",)),
    ("ulira_x=finetune", ("needs a label",)),
    ("not a label=finetune", ("needs a label",)),
    (3, ("must be strings",)),
])
def test_parse_spec_refuses_naming_the_entry(spec, words):
  with pytest.raises(ConfigError) as e:
    plan.parse_spec(spec, block(), reserved=("oracle", "none"))
  for word in words:
    assert word in str(e.value), (word, str(e.value))
  if isinstance(spec, str):
    assert f"audit.methods entry {spec!r}" in str(e.value)


# --- inputs and abstract runs ------------------------------------------------------------------


def test_build_inputs_builds_exactly_what_the_run_needs():
  x_f, y_f = np.zeros((3, *INPUT_SHAPE), np.float32), np.zeros(3, np.int32)
  x_r, y_r = np.ones((5, *INPUT_SHAPE), np.float32), np.ones(5, np.int32)
  probs = lambda x: jnp.full((x.shape[0], NUM_CLASSES), 0.25)   # noqa: E731
  light = plan.make_plan("x", block("lightweight"))
  got = light.build_inputs(x_forget=x_f, y_forget=y_f, x_remain=x_r, y_remain=y_r,
                           reference_probs=probs)
  present = {k for k in methods.Inputs._fields if getattr(got, k) is not None}
  assert present == light.needs and got.ref_probs.shape == (3, NUM_CLASSES)
  with pytest.raises(ConfigError, match="needs a reference model"):
    light.build_inputs(x_forget=x_f, y_forget=y_f, x_remain=x_r, y_remain=y_r)
  scrub_r = plan.make_plan("mine", block("scrub_r"))
  with pytest.raises(ConfigError, match="mine: .*holdout.size"):
    scrub_r.build_inputs(x_forget=x_f, y_forget=y_f, x_remain=x_r, y_remain=y_r)


def test_heldout_rows_keep_the_classes_of_the_forget_set():
  y_train = np.array([0, 1, 2, 0, 1, 2, 3])
  np.testing.assert_array_equal(plan.heldout_rows([3, 4, 5, 6], y_train, [0, 1]), [3, 4])


@pytest.mark.parametrize("name", ["finetune", "lightweight", "scrub_r", "importance_retrain"])
def test_abstract_check_traces_a_run_on_shapes_only(name, mlp):
  model, params, batch_stats = mlp
  p = plan.make_plan(name, block(name, forget_batch_size=4, remain_batch_size=8))
  plan.abstract_check(p, params, batch_stats, model=model, input_shape=INPUT_SHAPE,
                      n_forget=6, n_remain=20, num_classes=NUM_CLASSES, n_heldout=3)


def test_abstract_check_refuses_a_method_that_changes_the_parameter_shapes(mlp):
  @methods.register("widen_for_plan_test")
  class Widen(methods.Method):
    inputs = ("x_remain", "y_remain")

    def make(self, env):
      rule = methods.get("finetune")().make(env)
      return rule._replace(finish=lambda s: jax.tree.map(lambda p: p[None], s.params))

  model, params, batch_stats = mlp
  p = plan.make_plan("wide", block("widen_for_plan_test"))
  with pytest.raises(ConfigError, match="wide: method 'widen_for_plan_test' returns parameters "
                                        "of another structure or shape"):
    plan.abstract_check(p, params, batch_stats, model=model, input_shape=INPUT_SHAPE,
                        n_forget=6, n_remain=20, num_classes=NUM_CLASSES)
