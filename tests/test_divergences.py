"""Tests of jaxunlearn.divergences against NumPy, and the distributions evaluator's phi plot."""

import math

import numpy as np
import pytest

from jaxunlearn import divergences
from jaxunlearn.evaluators import distributions as distributions_evaluator


def _random_probs(rng, n, c, zeros=False):
  p = rng.random((n, c)) ** 3
  if zeros:
    p[rng.random((n, c)) < 0.3] = 0.0
    p[:, 0] += 1e-3    # keep every row non-empty
  return p / p.sum(-1, keepdims=True)


def _kl_loop(p, q):
  out = []
  for pi, qi in zip(p, q):
    out.append(sum(a * (math.log(a) - math.log(b)) for a, b in zip(pi, qi) if a > 0))
  return np.array(out)


@pytest.mark.parametrize("zeros", [False, True])
def test_kl_and_js_match_a_plain_loop(zeros):
  rng = np.random.default_rng(0)
  p = _random_probs(rng, 50, 7, zeros)
  q = _random_probs(rng, 50, 7)
  np.testing.assert_allclose(divergences.kl(p, q), _kl_loop(p, q), rtol=1e-10, atol=1e-12)
  m = 0.5 * (p + q)
  expected_js = 0.5 * (_kl_loop(p, m) + _kl_loop(q, m))
  np.testing.assert_allclose(divergences.js(p, q), expected_js, rtol=1e-10, atol=1e-12)


def test_divergence_properties():
  rng = np.random.default_rng(1)
  p, q = _random_probs(rng, 40, 5, zeros=True), _random_probs(rng, 40, 5, zeros=True)
  np.testing.assert_allclose(divergences.kl(p, p), 0.0, atol=1e-12)
  np.testing.assert_allclose(divergences.js(p, q), divergences.js(q, p), rtol=1e-12)
  assert np.all(divergences.kl(p, q) >= -1e-12)
  assert np.all(divergences.js(p, q) <= math.log(2) + 1e-12)
  # Disjoint supports: JS reaches log 2; KL stays finite with q floored.
  a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
  np.testing.assert_allclose(divergences.js(a, b), [math.log(2)], rtol=1e-12)
  assert np.isfinite(divergences.kl(a, b)).all() and divergences.kl(a, b)[0] > 100


def test_phi_plot_writes_a_png(tmp_path):
  path = tmp_path / "hist.png"
  distributions_evaluator.plot_phi({"original": np.array([0.9, 3.0]), "retrain": np.array([-5.0])},
                                   path, title="t")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
