"""Per-example (epsilon, delta) forgetting quality of the NeurIPS-2023 unlearning challenge.

The score of google-deepmind/unlearning_evaluation@ffae0ff (``metric.py``,
``main.py``; the scoring code of the NeurIPS 2023 Machine Unlearning
Challenge, docs/audits.md). For each forget
example the input is two samples of phi: one per unlearned model and one per
retrained model.

1. Orientation: the *positive* set is the one with the larger median (the
   unlearned set on a tie).
2. Degenerate spread: if ``min(range) / max(range) < 0.01`` over the two sets
   (``range = max - min``), epsilon is 50 and the example scores 0 points.
3. Decision rules, each giving a false-positive and a false-negative rate:

   * single threshold: ``ceil(pooled_range * 100)`` thresholds ``t``
     linearly spaced over the pooled range; predict positive iff
     ``phi >= t``;
   * double threshold: the *peakier* set (smaller range ``w``; the
     smaller-median set on a tie) is positive; right thresholds ``r`` are
     ``ceil(span * 100)`` points from ``peaky_min + w - 2`` to
     ``peaky_max + 2``; for each ``r``, 400 left thresholds ``l`` from
     ``r - w - 2`` to ``r - w + 2``; predict positive iff ``l <= phi <= r``.

4. Per rule ``eps = max(log(1 - delta - FPR) - log FNR,
   log(1 - delta - FNR) - log FPR)``, NaN terms ignored, clipped below at 0.
   FPR = FNR = 0 (perfect separation) gives ``inf``; exactly one of them 0
   discards the rule, as does a rule whose two terms are both NaN.
5. The example's epsilon is the maximum over the surviving rules, clipped to
   ``[0, 50]``.

Binning (:func:`epsilon_points`): with ``N`` unlearned models the largest
resolvable epsilon is ``ceil(ln(N - 1))`` (7 for N = 512); an example with
``eps`` below it scores ``2 ** -floor(2 * eps)`` points, otherwise 0. The
forgetting quality is the mean of the points; :func:`final_score` multiplies
it by the remain- and test-accuracy ratios of unlearned to retrained models.

Speed: a rule's epsilon depends only on how many samples of each set it
predicts positive, so every rule is two counts from a ``searchsorted`` into
the example's sorted pooled sample, and epsilon is looked up in a table over
all count pairs. Nothing of size rules x models is built; 512 + 512 models x
1,000 examples take seconds (``benchmarks/epsilon_speed.py``).

Numerics: thresholds, rates and logs are float64. The organisers' code
builds the single-threshold grid with ``torch.linspace`` (float32 by default)
and computes the rates in float32; a sample lying within float32 rounding of
a threshold may therefore be counted differently there. The organisers' code
stops with an assertion when no rule survives (possible only for constant or
tiny samples); this module gives such an example the cap, 50.
"""

from __future__ import annotations

import math
from pathlib import Path

import ml_collections
import numpy as np

from jaxunlearn import report, workdir as workdir_lib
from jaxunlearn.audits import base
from jaxunlearn.errors import ConfigError

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
INTERVAL_BUFFER = 2.0
DEGENERATE_RANGE_RATIO = 0.01
BUCKET_WIDTH = 0.5


# --- one rule -----------------------------------------------------------------------


def rule_epsilon_table(n_pos: int, n_neg: int, delta: float = DELTA) -> np.ndarray:
  """Epsilon of a rule for every pair of counts it predicts positive.

  Args:
    n_pos: size of the positive sample.
    n_neg: size of the negative sample.
    delta: the delta of (epsilon, delta).

  Returns:
    ``[n_pos + 1, n_neg + 1]`` float64: entry ``[a, c]`` is the epsilon of a
    rule that predicts positive for ``a`` positives and ``c`` negatives
    (FNR = ``(n_pos - a) / n_pos``, FPR = ``c / n_neg``), clipped below at 0;
    ``inf`` for perfect separation and ``-inf`` for a discarded rule.
  """
  a = np.arange(n_pos + 1, dtype=np.float64)[:, None]
  c = np.arange(n_neg + 1, dtype=np.float64)[None, :]
  fnr = (n_pos - a) / n_pos
  fpr = c / n_neg
  with np.errstate(divide="ignore", invalid="ignore"):
    eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr),
                  np.log(1 - delta - fnr) - np.log(fpr))
  eps = np.where(np.isnan(eps), -np.inf, np.maximum(eps, 0.0))
  all_pos = a == n_pos
  no_neg = c == 0
  eps = np.where(all_pos != no_neg, -np.inf, eps)
  return np.where(all_pos & no_neg, np.inf, eps)


