"""The baseline methods: each loss or update against NumPy on a hand example."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn import methods, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import (bad_teacher, gradient_ascent, l1_sparse, neggrad_plus,
                                random_label, salun, scrub, scrub_r)
from tests.support.linear_toy import (apply_fn, inputs_for, np_ce, np_kl_rows, np_log_softmax,
                                       np_softmax, toy, toy_fn)


W = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]], np.float32)
B = np.array([0.1, -0.2, 0.3], np.float32)
X_F = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
Y_F = np.array([0, 1], np.int32)
X_R = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, -1.0]], np.float32)
Y_R = np.array([1, 0, 2], np.int32)


def params():
  return {"w": jnp.asarray(W), "b": jnp.asarray(B)}


def batch(**kw):
  return methods.Batch(x_forget=jnp.asarray(X_F), y_forget=jnp.asarray(Y_F),
                       x_remain=jnp.asarray(X_R), y_remain=jnp.asarray(Y_R),
                       epoch=jnp.int32(kw.pop("epoch", 0)), progress=jnp.float32(0), **kw)


def logits(x, w=W, b=B):
  return x @ w + b


def test_gradient_ascent_loss_and_one_sgd_step():
  loss, aux = gradient_ascent.gradient_ascent_loss(params(), apply_fn, batch())
  assert float(loss) == pytest.approx(-np_ce(logits(X_F), Y_F), rel=1e-5)
  # One full-batch SGD step: W <- W - lr * d(-CE)/dW = W + lr * X^T (softmax - onehot) / n.
  fn = unlearn.make_unlearn_fn("gradient_ascent", apply_fn, epochs=1, n_forget=2, n_remain=3,
                               forget_batch_size=2, remain_batch_size=3)
  inputs = methods.Inputs(x_forget=jnp.asarray(X_F), y_forget=jnp.asarray(Y_F))
  out, _ = fn(params(), inputs, jax.random.key(0), unlearn.default_hparams("gradient_ascent", 0.5))
  resid = np_softmax(logits(X_F)) - np.eye(3)[Y_F]
  np.testing.assert_allclose(np.asarray(out["w"]), W + 0.5 * X_F.T @ resid / 2, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out["b"]), B + 0.5 * resid.mean(0), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.95, 1.0])
def test_neggrad_plus_loss(beta):
  loss, aux = neggrad_plus.neggrad_plus_loss(params(), apply_fn, batch(), beta)
  want = beta * np_ce(logits(X_R), Y_R) - (1 - beta) * np_ce(logits(X_F), Y_F)
  assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_l1_sparse_loss_decays_linearly():
  l1 = np.abs(W).sum() + np.abs(B).sum()
  for epoch in range(4):
    loss, aux = l1_sparse.l1_sparse_loss(params(), apply_fn, batch(epoch=epoch), 0.01, 4)
    want = np_ce(logits(X_R), Y_R) + 0.01 * (1 - epoch / 4) * l1
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_random_label_loss_in_each_phase():
  labels = jnp.asarray([2, 2])
  f, _ = random_label.random_label_loss(params(), apply_fn, batch(), labels, True), None
  r = random_label.random_label_loss(params(), apply_fn, batch(), labels, False)
  assert float(f) == pytest.approx(np_ce(logits(X_F), np.array([2, 2])), rel=1e-5)
  assert float(r) == pytest.approx(np_ce(logits(X_R), Y_R), rel=1e-5)


def test_random_label_walks_forget_then_remain_each_epoch():
  p, inputs = toy()
  fn = toy_fn("random_label", epochs=2)
  _, metrics = jax.jit(fn)(p, inputs_for("random_label", inputs), jax.random.key(0),
                  unlearn.default_hparams("random_label", 0.1))
  # 48 / 8 = 6 steps an epoch; a D_f pass is 8 / 4 = 2 of them.
  np.testing.assert_array_equal(np.asarray(metrics["forget_phase"]), [[1, 1, 0, 0, 0, 0]] * 2)


def test_saliency_mask_matches_numpy_top_k():
  rng = np.random.default_rng(0)
  grads = {"a": rng.normal(size=(3, 4)).astype(np.float32),
           "b": rng.normal(size=(5,)).astype(np.float32)}
  for ratio in (0.1, 0.5, 1.0):
    mask = salun.saliency_mask(jax.tree.map(jnp.asarray, grads), ratio)
    flat = np.abs(np.concatenate([grads["a"].ravel(), grads["b"].ravel()]))
    k = int(np.floor(ratio * flat.size))
    keep = np.zeros(flat.size)
    keep[np.argsort(-flat, kind="stable")[:k]] = 1
    got = np.concatenate([np.asarray(mask["a"]).ravel(), np.asarray(mask["b"]).ravel()])
    np.testing.assert_array_equal(got, keep)


def test_forget_gradient_matches_numpy_with_padded_chunks():
  p, inputs = toy(n_f=7)
  x, y = np.asarray(inputs.x_forget), np.asarray(inputs.y_forget)
  g = salun.forget_gradient(p, apply_fn, inputs.x_forget, inputs.y_forget, chunk=3)
  resid = np_softmax(logits(x, np.asarray(p["w"]), np.asarray(p["b"]))) - np.eye(3)[y]
  np.testing.assert_allclose(np.asarray(g["w"]), -x.T @ resid / 7, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g["b"]), -resid.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_salun_masked_weights_stay_bit_identical(optimizer):
  p, inputs = toy()
  opt = ml_collections.ConfigDict({"optimizer": optimizer, "momentum": 0.9,
                                   "weight_decay": 5e-4, "schedule": "constant"})
  fn = toy_fn("salun", epochs=3, opt=opt)
  inputs = inputs_for("salun", inputs)
  hp = unlearn.default_hparams("salun", 0.1, mask_ratio=0.5)
  key = jax.random.key(0)
  state = jax.jit(fn.start)(p, inputs, key, hp)
  epoch = jax.jit(fn.epoch)
  for e in range(3):
    state, _ = epoch(state, inputs, hp, jnp.int32(e))
  mask = state.rule.extra
  out = jax.jit(fn.finish)(state, inputs, hp)
  for name in p:
    m = np.asarray(mask[name]).astype(bool)
    assert 0 < m.sum() < m.size
    np.testing.assert_array_equal(np.asarray(out[name])[~m], np.asarray(p[name])[~m])
    assert np.all(np.asarray(out[name])[m] != np.asarray(p[name])[m])
    # Every optimizer buffer shaped like this parameter is zero where masked out.
    for leaf in jax.tree.leaves(state.rule.opt_state):
      if hasattr(leaf, "shape") and leaf.shape == p[name].shape:
        assert np.all(np.asarray(leaf)[~m] == 0)


def test_scrub_losses_match_numpy():
  teacher = {"w": jnp.asarray(W[:, ::-1].copy()), "b": jnp.zeros(3)}
  t = 4.0
  t_f, s_f = logits(X_F, W[:, ::-1], 0), logits(X_F)
  want_d = t * t * np_kl_rows(np_softmax(t_f / t), s_f / t).mean()
  assert float(scrub.distill_kl(jnp.asarray(s_f), jnp.asarray(t_f), t)) == pytest.approx(
      want_d, rel=1e-5)
  assert float(scrub.scrub_max_loss(params(), apply_fn, teacher, batch(), t)) == pytest.approx(
      -want_d, rel=1e-5)
  hp = {"alpha": 0.5, "gamma": 0.9, "temperature": 2.0}
  t_r, s_r = logits(X_R, W[:, ::-1], 0), logits(X_R)
  want = 0.9 * np_ce(s_r, Y_R) + 0.5 * 4.0 * np_kl_rows(np_softmax(t_r / 2), s_r / 2).mean()
  assert float(scrub.scrub_min_loss(params(), apply_fn, teacher, batch(), hp)) == pytest.approx(
      want, rel=1e-5)


def test_scrub_max_steps_only_in_the_first_msteps_epochs():
  p, inputs = toy()
  fn = toy_fn("scrub", epochs=3)
  _, metrics = jax.jit(fn)(p, inputs_for("scrub", inputs), jax.random.key(0),
                  unlearn.default_hparams("scrub", 0.1, msteps=2))
  np.testing.assert_array_equal(np.asarray(metrics["max_step"]),
                                [[1, 1, 0, 0, 0, 0]] * 2 + [[0] * 6])


def test_rewind_index_picks_closest_first_on_ties():
  assert int(scrub_r.rewind_index(jnp.asarray([0.1, 0.3, 0.5, 0.3]), 0.32)) == 1
  assert int(scrub_r.rewind_index(jnp.asarray([1.0, 0.25, 0.75]), 0.5)) == 1   # a tie


@pytest.mark.slow    # compiles five runs (about 8 s): in the full suite
def test_scrub_r_returns_the_epoch_its_rule_picks():
  """Held-out labels are set so that the final model's held-out error equals the
  D_f error after a chosen earlier epoch: that epoch's parameters come back."""
  p, inputs = toy(n_f=8, n_h=8)
  epochs, key = 4, jax.random.key(3)
  hp = unlearn.default_hparams("scrub_r", 0.5, msteps=2, temperature=1.0)
  # SCRUB for 1..E epochs follows the same trajectory (same key, constant lr).
  per_epoch = [jax.jit(toy_fn("scrub", epochs=e))(p, inputs_for("scrub", inputs), key, hp)[0]
               for e in range(1, epochs + 1)]
  x_f, y_f = np.asarray(inputs.x_forget), np.asarray(inputs.y_forget)
  errors = [np.mean(np.argmax(logits(x_f, np.asarray(q["w"]), np.asarray(q["b"])), -1) != y_f)
            for q in per_epoch]
  assert len(set(errors)) > 1, errors
  target = int(np.argmax(np.asarray(errors) != errors[-1]))      # an epoch other than the last
  final = per_epoch[-1]
  pred_h = np.argmax(logits(np.asarray(inputs.x_heldout), np.asarray(final["w"]),
                            np.asarray(final["b"])), -1)
  n_wrong = int(round(errors[target] * 8))
  y_h = np.where(np.arange(8) < n_wrong, (pred_h + 1) % 3, pred_h).astype(np.int32)
  want = int(np.argmin(np.abs(np.asarray(errors) - n_wrong / 8)))
  assert errors[want] == errors[target]
  inputs = inputs._replace(y_heldout=jnp.asarray(y_h))
  out, _ = jax.jit(toy_fn("scrub_r", epochs=epochs))(p, inputs_for("scrub_r", inputs), key, hp)
  np.testing.assert_allclose(np.asarray(out["w"]), np.asarray(per_epoch[want]["w"]), atol=1e-6)
  # The host driver returns the same parameters and says which epoch it picked.
  res = unlearn.unlearn(toy_fn("scrub_r", epochs=epochs), p, inputs_for("scrub_r", inputs), hp,
                        key=key, progress=False)
  np.testing.assert_allclose(np.asarray(res.params["w"]), np.asarray(out["w"]), atol=1e-6)
  assert res.summary == pytest.approx({"rewind_epoch": want + 1, "heldout_error": n_wrong / 8,
                                       "forget_error": errors[want]})
  assert unlearn.unlearn(toy_fn("scrub", epochs=1), p, inputs_for("scrub", inputs), hp,
                         key=key, progress=False).summary == {}


