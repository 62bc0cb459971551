"""Cost in examples processed: the default rule, each method's count, training, requests."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn import cost, methods, models, train, unlearn
from jaxunlearn import plan as plan_lib
from jaxunlearn.errors import ConfigError
from tests.support import tiny

F = 1.0 / 3.0   # one example forward only
# n_forget=10, n_remain=50, batches 4 and 8, 2 epochs: an epoch over D_f is 3 steps (the
# last forget batch wraps around), an epoch over D_r 7 steps.
SIZES = {"n_forget": 10, "n_remain": 50, "forget_batch_size": 4, "remain_batch_size": 8}
FORGET_EPOCHS = cost.run_shape(**SIZES, epochs=2, steps_per_epoch=3, n_heldout=6)
REMAIN_EPOCHS = FORGET_EPOCHS._replace(steps_per_epoch=7)


class ToyBoth(methods.Method):
  inputs = ("x_forget", "ref_probs", "x_remain", "y_remain")

  def loss(self, params, apply_fn, batch, hp, extra):
    raise AssertionError("never run")


class ToyTeachers(methods.Method):
  inputs = ("x_forget", "y_forget", "orig_logits_forget", "x_remain", "orig_logits_remain")
  epoch_over = "remain"


class ToyRemain(methods.Method):
  inputs = ("y_remain", "x_heldout", "y_heldout")


@pytest.fixture
def toys():
  """The toy methods, registered for one test (conftest removes them after it)."""
  methods.register("cost_toy_both")(ToyBoth)
  methods.register("cost_toy_teachers")(ToyTeachers)
  methods.register("cost_toy_remain")(ToyRemain)


def test_default_rule_on_toy_methods(toys):
  # 6 steps of 4 forget + 8 remain rows, and the reference's pass over D_f.
  assert cost.run_cost("cost_toy_both", FORGET_EPOCHS, {}) == pytest.approx(72 + 10 * F)
  # 14 steps of 4 + 8 rows; the original's logits on D_f (10) and on D_r (50), forward.
  assert cost.run_cost(ToyTeachers, REMAIN_EPOCHS, {}) == pytest.approx(168 + 60 * F)
  # 6 steps of 8 remain rows; held-out inputs are not counted by default.
  assert cost.run_cost(ToyRemain(), FORGET_EPOCHS, {}) == pytest.approx(48)
  # The schedule of a run of the toy, as make_unlearn_fn computes it.
  assert cost.schedule_shape("cost_toy_teachers", **SIZES, epochs=2) == \
      REMAIN_EPOCHS._replace(n_heldout=0)


HAND = {   # (method, hp): hand count on FORGET_EPOCHS or REMAIN_EPOCHS, per epoch_over
    ("finetune", ()): 6 * 8,
    ("gradient_ascent", ()): 6 * 4,
    ("lightweight", ()): 6 * 12 + 10 * F,
    ("bad_teacher", ()): 6 * 12 * (1 + F),          # student on 4 + 8 rows, a teacher on each
    ("ssd", ()): 60 + 10,                           # importance over D_r + D_f, then D_f
    ("l1_sparse", ()): 14 * 8,
    ("ct", ()): 14 * 8,
    ("random_reinit", ()): 14 * 8,
    ("neggrad_plus", ()): 14 * 12,
    ("reset_distill", ()): 14 * 8 + 50 * F,         # + the original's logits on D_r
    ("random_label", ()): 2 * (3 * 4 + 4 * 8),      # 3 forget steps, 4 remain steps an epoch
    ("salun", ()): 88 + 256,                        # + the mask's gradient, one chunk of 256
    ("msg", ()): 14 * 8 + 256 + 256,                # + gradients on a 10-row subset and on D_f
    ("scrub", ()): 88 * (1 + F),                    # msteps=3: both epochs have max steps
    ("scrub", (("msteps", 1.0),)): (44 + 7 * 8) * (1 + F),
    ("scrub", (("msteps", 0.0),)): 14 * 8 * (1 + F),
    ("scrub_r", ()): 88 * (1 + F) + (2 * 10 + 6) * F,   # + D_f error each epoch, held-out once
    ("importance_retrain", ()): 14 * 8,             # its own 8 rows drawn by loss per step
    ("retrain_short", ()): 14 * 8,                  # 8 uniform rows of D_r per step
    ("matching", ()): 14 * (4 + 8 + 8 * F),         # 4 + 8 rows, the original on the 8
}


def test_a_run_counted_in_steps_costs_its_steps_times_its_rows():
  shape = cost.schedule_shape("importance_retrain", **SIZES, epochs=2, steps=30)
  assert (shape.epochs, shape.steps_per_epoch) == (1, 30)
  assert cost.run_cost("importance_retrain", shape, {}) == pytest.approx(30 * 8)


@pytest.mark.parametrize("name,hp", list(HAND), ids=[f"{n}{dict(h)}" for n, h in HAND])
def test_each_method_against_a_hand_count(name, hp):
  method = methods.get(name)()
  shape = FORGET_EPOCHS if method.epoch_over == "forget" else REMAIN_EPOCHS
  assert cost.run_cost(method, shape, {**method.hparams, **dict(hp)}) == \
      pytest.approx(HAND[(name, hp)])
  assert cost.run_cost(name, shape, dict(hp)) == pytest.approx(HAND[(name, hp)])  # defaults


def test_every_builtin_method_has_a_hand_count():
  builtin = set(methods.names())
  assert builtin <= {name for name, _ in HAND}


def test_padding_the_code_computes_is_counted():
  big = REMAIN_EPOCHS._replace(n_forget=300, n_remain=310, forget_batch_size=4)
  # SSD: 610 rows in batches of 128 (5 batches), D_f in 3 batches of 128.
  assert cost.run_cost("ssd", big, {}) == 640 + 384
  # SalUn's mask gradient: 300 rows in two chunks of 256; 75 forget steps fill the D_f pass.
  with pytest.raises(ConfigError, match="salun.*remain_batch_size"):
    cost.run_cost("salun", big, {})      # 75 forget steps do not fit in 7: refused as the run is
  big = big._replace(steps_per_epoch=100)
  phases = 2 * (75 * 4 + 25 * 8)
  assert cost.run_cost("salun", big, {}) == phases + 512


def test_scrub_r_needs_held_out_examples():
  with pytest.raises(ConfigError, match="n_heldout"):
    cost.run_cost("scrub_r", REMAIN_EPOCHS._replace(n_heldout=0), {})


def linear(params, x):
  return x @ params["w"]


@pytest.mark.parametrize("name,hp,flag", [("random_label", {}, "forget_phase"),
                                          ("scrub", {"msteps": 1.0}, "max_step")])
def test_phase_counts_match_the_steps_a_run_takes(name, hp, flag):
  """Which steps were forget (max) steps, read from a real run's metrics."""
  rng = np.random.default_rng(0)
  fn = unlearn.make_unlearn_fn(name, linear, epochs=2, **SIZES)
  inputs = methods.Inputs(
      x_forget=jnp.asarray(rng.normal(size=(10, 3)), jnp.float32),
      y_forget=jnp.asarray(rng.integers(0, 4, 10)),
      x_remain=jnp.asarray(rng.normal(size=(50, 3)), jnp.float32),
      y_remain=jnp.asarray(rng.integers(0, 4, 50)))
  params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
  _, metrics = jax.jit(fn)(params, inputs, jax.random.key(0),
                           unlearn.default_hparams(name, 0.01, **hp))
  forget_steps = np.asarray(metrics[flag]).astype(bool)
  assert forget_steps.shape == (fn.epochs, fn.steps_per_epoch)
  rows = forget_steps * 4 + ~forget_steps * 8
  teacher = 1 + F if name == "scrub" else 1
  shape = cost.schedule_shape(name, **SIZES, epochs=2)
  assert cost.run_cost(name, shape, hp) == pytest.approx(rows.sum() * teacher)


