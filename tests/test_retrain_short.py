"""retrain_short: its update rule by hand on a linear model, its step count derived from
retraining's schedule, its cost by hand counts, and its refusals."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxunlearn import cli, cost, methods, plan as plan_lib, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import retrain_short as rs
from jaxunlearn.methods.importance_retrain import cosine_to
from tests.test_baselines import np_softmax
from tests.test_competition_methods import FRESH_B, FRESH_W, linear, linear_init, linear_params

RNG = np.random.default_rng(0)
X_R = RNG.normal(size=(6, 2)).astype(np.float32)
# Class counts 4, 1, 1: the fresh model (all logits equal) has a non-zero gradient on every
# bias, so Adam's first steps are not float32 noise normalised to +-lr.
Y_R = np.array([0, 0, 1, 0, 2, 0], np.int32)


def run(steps=3, rbs=6, original=None, key=0, temperature=1.5, lr=0.05):
  fn = unlearn.make_unlearn_fn("retrain_short", linear, epochs=3, n_forget=1, n_remain=6,
                               forget_batch_size=1, remain_batch_size=rbs, init_fn=linear_init,
                               steps=steps)
  # D_r only: the method asks for nothing else.
  inputs = methods.Inputs(x_remain=jnp.asarray(X_R), y_remain=jnp.asarray(Y_R))
  hparams = unlearn.default_hparams("retrain_short", lr, temperature=temperature)
  params = original if original is not None else linear_params()
  return fn, fn(params, inputs, jax.random.key(key), hparams)


def test_update_rule_by_hand():
  # Every step is all six rows of D_r (remain_batch_size = |D_r|), so the driver's shuffle
  # does not matter: three full-batch Adam steps on the mean CE, from the fresh model
  # (linear_init: W = 7, b = -3), rates cosine from 0.05 to 0.2 x 0.05 over 3 steps
  # (0.05, 0.03, 0.01), then kernel and bias x 1.5.
  fn, (params, metrics) = run(steps=3, rbs=6)
  assert (fn.epochs, fn.steps_per_epoch) == (1, 3)
  assert metrics["loss"].shape == (1, 3)
  w, b = FRESH_W.astype(np.float64), FRESH_B.astype(np.float64)
  m = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
  v = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
  for t, lr in enumerate((0.05, 0.03, 0.01), start=1):
    resid = np_softmax(X_R @ w + b) - np.eye(3)[Y_R]
    g = {"w": X_R.T @ resid / 6, "b": resid.mean(0)}
    step = {}
    for k in ("w", "b"):
      m[k] = 0.9 * m[k] + 0.1 * g[k]
      v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
      m_hat, v_hat = m[k] / (1 - 0.9 ** t), v[k] / (1 - 0.999 ** t)
      step[k] = lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    w, b = w - step["w"], b - step["b"]
  np.testing.assert_allclose(params["Dense_0"]["kernel"], 1.5 * w, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(params["Dense_0"]["bias"], 1.5 * b, rtol=1e-5, atol=1e-5)
  s = cosine_to(0.05, 0.2, 3)
  assert [float(s(jnp.int32(i))) for i in range(3)] == pytest.approx([0.05, 0.03, 0.01])


def test_the_original_is_never_read_and_the_key_draws_the_run():
  _, (params, _) = run(steps=5, rbs=2)
  nan = linear_params(np.full((2, 3), np.nan, np.float32), np.full(3, np.nan, np.float32))
  _, (same, _) = run(steps=5, rbs=2, original=nan)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same)):
    np.testing.assert_array_equal(a, b)
  assert np.all(np.isfinite(params["Dense_0"]["kernel"]))
  _, (other, _) = run(steps=5, rbs=2, key=1)     # another shuffle of D_r
  assert not np.allclose(other["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


def test_minibatches_are_the_drivers_uniform_rows():
  # Two steps of 3 rows: one pass over D_r in the driver's order; the loss of each step is the
  # mean CE of its rows under the fresh model (step 0) -- rows the driver drew, each once.
  fn, (_, metrics) = run(steps=2, rbs=3, lr=1e-9)
  carry = fn.start(linear_params(), methods.Inputs(x_remain=jnp.asarray(X_R),
                                                   y_remain=jnp.asarray(Y_R)),
                   jax.random.key(0), unlearn.default_hparams("retrain_short", 1e-9))
  _, r_rows = fn.rows(carry, 0)
  assert sorted(np.asarray(r_rows).ravel().tolist()) == list(range(6))
  for i in range(2):
    rows = np.asarray(r_rows[i])
    p = np_softmax(X_R[rows] @ FRESH_W + FRESH_B)
    want = -np.mean(np.log(p[np.arange(3), Y_R[rows]]))
    assert float(metrics["loss"][0, i]) == pytest.approx(want, rel=1e-4)


# --- the step count and the cost ----------------------------------------------------------


def block(**fields):
  u = ml_collections.ConfigDict({"method": "retrain_short", "lam": 0.01,
                                 "kl_reduction": "mean", "epochs": 2, "steps": 0,
                                 "retrain_fraction": 0.0, "stop": "epochs", "tol": 0.0,
                                 "calibrate_every": 1, "forget_batch_size": 8,
                                 "remain_batch_size": 64, "optimizer": "sgd",
                                 "learning_rate": 0.002, "momentum": 0.0, "weight_decay": 0.0,
                                 "schedule": "constant", "bn_mode": "eval"})
  u.update(fields)
  return u


TRAIN = ml_collections.ConfigDict({"epochs": 20, "batch_size": 64})


@pytest.mark.parametrize("fraction,rbs,steps", [
    # |D_r| = 3,700, 20 epochs at 64: retraining = 20 x floor(3700 / 64) x 64 = 20 x 57 x 64
    # = 72,960 examples. 0.1 of it = 7,296 = 114 x 64 = 608 x 12; 0.2 = 14,592 = 228 x 64;
    # 0.5 = 36,480 = 570 x 64.
    (0.1, 64, 114), (0.2, 64, 228), (0.5, 64, 570), (0.1, 12, 608), (1.0, 64, 1140)])
def test_steps_and_cost_are_the_fraction_of_retraining(fraction, rbs, steps):
  assert plan_lib.retrain_steps(fraction, 3700, 20, 64, rbs) == steps
  plan = plan_lib.make_plan("x", block(retrain_fraction=fraction, remain_batch_size=rbs),
                            train=TRAIN)
  shape = plan.run_shape(100, 3700)
  assert (shape.epochs, shape.steps_per_epoch, shape.remain_batch_size) == (1, steps, rbs)
  c = cost.plan_cost(plan, n_forget=100, n_remain=3700, train_epochs=20, train_batch_size=64)
  assert c["retrain"] == 72960
  assert c["unlearn"] == steps * rbs == fraction * 72960
  assert c["per_request"] == c["unlearn"]            # no reference, no monitor passes
  assert c["fraction_of_retrain"] == pytest.approx(fraction, abs=1e-12)


def test_steps_follow_each_runs_own_remain_set_and_schedule():
  plan = plan_lib.make_plan("x", block(retrain_fraction=0.2), train=TRAIN)
  # |D_r| = 1,000: retraining = 20 x 15 x 64 = 19,200; 0.2 of it = 3,840 = 60 x 64.
  assert plan.run_shape(10, 1000).steps_per_epoch == 60
  # 10 epochs at batch 128 on 3,700: 10 x 28 x 128 = 35,840; 0.5 of it = 17,920 = 280 x 64.
  other = plan_lib.make_plan("x", block(retrain_fraction=0.5),
                             train=ml_collections.ConfigDict({"epochs": 10, "batch_size": 128}))
  assert other.run_shape(10, 3700).steps_per_epoch == 280
  # Not a whole number of steps: the nearest (0.1 x 19,200 / 48 = 40; / 50 = 38.4 -> 38).
  assert plan_lib.retrain_steps(0.1, 1000, 20, 64, 50) == 38
  assert plan_lib.retrain_steps(1e-6, 1000, 20, 64, 64) == 1      # at least one step
  # The run make_fn builds has the same steps as the cost's shape.
  fn = unlearn.make_unlearn_fn(plan.method, linear, n_forget=10, n_remain=1000,
                               init_fn=linear_init, **plan.shape_args(1000))
  assert (fn.epochs, fn.steps_per_epoch) == (1, 60)


def test_spec_names_the_fraction_only_when_set():
  spec = plan_lib.make_plan("x", block(retrain_fraction=0.2), train=TRAIN).spec()
  assert spec["retrain_fraction"] == 0.2 and spec["retrain_schedule"] == [20, 64]
  assert "epochs" not in spec and "steps" not in spec
  plain = plan_lib.make_plan("x", block()).spec()
  assert "retrain_fraction" not in plain and "retrain_schedule" not in plain
  assert plain["epochs"] == 2
  # A config without the field at all (written before it existed) plans as before.
  old = block()
  del old["retrain_fraction"]
  assert plan_lib.make_plan("x", old).spec() == plain


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [1.5, -0.1])
def test_a_fraction_outside_zero_one_is_refused(fraction):
  with pytest.raises(ConfigError, match=r"unlearn.retrain_fraction' must be in \(0, 1\]"):
    plan_lib.make_plan("x", block(retrain_fraction=fraction), train=TRAIN)


def test_fraction_refusals():
  with pytest.raises(ConfigError, match="retrain_fraction=0.2 applies to methods that count"):
    plan_lib.make_plan("x", block(method="finetune", retrain_fraction=0.2), train=TRAIN)
  with pytest.raises(ConfigError, match="steps=100 sets them too"):
    plan_lib.make_plan("x", block(retrain_fraction=0.2, steps=100), train=TRAIN)
  with pytest.raises(ConfigError, match="train=cfg.train"):
    plan_lib.make_plan("x", block(retrain_fraction=0.2))
  label, u = plan_lib.parse_spec("short=retrain_short:retrain_fraction=2", block())
  with pytest.raises(ConfigError, match="retrain_fraction"):
    plan_lib.make_plan(label, u, where="audit.methods entry", train=TRAIN)


@pytest.mark.parametrize("field,value,words", [
    ("temperature", 0.0, "unlearn.retrain_short.temperature must be in (0.0, 100.0]"),
    ("temperature", -1.0, "unlearn.retrain_short.temperature must be in (0.0, 100.0]"),
    ("end_fraction", 1.5, "unlearn.retrain_short.end_fraction must be in [0.0, 1.0]")])
def test_bad_hyperparameters_are_refused(field, value, words):
  with pytest.raises(ConfigError) as e:
    unlearn.default_hparams("retrain_short", 0.01, **{field: value})
  assert words in str(e.value)


def test_a_model_without_a_dense_output_layer_is_refused():
  with pytest.raises(ConfigError, match="'retrain_short' scales the output layer"):
    rs.scaled_output({"Conv_0": {"kernel": jnp.ones((1, 1, 1, 2))}}, 1.2)


def test_registered_listed_and_tunable(capsys):
  assert "retrain_short" in methods.names()
  assert cli.main(["jaxunlearn", "methods"]) == 0
  assert "retrain_short" in capsys.readouterr().out
  space = methods.get("retrain_short").search_space
  assert set(space["temperature"]) == {1.0, 1.1, 1.2, 1.3, 1.5} and "learning_rate" in space


@pytest.mark.slow
def test_a_run_from_the_cli_costs_its_fraction_of_retraining(tmp_path, capsys):
  import json
  import shutil
  from tests.support import tiny
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  assert cli.main(["jaxunlearn", *tiny.cli_args(
      npz, workdir, "--config.unlearn.method=retrain_short",
      "--config.unlearn.retrain_fraction=0.5", "--config.unlearn.remain_batch_size=4",
      "--config.eval.evaluators=()")]) == 0, capsys.readouterr().err
  r = json.loads((workdir / "results.json").read_text())
  cfg = tiny.config(npz)
  retrain = cost.retrain_cost(r["n_remain"], cfg.train.epochs, cfg.train.batch_size)
  steps = plan_lib.retrain_steps(0.5, r["n_remain"], cfg.train.epochs, cfg.train.batch_size, 4)
  c = r["unlearn_cost"]
  assert c["retrain_cost_examples"] == retrain
  assert c["cost_examples"] == c["per_request_examples"] == steps * 4
  # Within one step of 0.5 (exactly 0.5 when half of retraining is a whole number of steps).
  assert c["fraction_of_retrain"] == pytest.approx(0.5, abs=2 / retrain)
  assert r["hparams"]["temperature"] == 1.0


def test_the_shipped_benchmark_points_plan_at_their_fractions():
  from configs import audit_methods
  u = block()
  for spec, fraction in zip(audit_methods.RETRAIN_SHORT_SPECS, (0.1, 0.2, 0.5)):
    label, b = plan_lib.parse_spec(spec, u)
    plan = plan_lib.make_plan(label, b, where=spec, train=TRAIN)
    assert plan.run_shape(100, 3700).steps_per_epoch * 64 == round(fraction * 72960)
    assert plan.hparams["learning_rate"] == audit_methods.RETRAIN_SHORT[fraction]["learning_rate"]
