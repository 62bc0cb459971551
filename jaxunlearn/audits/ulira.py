"""U-LiRA: the per-example likelihood-ratio unlearning membership attack.

Hayes et al. (arXiv 2403.01218) run LiRA-online (Carlini et al. 2022,
tensorflow/privacy research/mi_lira_2021) on unlearned models
(docs/audits.md). The input is a phi matrix
``[M, n_pool]`` of ``M`` models on a pool of examples and two masks:

* ``in_mask[m, x]``: model ``m`` was trained on ``x`` and then unlearned it
  (``x`` was in its forget set);
* ``out_mask[m, x]``: model ``m`` never trained on ``x``.

Pairs in neither mask (trained on and kept) play no part. For each example
two Gaussians are fitted to the phi of the shadow models, the IN one and the
OUT one, with ``mu = median`` and ``sigma = std + 1e-30`` (LiRA's
``plot.py::generate_ours``). A target model's score on ``x`` is the log
likelihood ratio

    Lambda = log N(phi; mu_in, sigma_in^2) - log N(phi; mu_out, sigma_out^2),

large when ``x`` looks trained on. Every (target, example) pair in one of the
masks is pooled: positives are the target's IN pairs, negatives its OUT
pairs, and :func:`ulira` reports the ROC AUC, the balanced accuracy
``max_tau [1 - (FPR + FNR) / 2]``, the TPR at 1 % and 0.1 % FPR, and the
per-example spread. All of these are class-conditional rates, so they weigh
positives and negatives equally whatever their counts (exact balancing, no
subsampling).

The target is never part of its own fit. Three ways (``holdout``):

* ``leave-one-out`` (default): every model is a target and its Gaussians
  are fitted on all other models. Exact and vectorised: the median without
  one value is read off the sorted column at a shifted index, and the
  standard deviation without it follows from the column's sum of squares.
* ``leave-one-group-out`` (``groups``): models that share a group (e.g. the
  unlearned copies of one original model, whose phi are correlated) are
  left out together; one fit per group, each vectorised over examples.
* ``disjoint`` (``target_ids``): the given models are the targets and one
  fit on the remaining models (minus the targets' groups) scores them all,
  as LiRA's ``ntest`` hold-out does.

Fixed variance (``fixed_variance``): with few observations per side the
per-example standard deviation is noisy, and LiRA's README recommends one
global variance. Here that is the pooled within-example variance of all
shadow observations, IN and OUT together: the sum of squared deviations
from each (example, side) mean over the sum of ``count - 1``; one ``sigma``
for both sides of every example. (LiRA's ``fix_variance`` takes
``np.std`` of all IN values without centring per example, which mixes the
spread between examples into sigma, and uses it for the OUT side too; that
is not copied.) Under leave-one-out the target's own observations are taken
out of the pooled variance as well. ``"auto"`` (default) uses it when the
median over examples of the smaller of the two observation counts is below
64 (LiRA's README: fixed variance works best with few shadow models).
"""

from __future__ import annotations

import math
import sys

import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, report
from jaxunlearn.audits import base
from jaxunlearn.errors import ConfigError

SIGMA_FLOOR = 1e-30
AUTO_FIXED_VARIANCE_BELOW = 64
HOLDOUTS = ("leave-one-out", "leave-one-group-out", "disjoint")


# --- ROC of pooled scores --------------------------------------------------------------------


def _scores_pair(pos, neg):
  pos = np.asarray(pos, np.float64).ravel()
  neg = np.asarray(neg, np.float64).ravel()
  if pos.size == 0 or neg.size == 0:
    raise ConfigError(f"need positive and negative scores, got {pos.size} and {neg.size}")
  if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
    raise ConfigError("attack scores must be finite")
  return pos, neg


def roc_curve(pos_scores, neg_scores) -> tuple[np.ndarray, np.ndarray]:
  """ROC of the rule "positive iff score >= tau" over every distinct tau.

  Args:
    pos_scores: scores of the positives (here: IN pairs).
    neg_scores: scores of the negatives (OUT pairs).

  Returns:
    ``(fpr, tpr)``, increasing, from ``(0, 0)`` (tau above every score) to
    ``(1, 1)``; tied scores move both rates in one step.
  """
  pos, neg = _scores_pair(pos_scores, neg_scores)
  scores = np.concatenate([pos, neg])
  is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
  order = np.argsort(-scores, kind="stable")
  scores, is_pos = scores[order], is_pos[order]
  last_of_tie = np.r_[scores[1:] != scores[:-1], True]
  tp = np.cumsum(is_pos)[last_of_tie]
  fp = np.cumsum(1 - is_pos)[last_of_tie]
  return np.r_[0.0, fp / neg.size], np.r_[0.0, tp / pos.size]


def auc(pos_scores, neg_scores) -> float:
  """Area under the ROC: P(positive > negative) + P(tie) / 2."""
  fpr, tpr = roc_curve(pos_scores, neg_scores)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def balanced_accuracy(pos_scores, neg_scores) -> float:
  """``max_tau [1 - (FPR + FNR) / 2]``; at least 0.5 (the rule that says "no" always)."""
  fpr, tpr = roc_curve(pos_scores, neg_scores)
  return float(np.max(1 - (fpr + 1 - tpr) / 2))