def unlearn_block(method, **fields):
  from jaxunlearn.plugins import default_config
  block = default_config().unlearn
  block.method = method
  for k, v in fields.items():
    block[k] = v
  return block


@pytest.mark.parametrize("method,fbs,rbs", [("lightweight", 4, 8), ("lightweight", 64, 8),
                                            ("random_label", 4, 8), ("ssd", 3, 500)])
def test_plan_shape_is_the_one_its_run_uses(method, fbs, rbs):
  plan = plan_lib.make_plan("p", unlearn_block(method, epochs=3, forget_batch_size=fbs,
                                               remain_batch_size=rbs))
  model = models.get_model("mlp", num_classes=4, hidden=(4,))
  fn = plan.make_fn(linear, model=model, input_shape=(3,), batch_stats={}, n_forget=10,
                    n_remain=50)
  shape = plan.run_shape(10, 50, n_heldout=2)
  assert (shape.epochs, shape.steps_per_epoch) == (fn.epochs, fn.steps_per_epoch)
  # The rows an epoch's steps take: steps x forget batch and steps x remain batch.
  f_rows, r_rows = fn.rows(unlearn.RunState(None, jax.random.key(0)), 0)
  assert f_rows.shape == (shape.steps_per_epoch, shape.forget_batch_size)
  assert r_rows.shape == (shape.steps_per_epoch, shape.remain_batch_size)
  assert shape.n_heldout == 2 and shape.n_forget == 10 and shape.n_remain == 50


