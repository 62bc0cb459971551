"""Tests of jaxunlearn.audits.epsilon: the NeurIPS-2023 per-example epsilon score."""

import math

import numpy as np
import pytest

from jaxunlearn.audits import epsilon
from jaxunlearn.errors import ConfigError

DELTA = 1e-5


# --- a slow, literal reading of the organisers' metric.py (docs/audits.md) --------------


def _rule_eps(tpr, fnr, fpr, tnr, delta):
  """Epsilon of each rule from its rates; NaN marks a discarded rule."""
  with np.errstate(divide="ignore", invalid="ignore"):
    eps = np.clip(np.fmax(np.log(1 - delta - fpr) - np.log(fnr),
                          np.log(1 - delta - fnr) - np.log(fpr)), 0, None)
  perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
  one_zero = (fpr * fnr == 0) & ~perfect
  return np.where(perfect, np.inf, np.where(one_zero, np.nan, eps))


def _literal_eps(u, r, delta=DELTA):
  """One example's epsilon: every rule materialised, rates as means over models."""
  pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
  pos_range, neg_range = np.ptp(pos), np.ptp(neg)
  with np.errstate(divide="ignore", invalid="ignore"):
    if min(pos_range, neg_range) / max(pos_range, neg_range) < 0.01:
      return 50.0
  rates = []
  # Single threshold over the pooled range: predict positive iff phi >= t.
  pooled = np.concatenate([pos, neg])
  lo, hi = pooled.min(), pooled.max()
  for t in np.linspace(lo, hi, int(np.ceil((hi - lo) * 100))):
    rates.append((np.mean(pos >= t), np.mean(pos < t), np.mean(neg >= t), np.mean(neg < t)))
  # Double threshold: the peakier set is positive, predict it iff l <= phi <= r.
  peaky, other = (neg, pos) if pos_range >= neg_range else (pos, neg)
  w = min(pos_range, neg_range)
  r_lo, r_hi = peaky.min() + w - 2.0, peaky.max() + 2.0
  for right in np.linspace(r_lo, r_hi, int(np.ceil((r_hi - r_lo) * 100))):
    left = np.linspace(right - w - 2.0, right - w + 2.0, 400)[:, None]
    in_peaky = (left <= peaky) & (peaky <= right)
    in_other = (left <= other) & (other <= right)
    rates.extend(zip(in_peaky.mean(1), (~in_peaky).mean(1), in_other.mean(1),
                     (~in_other).mean(1)))
  tpr, fnr, fpr, tnr = np.array(rates).T
  eps = _rule_eps(tpr, fnr, fpr, tnr, delta)
  eps = eps[~np.isnan(eps)]
  return float(np.clip(eps.max(), 0, 50)) if eps.size else 50.0


def _grid_ties(u, r, rng, k=4):
  """Moves interior samples onto threshold values without changing any grid.

  The grids depend only on each set's min and max, so samples replaced by grid
  values strictly inside their own set's range leave them unchanged.
  """
  u, r = u.copy(), r.copy()
  pooled = np.concatenate([u, r])
  grids = [np.linspace(pooled.min(), pooled.max(), int(np.ceil(np.ptp(pooled) * 100)))]
  peaky = u if np.ptp(u) < np.ptp(r) else r
  w = min(np.ptp(u), np.ptp(r))
  rights = np.linspace(peaky.min() + w - 2, peaky.max() + 2,
                       int(np.ceil((peaky.max() + 2 - (peaky.min() + w - 2)) * 100)))
  grids += [rights, np.linspace(rights[7] - w - 2, rights[7] - w + 2, 400)]
  for x in (u, r):
    interior = np.flatnonzero((x > x.min()) & (x < x.max()))
    for grid in grids:
      inside = grid[(grid > x.min()) & (grid < x.max())]
      idx = rng.choice(interior, size=min(k, len(interior)), replace=False)
      x[idx] = rng.choice(inside, size=len(idx))
  return u, r