# --- per-example epsilon ------------------------------------------------------------------


def _check_phi(unlearned_phi, retrained_phi) -> tuple[np.ndarray, np.ndarray]:
  u = np.asarray(unlearned_phi, np.float64)
  r = np.asarray(retrained_phi, np.float64)
  for name, x in (("unlearned_phi", u), ("retrained_phi", r)):
    if x.ndim != 2:
      raise ConfigError(f"{name} must be [num_models, num_examples], got shape {x.shape}")
    if x.shape[0] < 2:
      raise ConfigError(f"{name} needs at least 2 models, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
      raise ConfigError(f"{name} has non-finite values; phi of finite logits is finite")
  if u.shape[1] != r.shape[1]:
    raise ConfigError(f"unlearned_phi has {u.shape[1]} examples but retrained_phi has "
                      f"{r.shape[1]}; both must be [num_models, num_examples]")
  if u.shape[1] == 0:
    raise ConfigError("no forget examples: phi matrices have 0 columns")
  return u, r


def _lookup(table: np.ndarray, pos_counts, neg_counts) -> float:
  """Largest table entry over the rules' count pairs; ``-inf`` for no rules."""
  if np.size(pos_counts) == 0:
    return -np.inf
  return float(np.take(table, pos_counts * table.shape[1] + neg_counts).max())


def epsilon_details(unlearned_phi: np.ndarray, retrained_phi: np.ndarray,
                    delta: float = DELTA) -> dict:
  """Per-example epsilon with the reason for each capped value.

  Args:
    unlearned_phi: ``[N_u, n]`` phi of each forget example under each unlearned
      model.
    retrained_phi: ``[N_r, n]`` the same under each retrained model.
    delta: the delta of (epsilon, delta).

  Returns:
    dict of ``[n]`` arrays: ``eps`` (float64 in ``[0, 50]``), ``degenerate``
    (the range-ratio rule set eps to 50), ``no_rule`` (every rule was
    discarded, eps set to 50) and ``retrained_positive`` (the retrained set
    had the larger median).

  Raises:
    ConfigError: the matrices are not 2-D, have fewer than 2 models, differ in
      their number of examples or hold non-finite values.
  """
  u, r = _check_phi(unlearned_phi, retrained_phi)
  n_u, n_r = u.shape[0], r.shape[0]
  n = u.shape[1]
  # Tables indexed [count of the positive set, count of the negative set].
  table_u_pos = rule_epsilon_table(n_u, n_r, delta)
  table_r_pos = table_u_pos if n_u == n_r else rule_epsilon_table(n_r, n_u, delta)

  retrained_positive = np.median(r, axis=0) > np.median(u, axis=0)
  min_u, max_u, min_r, max_r = u.min(0), u.max(0), r.min(0), r.max(0)
  range_u, range_r = max_u - min_u, max_r - min_r
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.minimum(range_u, range_r) / np.maximum(range_u, range_r)
  degenerate = ratio < DEGENERATE_RANGE_RATIO  # 0 / 0 is NaN: not degenerate

  pooled = np.concatenate([u.T, r.T], axis=1)  # [n, N_u + N_r]
  order = np.argsort(pooled, axis=1, kind="stable")
  pooled = np.take_along_axis(pooled, order, axis=1)
  # cum_u[i, k]: unlearned samples among the k smallest of example i.
  cum_u = np.zeros((n, n_u + n_r + 1), np.int64)
  np.cumsum(order < n_u, axis=1, out=cum_u[:, 1:])

  eps = np.full(n, EPSILON_CAP)
  no_rule = np.zeros(n, bool)
  left_num = int(math.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))
  for i in np.flatnonzero(~degenerate):
    x, cu = pooled[i], cum_u[i]
    r_pos = bool(retrained_positive[i])

    # Single threshold: predict the larger-median set iff phi >= t.
    num = int(math.ceil((x[-1] - x[0]) * THRESHOLDS_PER_UNIT))
    below = np.searchsorted(x, np.linspace(x[0], x[-1], num), "left")
    u_ge = n_u - cu[below]
    r_ge = n_r - (below - cu[below])
    best = (_lookup(table_r_pos, r_ge, u_ge) if r_pos else _lookup(table_u_pos, u_ge, r_ge))

    # Double threshold: predict the peakier set iff l <= phi <= r.
    range_pos, range_neg = ((range_r[i], range_u[i]) if r_pos else (range_u[i], range_r[i]))
    peaky_is_u = r_pos == (range_pos >= range_neg)
    width = min(range_u[i], range_r[i])
    peaky_min, peaky_max = (min_u[i], max_u[i]) if peaky_is_u else (min_r[i], max_r[i])
    lo = peaky_min + width - INTERVAL_BUFFER
    hi = peaky_max + INTERVAL_BUFFER
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    left = np.linspace(right - width - INTERVAL_BUFFER, right - width + INTERVAL_BUFFER,
                       left_num, axis=-1)
    upto = np.searchsorted(x, right, "right")[:, None]
    below = np.searchsorted(x, left, "left")
    u_in = np.maximum(cu[upto] - cu[below], 0)
    r_in = np.maximum((upto - cu[upto]) - (below - cu[below]), 0)
    best = max(best, _lookup(table_u_pos, u_in, r_in) if peaky_is_u
               else _lookup(table_r_pos, r_in, u_in))

    if best == -np.inf:
      no_rule[i] = True
    else:
      eps[i] = min(best, EPSILON_CAP)
  return {"eps": eps, "degenerate": degenerate, "no_rule": no_rule,
          "retrained_positive": retrained_positive}