def test_bad_teacher_loss_matches_numpy():
  s, t = logits(X_R), logits(X_R, W[:, ::-1], 0)
  for temp in (1.0, 2.0):
    want = np_kl_rows(np_softmax(t / temp), s / temp).mean() / 3
    got = bad_teacher.bad_teacher_loss(jnp.asarray(s), jnp.asarray(t), temp)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_bad_teacher_draws_remain_rows_from_a_fixed_subset():
  key = jax.random.key(0)
  rows = np.concatenate([np.asarray(bad_teacher.remain_subset_rows(key, s, 100, 0.3, 16))
                         for s in range(50)])
  assert len(set(rows)) == 30


@pytest.mark.parametrize("name", ["gradient_ascent", "neggrad_plus", "random_label", "salun",
                                  "l1_sparse", "scrub", "scrub_r", "bad_teacher"])
def test_every_method_runs_and_moves_the_weights(name):
  p, inputs = toy()
  out, metrics = jax.jit(toy_fn(name))(p, inputs_for(name, inputs), jax.random.key(0),
                                    unlearn.default_hparams(name, 0.05))
  assert np.all(np.isfinite(np.asarray(metrics["loss"])))
  assert not np.allclose(np.asarray(out["w"]), np.asarray(p["w"]))


@pytest.mark.parametrize("name,bad", [("neggrad_plus", {"beta": 1.5}),
                                      ("salun", {"mask_ratio": 0.0}),
                                      ("scrub", {"temperature": 0.0}),
                                      ("l1_sparse", {"alpha": -1.0}),
                                      ("bad_teacher", {"remain_fraction": 1.2})])
def test_bad_hyperparameters_rejected(name, bad):
  with pytest.raises(ConfigError, match=list(bad)[0]):
    unlearn.default_hparams(name, 0.1, **bad)


def test_forget_pass_longer_than_the_epoch_rejected():
  p, inputs = toy()
  with pytest.raises(ConfigError, match="remain_batch_size"):
    toy_fn("random_label", rbs=48)(p, inputs_for("random_label", inputs), jax.random.key(0),
                                unlearn.default_hparams("random_label", 0.1))
