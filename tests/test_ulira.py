"""Tests of jaxunlearn.audits.ulira: U-LiRA on synthetic phi populations."""

import json

import numpy as np
import pytest

from jaxunlearn.audits import ulira
from jaxunlearn.errors import ConfigError


def _population(rng, models=64, examples=300, shift=0.0, forget=0.2):
  """Models each keep a random half of the pool and unlearn a fifth of it.

  phi = per-example level + per-example scale x noise. IN pairs (kept, then
  unlearned) are moved up by ``shift`` x scale: 0 is the retrain control (an
  exact unlearner), > 0 an unlearner that leaves memorisation behind. Kept
  and retained pairs are moved too; U-LiRA must ignore them.
  """
  keep = rng.random((models, examples)) < 0.5
  in_mask = keep & (rng.random((models, examples)) < forget)
  out_mask = ~keep
  scale = rng.uniform(0.5, 2.0, examples)
  phi = rng.normal(0.0, 3.0, examples) + scale * rng.normal(size=(models, examples))
  phi += scale * (shift * in_mask + 1.0 * (keep & ~in_mask))
  return phi, in_mask, out_mask


# --- ROC metrics against hand counts ------------------------------------------------------


def test_roc_metrics_against_hand_example():
  pos = [3.0, 2.0, 2.0, 0.0]
  neg = [2.0, 1.0, 0.0, 0.0, -1.0]
  # "positive iff score >= tau" at tau = 3, 2, 1, 0, -1.
  fpr, tpr = ulira.roc_curve(pos, neg)
  np.testing.assert_allclose(fpr, [0, 0, 0.2, 0.4, 0.8, 1.0])
  np.testing.assert_allclose(tpr, [0, 0.25, 0.75, 0.75, 1.0, 1.0])
  # 20 pairs: 3 beats 5; each 2 beats 4 and ties 1; 0 beats 1 and ties 2.
  assert ulira.auc(pos, neg) == pytest.approx(16 / 20)
  # Best at tau = 2: 1 - (0.2 + 0.25) / 2.
  assert ulira.balanced_accuracy(pos, neg) == pytest.approx(0.775)
  # FPR strictly below the bound: 0.2 is not below 0.2.
  assert ulira.tpr_at_fpr(pos, neg, 0.25) == pytest.approx(0.75)
  assert ulira.tpr_at_fpr(pos, neg, 0.2) == pytest.approx(0.25)
  assert ulira.tpr_at_fpr(pos, neg, 0.01) == pytest.approx(0.25)
  assert ulira.auc([1.0, 2.0], [0.0]) == 1.0 and ulira.balanced_accuracy([1.0, 2.0], [0.0]) == 1.0
  assert ulira.auc([1.0], [1.0, 1.0]) == 0.5 and ulira.balanced_accuracy([1.0], [1.0]) == 0.5
  assert ulira.tpr_at_fpr([1.0], [2.0], 0.5) == 0.0
  with pytest.raises(ConfigError, match="need positive and negative"):
    ulira.auc([], [1.0])


# --- the two controls --------------------------------------------------------------------------


# Retrain control over 20 seeds (64 models x 300 examples, ~1,950 IN and
# ~9,500 OUT pairs): AUC 0.498-0.500 mean, SD 0.012, range 0.47-0.53;
# balanced accuracy mean 0.51 (a max over thresholds, so above 0.5), SD 0.006,
# at most 0.525. The bounds below are 4 SD from the mean or more.
@pytest.mark.parametrize("fixed_variance", [True, False])
def test_retrain_control_is_at_chance(fixed_variance):
  phi, in_mask, out_mask = _population(np.random.default_rng(0))
  r = ulira.ulira(phi, in_mask, out_mask, fixed_variance=fixed_variance)
  assert r["holdout"] == "leave-one-out" and r["fixed_variance"] is fixed_variance
  assert abs(r["auc"] - 0.5) < 0.05
  assert 0.5 <= r["balanced_accuracy"] < 0.55
  assert abs(r["accuracy_at_zero"] - 0.5) < 0.05
  assert r["tpr_at_1pct_fpr"] < 0.03
  assert r["n_positive"] > 1500 and r["n_negative"] > 8000
  json.dumps(r)  # JSON-ready


def test_identity_control_is_detected():
  # Shift 1.5 sigma over 5 seeds: AUC 0.82-0.83, balanced accuracy 0.76-0.77,
  # TPR at 1 % FPR 0.12-0.13, 93-95 % of examples above 0.6 accuracy.
  phi, in_mask, out_mask = _population(np.random.default_rng(1), shift=1.5)
  r = ulira.ulira(phi, in_mask, out_mask)
  assert r["auc"] > 0.75 and r["balanced_accuracy"] > 0.7
  assert r["tpr_at_1pct_fpr"] > 0.06
  assert r["frac_examples_above_threshold"] > 0.8
  assert r["per_example_separation_median"] > 1.0
  control = ulira.ulira(*_population(np.random.default_rng(1)))
  assert control["per_example_separation_median"] < 0.6
  assert control["frac_examples_above_threshold"] < r["frac_examples_above_threshold"] - 0.4


