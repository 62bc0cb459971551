"""Stop rules and ``bn_mode="train"`` as wrappers around a hand-made update rule.

The inner rule's model is one weight ``w`` that each step moves by a fixed
amount; nothing is trained.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import methods, stop, unlearn
from jaxunlearn.errors import ConfigError


def walk(delta: float, summary=None) -> methods.UpdateRule:
  """A rule whose every step adds ``delta`` to ``w`` and reports ``{"loss": w}``."""
  def init(params):
    return methods.UnlearnState(jnp.zeros((), jnp.int32), params, ())

  def step(state, batch):
    params = {"w": state.params["w"] + delta}
    return state._replace(step=state.step + 1, params=params), {"loss": params["w"]}
  return methods.UpdateRule(init, step, summary=summary)


def logits_of(params, x):
  """Two classes: logits ``(w * x, 0)``."""
  return jnp.concatenate([x * params["w"], jnp.zeros_like(x)], axis=-1)


def test_with_defaults_fills_every_optional_hook():
  rule = methods.with_defaults(walk(1.0))
  state = rule.init({"w": jnp.float32(2.0)})
  assert rule.epoch_end(state) is state
  assert float(rule.finish(state)["w"]) == 2.0
  assert rule.summary(state) == {} and not bool(rule.finished(state))


def test_epochs_returns_the_inner_rule_unchanged():
  inner = walk(1.0)
  assert stop.epochs(inner) is inner
  assert stop.make("epochs", logits_of)(inner, methods.Inputs()) is inner


def test_make_checks_its_settings_before_any_run():
  with pytest.raises(ConfigError, match="tol > 0"):
    stop.make("kl_tol", logits_of, tol=0.0)
  with pytest.raises(ConfigError, match="unknown stop rule"):
    stop.make("never", logits_of)


def _kl_inputs():
  # ref_probs = softmax((2, 0)): the KL to the reference is 0 at w = 2.
  return methods.Inputs(x_forget=jnp.ones((1, 1)),
                        ref_probs=jax.nn.softmax(jnp.asarray([[2.0, 0.0]])))


def test_kl_tol_keeps_the_first_epoch_end_under_the_tolerance():
  rule = stop.kl_tol(walk(1.0), logits_of, _kl_inputs(), tol=1e-3)
  state = rule.init({"w": jnp.float32(0.0)})
  assert isinstance(state, stop.KLTolState) and float(state.inner.params["w"]) == 0.0
  for w in (1.0, 2.0, 3.0):
    state, metrics = rule.step(state, methods.Batch())
    assert float(metrics["loss"]) == w and float(state.params["w"]) == w
    state = rule.epoch_end(state)
    assert bool(rule.finished(state)) == (w >= 2.0)
  assert float(state.kept_params["w"]) == 2.0 and float(state.inner.params["w"]) == 3.0
  assert float(state.kl_forget) > 1e-3             # at w = 3, the last epoch's end
  assert float(rule.finish(state)["w"]) == 2.0     # the kept model, not the last one


def test_kl_tol_returns_the_last_model_when_never_under_the_tolerance():
  rule = stop.kl_tol(walk(-1.0), logits_of, _kl_inputs(), tol=1e-3)
  state = rule.init({"w": jnp.float32(0.0)})
  for _ in range(2):
    state = rule.epoch_end(rule.step(state, methods.Batch())[0])
  assert not bool(rule.finished(state)) and float(rule.finish(state)["w"]) == -2.0


def test_kl_tol_needs_the_reference():
  rule = stop.kl_tol(walk(1.0), logits_of, methods.Inputs(x_forget=jnp.ones((1, 1))), 0.1)
  with pytest.raises(ConfigError, match="kl_tol stop compares with the reference"):
    rule.init({"w": jnp.float32(0.0)})


def _calibration_inputs():
  # L_f(w) = log(1 + e^-w) on x = 1, L_h(w) = log(1 + e^(-w/2)) on x = 0.5: equal at w = 0,
  # and D_f looks unseen (L_f >= L_h) from w = 0 on.
  return methods.Inputs(x_forget=jnp.ones((1, 1)), y_forget=jnp.asarray([0]),
                        x_heldout=jnp.full((1, 1), 0.5), y_heldout=jnp.asarray([0]))


def _gap(w):
  l_f, l_h = np.log1p(np.exp(-w)), np.log1p(np.exp(-w / 2))
  return abs(np.log(l_f) - np.log(l_h))


def test_calibrated_keeps_the_smallest_gap_until_d_f_looks_unseen():
  inner = walk(-1.0, summary=lambda state: {"steps": state.step})
  rule = stop.calibrated(inner, logits_of, _calibration_inputs(), every=1, total_steps=8)
  state = jax.jit(rule.init)({"w": jnp.float32(4.0)})
  assert isinstance(state, stop.CalibratedState) and int(state.steps_done) == 0
  assert int(state.calibration.best_step) == 0 and float(state.params["w"]) == 4.0
  step, epoch_end, is_finished = jax.jit(rule.step), jax.jit(rule.epoch_end), jax.jit(rule.finished)
  finished = []
  for _ in range(6):                                # w = 3, 2, 1, 0, -1, -2
    state, metrics = step(state, methods.Batch())
    assert set(metrics) == {"loss", "calib_forget_loss", "calib_target_loss"}
    state = epoch_end(state)
    finished.append(bool(is_finished(state)))
  assert finished == [False, False, False, True, True, True]
  assert int(state.steps_done) == 6 and float(state.inner.params["w"]) == -2.0
  seen = state.calibration
  assert float(seen.best_params["w"]) == 0.0 and int(seen.best_step) == 4
  np.testing.assert_allclose(float(seen.best_gap), _gap(0.0), atol=1e-6)
  assert float(rule.finish(state)["w"]) == 0.0
  summary = rule.summary(state)
  assert int(summary["steps"]) == 6 and int(summary["calibrated_step"]) == 4


def test_calibrated_checks_every_few_steps_and_at_the_last_step():
  rule = stop.calibrated(walk(-1.0), logits_of, _calibration_inputs(), every=3, total_steps=7)
  state, step = rule.init({"w": jnp.float32(4.0)}), jax.jit(rule.step)
  checked = []
  for _ in range(7):                                # w = 3, 2, 1, 0, -1, -2, -3
    before = float(state.calibration.forget_loss)
    state, _ = step(state, methods.Batch())
    checked.append(float(state.calibration.forget_loss) != before)
  assert checked == [False, False, True, False, False, True, True]
  # Checked at w = 1 (gap 0.41), then w = -2 (gap 0.48, crossed): w = 1 is kept.
  assert float(rule.finish(state)["w"]) == 1.0 and int(state.calibration.best_step) == 3


def test_calibrated_needs_heldout_inputs():
  rule = stop.calibrated(walk(1.0), logits_of, _calibration_inputs()._replace(x_heldout=None),
                         every=1, total_steps=1)
  with pytest.raises(ConfigError, match="calibrated stop needs"):
    rule.init({"w": jnp.float32(0.0)})


def _sum_stats(params, batch_stats, x):
  """Statistics that record which batches they saw, and with which weight."""
  return {"seen": batch_stats["seen"] * 10.0 + x.sum() * params["w"]}


def test_running_batch_stats_update_after_every_step_on_its_batches():
  rule = unlearn.running_batch_stats(walk(1.0), _sum_stats)
  assert rule.finished is None                     # the statistics move with every step
  state = rule.init({"params": {"w": jnp.float32(0.0)}, "batch_stats": {"seen": jnp.float32(0)}})
  assert isinstance(state, unlearn.BatchStatsState)
  both = methods.Batch(x_forget=jnp.ones((2, 1)), x_remain=jnp.full((1, 1), 3.0))
  state, metrics = rule.step(state, both)          # w = 1: forget (2), then remain (3)
  assert float(metrics["loss"]) == 1.0 and float(state.batch_stats["seen"]) == 23.0
  state, _ = rule.step(state, methods.Batch(x_forget=jnp.ones((2, 1))))   # w = 2: forget only
  assert float(state.batch_stats["seen"]) == 234.0
  state = rule.epoch_end(state)
  assert float(state.inner.params["w"]) == 2.0
  for variables in (state.params, rule.finish(state)):
    assert set(variables) == {"params", "batch_stats"}
    assert float(variables["params"]["w"]) == 2.0
    assert float(variables["batch_stats"]["seen"]) == 234.0


def test_stop_rule_over_running_batch_stats_judges_and_keeps_the_variables():
  # The calibrated stop judges {"params", "batch_stats"}: here the statistics shift the logits.
  def judge(variables, x):
    return logits_of(variables["params"], x) + variables["batch_stats"]["shift"]

  def no_stats(params, batch_stats, x):
    return batch_stats

  rule = stop.calibrated(unlearn.running_batch_stats(walk(-1.0), no_stats), judge,
                         _calibration_inputs(), every=1, total_steps=8)
  start = {"params": {"w": jnp.float32(4.0)}, "batch_stats": {"shift": jnp.zeros((2,))}}
  state, step = rule.init(start), jax.jit(rule.step)
  assert float(state.inner.inner.params["w"]) == 4.0          # calibrated > batch stats > walk
  for _ in range(6):
    state, _ = step(state, methods.Batch(x_forget=jnp.ones((1, 1))))
  out = rule.finish(state)
  assert set(out) == {"params", "batch_stats"} and float(out["params"]["w"]) == 0.0
  assert bool(rule.finished(state))
