"""The competition entries (MSG, random masks, CT, SSD, layer reset): each rule by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import methods, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import ct, erase, msg, random_reinit, reset_distill, ssd
from tests.support.linear_toy import (FRESH_B, FRESH_W, linear, linear_init, linear_params, np_ce,
                                      np_kl_rows, np_log_softmax, np_softmax)

W = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]], np.float32)
B = np.array([0.1, -0.2, 0.3], np.float32)
X_F = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
Y_F = np.array([0, 1], np.int32)
X_R = np.array([[0.0, 1.0], [2.0, -1.0]], np.float32)
Y_R = np.array([1, 2], np.int32)


def ce_grad_w(w, b, x, y):
  """d mean CE / dW and / db of the linear model."""
  resid = np_softmax(x @ w + b) - np.eye(3)[y]
  return x.T @ resid / len(y), resid.mean(0)


def linear_inputs(**extra):
  return methods.Inputs(x_forget=jnp.asarray(X_F), y_forget=jnp.asarray(Y_F),
                        x_remain=jnp.asarray(X_R), y_remain=jnp.asarray(Y_R), **extra)


def linear_fn(name, epochs=2, init_fn=linear_init, apply_fn=linear, opt=None, n_f=2, n_r=2,
              fbs=2, rbs=2, method=None):
  return unlearn.make_unlearn_fn(method or name, apply_fn, epochs=epochs, n_forget=n_f,
                                 n_remain=n_r, forget_batch_size=fbs, remain_batch_size=rbs,
                                 optimizer_cfg=opt, init_fn=init_fn)


def only(name, inputs):
  want = set(methods.get(name).inputs)
  return inputs._replace(**{f: None for f in inputs._fields if f not in want})


# --- MSG ------------------------------------------------------------------------


def test_msg_reinitialises_the_smallest_gradients_of_each_conv_kernel():
  g_conv = np.array([0.5, -0.1, 0.9, 0.05, -0.7, 0.2, 0.3, -0.02], np.float32).reshape(2, 2, 1, 2)
  g_dense = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
  grads = {"Conv_0": {"kernel": jnp.asarray(g_conv), "bias": jnp.zeros(2)},
           "Dense_0": {"kernel": jnp.asarray(g_dense), "bias": jnp.zeros(2)}}
  targets = msg.target_kernels(grads)
  assert targets == {"Conv_0": {"kernel": True, "bias": False},
                     "Dense_0": {"kernel": False, "bias": False}}
  # 0.3 of 8 rounds to 2: the entries with |g| 0.02 and 0.05 (flat positions 7 and 3).
  mask = msg.small_gradient_mask(grads, targets, 0.3)
  want = np.zeros(8)
  want[[7, 3]] = 1
  np.testing.assert_array_equal(np.asarray(mask["Conv_0"]["kernel"]).ravel(), want)
  assert not np.any(np.asarray(mask["Dense_0"]["kernel"]))
  # 0.5: four entries, adding |g| 0.1 and 0.2 (positions 1 and 5).
  mask = msg.small_gradient_mask(grads, targets, 0.5)
  want[[1, 5]] = 1
  np.testing.assert_array_equal(np.asarray(mask["Conv_0"]["kernel"]).ravel(), want)
  scale = msg.grad_scale(mask, targets, 0.1)
  np.testing.assert_allclose(np.asarray(scale["Conv_0"]["kernel"]).ravel(),
                             np.where(want > 0, 1.0, 0.1))
  for leaf in (scale["Conv_0"]["bias"], scale["Dense_0"]["kernel"], scale["Dense_0"]["bias"]):
    np.testing.assert_array_equal(np.asarray(leaf), 1.0)


def test_msg_falls_back_to_dense_kernels_without_convs():
  grads = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
           "Dense_1": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}}
  assert msg.target_kernels(grads) == {"Dense_0": {"kernel": True, "bias": False},
                                       "Dense_1": {"kernel": True, "bias": False}}


def test_linear_warmup_decay_is_the_entrys_schedule():
  rates = lambda e: [float(erase.linear_warmup_decay(i, e)) for i in range(e)]
  np.testing.assert_allclose(rates(5), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3], rtol=1e-6)
  np.testing.assert_allclose(rates(2), [1, 0.5], rtol=1e-6)
  np.testing.assert_allclose(rates(3), [0.5, 1, 0.5], rtol=1e-6)


def test_msg_run_matches_a_hand_computation():
  """|D_r| = |D_f|, so the remain subset is all of D_r whatever the key; plain SGD."""
  lr, rate = 0.5, 0.5
  g_w = ce_grad_w(W, B, X_R, Y_R)[0] - ce_grad_w(W, B, X_F, Y_F)[0]
  flat = np.abs(g_w).ravel()
  reinit = np.zeros(6, bool)
  reinit[np.argsort(flat, kind="stable")[:3]] = True
  reinit = reinit.reshape(2, 3)
  w = np.where(reinit, FRESH_W, W)
  b = B.copy()          # biases are not re-initialised
  scale = np.where(reinit, 1.0, 0.1)
  for epoch_rate in (1.0, 0.5):       # two epochs of one full-batch step each
    gw, gb = ce_grad_w(w, b, X_R, Y_R)
    w, b = w - lr * epoch_rate * scale * gw, b - lr * epoch_rate * gb
  fn = linear_fn("msg")
  hp = unlearn.default_hparams("msg", lr, init_rate=rate)
  out, metrics = jax.jit(fn)(linear_params(), only("msg", linear_inputs()), jax.random.key(0), hp)
  np.testing.assert_allclose(np.asarray(out["Dense_0"]["kernel"]), w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["Dense_0"]["bias"]), b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(metrics["rate"]), [[1.0], [0.5]])


# --- random masks ---------------------------------------------------------------


def _big_params():
  return {"Conv_0": {"kernel": jnp.ones((10, 10, 4, 5)), "bias": jnp.ones(5000)},
          "BatchNorm_0": {"scale": jnp.ones(300), "bias": jnp.ones(300)},
          "block": {"LayerNorm_0": {"scale": jnp.ones(300)},
                    "Dense_0": {"kernel": jnp.ones((50, 40))}}}


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_random_masks_zero_a_ratio_of_every_non_norm_tensor(ratio):
  p = _big_params()
  masks = random_reinit.random_masks(jax.random.key(0), p, ratio)
  out = random_reinit.apply_masks(p, masks)
  for path, m in jax.tree_util.tree_flatten_with_path(masks)[0]:
    names = erase.path_names(path)
    m = np.asarray(m)
    if erase.is_norm(names):
      assert not m.any(), names
    else:                  # Bernoulli(ratio) per entry: within 5 standard deviations
      sd = np.sqrt(ratio * (1 - ratio) / m.size)
      assert abs(m.mean() - ratio) < 5 * sd, (names, m.mean())
  for m, o, q in zip(jax.tree.leaves(masks), jax.tree.leaves(out), jax.tree.leaves(p)):
    m, o, q = np.asarray(m) > 0, np.asarray(o), np.asarray(q)
    assert np.all(o[m] == 0) and np.all(o[~m] == q[~m])
  again = random_reinit.random_masks(jax.random.key(1), p, ratio)
  assert not np.array_equal(np.asarray(again["Conv_0"]["kernel"]),
                            np.asarray(masks["Conv_0"]["kernel"]))


def test_random_reinit_fill_takes_the_fresh_values():
  p = _big_params()
  fresh = jax.tree.map(lambda a: jnp.full_like(a, 9.0), p)
  masks = random_reinit.random_masks(jax.random.key(0), p, 0.5)
  out = random_reinit.apply_masks(p, masks, fresh)
  for m, o in zip(jax.tree.leaves(masks), jax.tree.leaves(out)):
    np.testing.assert_array_equal(np.asarray(o), np.where(np.asarray(m) > 0, 9.0, 1.0))


@pytest.mark.parametrize("fill", ["zero", "reinit"])
def test_random_reinit_run_erases_then_repairs(fill):
  """At learning rate 0 the run returns the erased weights, with biases erased too."""
  rng = np.random.default_rng(0)
  p = linear_params(rng.normal(size=(2, 3)).astype(np.float32) + 3, B + 3)
  method = methods.get("random_reinit")(fill=fill)
  fn = linear_fn("random_reinit", method=method)
  inputs = only("random_reinit", linear_inputs())
  run = jax.jit(fn)
  erased = [run(p, inputs, jax.random.key(k), unlearn.default_hparams(method, 0.0, ratio=0.5))[0]
            for k in (0, 1)]
  value = 0.0 if fill == "zero" else 7.0
  for out in erased:
    w, b = np.asarray(out["Dense_0"]["kernel"]), np.asarray(out["Dense_0"]["bias"])
    assert np.all((w == np.asarray(p["Dense_0"]["kernel"])) | (w == value))
    assert np.all((b == B + 3) | (b == (0.0 if fill == "zero" else -3.0)))
  ws = [np.asarray(o["Dense_0"]["kernel"]) for o in erased]
  assert not np.array_equal(ws[0], ws[1])
  res = unlearn.unlearn(fn, p, inputs, unlearn.default_hparams(method, 0.0, ratio=0.5),
                        key=jax.random.key(0), progress=False)
  n_erased = sum(int(np.sum(np.asarray(a) != np.asarray(q))) for a, q in
                 zip(jax.tree.leaves(res.params), jax.tree.leaves(p)))
  assert res.summary["erased_fraction"] == pytest.approx(n_erased / 9)


# --- the whole run is pure and vmappable ------------------------------------------


@pytest.mark.parametrize("name", ["msg", "random_reinit", "reset_distill"])
def test_runs_vmapped_over_keys_equal_separate_runs_and_differ(name):
  rng = np.random.default_rng(1)
  p = linear_params(rng.normal(size=(2, 3)).astype(np.float32), B)
  init_fn = lambda k: linear_params(jax.random.normal(k, (2, 3)), jax.random.normal(k, (3,)))
  fn = linear_fn(name, init_fn=init_fn, n_r=2, rbs=1)
  inputs = only(name, linear_inputs(orig_logits_remain=jnp.asarray(X_R @ W + B)))
  hp = unlearn.default_hparams(name, 0.1)
  keys = jnp.stack([jax.random.key(3), jax.random.key(4)])
  both, _ = jax.jit(jax.vmap(fn, in_axes=(None, None, 0, None)))(p, inputs, keys, hp)
  for i in range(2):
    one, _ = jax.jit(fn)(p, inputs, keys[i], hp)
    for a, b in zip(jax.tree.leaves(both), jax.tree.leaves(one)):
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-5, atol=1e-6)
  w = np.asarray(both["Dense_0"]["kernel"])
  assert not np.allclose(w[0], w[1])


# --- CT -------------------------------------------------------------------------


def test_ct_swaps_the_spatial_axes_of_every_conv_kernel():
  k0 = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
  k1 = np.arange(1 * 1 * 4 * 2, dtype=np.float32).reshape(1, 1, 4, 2)
  dense = np.arange(6, dtype=np.float32).reshape(2, 3)
  p = {"Conv_0": {"kernel": jnp.asarray(k0), "bias": jnp.arange(4.0)},
       "block": {"Conv_0": {"kernel": jnp.asarray(k1)}},
       "Dense_0": {"kernel": jnp.asarray(dense), "bias": jnp.zeros(3)}}
  out = ct.transpose_convs(p)
  for i in range(3):
    for j in range(3):
      np.testing.assert_array_equal(np.asarray(out["Conv_0"]["kernel"])[i, j], k0[j, i])
  np.testing.assert_array_equal(np.asarray(out["block"]["Conv_0"]["kernel"]), k1)
  np.testing.assert_array_equal(np.asarray(out["Dense_0"]["kernel"]), dense)
  np.testing.assert_array_equal(np.asarray(out["Conv_0"]["bias"]), np.arange(4.0))
  with pytest.raises(ConfigError, match="non-square"):
    ct.check_transposable({"Conv_0": {"kernel": jnp.zeros((3, 1, 2, 2))}})


def test_ct_run_starts_from_the_transposed_kernels():
  p = {"Conv_0": {"kernel": jnp.asarray(np.arange(8, dtype=np.float32).reshape(2, 2, 1, 2))},
       "Dense_0": {"kernel": jnp.asarray(W), "bias": jnp.asarray(B)}}
  apply_fn = lambda q, x: linear(q, x) + jnp.sum(q["Conv_0"]["kernel"] * 0.0)
  fn = linear_fn("ct", apply_fn=apply_fn)
  out, _ = jax.jit(fn)(p, only("ct", linear_inputs()), jax.random.key(0),
                       unlearn.default_hparams("ct", 0.0))
  np.testing.assert_array_equal(np.asarray(out["Conv_0"]["kernel"]),
                                np.swapaxes(np.asarray(p["Conv_0"]["kernel"]), 0, 1))


def test_ct_refuses_a_model_without_convs_when_traced():
  fn = linear_fn("ct")
  with pytest.raises(ConfigError) as err:
    jax.eval_shape(fn, linear_params(), only("ct", linear_inputs()), jax.random.key(0),
                   unlearn.default_hparams("ct", 0.1))
  assert "\n" not in str(err.value) and "lenet5" in str(err.value)


# --- SSD ------------------------------------------------------------------------


def test_ssd_importance_is_the_mean_squared_gradient_per_batch():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 2)).astype(np.float32)
  y = np.array([0, 2, 1, 1, 0], np.int32)
  imp = ssd.importance(linear_params(), linear, jnp.asarray(x), jnp.asarray(y), batch_size=2)
  want_w, want_b = np.zeros((2, 3)), np.zeros(3)
  for rows in ([0, 1], [2, 3], [4]):          # in order; the last batch is short
    gw, gb = ce_grad_w(W, B, x[rows], y[rows])
    want_w, want_b = want_w + gw ** 2 / 3, want_b + gb ** 2 / 3
  np.testing.assert_allclose(np.asarray(imp["Dense_0"]["kernel"]), want_w, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(np.asarray(imp["Dense_0"]["bias"]), want_b, rtol=1e-5, atol=1e-8)


def test_ssd_dampening_on_hand_importances():
  p = {"w": jnp.asarray([1.0, 2.0, 3.0, 4.0, -5.0])}
  full = {"w": jnp.asarray([1.0, 1.0, 0.0, 2.0, 1.0])}
  forget = {"w": jnp.asarray([5.0, 20.0, 1.0, 2.0, 40.0])}
  # Selected where forget > 10 * full: entries 1, 2 and 4; factor min(lam * full / forget, 1).
  out, sel = ssd.dampen(p, full, forget, 10.0, 1.0)
  np.testing.assert_allclose(np.asarray(out["w"]), [1.0, 2.0 / 20, 0.0, 4.0, -5.0 / 40])
  np.testing.assert_array_equal(np.asarray(sel["w"]), [0, 1, 1, 0, 1])
  out, _ = ssd.dampen(p, full, forget, 10.0, 30.0)     # lam 30: 30/20 and 30/40 -> capped 1, 0.75
  np.testing.assert_allclose(np.asarray(out["w"]), [1.0, 2.0, 0.0, 4.0, -5.0 * 0.75])
  out, _ = ssd.dampen(p, full, forget, 1.0, 1.0)       # alpha 1 also selects entry 0
  np.testing.assert_allclose(np.asarray(out["w"]), [0.2, 0.1, 0.0, 4.0, -0.125])


def test_ssd_run_is_the_dampening_alone_and_deterministic():
  fn = linear_fn("ssd", epochs=3)
  inputs = only("ssd", linear_inputs())
  hp = unlearn.default_hparams("ssd", 0.1, alpha=1.0, dampening=0.5)
  x_all, y_all = np.concatenate([X_R, X_F]), np.concatenate([Y_R, Y_F])
  full = ssd.importance(linear_params(), linear, jnp.asarray(x_all), jnp.asarray(y_all))
  forget = ssd.importance(linear_params(), linear, jnp.asarray(X_F), jnp.asarray(Y_F))
  want, sel = ssd.dampen(linear_params(), full, forget, 1.0, 0.5)
  assert 0 < sum(float(np.sum(s)) for s in jax.tree.leaves(sel)) < 9
  for k in (0, 1):
    out, metrics = jax.jit(fn)(linear_params(), inputs, jax.random.key(k), hp)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(want)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.any(np.asarray(metrics["loss"]))
  res = unlearn.unlearn(fn, linear_params(), inputs, hp, key=jax.random.key(0), progress=False)
  assert res.summary["dampened_fraction"] == pytest.approx(
      sum(float(np.sum(s)) for s in jax.tree.leaves(sel)) / 9)


# --- layer reset ----------------------------------------------------------------


@pytest.mark.parametrize("names,want", [
    (("Conv_0", "Conv_1", "Dense_0", "Dense_1", "Dense_2"), ("Conv_0", "Dense_2")),   # LeNet-5
    (("Dense_0", "Dense_1", "Dense_2"), ("Dense_0", "Dense_2")),                      # MLP
    (("BatchNorm_0", "Conv_0", "Dense_0", "_BasicBlock_0"), ("Conv_0", "Dense_0")),   # ResNet
    (("Dense_0", "Dense_10", "Dense_2"), ("Dense_0", "Dense_10")),
])
def test_reset_distill_resets_the_first_and_the_output_layer(names, want):
  p = {n: {"kernel": jnp.ones((2, 2))} for n in names}
  assert reset_distill.reset_layers(p) == want
  fresh = {n: {"kernel": jnp.zeros((2, 2))} for n in names}
  out = reset_distill.reset(p, fresh, want)
  for n in names:
    assert float(out[n]["kernel"].sum()) == (0.0 if n in want else 4.0)
  with pytest.raises(ConfigError, match="Dense"):
    reset_distill.reset_layers({"Conv_0": {"kernel": jnp.ones((1, 1, 1, 1))}})


def test_reset_distill_losses_match_numpy():
  s, t, y = X_R @ W + B, X_R @ W[:, ::-1], Y_R
  s64, t64 = s.astype(np.float64), t.astype(np.float64)
  for temp in (1.0, 5.0):
    kl = np_kl_rows(np_softmax(t64 / temp), s64 / temp).mean()
    got = reset_distill.distill_kl(jnp.asarray(s), jnp.asarray(t), temp)
    assert float(got) == pytest.approx(kl, rel=1e-4, abs=1e-7)
    soft = -(np_softmax(t64 / temp) * np_log_softmax(s64 / temp)).sum(-1).mean()
    got = reset_distill.remain_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(y), temp)
    assert float(got) == pytest.approx(np_ce(s64, y) + soft + kl, rel=1e-5)


def test_reset_distill_phases_rates_and_reset():
  """Epochs 0-1 distil at full rate, 2-3 remain under the per-epoch cosine; at rate 0
  the run returns the original with its first and output layers reset."""
  names = ("Dense_0", "Dense_1", "Dense_2")
  p = {n: {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)} for n in names}
  apply_fn = lambda q, x: x @ q["Dense_0"]["kernel"] @ q["Dense_1"]["kernel"] @ \
      q["Dense_2"]["kernel"] + q["Dense_2"]["bias"]
  init_fn = lambda k: {n: {"kernel": jnp.full((2, 2), 5.0), "bias": jnp.full(2, 5.0)}
                       for n in names}
  inputs = methods.Inputs(x_remain=jnp.asarray(X_R), y_remain=jnp.asarray([0, 1]),
                          orig_logits_remain=jnp.asarray(X_R @ np.eye(2) * 4))
  fn = unlearn.make_unlearn_fn("reset_distill", apply_fn, epochs=4, n_forget=1, n_remain=2,
                               forget_batch_size=1, remain_batch_size=2, init_fn=init_fn)
  out, metrics = jax.jit(fn)(p, inputs, jax.random.key(0),
                             unlearn.default_hparams("reset_distill", 0.0))
  np.testing.assert_array_equal(np.asarray(metrics["distill"]).ravel(), [1, 1, 0, 0])
  np.testing.assert_allclose(np.asarray(metrics["rate"]).ravel(), [1, 1, 1, 0.5], atol=1e-6)
  for n, v in zip(names, (5.0, 1.0, 5.0)):
    np.testing.assert_array_equal(np.asarray(out[n]["kernel"]), v)
  assert reset_distill.distill_epochs(3) == 2 and reset_distill.distill_epochs(1) == 1


# --- hyperparameters ------------------------------------------------------------


@pytest.mark.parametrize("name,bad", [("msg", {"init_rate": 1.5}), ("msg", {"keep_scale": -0.1}),
                                      ("random_reinit", {"ratio": 2.0}),
                                      ("ssd", {"alpha": 0.0}), ("ssd", {"dampening": -1.0}),
                                      ("reset_distill", {"temperature": 0.0})])
def test_bad_hyperparameters_rejected(name, bad):
  with pytest.raises(ConfigError, match=list(bad)[0]):
    unlearn.default_hparams(name, 0.1, **bad)


def test_random_reinit_fill_option():
  with pytest.raises(ConfigError, match="fill"):
    methods.get("random_reinit")(fill="noise")