# --- the target never fits its own Gaussians ----------------------------------------------------


def _leaky_auc(phi, in_mask, out_mask, fixed_variance):
  """U-LiRA done wrong: one fit on all models, the targets included."""
  fit = ulira.fit_gaussians(phi, in_mask, out_mask)
  sd_in, sd_out = ((fit["pooled_sd"],) * 2 if fixed_variance else (fit["sd_in"], fit["sd_out"]))
  llr = ulira.log_likelihood_ratio(phi, fit["mu_in"], sd_in, fit["mu_out"], sd_out)
  ok = (fit["k_in"] >= 2) & (fit["k_out"] >= 2)
  return ulira.auc(llr[in_mask & ok], llr[out_mask & ok])


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_target_held_out_keeps_the_retrain_control_at_chance(fixed_variance):
  # Few IN observations per example (~5): a target inside its own fit pulls
  # the Gaussian of its side towards itself. Over 3 seeds the leaky AUC was
  # 0.64-0.70 while the held-out one stayed within 0.49-0.52.
  phi, in_mask, out_mask = _population(np.random.default_rng(2), models=48, examples=200)
  held_out = ulira.ulira(phi, in_mask, out_mask, fixed_variance=fixed_variance)["auc"]
  assert abs(held_out - 0.5) < 0.05
  assert _leaky_auc(phi, in_mask, out_mask, fixed_variance) > 0.6


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_leave_one_out_is_exact(fixed_variance):
  rng = np.random.default_rng(3)
  phi, in_mask, out_mask = _population(rng, models=12, examples=15, forget=0.4)
  phi[3, :] = phi[5, :]  # ties between models
  fast = ulira.ulira_scores(phi, in_mask, out_mask, fixed_variance=fixed_variance)
  # One refit per model, the model left out: the vectorised path must agree.
  slow = ulira.ulira_scores(phi, in_mask, out_mask, groups=np.arange(12),
                            fixed_variance=fixed_variance)
  assert fast["holdout"] == "leave-one-out" and slow["holdout"] == "leave-one-group-out"
  np.testing.assert_array_equal(fast["positive"], slow["positive"])
  np.testing.assert_array_equal(fast["negative"], slow["negative"])
  np.testing.assert_allclose(fast["scores"], slow["scores"], rtol=1e-9, equal_nan=True)
  # And one pair by hand with numpy's median and std.
  m, x = np.argwhere(fast["positive"])[0]
  others = np.arange(12) != m
  ins, outs = phi[others & in_mask[:, x], x], phi[others & out_mask[:, x], x]
  sd_in, sd_out = np.std(ins), np.std(outs)
  if fixed_variance:  # pooled over both sides of all examples, model m left out
    ss, dof = 0.0, 0
    for mask in (in_mask, out_mask):
      for col in range(15):
        v = phi[others & mask[:, col], col]
        ss += float(((v - v.mean()) ** 2).sum()) if v.size else 0.0
        dof += max(v.size - 1, 0)
    sd_in = sd_out = np.sqrt(ss / dof)
  want = ulira.log_likelihood_ratio(phi[m, x], np.median(ins), sd_in, np.median(outs), sd_out)
  assert fast["scores"][m, x] == pytest.approx(want, rel=1e-9)


def test_groups_keep_correlated_siblings_out_of_each_others_fits():
  # 24 originals x 4 unlearned copies; copies share the original's noise.
  # With the retrain control, leaving out only the target lets its siblings
  # stand in for it (AUC 0.55-0.59 over 3 seeds); leaving out the group does
  # not (0.47-0.53).
  rng = np.random.default_rng(0)
  originals, copies, examples = 24, 4, 200
  groups = np.repeat(np.arange(originals), copies)
  keep = (rng.random((originals, examples)) < 0.5)[groups]
  in_mask = keep & (rng.random((originals * copies, examples)) < 0.25)
  out_mask = ~keep
  phi = (rng.normal(0, 3, examples) + rng.normal(size=(originals, examples))[groups]
         + 0.1 * rng.normal(size=(originals * copies, examples)))
  assert ulira.ulira(phi, in_mask, out_mask)["auc"] > 0.55
  grouped = ulira.ulira(phi, in_mask, out_mask, groups=groups)
  assert grouped["holdout"] == "leave-one-group-out"
  assert abs(grouped["auc"] - 0.5) < 0.05


