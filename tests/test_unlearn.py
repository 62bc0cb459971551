"""The unlearning loss and driver (Algorithm 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import unlearn
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
  return unlearn.Batch(jnp.asarray(HAND["x_f"]), jnp.asarray(HAND["ref"]),
                       jnp.asarray(HAND["x_r"]), jnp.asarray(HAND["y_r"]))


def test_kl_matches_numpy_with_zero_probabilities():
  logits = HAND["x_f"] @ HAND["w"]
  got = float(unlearn.kl_divergence(jnp.asarray(HAND["ref"]), jnp.asarray(logits)))
  assert got == pytest.approx(np_kl(HAND["ref"], logits), rel=1e-5)
  assert np.isfinite(got) and got > 0


@pytest.mark.parametrize("lam", [0.01, 0.3, 0.999])
def test_loss_matches_numpy_hand_example(lam):
  params = {"w": jnp.asarray(HAND["w"])}
  loss, aux = unlearn.lightweight_loss(params, apply_fn, hand_batch(), lam)
  kl = np_kl(HAND["ref"], HAND["x_f"] @ HAND["w"])
  ce = np_ce(HAND["x_r"] @ HAND["w"], HAND["y_r"])
  assert float(aux["kl"]) == pytest.approx(kl, rel=1e-5)
  assert float(aux["ce"]) == pytest.approx(ce, rel=1e-5)
  assert float(loss) == pytest.approx(lam * kl + (1 - lam) * ce, rel=1e-5)


def test_lam_one_is_pure_kl():
  params = {"w": jnp.asarray(HAND["w"])}
  batch = hand_batch()
  loss, _ = unlearn.lightweight_loss(params, apply_fn, batch, 1.0)
  assert float(loss) == pytest.approx(np_kl(HAND["ref"], HAND["x_f"] @ HAND["w"]), rel=1e-5)
  # The remain batch has no influence at all: poison it and get the same gradient.
  bad = batch._replace(x_remain=batch.x_remain * np.nan)
  g1 = jax.grad(lambda p: unlearn.lightweight_loss(p, apply_fn, batch, 1.0)[0])(params)
  g2 = jax.grad(lambda p: unlearn.lightweight_loss(p, apply_fn, bad, 1.0)[0])(params)
  np.testing.assert_allclose(g1["w"], g2["w"])


def test_reference_outputs_get_no_gradient():
  params = {"w": jnp.asarray(HAND["w"])}
  batch = hand_batch()
  g_ref = jax.grad(lambda r: unlearn.lightweight_loss(
      params, apply_fn, batch._replace(ref_probs=r), 0.5)[0])(batch.ref_probs)
  np.testing.assert_array_equal(np.asarray(g_ref), 0.0)


@pytest.mark.parametrize("lam", [0.0, -0.1, 1.5, "0.1"])
def test_lam_outside_range_rejected(lam):
  with pytest.raises(ConfigError, match="lam"):
    unlearn.lightweight(apply_fn, optax.sgd(0.1), lam)


def test_forget_indices_cover_every_example_each_epoch():
  rows = np.asarray(unlearn.forget_indices(jax.random.key(0), 10, 4))
  assert rows.shape == (3, 4)
  assert set(rows.ravel()) == set(range(10))


def _toy_problem(seed=0):
  rng = np.random.default_rng(seed)
  x_r = rng.normal(size=(64, 2)).astype(np.float32)
  y_r = (x_r[:, 0] > 0).astype(np.int32)
  x_f = rng.normal(size=(8, 2)).astype(np.float32)
  ref = np.full((8, 2), 0.5, np.float32)           # a reference that knows nothing about D_f
  params = {"w": jnp.asarray(rng.normal(size=(2, 2)).astype(np.float32) * 3)}
  return params, x_f, ref, x_r, y_r


def test_unlearn_moves_towards_reference_and_leaves_input_params():
  params, x_f, ref, x_r, y_r = _toy_problem()
  before = np.asarray(params["w"]).copy()
  method = unlearn.lightweight(apply_fn, optax.sgd(0.5), lam=0.9)
  kl0 = float(unlearn.kl_divergence(ref, apply_fn(params, x_f)))
  res = unlearn.unlearn(method, params, jnp.asarray(x_f), jnp.asarray(ref), jnp.asarray(x_r),
                        jnp.asarray(y_r), apply_fn=apply_fn, epochs=20, key=jax.random.key(1),
                        forget_batch_size=4, remain_batch_size=16, progress=False)
  assert res.history[-1]["kl_forget"] < 0.5 * kl0
  assert len(res.history) == 20 and not res.stopped_early
  np.testing.assert_array_equal(np.asarray(params["w"]), before)  # not donated away


def test_unlearn_stops_at_tolerance():
  params, x_f, ref, x_r, y_r = _toy_problem()
  method = unlearn.lightweight(apply_fn, optax.sgd(0.5), lam=1.0)
  res = unlearn.unlearn(method, params, jnp.asarray(x_f), jnp.asarray(ref), jnp.asarray(x_r),
                        jnp.asarray(y_r), apply_fn=apply_fn, epochs=200, key=jax.random.key(1),
                        forget_batch_size=8, remain_batch_size=8, tol=0.05, progress=False)
  assert res.stopped_early
  assert len(res.history) < 200
  assert res.history[-1]["kl_forget"] < 0.05 <= res.history[-2]["kl_forget"]


def test_unlearn_rejects_empty_forget_set():
  params, x_f, ref, x_r, y_r = _toy_problem()
  method = unlearn.lightweight(apply_fn, optax.sgd(0.5), lam=0.5)
  with pytest.raises(ConfigError, match="empty"):
    unlearn.unlearn(method, params, x_f[:0], ref[:0], x_r, y_r, apply_fn=apply_fn,
                    epochs=1, key=jax.random.key(0), progress=False)