def per_example_epsilon(unlearned_phi: np.ndarray, retrained_phi: np.ndarray,
                        delta: float = DELTA) -> np.ndarray:
  """Epsilon of each forget example, as the challenge's ``metric.py`` computes it.

  Args:
    unlearned_phi: ``[N_u, n]`` phi of each forget example under each unlearned
      model.
    retrained_phi: ``[N_r, n]`` the same under each retrained model.
    delta: the delta of (epsilon, delta).

  Returns:
    ``[n]`` float64 in ``[0, 50]``.

  Raises:
    ConfigError: see :func:`epsilon_details`.
  """
  return epsilon_details(unlearned_phi, retrained_phi, delta)["eps"]


# --- points and scores ------------------------------------------------------------


def max_epsilon(n_models: int) -> float:
  """``ceil(ln(n_models - 1))``: the largest epsilon that still earns points."""
  if n_models < 2:
    raise ConfigError(f"n_models must be at least 2, got {n_models}")
  return float(math.ceil(math.log(n_models - 1)))


def epsilon_points(eps: np.ndarray, n_models: int) -> np.ndarray:
  """Points of each example: ``2 ** -floor(2 * eps)`` if ``eps < max_epsilon``, else 0.

  Args:
    eps: ``[n]`` per-example epsilons (non-negative).
    n_models: number of unlearned models ``N`` (sets the largest epsilon).

  Returns:
    ``[n]`` float64 points in ``{0} U {2 ** -k : k = 0 .. 2 * max_epsilon - 1}``.
  """
  eps = np.asarray(eps, np.float64)
  if np.any(eps < 0):
    raise ConfigError("epsilon values must be non-negative")
  num_buckets = int(round(max_epsilon(n_models) / BUCKET_WIDTH))
  bucket = np.floor(eps / BUCKET_WIDTH)
  with np.errstate(invalid="ignore"):
    return np.where(bucket < num_buckets, 0.5 ** np.minimum(bucket, num_buckets), 0.0)


def forgetting_quality(eps: np.ndarray, n_models: int) -> float:
  """Mean points over the forget examples, in ``[0, 1]`` (see :func:`epsilon_points`)."""
  points = epsilon_points(eps, n_models)
  if points.size == 0:
    raise ConfigError("no epsilon values to score")
  return float(points.mean())


def final_score(forgetting_quality: float, remain_acc_unlearned, remain_acc_retrained,
                test_acc_unlearned, test_acc_retrained) -> float:
  """``F * (RA_u / RA_r) * (TA_u / TA_r)``, the ratios not clipped.

  Args:
    forgetting_quality: ``F`` from :func:`forgetting_quality`.
    remain_acc_unlearned: remain accuracy of each unlearned model (or its mean).
    remain_acc_retrained: remain accuracy of each retrained model (or its mean).
    test_acc_unlearned: test accuracy of each unlearned model (or its mean).
    test_acc_retrained: test accuracy of each retrained model (or its mean).

  Returns:
    The challenge's final score; the accuracies are averaged over models first.
  """
  ra_u, ra_r, ta_u, ta_r = (float(np.mean(a)) for a in (
      remain_acc_unlearned, remain_acc_retrained, test_acc_unlearned, test_acc_retrained))
  if ra_r <= 0 or ta_r <= 0:
    raise ConfigError(f"retrained models' mean accuracies must be positive, got remain "
                      f"{ra_r} and test {ta_r}")
  return float(forgetting_quality) * (ra_u / ra_r) * (ta_u / ta_r)