def test_disjoint_targets():
  phi, in_mask, out_mask = _population(np.random.default_rng(4), models=80, shift=1.5)
  targets = np.arange(60, 80)
  out = ulira.ulira_scores(phi, in_mask, out_mask, target_ids=targets, fixed_variance=False)
  assert out["holdout"] == "disjoint"
  assert np.all(np.isnan(out["scores"][:60]))
  assert not (out["positive"][:60].any() or out["negative"][:60].any())
  fit = ulira.fit_gaussians(phi, in_mask, out_mask, use=np.arange(80) < 60)
  x = 7
  assert fit["mu_in"][x] == pytest.approx(np.median(phi[:60][in_mask[:60, x], x]))
  assert fit["sd_out"][x] == pytest.approx(np.std(phi[:60][out_mask[:60, x], x]))
  m = 60 + int(np.argmax(in_mask[60:, x] | out_mask[60:, x]))
  want = ulira.log_likelihood_ratio(phi[m, x], fit["mu_in"][x], fit["sd_in"][x],
                                    fit["mu_out"][x], fit["sd_out"][x])
  assert out["scores"][m, x] == pytest.approx(want)
  r = ulira.ulira(phi, in_mask, out_mask, target_ids=targets)
  assert r["auc"] > 0.75
  # Groups of targets take their siblings out of the shadows as well.
  groups = np.arange(80) // 2
  with pytest.raises(ConfigError, match="no shadow models"):
    ulira.ulira(phi, in_mask, out_mask, target_ids=np.arange(0, 80, 2), groups=groups)


def test_pooled_sd_and_auto_variance():
  phi = np.array([[0.0, 5.0], [2.0, 9.0], [1.0, 7.0], [3.0, 4.0]])
  in_mask = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
  out_mask = np.array([[0, 1], [0, 1], [1, 0], [1, 0]], bool)
  fit = ulira.fit_gaussians(phi, in_mask, out_mask)
  # Four samples of two: squared deviations 2 + 2 + 4.5 + 8 over 4 degrees of freedom.
  assert fit["pooled_sd"] == pytest.approx(np.sqrt(16.5 / 4))
  np.testing.assert_allclose(fit["mu_in"], [1.0, 5.5])
  np.testing.assert_allclose(fit["sd_out"], [1.0, 2.0])
  # Auto: fixed variance below 64 observations per side (median over examples).
  few = _population(np.random.default_rng(5), models=64, examples=20)
  assert ulira.ulira_scores(*few)["fixed_variance"] is True
  many = _population(np.random.default_rng(5), models=300, examples=20, forget=0.6)
  assert ulira.ulira_scores(*many)["fixed_variance"] is False


def test_bad_input():
  phi, in_mask, out_mask = _population(np.random.default_rng(6), models=8, examples=5)
  with pytest.raises(ConfigError, match="both in_mask and out_mask"):
    ulira.ulira(phi, in_mask, in_mask | out_mask)
  with pytest.raises(ConfigError, match="must match"):
    ulira.ulira(phi, in_mask[:, :4], out_mask)
  with pytest.raises(ConfigError, match="boolean"):
    ulira.ulira(phi, in_mask.astype(int), out_mask)
  bad = phi.copy()
  bad[out_mask] = np.nan
  with pytest.raises(ConfigError, match="non-finite"):
    ulira.ulira(bad, in_mask, out_mask)
  with pytest.raises(ConfigError, match="target_ids"):
    ulira.ulira(phi, in_mask, out_mask, target_ids=[8])
  with pytest.raises(ConfigError, match="fixed_variance"):
    ulira.ulira(phi, in_mask, out_mask, fixed_variance="yes")
  with pytest.raises(ConfigError, match="scored 0 IN"):
    ulira.ulira(phi, np.zeros_like(in_mask), out_mask)


def test_permuted_masks_keep_each_examples_labelled_models_and_in_count():
  rng = np.random.default_rng(0)
  in_mask = rng.random((20, 7)) < 0.3
  out_mask = ~in_mask & (rng.random((20, 7)) < 0.6)
  p_in, p_out = ulira.permuted_masks(in_mask, out_mask, np.random.default_rng(1))
  np.testing.assert_array_equal(p_in | p_out, in_mask | out_mask)
  np.testing.assert_array_equal(p_in.sum(0), in_mask.sum(0))
  assert not np.any(p_in & p_out) and not np.array_equal(p_in, in_mask)


def test_the_permutation_null_sits_far_below_a_real_signal_and_covers_noise():
  rng = np.random.default_rng(0)
  m, n = 24, 30
  groups = np.arange(m) // 2
  in_mask = np.zeros((m, n), bool)
  for x in range(n):
    in_mask[rng.permutation(m)[: m // 3], x] = True
  out_mask = ~in_mask
  noise = rng.normal(size=(m, n))
  signal = noise + 3.0 * in_mask
  real = ulira.ulira(signal, in_mask, out_mask, groups=groups)["balanced_accuracy"]
  null = ulira.permutation_null(signal, in_mask, out_mask, groups=groups, permutations=100)
  assert null["null_permutations"] == 100
  assert null["null_balanced_acc_mean"] < null["null_balanced_acc_q99"] < 0.65 < 0.9 < real
  chance = ulira.ulira(noise, in_mask, out_mask, groups=groups)["balanced_accuracy"]
  null = ulira.permutation_null(noise, in_mask, out_mask, groups=groups, permutations=100)
  assert chance <= null["null_balanced_acc_q99"] + 0.02