def tpr_at_fpr(pos_scores, neg_scores, max_fpr: float) -> float:
  """Largest TPR over thresholds whose FPR is strictly below ``max_fpr`` (as LiRA)."""
  fpr, tpr = roc_curve(pos_scores, neg_scores)
  return float(np.max(tpr[fpr < max_fpr]))


# --- Gaussian fits -------------------------------------------------------------------------------


def _sorted_columns(phi, mask):
  """Each column's masked values sorted (the rest ``+inf``, last) and each entry's rank."""
  vals = np.where(mask, phi, np.inf)
  order = np.argsort(vals, axis=0, kind="stable")
  rank = np.empty_like(order)
  np.put_along_axis(rank, order, np.arange(phi.shape[0])[:, None], axis=0)
  return np.take_along_axis(vals, order, axis=0), rank


def _median(sorted_vals, count):
  """``[n]`` median of the first ``count`` sorted values of each column (NaN if none)."""
  m, n = sorted_vals.shape
  cols = np.arange(n)
  lo = np.clip((count - 1) // 2, 0, m - 1)
  hi = np.clip(count // 2, 0, m - 1)
  med = (sorted_vals[lo, cols] + sorted_vals[hi, cols]) / 2
  return np.where(count >= 1, med, np.nan)


def _median_without(sorted_vals, count, rank):
  """``[M, n]``: column medians as :func:`_median`, leaving out the value at ``rank``.

  Without the value at sorted position ``j`` the remaining values are
  ``s[i]`` for ``i < j`` and ``s[i + 1]`` from there on, so the median of the
  ``count - 1`` that remain is read at indices shifted past ``j``.
  """
  m = sorted_vals.shape[0]
  left = count - 1
  lo = (left - 1) // 2
  hi = left // 2
  lo = np.clip(lo + (lo >= rank), 0, m - 1)
  hi = np.clip(hi + (hi >= rank), 0, m - 1)
  med = (np.take_along_axis(sorted_vals, lo, 0) + np.take_along_axis(sorted_vals, hi, 0)) / 2
  return np.where(left >= 1, med, np.nan)


def _side_stats(phi, mask):
  """Count, mean and sum of squared deviations of each column's masked values."""
  count = mask.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(mask, phi, 0.0).sum(0) / count
    ss = np.where(mask, (phi - mean) ** 2, 0.0).sum(0)
  return count, mean, ss


def fit_gaussians(phi: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray,
                  use: np.ndarray | None = None) -> dict:
  """Per-example IN and OUT Gaussians from the models in ``use``.

  Args:
    phi: ``[M, n]`` phi of every model on every example.
    in_mask: ``[M, n]`` bool, model trained on and then unlearned the example.
    out_mask: ``[M, n]`` bool, model never trained on the example.
    use: ``[M]`` bool, the shadow models to fit on (default: all).

  Returns:
    dict of ``[n]`` arrays ``mu_in``, ``sd_in``, ``k_in``, ``mu_out``,
    ``sd_out``, ``k_out`` (median, population std, count; NaN where the count
    is 0) and ``pooled_sd``, the fixed-variance sigma (a float).
  """
  phi, in_mask, out_mask = _check_inputs(phi, in_mask, out_mask)
  if use is not None:
    use = np.asarray(use)
    if use.shape != (phi.shape[0],) or use.dtype != bool:
      raise ConfigError(f"use must be a boolean [num_models] mask, got {use.dtype} "
                        f"{use.shape}")
    use = use[:, None]
    in_mask, out_mask = in_mask & use, out_mask & use
  fit = {}
  ss_total, dof_total = 0.0, 0
  for side, mask in (("in", in_mask), ("out", out_mask)):
    count, _, ss = _side_stats(phi, mask)
    sorted_vals, _ = _sorted_columns(phi, mask)
    fit[f"mu_{side}"] = _median(sorted_vals, count)
    with np.errstate(invalid="ignore", divide="ignore"):
      fit[f"sd_{side}"] = np.sqrt(ss / count)
    fit[f"k_{side}"] = count
    ss_total += float(np.nansum(ss))
    dof_total += int(np.maximum(count - 1, 0).sum())
  fit["pooled_sd"] = math.sqrt(ss_total / dof_total) if dof_total else math.nan
  return fit


def _loo_fit(phi, in_mask, out_mask):
  """Per-pair fits with the pair's own model left out: ``[M, n]`` arrays."""
  m = phi.shape[0]
  full = {}
  pooled_ss = np.zeros(m)
  pooled_dof = np.zeros(m)
  ss_total, dof_total = 0.0, 0
  for side, mask in (("in", in_mask), ("out", out_mask)):
    count, mean, ss = _side_stats(phi, mask)
    sorted_vals, rank = _sorted_columns(phi, mask)
    mu_all = _median(sorted_vals, count)
    mu_loo = _median_without(sorted_vals, count, rank)
    with np.errstate(invalid="ignore", divide="ignore"):
      sd_all = np.sqrt(ss / count)
      dev2 = (phi - mean) ** 2
      ss_loo = np.maximum(ss - dev2 * count / (count - 1), 0.0)
      sd_loo = np.sqrt(ss_loo / (count - 1))
    # A model in this side's sample is fitted without itself; others see the full fit.
    full[f"mu_{side}"] = np.where(mask, mu_loo, mu_all)
    full[f"sd_{side}"] = np.where(mask, sd_loo, sd_all)
    full[f"k_{side}"] = np.where(mask, count - 1, count)
    ss_total += float(np.nansum(ss))
    dof_total += int(np.maximum(count - 1, 0).sum())
    # Leaving one value out of a sample of k >= 2 lowers its squared deviations
    # by dev^2 k / (k - 1) and its degrees of freedom by 1.
    removable = mask & (count >= 2)
    pooled_ss += np.where(removable, dev2 * count / np.maximum(count - 1, 1), 0.0).sum(1)
    pooled_dof += removable.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    full["pooled_sd"] = np.sqrt(np.maximum(ss_total - pooled_ss, 0.0) /
                                (dof_total - pooled_dof))[:, None]
  return full


def log_likelihood_ratio(z, mu_in, sd_in, mu_out, sd_out) -> np.ndarray:
  """``log N(z; mu_in, sd_in^2) - log N(z; mu_out, sd_out^2)``, sigma floored by 1e-30."""
  sd_in = np.asarray(sd_in) + SIGMA_FLOOR
  sd_out = np.asarray(sd_out) + SIGMA_FLOOR
  return (-0.5 * ((z - mu_in) / sd_in) ** 2 - np.log(sd_in)
          + 0.5 * ((z - mu_out) / sd_out) ** 2 + np.log(sd_out))


# --- the attack -------------------------------------------------------------------------------


def _check_inputs(phi, in_mask, out_mask):
  phi = np.asarray(phi, np.float64)
  in_mask = np.asarray(in_mask)
  out_mask = np.asarray(out_mask)
  if phi.ndim != 2:
    raise ConfigError(f"phi must be [num_models, num_examples], got shape {phi.shape}")
  for name, mask in (("in_mask", in_mask), ("out_mask", out_mask)):
    if mask.shape != phi.shape:
      raise ConfigError(f"{name} has shape {mask.shape}; it must match phi's {phi.shape}")
    if mask.dtype != bool:
      raise ConfigError(f"{name} must be boolean, got dtype {mask.dtype}")
  if np.any(in_mask & out_mask):
    raise ConfigError("a (model, example) pair is in both in_mask and out_mask; an example "
                      "cannot be both unlearned by and never seen by one model")
  if not np.all(np.isfinite(phi[in_mask | out_mask])):
    raise ConfigError("phi has non-finite values in pairs of in_mask or out_mask")
  return phi, in_mask, out_mask


def _resolve_fixed(fixed_variance, k_in, k_out) -> bool:
  if fixed_variance == "auto":
    return bool(np.median(np.minimum(k_in, k_out)) < AUTO_FIXED_VARIANCE_BELOW)
  if not isinstance(fixed_variance, (bool, np.bool_)):
    raise ConfigError(f"fixed_variance must be True, False or 'auto', got {fixed_variance!r}")
  return bool(fixed_variance)


def _broadcast_fit(fit, rows):
  return {k: (v if np.ndim(v) == 0 else np.broadcast_to(v, (rows, np.shape(v)[-1])))
          for k, v in fit.items()}


def ulira_scores(phi: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray, *,
                 target_ids=None, groups=None, fixed_variance="auto",
                 min_obs: int = 2) -> dict:
  """Log likelihood ratio of every (target, example) pair, target held out of its fit.

  Args:
    phi: ``[M, n]`` phi of every model on every pool example.
    in_mask: ``[M, n]`` bool, the model trained on and then unlearned the example.
    out_mask: ``[M, n]`` bool, the model never trained on the example.
    target_ids: model indices to attack with one fit on the other models
      (``disjoint``); default: every model, each left out of its own fit.
    groups: ``[M]`` ints; models of one group (e.g. unlearned copies of one
      original) are left out of each other's fits.
    fixed_variance: True, False or ``"auto"`` (see the module docstring).
    min_obs: pairs whose fit has fewer observations on either side are not
      scored.

  Returns:
    dict with ``scores`` (``[M, n]`` float64, NaN for pairs not scored),
    ``positive`` and ``negative`` (``[M, n]`` bool, the scored IN and OUT
    pairs), ``n_unscored`` (IN/OUT pairs of targets left out for ``min_obs``),
    ``holdout``, ``fixed_variance`` (bool) and ``fit`` (:func:`fit_gaussians`
    on the shadow models: the non-targets with ``target_ids``, else all
    models; for the per-example summaries).

  Raises:
    ConfigError: bad shapes or dtypes, a pair in both masks, non-finite phi in
      a masked pair, bad ``target_ids`` or ``groups``, or no shadow models.
  """
  phi, in_mask, out_mask = _check_inputs(phi, in_mask, out_mask)
  m = phi.shape[0]
  if min_obs < 1:
    raise ConfigError(f"min_obs must be at least 1, got {min_obs}")
  if groups is not None:
    groups = np.asarray(groups)
    if groups.shape != (m,):
      raise ConfigError(f"groups must have one entry per model ({m}), got shape {groups.shape}")
  is_target = np.ones(m, bool)
  if target_ids is not None:
    target_ids = np.asarray(target_ids, int).ravel()
    if target_ids.size == 0 or target_ids.min() < 0 or target_ids.max() >= m:
      raise ConfigError(f"target_ids must be non-empty indices in [0, {m}), got {target_ids}")
    is_target = np.zeros(m, bool)
    is_target[target_ids] = True

  if target_ids is not None:
    holdout = "disjoint"
    shadows = ~is_target
    if groups is not None:
      shadows &= ~np.isin(groups, groups[is_target])
    if not shadows.any():
      raise ConfigError("no shadow models left: every model is a target or shares a group "
                        "with one")
    shadow_fit = fit_gaussians(phi, in_mask, out_mask, use=shadows)
    fixed = _resolve_fixed(fixed_variance, shadow_fit["k_in"], shadow_fit["k_out"])
    pair_fit = _broadcast_fit(shadow_fit, m)
  elif groups is not None:
    holdout = "leave-one-group-out"
    shadow_fit = fit_gaussians(phi, in_mask, out_mask)
    fixed = _resolve_fixed(fixed_variance, shadow_fit["k_in"], shadow_fit["k_out"])
    keys = ("mu_in", "sd_in", "k_in", "mu_out", "sd_out", "k_out", "pooled_sd")
    pair_fit = {k: np.full((m, phi.shape[1]), np.nan) for k in keys}
    for g in np.unique(groups):
      members = groups == g
      if members.all():
        raise ConfigError("every model is in one group: nothing left to fit on")
      fit = fit_gaussians(phi, in_mask, out_mask, use=~members)
      for k in keys:
        pair_fit[k][members] = fit[k]
  else:
    holdout = "leave-one-out"
    shadow_fit = fit_gaussians(phi, in_mask, out_mask)
    fixed = _resolve_fixed(fixed_variance, shadow_fit["k_in"], shadow_fit["k_out"])
    pair_fit = _loo_fit(phi, in_mask, out_mask)

  if fixed:
    sd_in = sd_out = pair_fit["pooled_sd"]
  else:
    sd_in, sd_out = pair_fit["sd_in"], pair_fit["sd_out"]
  enough = (pair_fit["k_in"] >= min_obs) & (pair_fit["k_out"] >= min_obs)
  scored = (in_mask | out_mask) & is_target[:, None]
  with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
    llr = log_likelihood_ratio(phi, pair_fit["mu_in"], sd_in, pair_fit["mu_out"], sd_out)
  ok = scored & enough & np.isfinite(llr)
  return {
      "scores": np.where(ok, llr, np.nan),
      "positive": ok & in_mask,
      "negative": ok & out_mask,
      "n_unscored": int((scored & ~ok).sum()),
      "holdout": holdout,
      "fixed_variance": fixed,
      "fit": shadow_fit,
  }


def _quantiles(x):
  x = x[np.isfinite(x)]
  if x.size == 0:
    return None, None
  return float(np.median(x)), float(np.quantile(x, 0.9))


def _nan_to_none(x):
  return [None if not np.isfinite(v) else float(v) for v in x]


def ulira(phi: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray, *, target_ids=None,
          groups=None, fixed_variance="auto", min_obs: int = 2,
          per_example_threshold: float = 0.6) -> dict:
  """U-LiRA on a population of unlearned models: pooled and per-example results.

  Args:
    phi: ``[M, n]`` phi of every model on every pool example.
    in_mask: ``[M, n]`` bool, the model trained on and then unlearned the example.
    out_mask: ``[M, n]`` bool, the model never trained on the example.
    target_ids: see :func:`ulira_scores`.
    groups: see :func:`ulira_scores`.
    fixed_variance: True, False or ``"auto"``.
    min_obs: see :func:`ulira_scores`.
    per_example_threshold: per-example accuracy above which an example counts
      as vulnerable.

  Returns:
    JSON-ready dict. Pooled over (target, example) pairs: ``auc``,
    ``balanced_accuracy`` (best threshold), ``accuracy_at_zero`` (balanced
    accuracy of "IN iff Lambda > 0", i.e. posterior above 1/2),
    ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``, ``n_positive``,
    ``n_negative``, ``n_unscored``, ``holdout``, ``fixed_variance``,
    ``pooled_sd``. Per example: ``per_example_accuracy`` (balanced accuracy
    of "IN iff Lambda > 0" over that example's targets; None without both IN
    and OUT targets; it is noisy with few targets, so judge it against the
    retrain control) and its ``_median`` and ``_q90``,
    ``frac_examples_above_threshold`` (of the examples with an accuracy),
    ``per_example_separation`` (``|mu_in - mu_out| / sqrt((sd_in^2 +
    sd_out^2) / 2)`` from the shadow fit, sd as used by the attack) with its
    ``_median`` and ``_q90``.

  Raises:
    ConfigError: see :func:`ulira_scores`; also when no IN or no OUT pair
      could be scored.
  """
  out = ulira_scores(phi, in_mask, out_mask, target_ids=target_ids, groups=groups,
                     fixed_variance=fixed_variance, min_obs=min_obs)
  scores, pos_mask, neg_mask = out["scores"], out["positive"], out["negative"]
  pos, neg = scores[pos_mask], scores[neg_mask]
  if pos.size == 0 or neg.size == 0:
    raise ConfigError(f"U-LiRA scored {pos.size} IN and {neg.size} OUT pairs; it needs both: "
                      "each example needs at least 2 IN and 2 OUT models of other originals "
                      "(raise audit.ulira.num_originals or forget_sets_per_original)")

  n_pos_x, n_neg_x = pos_mask.sum(0), neg_mask.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    tpr_x = (pos_mask & (scores > 0)).sum(0) / n_pos_x
    tnr_x = (neg_mask & ~(scores > 0)).sum(0) / n_neg_x
  acc_x = np.where((n_pos_x > 0) & (n_neg_x > 0), (tpr_x + tnr_x) / 2, np.nan)
  fit = out["fit"]
  if out["fixed_variance"]:
    spread = np.full_like(fit["mu_in"], fit["pooled_sd"])
  else:
    spread = np.sqrt((fit["sd_in"] ** 2 + fit["sd_out"] ** 2) / 2)
  with np.errstate(invalid="ignore", divide="ignore"):
    separation = np.abs(fit["mu_in"] - fit["mu_out"]) / (spread + SIGMA_FLOOR)
  acc_med, acc_q90 = _quantiles(acc_x)
  sep_med, sep_q90 = _quantiles(separation)
  has_acc = np.isfinite(acc_x)
  return {
      "auc": auc(pos, neg),
      "balanced_accuracy": balanced_accuracy(pos, neg),
      "accuracy_at_zero": float(((pos > 0).mean() + (neg <= 0).mean()) / 2),
      "tpr_at_1pct_fpr": tpr_at_fpr(pos, neg, 0.01),
      "tpr_at_0.1pct_fpr": tpr_at_fpr(pos, neg, 0.001),
      "n_positive": int(pos.size),
      "n_negative": int(neg.size),
      "n_unscored": out["n_unscored"],
      "holdout": out["holdout"],
      "fixed_variance": out["fixed_variance"],
      "pooled_sd": float(fit["pooled_sd"]),
      "per_example_threshold": float(per_example_threshold),
      "per_example_accuracy_median": acc_med,
      "per_example_accuracy_q90": acc_q90,
      "frac_examples_above_threshold": (float((acc_x[has_acc] > per_example_threshold).mean())
                                        if has_acc.any() else None),
      "per_example_separation_median": sep_med,
      "per_example_separation_q90": sep_q90,
      "per_example_accuracy": _nan_to_none(acc_x),
      "per_example_separation": _nan_to_none(separation),
  }


# --- the permutation null ---------------------------------------------------------------------


def permuted_masks(in_mask, out_mask, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """IN/OUT labels shuffled within each example: the same models stay labelled, the same number
  of them IN, but which ones is drawn at random (membership no longer tells anything)."""
  labelled = in_mask | out_mask
  k_in = in_mask.sum(0)
  keys = np.where(labelled, rng.random(in_mask.shape), np.inf)
  rank = np.argsort(np.argsort(keys, axis=0, kind="stable"), axis=0, kind="stable")
  new_in = labelled & (rank < k_in[None, :])
  return new_in, labelled & ~new_in


# A 99th percentile of fewer draws is (near) their maximum, no percentile: such a null is marked.
MIN_NULL_PERMUTATIONS = 100


def few_permutations(permutations: int, quantile: float = 0.99) -> str:
  """The warning of a null's percentile drawn from too few permutations."""
  return (f"the null's q{round(100 * quantile)} comes from {permutations} permutation"
          f"{'s' if permutations != 1 else ''} (fewer than {MIN_NULL_PERMUTATIONS}): it is "
          "not a percentile; raise audit.ulira.null_permutations to 100 or more")


def permutation_null(phi, in_mask, out_mask, *, groups=None, permutations: int = 100,
                     seed: int = 0, quantile: float = 0.99) -> dict:
  """U-LiRA's figures when membership is shuffled within each example, ``permutations`` times.

  At small sizes the best-threshold balanced accuracy sits above 0.5 even for
  an attack that cannot know anything; a row is only evidence of leakage where
  it lies above this null's ``quantile``.

  Returns:
    ``{"null_permutations", "null_balanced_acc_mean", "null_balanced_acc_q99",
    "null_auc_mean", "null_auc_q99"}`` (q99: the ``quantile``).
  """
  rng = np.random.default_rng([seed, 0x4E554C4C])
  bal, au = [], []
  for _ in range(int(permutations)):
    p_in, p_out = permuted_masks(np.asarray(in_mask, bool), np.asarray(out_mask, bool), rng)
    rep = ulira(phi, p_in, p_out, groups=groups)
    bal.append(rep["balanced_accuracy"])
    au.append(rep["auc"])
  out = {} if int(permutations) >= MIN_NULL_PERMUTATIONS else {
      "null_q99_warning": few_permutations(int(permutations), quantile)}
  return {**out, "null_permutations": int(permutations),
          "null_balanced_acc_mean": float(np.mean(bal)),
          "null_balanced_acc_q99": float(np.quantile(bal, quantile)),
          "null_auc_mean": float(np.mean(au)), "null_auc_q99": float(np.quantile(au, quantile))}


# --- the statistic: the unlearning game on D_f, audit.json and audit.md sections --------

# Its populations (``phi/<name>.npy``).
ORIGINALS = "ulira_originals"
RETRAIN_CONTROL = "ulira_retrain_control"
IDENTITY_CONTROL = "ulira_identity_control"


def method_population(label: str) -> str:
  """The population of the method ``label``'s runs from the originals."""
  return f"ulira_{label}"


SECTION_KEYS = {"balanced_acc": "balanced_accuracy", "auc": "auc",
                "tpr_at_1pct_fpr": "tpr_at_1pct_fpr", "tpr_at_01pct_fpr": "tpr_at_0.1pct_fpr",
                "accuracy_at_zero": "accuracy_at_zero",
                "per_example_accuracy_median": "per_example_accuracy_median",
                "per_example_accuracy_q90": "per_example_accuracy_q90",
                "frac_examples_above_threshold": "frac_examples_above_threshold",
                "per_example_separation_median": "per_example_separation_median",
                "per_example_separation_q90": "per_example_separation_q90",
                "n_positive": "n_positive", "n_negative": "n_negative",
                "fixed_variance": "fixed_variance"}
_MASKS_SEED = 0x554C4941


def game_masks(u, n: int, seed: int) -> dict:
  """Keep-masks of the M originals and the K forget sets of each, over a pool of ``n``.

  Args:
    u: the ``audit.ulira`` block.
    n: the pool's size (|D_f|).
    seed: the audit's seed.

  Returns:
    dict of ``keep`` ``[M, n]``, ``forget`` ``[M * K, n]`` (row ``m * K + k``),
    ``groups`` ``[M * K]`` (the original of each unlearned model), and the
    U-LiRA masks ``in_mask`` (forgot it) and ``out_mask`` (never trained on it).
  """
  m, k = int(u.num_originals), int(u.forget_sets_per_original)
  n_keep = int(round(u.keep_fraction * n))
  n_forget = int(round(u.forget_fraction * n_keep))
  if not (1 <= n_keep < n and 1 <= n_forget):
    raise ConfigError(f"U-LiRA on a pool of {n} forget examples: audit.ulira.keep_fraction "
                      f"{u.keep_fraction} and forget_fraction {u.forget_fraction} leave "
                      f"{n_keep} kept and {n_forget} forgotten; each needs at least 1")
  rng = np.random.default_rng([seed, _MASKS_SEED])
  keep = np.zeros((m, n), bool)
  forget = np.zeros((m * k, n), bool)
  for i in range(m):
    kept = rng.permutation(n)[:n_keep]
    keep[i, kept] = True
    for j in range(k):
      forget[i * k + j, rng.permutation(kept)[:n_forget]] = True
  groups = np.repeat(np.arange(m), k)
  return {"keep": keep, "forget": forget, "groups": groups, "in_mask": forget,
          "out_mask": ~keep[groups]}


# The statistic's fields that its sizes grow with, in the order a refusal suggests lowering them.
PERMS, ORIGINALS_FIELD, SETS = ("audit.ulira.null_permutations", "audit.ulira.num_originals",
                                "audit.ulira.forget_sets_per_original")
# audit.ulira.max_work's default: at 0.1-0.2 us a pair, a few minutes of fits on one core.
MAX_WORK = 2 * 10**9
# A fit's fixed cost (numpy calls over a few small arrays) in pair visits, as measured.
FIT_OVERHEAD_PAIRS = 2000


def game_cost(m: int, k: int, permutations: int, *, n: int, n_remain: int,
              populations: int) -> tuple[int, int]:
  """``(host bytes, pair visits)`` of U-LiRA on ``m`` originals x ``k`` forget sets over a pool
  of ``n``, scoring ``populations`` populations with ``permutations`` null draws each.

  Memory: the game's masks (bool, ``m`` + 3 ``m k`` rows of ``n``), the members' training rows
  (int64, ``m`` + 2 ``m k`` rows of ``n_remain + n``) and the attack's arrays over every
  (model, example) pair (about 32 float64 at once: phi, the fits, ranks, scores, the ROC).
  Work: each attack (the check of the game, then each population once and once per
  permutation) fits ``m + 1`` times (one per held-out original, one on all), each visiting
  every (model, example) pair, plus a fixed cost (:data:`FIT_OVERHEAD_PAIRS`).
  """
  models = m * k
  memory = (m + 3 * models) * n + (m + 2 * models) * (n_remain + n) * 8 + 32 * 8 * models * n
  attacks = 1 + populations * (1 + permutations)
  return int(memory), int(attacks * (m + 1) * (models * n + FIT_OVERHEAD_PAIRS))


def population_entry(record: dict, masks: dict, permutations: int = 0, seed: int = 0) -> dict:
  """One population's row: the attack's pooled and per-example figures, its permutation null
  (``permutations`` > 0), and its accuracies."""
  rep = ulira(record["phi"], masks["in_mask"], masks["out_mask"], groups=masks["groups"])
  out = {k: rep[v] for k, v in SECTION_KEYS.items()}
  if permutations:
    out.update(permutation_null(record["phi"], masks["in_mask"], masks["out_mask"],
                                groups=masks["groups"], permutations=permutations, seed=seed))
  out["remain_acc"] = float(np.mean(record["remain_acc"]))
  out["test_acc"] = float(np.mean(record["test_acc"]))
  return out


@base.register("ulira")
class ULiRA(base.Statistic):
  """U-LiRA: the per-example likelihood-ratio unlearning attack, played on D_f as the pool.

  M originals each train on D_r plus a random ``keep_fraction`` of D_f; each
  is unlearned K times, each time forgetting a random ``forget_fraction`` of
  the part of D_f it kept. For an example, IN models forgot it and OUT models
  never saw it; every model is attacked with Gaussians fitted on the models of
  the other originals. Controls: ``retrain_control`` (unlearning = retraining
  on what is left; about 0.5) and ``identity_control`` (no unlearning).
  """
  title = "U-LiRA (per-example likelihood-ratio attack)"
  forgets_per_member = True
  field_docs = {
      "num_originals": "M originals, each on D_r and a random keep_fraction of D_f",
      "forget_sets_per_original": "K unlearning runs per original, each with its own forget set",
      "keep_fraction": "share of the pool (D_f) each original trains on",
      "forget_fraction": "share of an original's kept pool it then forgets",
      "null_permutations": "permutations of IN/OUT within each example for the null (0: none)",
      "max_work": "refuse settings whose fits would visit more (model, example) pairs than this, "
                  "over the whole statistic, null included: (1 + populations x (1 + "
                  "null_permutations)) x (num_originals + 1) x (num_originals x "
                  "forget_sets_per_original x |D_f| + 2000); ~0.1-0.2 us each on one CPU core"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.num_originals = 8
    c.forget_sets_per_original = 2
    c.keep_fraction = 0.5
    c.forget_fraction = 0.5
    c.null_permutations = 100
    c.max_work = MAX_WORK
    return c

  def population_sizes(self, cfg) -> dict[str, base.PopulationSize]:
    # Its largest populations, the retrain control and each method's runs, have M x K
    # members; the M originals are no more. The field to lower is the larger factor.
    u = cfg.audit.ulira
    m, k = int(u.num_originals), int(u.forget_sets_per_original)
    if k > m:
      return {"ulira": base.PopulationSize(m * k, SETS, m)}
    return {"ulira": base.PopulationSize(m * k, ORIGINALS_FIELD, k)}

  def needs(self, cfg, info) -> list[base.Need]:
    u = cfg.audit.ulira
    fields = {PERMS: int(u.null_permutations), ORIGINALS_FIELD: int(u.num_originals),
              SETS: int(u.forget_sets_per_original)}
    populations = 2 + len(info.labels)      # the two controls and each audited method

    def cost(v):
      return game_cost(v[ORIGINALS_FIELD], v[SETS], v[PERMS], n=info.n_forget,
                       n_remain=info.n_remain, populations=populations)
    return [base.Need("U-LiRA's game, attack and permutation null", fields, cost,
                      work_limit=("audit.ulira.max_work", int(u.max_work)),
                      work_unit="(model, example) pairs visited by U-LiRA's fits",
                      minimum={PERMS: 0, ORIGINALS_FIELD: 2, SETS: 1})]

  def validate(self, cfg, info):
    u = cfg.audit.ulira
    for field in ("num_originals", "forget_sets_per_original", "null_permutations", "max_work"):
      value = u[field]
      if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"audit.ulira.{field} must be a whole number, got {value!r}")
    if u.max_work < 1:
      raise ConfigError(f"audit.ulira.max_work must be >= 1, got {u.max_work} (default "
                        f"{MAX_WORK:.0e})")
    if u.num_originals < 1 or u.forget_sets_per_original < 1:
      raise ConfigError(f"audit.ulira.num_originals and forget_sets_per_original must be >= 1, "
                        f"got {u.num_originals} and {u.forget_sets_per_original}")
    if u.null_permutations < 0:
      raise ConfigError(f"audit.ulira.null_permutations must be >= 0 (100 or more for a 99th "
                        f"percentile), got {u.null_permutations}")
    if not (0 < u.keep_fraction < 1 and 0 < u.forget_fraction <= 1):
      raise ConfigError(f"audit.ulira.keep_fraction must be in (0, 1) and forget_fraction in "
                        f"(0, 1], got {u.keep_fraction} and {u.forget_fraction}")
    if u.num_originals < 2:
      raise ConfigError(f"audit.ulira.num_originals={u.num_originals}: U-LiRA attacks each "
                        "model with a fit on the models of other originals; raise "
                        "num_originals (e.g. 8)")
    # Accepted, but said once: its rows are marked in audit.json and audit.md too.
    if 0 < u.null_permutations < MIN_NULL_PERMUTATIONS:
      print(f"jaxunlearn: note: U-LiRA: {few_permutations(int(u.null_permutations))}",
            file=sys.stderr)

  def validate_drawn(self, cfg, info):
    # The game is fixed before any training: check that it can score IN and OUT pairs. It grows
    # with num_originals x forget_sets_per_original, so it runs once :meth:`needs` passed.
    u = cfg.audit.ulira
    masks = game_masks(u, info.n_forget, config_lib.resolve_seed(cfg.audit.seed, cfg))
    scored = ulira_scores(np.zeros(masks["in_mask"].shape), masks["in_mask"], masks["out_mask"],
                          groups=masks["groups"])
    n_in, n_out = int(scored["positive"].sum()), int(scored["negative"].sum())
    if not (n_in and n_out):
      raise ConfigError(
          f"U-LiRA with audit.ulira.num_originals={u.num_originals} and "
          f"forget_sets_per_original={u.forget_sets_per_original} on {info.n_forget} forget "
          f"examples leaves {n_in} IN and {n_out} OUT pairs to score (each example needs at "
          "least 2 IN and 2 OUT models of other originals); raise num_originals (e.g. 8) or "
          "forget_sets_per_original")

  def run(self, audit: base.Audit) -> dict:
    masks = game_masks(audit.cfg.audit.ulira, audit.n_audit, audit.seed)
    f_idx, r_idx = audit.forget_rows, audit.remain_rows
    keep, forget, groups = masks["keep"], masks["forget"], masks["groups"]
    m_masks = {k: masks[k] for k in ("in_mask", "out_mask", "groups")}
    train_rows = np.stack([np.concatenate([r_idx, f_idx[kp]]) for kp in keep])
    originals = audit.train_population(ORIGINALS, train_rows, keep_params=True,
                                       masks={"keep": keep})
    left = keep[groups] & ~forget
    left_rows = np.stack([np.concatenate([r_idx, f_idx[lf]]) for lf in left])
    f_rows = np.stack([f_idx[f] for f in forget])
    # Row m * K + k of these populations is original m's k-th forget set.
    retrain = audit.train_population(RETRAIN_CONTROL, left_rows, masks=m_masks)
    identity = audit.add_population(
        IDENTITY_CONTROL,
        {k: v[groups] for k, v in originals.items() if k not in base.RECORD.kept},
        masks=m_masks)
    perms = int(audit.cfg.audit.ulira.null_permutations)
    entry = lambda record: population_entry(record, masks, perms, audit.seed)  # noqa: E731
    out = {"retrain_control": entry(retrain), "identity_control": entry(identity)}
    params = {k: originals[k] for k in base.RECORD.kept}
    params = {k: _take(v, groups) for k, v in params.items()}
    for label in audit.labels:
      res = audit.unlearn_population(method_population(label), label, params=params["params"],
                                     batch_stats=params["batch_stats"], f_rows=f_rows,
                                     r_rows=left_rows, masks=m_masks)
      out[label] = entry(res)
    out["pool"] = (f"D_f ({audit.n_audit} examples); {keep.shape[0]} originals each train on "
                   f"D_r and {int(keep[0].sum())} of them, each unlearned "
                   f"{audit.cfg.audit.ulira.forget_sets_per_original} times forgetting "
                   f"{int(forget[0].sum())}")
    return out

  def report(self, section: dict) -> str:
    fmt = report.fmt
    lines = [f"Pool: {section.get('pool')}. `retrain_control` should give about 0.5; "
             "`identity_control` (no unlearning) shows how much there is to forget. Lower is "
             "better. Null: the same figure with IN/OUT shuffled within each example (mean / "
             "99th percentile); a row is evidence of leakage only above the null's 99th "
             "percentile.", "",
             "| population | balanced acc | null mean / q99 | AUC | null mean / q99 | "
             "acc at 0 | TPR @ 1% FPR | TPR @ 0.1% FPR | per-example acc median / q90 |",
             "|---|---|---|---|---|---|---|---|---|"]
    warnings = []
    for name, e in section.items():
      if not isinstance(e, dict):
        continue
      mark = " (!)" if e.get("null_q99_warning") else ""    # a q99 of too few permutations
      warnings += [e["null_q99_warning"]] if mark and not warnings else []
      lines.append(
          f"| {name} | {fmt(e['balanced_acc'])} | "
          f"{fmt(e.get('null_balanced_acc_mean'))} / {fmt(e.get('null_balanced_acc_q99'))}{mark} | "
          f"{fmt(e['auc'])} | {fmt(e.get('null_auc_mean'))} / {fmt(e.get('null_auc_q99'))}{mark} | "
          f"{fmt(e['accuracy_at_zero'])} | {fmt(e['tpr_at_1pct_fpr'])} | "
          f"{fmt(e['tpr_at_01pct_fpr'])} | "
          f"{fmt(e['per_example_accuracy_median'])} / {fmt(e['per_example_accuracy_q90'])} |")
    if warnings:
      lines += ["", f"(!) Warning: {warnings[0]}."]
    return "\n".join(lines)

  def summary(self, section: dict) -> str:
    return "U-LiRA balanced_acc: " + " ".join(
        f"{k}={v['balanced_acc']:.3f}" for k, v in section.items() if isinstance(v, dict))


def _take(tree, rows):
  import jax
  import jax.numpy as jnp
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[rows]), tree)