def epsilon_report(unlearned_phi: np.ndarray, retrained_phi: np.ndarray, *,
                   delta: float = DELTA, remain_acc_unlearned=None,
                   remain_acc_retrained=None, test_acc_unlearned=None,
                   test_acc_retrained=None) -> dict:
  """Forgetting quality and its ingredients, JSON-ready.

  Args:
    unlearned_phi: ``[N_u, n]`` phi of the forget set under the unlearned models.
    retrained_phi: ``[N_r, n]`` phi of the forget set under the retrained models.
    delta: the delta of (epsilon, delta).
    remain_acc_unlearned: optional per-model (or mean) remain accuracies; with
      all four accuracies the report includes ``final_score``.
    remain_acc_retrained: see above.
    test_acc_unlearned: see above.
    test_acc_retrained: see above.

  Returns:
    dict with ``forgetting_quality``, ``eps_median``, ``eps_mean``,
    ``max_epsilon``, ``n_models_unlearned``, ``n_models_retrained``,
    ``n_examples``, ``n_degenerate``, ``n_no_rule``, ``delta``, ``eps`` and
    ``points`` (lists, one per example), and ``final_score`` (None unless all
    four accuracies are given).
  """
  details = epsilon_details(unlearned_phi, retrained_phi, delta)
  eps = details["eps"]
  n_u = int(np.shape(unlearned_phi)[0])
  points = epsilon_points(eps, n_u)
  quality = float(points.mean())
  accs = (remain_acc_unlearned, remain_acc_retrained, test_acc_unlearned, test_acc_retrained)
  if any(a is not None for a in accs) and any(a is None for a in accs):
    raise ConfigError("give all four accuracies (remain and test, unlearned and retrained) "
                      "for a final score, or none")
  final = None if accs[0] is None else final_score(quality, *accs)
  return {
      "forgetting_quality": quality,
      "final_score": final,
      "eps_median": float(np.median(eps)),
      "eps_mean": float(np.mean(eps)),
      "max_epsilon": max_epsilon(n_u),
      "n_models_unlearned": n_u,
      "n_models_retrained": int(np.shape(retrained_phi)[0]),
      "n_examples": int(eps.size),
      "n_degenerate": int(details["degenerate"].sum()),
      "n_no_rule": int(details["no_rule"].sum()),
      "delta": float(delta),
      "eps": eps.tolist(),
      "points": points.tolist(),
  }


def score_bytes(n_models: int, n_examples: int) -> int:
  """Host memory of :func:`epsilon_details` on ``n_models`` unlearned and as many retrained
  models: the rule table, ``(N + 1)^2`` float64 built through up to three such temporaries,
  and per example the pooled sample, its order and the cumulative counts (``2N + 1`` each)."""
  return 3 * 8 * (n_models + 1) ** 2 + 3 * 8 * n_examples * (2 * n_models + 1)


# --- the statistic: populations, audit.json section, audit.md section, plots -----------

SECTION_KEYS = ("forgetting_quality", "final_score", "eps_median", "eps_mean", "max_epsilon",
                "n_models_unlearned", "n_models_retrained", "n_examples", "n_degenerate")
EPS_FIGURE = "audit_eps.png"
PHI_FIGURE = "audit_phi.png"


def spread_ratio(unlearned_phi, retrained_phi) -> float:
  """Median over examples of std of phi across the population / the same across retrains.

  Below 1: runs that all start from one original vary less than retrains do,
  which the epsilon-score punishes as hard as a shifted mean.
  """
  u = np.std(np.asarray(unlearned_phi, np.float64), axis=0)
  r = np.std(np.asarray(retrained_phi, np.float64), axis=0)
  return float(np.median(u / np.maximum(r, 1e-12)))