def test_run_shape_refuses_bad_sizes():
  with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
    cost.run_shape(**SIZES, epochs=0, steps_per_epoch=3)
  with pytest.raises(ConfigError, match="n_forget"):
    cost.schedule_shape("finetune", **{**SIZES, "n_forget": 2.5}, epochs=1)
  assert cost.run_shape(**{**SIZES, "forget_batch_size": 64}, epochs=1,
                        steps_per_epoch=1).forget_batch_size == 10


@pytest.mark.parametrize("n,batch_size,epochs", [(50, 8, 2), (50, 64, 2), (48, 16, 1)])
def test_retrain_cost_counts_the_examples_training_processes(n, batch_size, epochs):
  model = models.get_model("mlp", num_classes=3, hidden=(4,))
  opt = train.make_optimizer(ml_collections.ConfigDict({"optimizer": "sgd",
                                                        "learning_rate": 0.1}))
  state = train.init_state(model, opt, jax.random.key(0), (2,))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, n))
  fit = train.fit(model, opt, state, x, y, epochs=epochs, batch_size=batch_size,
                  key=jax.random.key(1), progress=False)
  rows_per_step = min(batch_size, n)         # fit's batch: clipped to the training set
  assert cost.retrain_cost(n, epochs, batch_size) == int(fit.state.step) * rows_per_step
  assert cost.reference_cost(n, epochs, batch_size) == cost.retrain_cost(n, epochs, batch_size)


TRAIN = {"train_epochs": 3, "train_batch_size": 8}   # retrain: 3 x 6 batches of 8 = 144


def test_request_cost_reference_per_request_or_one_off():
  ref = {"n_reference": 20, "reference_epochs": 5}   # 5 x 2 batches of 8 = 80
  fresh = cost.request_cost("lightweight", FORGET_EPOCHS, {}, **TRAIN, **ref,
                            reference_source="remain")
  unlearn_cost = 72 + 10 * F
  assert fresh == pytest.approx({
      "unlearn": unlearn_cost, "monitor": 0.0, "reference_per_request": 80.0,
      "reference_one_off": 0.0, "per_request": unlearn_cost + 80, "retrain": 144.0,
      "fraction_of_retrain": (unlearn_cost + 80) / 144})
  reused = cost.request_cost("lightweight", FORGET_EPOCHS, {}, **TRAIN, **ref,
                             reference_source="holdout", monitor=2.0)
  assert reused["reference_per_request"] == 0.0 and reused["reference_one_off"] == 80.0
  assert reused["per_request"] == pytest.approx(unlearn_cost + 2.0)
  assert reused["fraction_of_retrain"] == pytest.approx((unlearn_cost + 2.0) / 144)
  # A reference at its own batch size.
  own = cost.request_cost("lightweight", FORGET_EPOCHS, {}, **TRAIN, **ref,
                          reference_batch_size=20)
  assert own["reference_per_request"] == 100.0