def test_vectorized_matches_literal_reference():
  rng = np.random.default_rng(0)
  cases = [
      (rng.normal(0, 0.5, 20), rng.normal(0.3, 0.7, 20)),          # r wider, larger median
      (rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 13)),        # unequal model counts
      _grid_ties(rng.normal(0, 0.6, 24), rng.normal(0.2, 0.4, 24), rng),  # phi on thresholds
      (np.array([0.0, 1, 2, 3, 4]), np.array([4.0, 3, 2, 1, 0])),    # same median, same range
      (rng.normal(0, 3.0, 12), rng.normal(5.0, 0.3, 12)),          # ~15-unit pooled range
  ]
  for u, r in cases:
    want = np.array([_literal_eps(u, r)])
    got = epsilon.per_example_epsilon(u[:, None], r[:, None])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
  # Several columns at once give the same values as one at a time.
  u = rng.normal(0, 1, (16, 3)) * [1.0, 0.5, 2.0]
  r = rng.normal(0, 1, (16, 3)) + [0.0, 0.5, -1.0]
  want = [_literal_eps(u[:, i], r[:, i]) for i in range(3)]
  np.testing.assert_allclose(epsilon.per_example_epsilon(u, r), want, rtol=1e-12)


def test_tie_and_orientation_conventions():
  # Each column is a case where one convention decides the value (found by
  # flipping it and searching small samples); the comment gives the value the
  # flipped convention would give.
  t30 = np.linspace(0.0, 1.0, 100)[30]  # a single-threshold grid point
  cases = [
      # phi >= t, not phi > t: at t = t30 the retrained sample t30 counts as
      # positive, so the one separating threshold is lost (flipped: 50).
      ([t30 + 1e-4, 0.6, 0.8, 1.0], [0.0, 0.1, 0.2, t30], math.log(3 - 4 * DELTA)),
      # l <= phi (flipped: log 3).
      ([0.0, 1.0, 0.22305764411027562, 0.162907268170426],
       [-0.5, 1.6, 0.16040100250626566, 0.16040100250626566], math.log(2 - 4 * DELTA)),
      # phi <= r (flipped: 50).
      ([-0.5, 1.6, 1.0050125313283207, 2.12531328320802],
       [0.0, 1.0, 0.6240601503759398, 0.35338345864661647], math.log(3 - 4 * DELTA)),
      # Equal ranges: the smaller-median set is the peaky one (flipped: log 3).
      ([0.0, 2.0, 0.75, 0.0], [-0.5, 1.5, -0.5, -0.25], math.log(2 - 4 * DELTA)),
      # Equal medians: the unlearned set is positive (flipped: log 2).
      ([1.0, 2.0, 0.5, 2.75], [1.25, 1.75, 1.0, 3.25], math.log(3 - 4 * DELTA)),
  ]
  u = np.array([c[0] for c in cases]).T
  r = np.array([c[1] for c in cases]).T
  got = epsilon.per_example_epsilon(u, r)
  literal = [_literal_eps(u[:, i], r[:, i]) for i in range(len(cases))]
  np.testing.assert_allclose(got, literal, rtol=1e-12)
  np.testing.assert_allclose(got, [c[2] for c in cases], rtol=1e-12)


# --- calibration: identical, shifted and narrowed populations --------------------------


# N = 512 unlearned and retrained models, both N(0, 1) unless shifted or
# narrowed. Table values are the spec's simulation with 40 examples per row.
# Measured here over 1,000 examples: F = 0.186 / 0.0165 / 0.0033, per-example
# points SD = 0.107 / 0.0106 / 0.0012. So F's standard error is SD / sqrt(n):
# 0.0169 / 0.0017 / 0.00019 for the table's 40 examples and 0.0076 / 0.00075 /
# 0.000085 for our 200. The tolerance is 3 x the SE of the difference,
# 3 * sqrt(SE_40**2 + SE_200**2). Median eps (table 1.61 / 3.30 / 4.44) is
# steadier for the shifted and narrow rows (4 seeds: 3.40-3.43, 4.42-4.45);
# in the oracle row it sits between log 4 and log 5.
CALIBRATION = [
    # name, unlearned mean, unlearned SD, table F, F tolerance, median eps range
    ("identical", 0.0, 1.0, 0.17, 0.055, (1.35, 1.65)),
    ("1-sigma shift", 1.0, 1.0, 0.019, 0.0055, (3.15, 3.55)),
    ("half width", 0.0, 0.5, 0.003, 0.00062, (4.3, 4.6)),
]