def population_entry(unlearned: dict, retrained: dict, oracle_f: float | None = None) -> dict:
  """One population's row of the section: F, relative F (F / the oracle's F at the same N),
  final score, epsilon, phi, spread, accuracies."""
  rep = epsilon_report(
      unlearned["phi"], retrained["phi"],
      remain_acc_unlearned=float(np.mean(unlearned["remain_acc"])),
      remain_acc_retrained=float(np.mean(retrained["remain_acc"])),
      test_acc_unlearned=float(np.mean(unlearned["test_acc"])),
      test_acc_retrained=float(np.mean(retrained["test_acc"])))
  out = {k: rep[k] for k in SECTION_KEYS}
  if oracle_f is not None:
    out["relative_f"] = rep["forgetting_quality"] / oracle_f if oracle_f > 0 else None
  out["remain_acc"] = float(np.mean(unlearned["remain_acc"]))
  out["test_acc"] = float(np.mean(unlearned["test_acc"]))
  out["phi_median"] = float(np.median(unlearned["phi"]))
  out["spread_ratio"] = spread_ratio(unlearned["phi"], retrained["phi"])
  out["eps"] = rep["eps"]
  return out


def _fmt(v) -> str:
  return report.fmt(v)


@base.register("epsilon")
class EpsilonScore(base.Statistic):
  """The NeurIPS-2023 challenge's per-example epsilon and forgetting quality F.

  Populations: ``retrain`` (N models on D_r, the reference sample), ``oracle``
  (another N on D_r: the best score at this N), ``none`` (N originals on all
  of D, each with its own seed: no unlearning) and, per audited method and
  protocol (``audit.protocol``), N unlearning runs: under ``single`` all start
  from the work dir's original (the competition's protocol: does the method
  inject the randomness retraining has?), under ``per_seed`` run i starts from
  ``none``'s member i (Lanyon et al. 2025: over all of training's randomness,
  is the method's output distributed like retraining's?). The section holds
  one table per protocol; ``relative_f`` is F / the oracle's F.
  """
  title = "Epsilon-score (NeurIPS 2023 unlearning challenge)"
  field_docs = {"plot_examples": "forget examples in the phi-histogram plot"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.plot_examples = 4
    return c

  def validate(self, cfg, info):
    if cfg.audit.epsilon.plot_examples < 1:
      raise ConfigError(f"audit.epsilon.plot_examples must be >= 1, got "
                        f"{cfg.audit.epsilon.plot_examples}")

  def population_sizes(self, cfg) -> dict[str, base.PopulationSize]:
    return {"epsilon": base.PopulationSize(int(cfg.audit.num_models), "audit.num_models")}

  def needs(self, cfg, info) -> list[base.Need]:
    return [base.Need("the epsilon-score's (N + 1) x (N + 1) rule table",
                      {"audit.num_models": int(cfg.audit.num_models)},
                      lambda v: (score_bytes(v["audit.num_models"], info.n_forget), 0),
                      minimum={"audit.num_models": 2})]

  def run(self, audit: base.Audit) -> dict:
    retrain = audit.train_population(base.RETRAIN, audit.remain_rows)
    oracle = population_entry(audit.train_population(base.ORACLE, audit.remain_rows), retrain)
    f_oracle = oracle["forgetting_quality"]
    oracle["relative_f"] = 1.0 if f_oracle > 0 else None
    none = audit.train_population(base.NONE, audit.train_rows,
                                  keep_params="per_seed" in audit.protocols)
    base_rows = {base.ORACLE: oracle, base.NONE: population_entry(none, retrain, f_oracle)}
    return base.per_protocol(audit, base_rows,
                             lambda pop: population_entry(pop, retrain, f_oracle))

  def report(self, section: dict) -> str:
    lines = ["Each population's phi on D_f against N models retrained on D_r. `oracle` is a "
             "second, independent retrain population (the best score at this N); `none` is N "
             "originals, each with its own seed (no unlearning). Relative F = F / the oracle's "
             "F; higher is better. Protocols: *single*, every unlearning run starts from the "
             "work dir's original; *per_seed*, run i starts from `none`'s original i. Spread "
             "ratio: the median over examples of the std of phi across the population divided "
             "by the std across retrains (1 is the retrains' own spread)."]
    for protocol, rows in section.items():
      lines += ["", f"**{protocol}**", "",
                "| population | F | relative F | final score | eps median | phi median | "
                "spread ratio | remain acc | test acc |",
                "|---|---|---|---|---|---|---|---|---|"]
      for name, e in rows.items():
        lines.append(f"| {name} | {_fmt(e['forgetting_quality'])} | "
                     f"{_fmt(e.get('relative_f'))} | {_fmt(e['final_score'])} | "
                     f"{_fmt(e['eps_median'])} | {_fmt(e['phi_median'])} | "
                     f"{_fmt(e.get('spread_ratio'))} | {_fmt(e['remain_acc'])} | "
                     f"{_fmt(e['test_acc'])} |")
    return "\n".join(lines)

  def summary(self, section: dict) -> str:
    return "; ".join(f"F ({protocol}): " + " ".join(
        f"{k}={v['forgetting_quality']:.3f}" for k, v in rows.items())
        for protocol, rows in section.items())

  def plot(self, section: dict, audit: base.Audit, out_dir) -> dict:
    plot_epsilon(Path(out_dir) / EPS_FIGURE, section, audit.cfg.setting)
    plot_phi(Path(out_dir) / PHI_FIGURE, section, audit, audit.cfg.audit.epsilon.plot_examples)
    return {"epsilon_histograms": EPS_FIGURE, "phi_histograms": PHI_FIGURE}


def plot_epsilon(path, section: dict, setting: str) -> None:
  """Per-example epsilon histograms: one row per protocol, one panel per population."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  protocols = list(section)
  names = list(section[protocols[0]])
  fig, axes = plt.subplots(len(protocols), len(names),
                           figsize=(3.0 * len(names), 2.6 * len(protocols)), sharey=True,
                           squeeze=False)
  first = section[protocols[0]][names[0]]
  # Epsilon at or above max_epsilon scores no points: it is shown as one last bin.
  cap = float(first["max_epsilon"])
  bins = np.arange(0.0, cap + 1.0 + 1e-9, 0.5)
  for row, protocol in zip(axes, protocols):
    for ax, name in zip(row, names):
      e = section[protocol][name]
      ax.hist(np.minimum(e["eps"], cap + 0.75), bins=bins, color="tab:blue", edgecolor="white")
      ax.axvline(cap, color="tab:red", lw=0.8)
      ax.set_title(f"{name} ({protocol})\nF={e['forgetting_quality']:.3f}", fontsize=9)
      ax.set_xlabel(f"per-example epsilon (last bin: >= {cap:g}, no points)", fontsize=7)
    row[0].set_ylabel("examples of D_f")
  fig.suptitle(f"{setting}: per-example epsilon, N={first['n_models_unlearned']}", fontsize=10)
  fig.tight_layout()
  try:
    workdir_lib.save_figure(fig, path, dpi=90)   # whole or not at all
  finally:
    plt.close(fig)


def plot_phi(path, section: dict, audit: base.Audit, examples: int) -> None:
  """phi of single forget examples: each population (red) against the retrained models (gray)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  retrain = audit.population(base.RETRAIN)["phi"]
  shown = []     # (population name, column title)
  for protocol, rows in section.items():
    for name in rows:
      if name in (base.ORACLE, base.NONE):
        if protocol == next(iter(section)) and name == base.NONE:
          shown.append((base.NONE, base.NONE))
        continue
      pop = name if protocol == "single" else base.per_seed(name)
      shown.append((pop, f"{name} ({protocol})"))
  k = min(int(examples), retrain.shape[1])
  # The examples the retrained models are surest they do not fit, then evenly spread ones.
  order = np.argsort(np.median(retrain, 0))
  picks = order[np.linspace(0, order.size - 1, k).astype(int)]
  fig, axes = plt.subplots(k, len(shown), figsize=(2.8 * len(shown), 2.0 * k), squeeze=False)
  for i, ex in enumerate(picks):
    for j, (name, title) in enumerate(shown):
      ax = axes[i][j]
      other = audit.population(name)["phi"][:, ex]
      lo = min(retrain[:, ex].min(), other.min())
      hi = max(retrain[:, ex].max(), other.max())
      b = np.linspace(lo, hi + 1e-6, 16)
      ax.hist(retrain[:, ex], bins=b, alpha=0.6, color="tab:gray", label="retrain")
      ax.hist(other, bins=b, alpha=0.6, color="tab:red", label="population")
      if i == 0:
        ax.set_title(title, fontsize=9)
      if j == 0:
        ax.set_ylabel(f"D_f #{int(ex)}", fontsize=8)
      if i == k - 1:
        ax.set_xlabel("phi")
      ax.tick_params(labelsize=7)
  axes[0][0].legend(fontsize=7)
  fig.suptitle(f"{audit.cfg.setting}: phi of single forget examples, gray = retrained models",
               fontsize=10)
  fig.tight_layout()
  try:
    workdir_lib.save_figure(fig, path, dpi=90)   # whole or not at all
  finally:
    plt.close(fig)