def test_request_cost_without_a_reference_model():
  for source in ("remain", "holdout"):
    c = cost.request_cost("finetune", FORGET_EPOCHS, {}, **TRAIN, reference_source=source,
                          n_reference=20, reference_epochs=5)
    assert c["reference_per_request"] == c["reference_one_off"] == 0.0
    assert c["per_request"] == c["unlearn"] == 48.0
    assert c["fraction_of_retrain"] == pytest.approx(48 / 144)


def test_request_cost_refusals():
  with pytest.raises(ConfigError, match="n_reference"):
    cost.request_cost("lightweight", FORGET_EPOCHS, {}, **TRAIN)
  with pytest.raises(ConfigError, match="reference_source"):
    cost.request_cost("lightweight", FORGET_EPOCHS, {}, **TRAIN, reference_source="shared",
                      n_reference=20, reference_epochs=1)


def test_monitor_cost():
  s = FORGET_EPOCHS                                    # 6 steps, 2 epochs
  assert cost.monitor_cost(s) == 0.0
  assert cost.monitor_cost(s, needs={"ref_probs"}) == pytest.approx(20 * F)   # kl_forget
  assert cost.monitor_cost(s, needs={"ref_probs"}, stop="kl_tol") == pytest.approx(40 * F)
  # checks at the start, after steps 4 and 6: D_f (10) and 6 held-out examples each
  assert cost.monitor_cost(s, stop="calibrated", calibrate_every=4) == pytest.approx(48 * F)
  assert cost.monitor_cost(s, needs={"x_forget", "x_remain"}, bn_train=True) == \
      pytest.approx(6 * 12 * F)
  with pytest.raises(ConfigError, match="stop rule"):
    cost.monitor_cost(s, stop="never")


def test_plan_cost_adds_the_stop_rule_passes():
  plan = plan_lib.make_plan("p", unlearn_block("finetune", epochs=2, forget_batch_size=4,
                                               remain_batch_size=8, stop="calibrated",
                                               calibrate_every=4))
  c = cost.plan_cost(plan, n_forget=10, n_remain=50, n_heldout=6, **TRAIN)
  assert c["unlearn"] == 48.0 and c["monitor"] == pytest.approx(48 * F)


def test_results_json_records_the_cost():
  _, workdir, r = tiny.finished_run()      # the tiny run (the evaluators change no cost)
  # lightweight, 12 forget rows at 4, remain batch 16, 1 epoch: 3 steps of 20 rows and the
  # reference's pass over D_f; kl_forget once; the reference on 48 rows, 2 epochs of 32;
  # retraining 2 epochs over 228 rows at 32 (7 batches).
  assert r["n_forget"] == 12 and r["n_remain"] == 228 and r["n_reference"] == 48
  c = r["unlearn_cost"]
  assert c["cost_examples"] == pytest.approx(60 + 12 * F + 12 * F)
  assert c["monitor_examples"] == pytest.approx(12 * F)
  assert c["reference_per_request_examples"] == 64.0 and c["reference_one_off_examples"] == 0.0
  assert c["retrain_cost_examples"] == 448.0
  assert c["fraction_of_retrain"] == pytest.approx((60 + 8 + 64) / 448)
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["unlearn_cost"] == pytest.approx(c)
  # Peak host memory at the end of each stage: a high-water mark of the one process.
  mem = saved["peak_host_memory_mb"]
  assert set(mem) == {"train", "retrain", "reference", "unlearn"} and all(v > 0 for v in mem.values())
  assert mem["train"] <= mem["retrain"] <= mem["reference"] <= mem["unlearn"]
  assert "of retraining" in (workdir / "results.md").read_text()