@pytest.mark.parametrize("name,mean,sd,table_f,tol,eps_range", CALIBRATION)
def test_calibration_table(name, mean, sd, table_f, tol, eps_range):
  rng = np.random.default_rng(7)
  unlearned = rng.normal(mean, sd, (512, 200))
  retrained = rng.normal(0.0, 1.0, (512, 200))
  report = epsilon.epsilon_report(unlearned, retrained)
  assert abs(report["forgetting_quality"] - table_f) < tol, (name, report["forgetting_quality"])
  assert eps_range[0] < report["eps_median"] < eps_range[1], (name, report["eps_median"])
  assert report["n_degenerate"] == 0 and report["max_epsilon"] == 7


# --- edge cases -------------------------------------------------------------------------


def test_rule_table_special_cases():
  table = epsilon.rule_epsilon_table(4, 5, DELTA)
  assert table.shape == (5, 6)
  assert table[4, 0] == np.inf                          # FPR = FNR = 0
  assert np.all(table[4, 1:] == -np.inf)                # FNR = 0 only: discarded
  assert np.all(table[:4, 0] == -np.inf)                # FPR = 0 only: discarded
  assert table[0, 5] == -np.inf                         # both logs of negatives: discarded
  # 3 of 4 positives and 1 of 5 negatives: FNR = 1/4, FPR = 1/5; the second
  # term, log((1 - delta - 1/4) / (1/5)) = 1.32, beats log((1 - delta - 1/5) / (1/4)).
  assert table[3, 1] == pytest.approx(math.log((1 - DELTA - 0.25) / 0.2), rel=1e-12)
  assert table[2, 2] == pytest.approx(max(math.log((1 - DELTA - 0.4) / 0.5),
                                          math.log((1 - DELTA - 0.5) / 0.4)), rel=1e-12)
  assert table[1, 4] == 0.0                             # negative epsilon clipped to 0


def test_one_zero_rate_rules_are_discarded():
  # Interleaved samples r0 < u0 < r1 < ... < u3: every rule catches as many
  # unlearned as retrained samples, give or take one. The best surviving rules
  # have (FNR, FPR) = (1/2, 1/4) or (1/4, 1/2): eps = log((1/2 - delta) / (1/4)).
  # Counting a rule with FNR = 0 and FPR = 3/4 instead would give
  # log(1/4 - delta) - log(0) = inf, i.e. 50.
  r = np.array([0.0, 1.0, 2.0, 3.0])
  u = r + 0.3
  (eps,) = epsilon.per_example_epsilon(u[:, None], r[:, None])
  assert eps == pytest.approx(math.log((0.5 - DELTA) / 0.25), rel=1e-12)


def test_perfect_separation_is_capped_at_50():
  rng = np.random.default_rng(1)
  r = rng.normal(0, 1, (8, 2))
  u = r + 10.0
  d = epsilon.epsilon_details(u, r)
  np.testing.assert_array_equal(d["eps"], [50.0, 50.0])
  assert not d["degenerate"].any() and not d["no_rule"].any()
  np.testing.assert_array_equal(epsilon.epsilon_points(d["eps"], 8), [0.0, 0.0])


