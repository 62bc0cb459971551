"""importance_retrain: its update rule by hand, on a linear model, and its refusals."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxunlearn import methods, plan as plan_lib, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import importance_retrain as isr
from tests.support.linear_toy import (FRESH_B, FRESH_W, linear, linear_init, linear_params,
                                      np_softmax)

RNG = np.random.default_rng(0)
X_R = RNG.normal(size=(6, 2)).astype(np.float32)
Y_R = np.array([0, 1, 2, 0, 1, 2], np.int32)


def test_sampling_probabilities_are_loss_proportional_with_a_uniform_floor():
  losses = jnp.asarray([1.0, 3.0, 0.0, 4.0])
  p = np.asarray(isr.sampling_probs(losses, 0.2))
  np.testing.assert_allclose(p, 0.8 * np.array([1, 3, 0, 4]) / 8 + 0.2 / 4, rtol=1e-6)
  assert p.sum() == pytest.approx(1.0) and p.min() == pytest.approx(0.05)


def test_importance_weights_make_the_expected_gradient_the_full_batch_gradient():
  # One row drawn with probability p_i, weighted 1 / (n p_i): summing p_i x its gradient over
  # every i (the exact expectation, no sampling) gives the gradient of the mean CE over all rows.
  params = linear_params()
  p = isr.sampling_probs(jnp.asarray([0.5, 2.0, 0.1, 1.0, 3.0, 0.7]), 0.1)
  x, y = jnp.asarray(X_R), jnp.asarray(Y_R)
  grad = lambda rows: jax.grad(  # noqa: E731
      lambda q: isr.weighted_ce(linear, q, x, y, jnp.asarray(rows), p)[0])(params)
  expected = jax.tree.map(lambda *g: sum(float(p[i]) * g[i] for i in range(6)),
                          *[grad([i]) for i in range(6)])
  w, b = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
  resid = np_softmax(X_R @ w + b) - np.eye(3)[Y_R]
  np.testing.assert_allclose(expected["Dense_0"]["kernel"], X_R.T @ resid / 6, atol=1e-6)
  np.testing.assert_allclose(expected["Dense_0"]["bias"], resid.mean(0), atol=1e-6)


def run(steps=5, rbs=2, original=None, hp=None, key=0, temperature=1.5):
  fn = unlearn.make_unlearn_fn("importance_retrain", linear, epochs=3, n_forget=1, n_remain=6,
                               forget_batch_size=1, remain_batch_size=rbs, init_fn=linear_init,
                               steps=steps)
  inputs = methods.Inputs(x_remain=jnp.asarray(X_R), y_remain=jnp.asarray(Y_R))
  hparams = unlearn.default_hparams("importance_retrain", 0.05, temperature=temperature,
                                    **(hp or {}))
  params = original if original is not None else linear_params()
  return fn, fn(params, inputs, jax.random.key(key), hparams)


def test_the_run_is_a_fresh_model_of_exactly_steps_steps_scaled_at_the_end():
  fn, (params, metrics) = run(steps=5)
  assert (fn.epochs, fn.steps_per_epoch) == (1, 5)
  assert metrics["loss"].shape == (1, 5)
  # The original is never read: NaN weights give the same result.
  nan = linear_params(np.full((2, 3), np.nan, np.float32), np.full(3, np.nan, np.float32))
  _, (same, _) = run(steps=5, original=nan)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same)):
    np.testing.assert_array_equal(a, b)
  # By hand: from the fresh model (linear_init), Adam under the cosine schedule on the drawn,
  # importance-weighted rows, each step updating its rows' losses; then the output x 1.5.
  hp = unlearn.default_hparams("importance_retrain", 0.05, temperature=1.5)
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), unlearn._METHOD_KEY_TAG),
                           isr.TAG_ROWS)
  state = linear_params(FRESH_W, FRESH_B)
  opt = optax.adam(isr.cosine_to(hp["learning_rate"], hp["end_fraction"], 5))
  opt_state, losses = opt.init(state), jnp.ones(6)
  for t in range(5):
    p = isr.sampling_probs(losses, hp["mix"])
    rows = jax.random.choice(jax.random.fold_in(key, t), 6, (2,), replace=True, p=p)
    (_, per), g = jax.value_and_grad(
        lambda q: isr.weighted_ce(linear, q, jnp.asarray(X_R), jnp.asarray(Y_R), rows, p),
        has_aux=True)(state)
    upd, opt_state = opt.update(g, opt_state, state)
    state = optax.apply_updates(state, upd)
    losses = losses.at[rows].set(per)
  want = jax.tree.map(lambda a: 1.5 * a, state)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The run moved away from the fresh model, and a new key gives another model.
  assert not np.allclose(params["Dense_0"]["kernel"], 1.5 * FRESH_W)
  _, (other, _) = run(steps=5, key=1)
  assert not np.allclose(other["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


def test_the_schedule_decays_from_the_rate_to_its_end_fraction():
  s = isr.cosine_to(2e-3, 0.2, 11)
  assert float(s(jnp.int32(0))) == pytest.approx(2e-3)
  assert float(s(jnp.int32(5))) == pytest.approx(1.2e-3)
  assert float(s(jnp.int32(10))) == pytest.approx(4e-4)


def test_without_steps_the_run_is_epochs_passes_over_the_remain_set():
  fn = unlearn.make_unlearn_fn("importance_retrain", linear, epochs=3, n_forget=1, n_remain=6,
                               forget_batch_size=1, remain_batch_size=4, init_fn=linear_init)
  assert (fn.epochs, fn.steps_per_epoch) == (3, 2)


def block(**fields):
  u = ml_collections.ConfigDict({"method": "importance_retrain", "lam": 0.01,
                                 "kl_reduction": "mean", "epochs": 2, "steps": 0,
                                 "stop": "epochs", "tol": 0.0, "calibrate_every": 1,
                                 "forget_batch_size": 8, "remain_batch_size": 12,
                                 "optimizer": "sgd", "learning_rate": 0.002, "momentum": 0.0,
                                 "weight_decay": 0.0, "schedule": "constant", "bn_mode": "eval"})
  u.update(fields)
  return u


def test_steps_are_refused_for_methods_that_count_epochs():
  assert plan_lib.make_plan("x", block(steps=100)).spec()["steps"] == 100
  assert "steps" not in plan_lib.make_plan("x", block()).spec()
  with pytest.raises(ConfigError, match="unlearn.steps=100 applies to methods that count"):
    plan_lib.make_plan("x", block(method="finetune", steps=100))
  with pytest.raises(ConfigError, match="counts epochs"):
    unlearn.make_unlearn_fn("finetune", linear, epochs=1, n_forget=1, n_remain=6,
                            forget_batch_size=1, remain_batch_size=2, steps=10)


@pytest.mark.parametrize("field,value,words", [
    ("mix", 0.0, "mix must be in (0.0, 1.0]"),
    ("end_fraction", 1.5, "end_fraction must be in [0.0, 1.0]"),
    ("temperature", 0.0, "temperature must be in (0.0, 100.0]")])
def test_bad_hyperparameters_are_refused(field, value, words):
  with pytest.raises(ConfigError) as e:
    unlearn.default_hparams("importance_retrain", 0.01, **{field: value})
  assert words in str(e.value)


def test_a_model_without_a_dense_output_layer_is_refused():
  with pytest.raises(ConfigError, match="no top-level Dense"):
    isr.scale_output_layer({"Conv_0": {"kernel": jnp.ones((1, 1, 1, 2))}}, 1.2)
