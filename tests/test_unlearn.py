"""The paper's method (Algorithm 1), the pure unlearning run and its host driver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import methods, unlearn
from jaxunlearn.methods import base, lightweight
from jaxunlearn.errors import ConfigError


def np_kl(p, logits):
  q = np.exp(logits - logits.max(-1, keepdims=True))
  q /= q.sum(-1, keepdims=True)
  terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0.0)
  return terms.sum(-1).mean()


def np_ce(logits, labels):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -logp[np.arange(labels.size), labels].mean()


# A linear "model": logits = x @ W.
def apply_fn(params, x):
  return x @ params["w"]


HAND = dict(
    w=np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]], np.float32),
    x_f=np.array([[1.0, 0.0], [0.5, 0.5]], np.float32),
    ref=np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]], np.float32),  # a zero entry on purpose
    x_r=np.array([[0.0, 1.0], [1.0, 1.0], [2.0, -1.0]], np.float32),
    y_r=np.array([1, 0, 2], np.int32),
)


def hand_batch():
  return methods.Batch(x_forget=jnp.asarray(HAND["x_f"]), ref_probs=jnp.asarray(HAND["ref"]),
                       x_remain=jnp.asarray(HAND["x_r"]), y_remain=jnp.asarray(HAND["y_r"]))


def test_kl_matches_numpy_with_zero_probabilities():
  logits = HAND["x_f"] @ HAND["w"]
  got = float(methods.kl_divergence(jnp.asarray(HAND["ref"]), jnp.asarray(logits)))
  assert got == pytest.approx(np_kl(HAND["ref"], logits), rel=1e-5)
  assert np.isfinite(got) and got > 0


@pytest.mark.parametrize("lam", [0.01, 0.3, 0.999])
def test_loss_matches_numpy_hand_example(lam):
  params = {"w": jnp.asarray(HAND["w"])}
  loss, aux = lightweight.lightweight_loss(params, apply_fn, hand_batch(), lam)
  kl = np_kl(HAND["ref"], HAND["x_f"] @ HAND["w"])
  ce = np_ce(HAND["x_r"] @ HAND["w"], HAND["y_r"])
  assert float(aux["kl"]) == pytest.approx(kl, rel=1e-5)
  assert float(aux["ce"]) == pytest.approx(ce, rel=1e-5)
  assert float(loss) == pytest.approx(lam * kl + (1 - lam) * ce, rel=1e-5)


def test_lam_one_is_pure_kl():
  params = {"w": jnp.asarray(HAND["w"])}
  batch = hand_batch()
  loss, _ = lightweight.lightweight_loss(params, apply_fn, batch, 1.0)
  assert float(loss) == pytest.approx(np_kl(HAND["ref"], HAND["x_f"] @ HAND["w"]), rel=1e-5)
  # The remain batch has no influence at all: change it and get the same gradient.
  other = batch._replace(x_remain=batch.x_remain * 3.0 + 1.0)
  g1 = jax.grad(lambda p: lightweight.lightweight_loss(p, apply_fn, batch, 1.0)[0])(params)
  g2 = jax.grad(lambda p: lightweight.lightweight_loss(p, apply_fn, other, 1.0)[0])(params)
  np.testing.assert_allclose(g1["w"], g2["w"])


def test_reference_outputs_get_no_gradient():
  params = {"w": jnp.asarray(HAND["w"])}
  batch = hand_batch()
  g_ref = jax.grad(lambda r: lightweight.lightweight_loss(
      params, apply_fn, batch._replace(ref_probs=r), 0.5)[0])(batch.ref_probs)
  np.testing.assert_array_equal(np.asarray(g_ref), 0.0)


@pytest.mark.parametrize("lam", [0.0, -0.1, 1.5, "0.1"])
def test_lam_outside_range_rejected(lam):
  with pytest.raises(ConfigError, match="lam"):
    unlearn.default_hparams("lightweight", 0.1, lam=lam)


def test_forget_rows_cover_every_example_each_epoch():
  rows = np.asarray(base.cycled_rows(jax.random.key(0), 10, 4, 3))
  assert rows.shape == (3, 4)
  assert set(rows.ravel()) == set(range(10))


def _toy_problem(seed=0):
  rng = np.random.default_rng(seed)
  x_r = rng.normal(size=(64, 2)).astype(np.float32)
  y_r = (x_r[:, 0] > 0).astype(np.int32)
  x_f = rng.normal(size=(8, 2)).astype(np.float32)
  ref = np.full((8, 2), 0.5, np.float32)           # a reference that knows nothing about D_f
  params = {"w": jnp.asarray(rng.normal(size=(2, 2)).astype(np.float32) * 3)}
  inputs = methods.Inputs(x_forget=jnp.asarray(x_f), ref_probs=jnp.asarray(ref),
                          x_remain=jnp.asarray(x_r), y_remain=jnp.asarray(y_r))
  return params, inputs


def _fn(epochs, forget_batch_size=4, remain_batch_size=16, method="lightweight", **kw):
  return unlearn.make_unlearn_fn(method, apply_fn, epochs=epochs, n_forget=8, n_remain=64,
                                 forget_batch_size=forget_batch_size,
                                 remain_batch_size=remain_batch_size, **kw)


def test_unlearn_moves_towards_reference_and_leaves_input_params():
  params, inputs = _toy_problem()
  before = np.asarray(params["w"]).copy()
  kl0 = float(methods.kl_divergence(inputs.ref_probs, apply_fn(params, inputs.x_forget)))
  res = unlearn.unlearn(_fn(20), params, inputs, {"learning_rate": 0.5, "lam": 0.9},
                        key=jax.random.key(1), progress=False)
  assert res.history[-1]["kl_forget"] < 0.5 * kl0
  assert len(res.history) == 20 and not res.stopped_early
  np.testing.assert_array_equal(np.asarray(params["w"]), before)  # not donated away


def test_unlearn_stops_at_tolerance():
  params, inputs = _toy_problem()
  res = unlearn.unlearn(_fn(200, 8, 8, stop="kl_tol", tol=0.05), params, inputs,
                        {"learning_rate": 0.5, "lam": 1.0}, key=jax.random.key(1),
                        progress=False)
  assert res.stopped_early
  assert len(res.history) < 200
  assert res.history[-1]["kl_forget"] < 0.05 <= res.history[-2]["kl_forget"]


def test_unlearn_rejects_empty_forget_set():
  with pytest.raises(ConfigError, match="empty"):
    unlearn.make_unlearn_fn("lightweight", apply_fn, epochs=1, n_forget=0, n_remain=64,
                            forget_batch_size=4, remain_batch_size=4)


def test_tol_needs_a_reference():
  params, inputs = _toy_problem()
  with pytest.raises(ConfigError, match="kl_tol"):
    unlearn.unlearn(_fn(1, method="finetune", stop="kl_tol", tol=0.1), params,
                    inputs._replace(ref_probs=None), {"learning_rate": 0.1},
                    key=jax.random.key(0), progress=False)


# --- the pure run: one function, vmappable ----------------------------------------


@pytest.mark.parametrize("driver", ["scan", "loop"])
def test_driver_equals_pure_run(driver):
  params, inputs = _toy_problem()
  fn = _fn(3)
  hp = unlearn.default_hparams("lightweight", 0.3, lam=0.4)
  pure, metrics = jax.jit(fn)(params, inputs, jax.random.key(5), hp)
  driven = unlearn.unlearn(fn, params, inputs, hp, key=jax.random.key(5), progress=False,
                           driver=driver)
  np.testing.assert_allclose(np.asarray(pure["w"]), np.asarray(driven.params["w"]), atol=1e-6)
  assert metrics["loss"].shape == (3, fn.steps_per_epoch) == (3, 2)
  assert [set(h) for h in driven.history] == [{"epoch", "loss", "kl", "ce", "kl_forget"}] * 3
  np.testing.assert_allclose([h["loss"] for h in driven.history],
                             np.asarray(metrics["loss"]).mean(1), rtol=1e-5)


def test_vmap_over_keys_equals_separate_runs():
  params, inputs = _toy_problem()
  fn = _fn(2)
  hp = unlearn.default_hparams("lightweight", 0.3, lam=0.4)
  keys = jax.random.split(jax.random.key(7), 4)
  batched, _ = jax.jit(jax.vmap(fn, in_axes=(None, None, 0, None)))(params, inputs, keys, hp)
  runs = [np.asarray(fn(params, inputs, k, hp)[0]["w"]) for k in keys]
  for i, w in enumerate(runs):
    np.testing.assert_allclose(np.asarray(batched["w"][i]), w, atol=1e-5)
  assert not np.allclose(runs[0], runs[1])        # the keys do change the run


def test_vmap_over_lambda_and_learning_rate_equals_separate_runs():
  params, inputs = _toy_problem()
  fn = _fn(2)
  lams = jnp.asarray([0.05, 0.3, 0.7, 1.0])
  lrs = jnp.asarray([0.5, 0.2, 0.1, 0.05])
  grid = {"lam": lams, "learning_rate": lrs}
  batched, _ = jax.jit(jax.vmap(fn, in_axes=(None, None, None, 0)))(
      params, inputs, jax.random.key(3), grid)
  for i in range(4):
    one = unlearn.default_hparams("lightweight", float(lrs[i]), lam=float(lams[i]))
    w = np.asarray(fn(params, inputs, jax.random.key(3), one)[0]["w"])
    np.testing.assert_allclose(np.asarray(batched["w"][i]), w, atol=1e-5)


class _SumOfWeights(methods.Method):
  """Loss = sum of the weights: every gradient is 1, so plain SGD moves each weight by -lr_t."""
  inputs = ("x_forget",)

  def loss(self, params, apply_fn, batch, hp, extra):
    return jnp.sum(params["w"]), {}


def test_schedule_horizon_counts_the_last_partial_batch():
  import ml_collections
  # 10 forget examples in batches of 4: 3 steps an epoch (ceil), not floor(10 / 4) = 2.
  fn = unlearn.make_unlearn_fn(_SumOfWeights(), apply_fn, epochs=2, n_forget=10, n_remain=4,
                               forget_batch_size=4, remain_batch_size=4,
                               optimizer_cfg=ml_collections.ConfigDict(
                                   {"optimizer": "sgd", "schedule": "cosine"}))
  assert fn.steps_per_epoch == 3
  inputs = methods.Inputs(x_forget=jnp.zeros((10, 2)))
  params = {"w": jnp.zeros((2, 2))}
  w, metrics = fn(params, inputs, jax.random.key(0), {"learning_rate": jnp.float32(1.0)})
  assert metrics["loss"].shape == (2, 3)
  total = 6
  expected = -sum(0.5 * (1 + np.cos(np.pi * c / total)) for c in range(total))
  wrong = -sum(0.5 * (1 + np.cos(np.pi * min(c, 4) / 4)) for c in range(total))  # floor horizon
  np.testing.assert_allclose(np.asarray(w["w"]), expected, rtol=1e-5)
  assert abs(expected - wrong) > 0.1


# --- the KL reading and the calibrated stop ---------------------------------------


def test_kl_sum_is_the_literal_eq1_over_the_forget_batch():
  params = {"w": jnp.asarray(HAND["w"])}
  logits = HAND["x_f"] @ HAND["w"]
  per_example = np_kl(HAND["ref"][:1], logits[:1]), np_kl(HAND["ref"][1:], logits[1:])
  ce = np_ce(HAND["x_r"] @ HAND["w"], HAND["y_r"])
  for reduction, kl in (("sum", sum(per_example)), ("mean", np.mean(per_example))):
    loss, aux = lightweight.lightweight_loss(params, apply_fn, hand_batch(), 0.3, reduction)
    assert float(aux["kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(loss) == pytest.approx(0.3 * kl + 0.7 * ce, rel=1e-5)
  with pytest.raises(ConfigError, match="kl_reduction"):
    methods.resolve_method("lightweight", {"kl_reduction": "median"})


def test_as_method_takes_a_name_a_class_or_an_instance():
  assert isinstance(methods.as_method("lightweight"), lightweight.Lightweight)
  assert isinstance(methods.as_method(lightweight.Lightweight), lightweight.Lightweight)
  m = lightweight.Lightweight(kl_reduction="mean")
  assert methods.as_method(m) is m
  assert methods.Method.search_space == {}   # tuning refuses a method that declares none


class _Descend(methods.Method):
  """Each step lowers the scalar weight by 1, whatever the data (a fixed path)."""
  inputs = ("x_forget",)

  def make(self, env):
    def init(params):
      return methods.UnlearnState(jnp.zeros((), jnp.int32), params, ())

    def step(state, batch):
      return state._replace(step=state.step + 1,
                            params={"w": state.params["w"] - 1.0}), {"loss": jnp.zeros(())}
    return methods.UpdateRule(init, step)


def _calibration_problem():
  # logits = w * x. D_f: x = (1, 0), label 0, so L_f(w) = log(1 + e^-w); held out:
  # x = (0.5, 0), label 0, L_h(w) = log(1 + e^(-w/2)). They are equal at w = 0 only, and
  # L_f >= L_h (D_f looks unseen) from w = 0 on. The path is w = 4, 3, 2, ...
  inputs = methods.Inputs(x_forget=jnp.asarray([[1.0, 0.0]]), y_forget=jnp.asarray([0]),
                          x_heldout=jnp.asarray([[0.5, 0.0]]), y_heldout=jnp.asarray([0]))
  scalar_apply = lambda p, x: p["w"] * x
  return {"w": jnp.float32(4.0)}, inputs, scalar_apply


@pytest.mark.parametrize("every, step, w", [(1, 4, 0.0), (3, 3, 1.0)])
def test_calibrated_stop_keeps_the_state_where_forget_loss_meets_heldout_loss(every, step, w):
  params, inputs, scalar_apply = _calibration_problem()
  fn = unlearn.make_unlearn_fn(_Descend(), scalar_apply, epochs=8, n_forget=1, n_remain=1,
                               forget_batch_size=1, remain_batch_size=1, stop="calibrated",
                               calibrate_every=every)
  hp = {"learning_rate": jnp.float32(0.1)}
  pure, _ = fn(params, inputs, jax.random.key(0), hp)
  assert float(pure["w"]) == w          # every=3 checks w = 1 (gap 0.41), then w = -2 (crossed)
  driven = unlearn.unlearn(fn, params, inputs, hp, key=jax.random.key(0), progress=False)
  assert float(driven.params["w"]) == w and driven.calibrated_step == step
  assert driven.stopped_early and len(driven.history) < 8   # it stops once D_f looks unseen


def test_calibrated_stop_needs_heldout_inputs():
  params, inputs, scalar_apply = _calibration_problem()
  fn = unlearn.make_unlearn_fn(_Descend(), scalar_apply, epochs=2, n_forget=1, n_remain=1,
                               forget_batch_size=1, remain_batch_size=1, stop="calibrated")
  with pytest.raises(ConfigError, match="calibrated stop needs"):
    fn(params, inputs._replace(x_heldout=None), jax.random.key(0),
       {"learning_rate": jnp.float32(0.1)})


def test_calibrated_stop_with_per_example_targets():
  # Targets: each D_f example's own loss at w = 1; the path w = 4, 3, 2, 1, 0, ... meets
  # them all at step 3.
  x = np.asarray([[1.0, 0.0], [2.0, 0.0]], np.float32)
  targets = np.log1p(np.exp(-x[:, 0] * 1.0))
  inputs = methods.Inputs(x_forget=jnp.asarray(x), y_forget=jnp.asarray([0, 0]),
                          forget_target_loss=jnp.asarray(targets))
  fn = unlearn.make_unlearn_fn(_Descend(), lambda p, xx: p["w"] * xx, epochs=8, n_forget=2,
                               n_remain=1, forget_batch_size=2, remain_batch_size=1,
                               stop="calibrated")
  res = unlearn.unlearn(fn, {"w": jnp.float32(4.0)}, inputs,
                        {"learning_rate": jnp.float32(0.1)}, key=jax.random.key(0),
                        progress=False)
  assert float(res.params["w"]) == 1.0 and res.calibrated_step == 3
