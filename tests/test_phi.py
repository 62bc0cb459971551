"""Tests of jaxunlearn.audits.phi: the logit-scaled confidence."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import membership
from jaxunlearn.audits import phi
from jaxunlearn.errors import ConfigError


def _organisers_recipe(logits, labels):
  """The organisers' recipe (docs/audits.md), step by step in float64 (softmax, zero p_y, 1e-45 floor)."""
  z = logits - logits.max(axis=-1, keepdims=True)
  p = np.exp(z.astype(np.float64))
  p /= p.sum(axis=-1, keepdims=True)
  p_y = np.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
  p_wrong = p.sum(axis=-1) - p_y
  return np.log(p_y + 1e-45) - np.log(p_wrong + 1e-45)


def test_matches_float64_formula_and_mia():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 20, 5)) * 3  # [N models, n examples, C]
  labels = rng.integers(0, 5, 20)
  want = np.stack([_organisers_recipe(l, labels) for l in logits])
  got64 = phi.logit_confidence_numpy(logits, labels)
  assert got64.shape == (3, 20) and got64.dtype == np.float64
  np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-12)
  got32 = np.asarray(phi.logit_confidence(jnp.asarray(logits, jnp.float32), labels))
  assert got32.shape == (3, 20)
  np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(membership.logit_confidence(logits[1], labels), got64[1])


def test_jit_and_vmap_over_models():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(4, 7, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 7))
  full = phi.logit_confidence(logits, labels)
  per_model = jax.jit(jax.vmap(phi.logit_confidence, in_axes=(0, None)))(logits, labels)
  np.testing.assert_allclose(per_model, full, rtol=1e-6)


def test_stable_when_p_y_is_near_0_or_1():
  # p_y = 1 - 2e-87 and p_y = 2e-87: the float64 recipe saturates at +-103.6
  # (its 1e-45 floor); the exact values are +-(200 - log 2).
  logits = np.array([[200.0, 0.0, 0.0], [-200.0, 0.0, 0.0]])
  labels = np.array([0, 0])
  want = [200 - math.log(2), -200 - math.log(2)]
  np.testing.assert_allclose(phi.logit_confidence_numpy(logits, labels), want, rtol=1e-12)
  got = np.asarray(phi.logit_confidence(jnp.asarray(logits, jnp.float32), labels))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Huge float32 logits: exp never overflows, so phi is the exact difference.
  big = jnp.array([[1e37, -1e37], [-1e37, 1e37]], jnp.float32)
  np.testing.assert_allclose(phi.logit_confidence(big, jnp.array([1, 1])), [-2e37, 2e37],
                             rtol=1e-6)


def test_bad_input():
  with pytest.raises(ConfigError, match="at least 2 classes"):
    phi.logit_confidence_numpy(np.zeros((3, 1)), np.zeros(3, int))
  with pytest.raises(ConfigError, match="do not match"):
    phi.logit_confidence_numpy(np.zeros((2, 3, 4)), np.zeros(2, int))
  with pytest.raises(ConfigError, match=r"lie in \[0, 4\)"):
    phi.logit_confidence(jnp.zeros((3, 4)), jnp.array([0, 4, 1]))
  with pytest.raises(ConfigError, match="integers"):
    phi.logit_confidence_numpy(np.zeros((3, 4)), np.zeros(3))