def test_degenerate_spread_gives_50_and_no_points():
  rng = np.random.default_rng(2)
  r = rng.normal(0, 1, (64, 3))
  u = rng.normal(0, 1, (64, 3))
  u[:, 0] = 0.1 + 1e-4 * rng.normal(size=64)            # range ratio ~ 1e-4
  d = epsilon.epsilon_details(u, r)
  np.testing.assert_array_equal(d["degenerate"], [True, False, False])
  assert d["eps"][0] == 50.0 and d["eps"][1] < 50
  report = epsilon.epsilon_report(u, r)
  assert report["points"][0] == 0.0 and report["n_degenerate"] == 1


def test_no_surviving_rule_gives_the_cap():
  # Both samples constant and equal: every rule has FNR = 0 xor FPR = 0, or
  # both logs undefined. The organisers' code fails an assertion here.
  d = epsilon.epsilon_details(np.full((5, 1), 2.0), np.full((5, 1), 2.0))
  assert d["eps"][0] == 50.0 and d["no_rule"][0] and not d["degenerate"][0]


# --- points and final score --------------------------------------------------------------


def test_binning_against_hand_computation():
  assert epsilon.max_epsilon(512) == 7.0                # ceil(ln 511) = ceil(6.236)
  assert epsilon.max_epsilon(64) == 5.0                 # ceil(ln 63) = ceil(4.143)
  assert epsilon.max_epsilon(2) == 0.0
  eps = np.array([0.0, 0.49, 0.5, 1.2, 6.49, 6.5, 6.99, 7.0, 50.0])
  want = [1.0, 1.0, 0.5, 0.25, 2.0 ** -12, 2.0 ** -13, 2.0 ** -13, 0.0, 0.0]
  np.testing.assert_array_equal(epsilon.epsilon_points(eps, 512), want)
  assert epsilon.forgetting_quality(eps, 512) == pytest.approx(sum(want) / 9)
  # N = 64: 10 buckets, the last [4.5, 5).
  np.testing.assert_array_equal(epsilon.epsilon_points([4.9, 5.0], 64), [2.0 ** -9, 0.0])
  np.testing.assert_array_equal(epsilon.epsilon_points([0.0], 2), [0.0])
  with pytest.raises(ConfigError, match="non-negative"):
    epsilon.epsilon_points([-0.1], 512)


def test_final_score_against_hand_computation():
  # F * (0.8 / 0.9) * (0.75 / 0.5); per-model accuracies are averaged first.
  got = epsilon.final_score(0.2, [0.7, 0.9], 0.9, [0.75], [0.4, 0.6])
  assert got == pytest.approx(0.2 * (0.8 / 0.9) * (0.75 / 0.5), rel=1e-12)
  assert got > 0.2                                      # the ratios are not clipped
  with pytest.raises(ConfigError, match="must be positive"):
    epsilon.final_score(0.2, 0.8, 0.0, 0.7, 0.7)
  rng = np.random.default_rng(3)
  u, r = rng.normal(size=(16, 4)), rng.normal(size=(16, 4))
  report = epsilon.epsilon_report(u, r, remain_acc_unlearned=0.9, remain_acc_retrained=1.0,
                                  test_acc_unlearned=0.8, test_acc_retrained=0.8)
  assert report["final_score"] == pytest.approx(report["forgetting_quality"] * 0.9)
  assert report["forgetting_quality"] == pytest.approx(np.mean(report["points"]))
  with pytest.raises(ConfigError, match="all four accuracies"):
    epsilon.epsilon_report(u, r, remain_acc_unlearned=0.9)


def test_bad_input():
  good = np.zeros((4, 3))
  with pytest.raises(ConfigError, match="num_models, num_examples"):
    epsilon.per_example_epsilon(np.zeros(4), good)
  with pytest.raises(ConfigError, match="2 examples but retrained_phi has 3"):
    epsilon.per_example_epsilon(np.zeros((4, 2)), good)
  with pytest.raises(ConfigError, match="non-finite"):
    epsilon.per_example_epsilon(np.full((4, 3), np.nan), good)
  with pytest.raises(ConfigError, match="at least 2 models"):
    epsilon.per_example_epsilon(np.zeros((1, 3)), good)
