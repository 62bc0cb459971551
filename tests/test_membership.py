"""Tests of jaxunlearn.membership: attack features, shadow training under one vmap, attacks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import membership, models
from jaxunlearn.errors import ConfigError

KEY = jax.random.key(0, impl="rbg")


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_features_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(30, 5)) * 3
  labels = rng.integers(0, 5, 30)
  p = _softmax(logits)
  np.testing.assert_allclose(membership.attack_features(logits, labels, "unsorted"), p, rtol=1e-12)
  np.testing.assert_allclose(membership.attack_features(logits, labels, "sorted"),
                             np.sort(p, axis=1)[:, ::-1], rtol=1e-12)
  py = p[np.arange(30), labels]
  np.testing.assert_allclose(membership.attack_features(logits, labels, "logit_conf")[:, 0],
                             np.log(py / (1 - py)), rtol=1e-9)
  with pytest.raises(ConfigError, match="unknown attack features"):
    membership.attack_features(logits, labels, "raw")


def test_logit_confidence_does_not_saturate():
  # p_y = 1 - 1e-26 in float64 rounds to 1, yet the logit is exactly 60 - log(2).
  logits = np.array([[60.0, 0.0, 0.0], [0.0, -60.0, -60.0]])
  got = membership.logit_confidence(logits, np.array([0, 2]))
  np.testing.assert_allclose(got, [60 - math.log(2), -60 - math.log(1 + math.exp(-60))],
                             rtol=1e-12)


def test_shadow_in_indices_are_random_halves():
  idx = membership.shadow_in_indices(3, 6, 41)
  assert idx.shape == (6, 20)
  for row in idx:
    assert len(set(row)) == 20 and row.min() >= 0 and row.max() < 41
    assert np.all(np.diff(row) > 0)
  assert len({tuple(r) for r in idx}) == 6
  np.testing.assert_array_equal(idx, membership.shadow_in_indices(3, 6, 41))


def test_attack_metrics_against_hand_counts():
  m = membership.attack_metrics(np.array([0.9, 0.8, 0.4, 0.6]), np.array([0.1, 0.7, 0.2, 0.3]))
  assert m["forget_member_rate"] == 0.75
  assert m["balanced_acc"] == pytest.approx(0.5 * (0.75 + 0.75))
  # 16 member/non-member pairs; the member scores higher in 14 of them.
  assert m["auc"] == pytest.approx(14 / 16)


def test_fit_attack_learns_a_separable_signal():
  rng = np.random.default_rng(0)
  n = 400
  labels = rng.integers(0, 3, n)
  member = rng.random(n) < 0.5
  logits = rng.normal(size=(n, 3))
  # Members: their class's logit is 4 higher.
  logits[np.arange(n), labels] += np.where(member, 6.0, 1.0)
  for kind in membership.FEATURES:
    attack = membership.fit_attack(logits, labels, member, kind)
    scores = attack.score(logits, labels)
    m = membership.attack_metrics(scores[member], scores[~member])
    assert m["balanced_acc"] > 0.8, kind
  # A class whose shadow records are all members gets a constant score.
  attack = membership.fit_attack(logits[:5], np.zeros(5, int), np.ones(5, bool), "sorted")
  np.testing.assert_array_equal(attack.score(logits[:5], np.zeros(5, int)), 1.0)


def test_loss_attack_separates_and_stays_at_chance():
  rng = np.random.default_rng(0)
  low, high = rng.exponential(0.01, 100), rng.exponential(1.0, 100)
  strong = membership.loss_attack(low, high)
  assert strong["balanced_acc"] > 0.9 and strong["auc"] > 0.9
  same = membership.loss_attack(rng.exponential(1.0, 200), rng.exponential(1.0, 200))
  assert abs(same["balanced_acc"] - 0.5) < 0.1


@pytest.fixture(scope="module")
def pool():
  """256 points of 10 Gaussian clusters in 16 dimensions (learnable, not trivial)."""
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(10, 16)) * 1.5
  y = rng.integers(0, 10, 256).astype(np.int32)
  x = (centers[y] + rng.normal(size=(256, 16))).astype(np.float32)
  return x, y


def _train(pool, driver, num_shadows=2):
  x, y = pool
  model = models.get_model("mlp", 10, hidden=(16,))
  in_idx = membership.shadow_in_indices(0, num_shadows, 64)
  return membership.train_shadows(model, optax.adam(3e-3), x.shape[1:], x[:64], y[:64], in_idx, KEY,
                           epochs=2, batch_size=16, driver=driver)


def test_shadows_come_out_of_one_vmapped_call(pool):
  x, y = pool
  k = 3
  model = models.get_model("mlp", 10, hidden=(32,))
  in_idx = membership.shadow_in_indices(0, k, x.shape[0])
  train_all = membership.make_shadow_train_fn(model, optax.adam(1e-2), x.shape[1:], epochs=10,
                                       batch_size=32)
  keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(k))
  # The whole training of all shadows is one jitted computation (a single
  # scan inside a vmap), called once.
  jaxpr = jax.make_jaxpr(train_all)(keys, in_idx, x, y)
  assert len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in ("jit", "pjit")
  assert "scan" in str(jaxpr)
  states, losses = train_all(keys, jnp.asarray(in_idx), jnp.asarray(x), jnp.asarray(y))
  assert losses.shape == (k, 10)
  assert all(leaf.shape[0] == k for leaf in jax.tree.leaves(states.params))
  kernel = np.asarray(states.params["Dense_0"]["kernel"])
  for i in range(k):
    for j in range(i):
      assert not np.allclose(kernel[i], kernel[j])
  logits = membership.shadow_logits(model, states.params, states.batch_stats, x)
  assert logits.shape == (k, x.shape[0], 10)
  shadows = membership.Shadows(states.params, states.batch_stats, in_idx, np.asarray(losses), 0, 0)
  mask = shadows.in_mask(x.shape[0])
  for i in range(k):
    out = ~mask[i]
    acc = np.mean(np.argmax(logits[i][out], -1) == y[out])
    assert acc > 0.4, (i, acc)     # chance is 0.1


def test_loop_driver_matches_scan_driver(pool):
  scan, loop = _train(pool, "scan"), _train(pool, "loop")
  np.testing.assert_allclose(loop.losses, scan.losses, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(loop.params), jax.tree.leaves(scan.params)):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_attack_works_on_an_overfit_target(tmp_path):
  """experiments/mia_sanity.py at a small size: the attack finds an overfit
  target's members and is near chance on a retrained model's D_f."""
  from experiments import mia_sanity
  r = mia_sanity.main(["--out", str(tmp_path), "--model", "mlp", "--n-target", "100",
                       "--n-forget", "50", "--epochs", "40", "--batch-size", "32",
                       "--num-shadows", "4", "--features", "sorted,logit_conf"])
  assert (tmp_path / "mia_sanity.json").exists() and (tmp_path / "mia_sanity.md").exists()
  figs = r["figures"]
  for kind in ("sorted", "logit_conf"):
    assert figs["target (D vs test)"][f"{kind}.balanced_acc"] >= 0.6, kind
    assert abs(figs["retrained (D_f vs test)"][f"{kind}.balanced_acc"] - 0.5) <= 0.1, kind
