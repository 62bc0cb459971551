"""KLOM: the KL divergence of each example's phi distribution from the retrained models'.

The metric of Georgiev et al., "Attribute-to-Delete: Machine Unlearning via
Datamodel Matching" (arXiv 2410.23232, App. E.1), as computed by the
authors' code (RoyRin/data-unlearning-bench ``unlearning_bench/eval.py``
``compute_binned_KL_div`` and easydub/EasyDUB-code ``easydub/eval.py``
``binned_kl_divergence``). Per example, with one phi sample from N_u
unlearned models and one from N_r retrained models (the "oracles"):

1. phi is the same margin the epsilon-score reads, ``z_y - logsumexp_{j != y}
   z_j`` (:mod:`jaxunlearn.audits.phi`), clipped to ``[-100, 100]``;
2. 20 equal-width bins over the joint range ``[lo, hi]`` of the two clipped
   samples;
3. ``p`` = the unlearned sample's bin frequencies, ``q`` = the oracles';
   KLOM = ``sum_{k: p_k > 0} p_k log(p_k / max(q_k, 1e-5))``, i.e.
   KL(unlearned || oracle) with the oracle's probabilities floored at 1e-5.

Decisions, where the authors' code leaves room or where we differ:

* **Top edge.** A value equal to ``hi`` goes into the last bin (as
  ``np.histogram`` does; bins are ``[e_k, e_{k+1})`` except the last,
  ``[e_19, e_20]``). The authors bin with ``np.digitize`` and count indices
  1..20 only, so a value on the top edge is *dropped*: the joint maximum
  always lies there, so each example loses at least one sample of one side
  and the frequencies are normalised over the rest. We count every sample.
* **Zero range.** When every value of both samples is the same (``lo == hi``)
  the range is widened to ``[lo, lo + 1]`` as the authors do: every sample
  falls into the first bin, ``p = q`` and KLOM is 0. (A zero joint range
  means the two samples are identical; two samples that are each constant
  but differ have a positive range and land in the first and last bins.)
* **Clipping** happens before the range is taken, so a phi of 1e4 counts as
  100 and does not stretch the bins.
* **Normalisation.** ``p`` and ``q`` are plain frequencies (counts / sample
  size); only the oracle side is floored, only where ``p > 0`` (elsewhere
  the term is 0 whatever ``q``), and it is *not* renormalised after the
  floor, as EasyDUB computes it. data-unlearning-bench passes the floored
  ``q`` to ``scipy.stats.entropy``, which renormalises it; the two differ by
  at most ``log(1 + 20e-5)`` = 2e-4. The unlearned side is never floored.
* **Largest value.** With the floor, KLOM is at most ``log(1e5)`` = 11.51
  (every unlearned sample in bins where no oracle falls).

Like the epsilon-score, KLOM is noise-dominated at small N: two independent
retrained populations do not score 0. The section therefore carries the
*floor*: KLOM of the ``oracle`` population (a second, independent set of N
models retrained on D_r) against ``retrain``, and every row's P95 relative
to it.

Points: KLOM is computed on D_f (the audited examples, every population's
``phi``) and, when the populations record them, on fixed samples of D_r
(``phi_remain``) and of the test set (``phi_heldout``): this statistic asks
every member to record phi there too (:meth:`Statistic.probes`,
``audit.klom.remain_points`` and ``heldout_points``; 0 turns one off). Each
is reported at the 95th percentile and the median over its points.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxunlearn import report
from jaxunlearn.audits import base
from jaxunlearn.errors import ConfigError

CLIP = 100.0
NUM_BINS = 20
ORACLE_FLOOR = 1e-5
# The splits KLOM is reported on: the record key each reads, and its name in the section.
SPLITS = (("forget", "phi"), ("remain", "phi_remain"), ("heldout", "phi_heldout"))


def _check(name: str, x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ConfigError(f"{name} must be [num_models, num_examples] with at least one of each, "
                      f"got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ConfigError(f"{name} has non-finite values; phi of finite logits is finite")
  return x


def bin_frequencies(unlearned_phi, oracle_phi, *, num_bins: int = NUM_BINS,
                    clip: float = CLIP) -> tuple[np.ndarray, np.ndarray]:
  """Each example's bin frequencies of the two samples over their joint clipped range.

  Args:
    unlearned_phi: ``[N_u, n]`` phi of each example under each unlearned model.
    oracle_phi: ``[N_r, n]`` the same under each retrained model.
    num_bins: equal-width bins over each example's joint range.
    clip: phi is clipped to ``[-clip, clip]`` first.

  Returns:
    ``(p, q)``, ``[n, num_bins]`` float64 each, rows summing to 1: the
    unlearned and the oracle frequencies (see the module docstring for the top
    edge and a zero range).
  """
  u = np.clip(_check("unlearned_phi", unlearned_phi), -clip, clip)
  r = np.clip(_check("oracle_phi", oracle_phi), -clip, clip)
  if u.shape[1] != r.shape[1]:
    raise ConfigError(f"unlearned_phi has {u.shape[1]} examples but oracle_phi has "
                      f"{r.shape[1]}; both must be [num_models, num_examples]")
  lo = np.minimum(u.min(0), r.min(0))
  hi = np.maximum(u.max(0), r.max(0))
  width = np.where(hi > lo, hi - lo, 1.0)     # zero range: [lo, lo + 1], as the authors

  def freq(x):
    # The top edge (x == hi) computes to num_bins exactly: it joins the last bin.
    k = np.clip(np.floor((x - lo) / width * num_bins), 0, num_bins - 1).astype(np.int64)
    n = x.shape[1]
    flat = (np.arange(n) * num_bins + k).ravel()     # [N, n]: example i's bins at i * num_bins
    return np.bincount(flat, minlength=n * num_bins).reshape(n, num_bins) / x.shape[0]
  return freq(u), freq(r)


def klom_per_example(unlearned_phi, oracle_phi, *, num_bins: int = NUM_BINS, clip: float = CLIP,
                     floor: float = ORACLE_FLOOR) -> np.ndarray:
  """KL(unlearned || oracle) of each example's binned phi, the oracle floored at ``floor``.

  Args:
    unlearned_phi: ``[N_u, n]`` phi of each example under each unlearned model.
    oracle_phi: ``[N_r, n]`` the same under each retrained model.
    num_bins, clip: see :func:`bin_frequencies`.
    floor: the oracle's bin probabilities are at least this where the unlearned
      side has mass.

  Returns:
    ``[n]`` float64, in ``[0, log(1 / floor)]``.
  """
  p, q = bin_frequencies(unlearned_phi, oracle_phi, num_bins=num_bins, clip=clip)
  q = np.maximum(q, floor)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, p * np.log(p / q), 0.0)
  # Floating error can leave -1e-17 where p == q; KL is never negative.
  return np.maximum(terms.sum(1), 0.0)


def score_bytes(n_models: int, points: int, num_bins: int = NUM_BINS) -> int:
  """Host memory of :func:`klom_per_example` on ``n_models`` models a side over ``points``
  examples: per side the sample (float64), its clipped copy, bin indices and flat indices
  (int64), and the ``[points, num_bins]`` frequencies and terms (float64)."""
  return 2 * 4 * 8 * n_models * points + 4 * 8 * points * num_bins


def summarize(values) -> dict:
  """P95, median and mean of per-example KLOM values, JSON-ready."""
  v = np.asarray(values, np.float64)
  return {"p95": float(np.percentile(v, 95)), "median": float(np.median(v)),
          "mean": float(np.mean(v)), "n_points": int(v.size)}


def population_entry(unlearned: dict, retrained: dict, floor: dict | None = None) -> dict:
  """One population's row: per split, KLOM's P95, median and mean against ``retrained``, and
  with ``floor`` (the oracle's row) each P95 over the floor's."""
  out = {}
  for split, key in SPLITS:
    if key not in unlearned or key not in retrained:
      continue
    entry = summarize(klom_per_example(unlearned[key], retrained[key]))
    if floor is not None and split in floor:
      fp = floor[split]["p95"]
      entry["floor_p95"] = fp
      entry["p95_over_floor"] = entry["p95"] / fp if fp > 0 else None
    out[split] = entry
  return out


@base.register("klom")
class Klom(base.Statistic):
  """KLOM (Georgiev et al. 2024) on D_f, D_r and held-out points, beside its floor.

  Populations: those of the epsilon-score (``retrain``, ``oracle``, ``none``
  and per audited method and protocol the single or per-seed runs), shared
  with it when both are selected. The ``oracle`` row is the floor
  (retrain vs retrain at the same N); every other row carries the floor's P95
  and its own P95 over it, per split.
  """
  title = "KLOM (KL of phi against retraining, Georgiev et al. 2024)"
  field_docs = {
      "remain_points": "D_r examples (a fixed random sample) every population member also "
                       "records phi on, for KLOM on retain points (0: none)",
      "heldout_points": "test examples (a fixed random sample) the same, for KLOM on held-out "
                        "points (0: none)"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.remain_points = 256
    c.heldout_points = 256
    return c

  def validate(self, cfg, info):
    for field in ("remain_points", "heldout_points"):
      value = cfg.audit.klom[field]
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"audit.klom.{field} must be an integer >= 0 (0: no such points), "
                          f"got {value!r}")

  def needs(self, cfg, info) -> list[base.Need]:
    k = cfg.audit.klom
    fields = {"audit.klom.remain_points": int(k.remain_points),
              "audit.klom.heldout_points": int(k.heldout_points),
              "audit.num_models": int(cfg.audit.num_models)}

    def cost(v):
      # A probe holds at most its pool (audit.probe_rows takes all rows when it has fewer).
      points = (info.n_forget + min(v["audit.klom.remain_points"], info.n_remain)
                + min(v["audit.klom.heldout_points"], info.n_test))
      return score_bytes(v["audit.num_models"], points), 0
    return [base.Need(f"KLOM's samples and {NUM_BINS} bins per point", fields, cost,
                      minimum={"audit.klom.remain_points": 0, "audit.klom.heldout_points": 0,
                               "audit.num_models": 2})]

  def probes(self, cfg) -> dict:
    k = cfg.audit.klom
    out = {}
    if k.remain_points:
      out["remain"] = ("remain", int(k.remain_points))
    if k.heldout_points:
      out["heldout"] = ("test", int(k.heldout_points))
    return out

  def run(self, audit: base.Audit) -> dict:
    retrain = audit.train_population(base.RETRAIN, audit.remain_rows)
    oracle = audit.train_population(base.ORACLE, audit.remain_rows)
    floor = population_entry(oracle, retrain)
    none = audit.train_population(base.NONE, audit.train_rows,
                                  keep_params="per_seed" in audit.protocols)
    base_rows = {base.ORACLE: population_entry(oracle, retrain, floor),
                 base.NONE: population_entry(none, retrain, floor)}
    return base.per_protocol(audit, base_rows, lambda pop: population_entry(pop, retrain, floor))

  def report(self, section: dict) -> str:
    lines = ["Per example, KL(population || retrain) of phi in 20 equal-width bins over the "
             "two samples' joint range (phi clipped to [-100, 100], retraining's bin "
             "probabilities floored at 1e-5; at most 11.51), summarised over D_f, a sample of "
             "D_r and a sample of the test set. Lower is better. `oracle` is the floor: a "
             "second, independent retrain population scored the same way at the same N; "
             "x floor = the row's P95 / the floor's P95."]
    for protocol, rows in section.items():
      splits = [s for s, _ in SPLITS if any(s in e for e in rows.values())]
      header = ["population"]
      for s in splits:
        header += [f"{s} P95", f"{s} median", f"{s} x floor"]
      lines += ["", f"**{protocol}**", "", "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header)]
      for name, e in rows.items():
        cells = [name]
        for s in splits:
          x = e.get(s, {})
          cells += [report.fmt(x.get("p95")), report.fmt(x.get("median")),
                    report.fmt(x.get("p95_over_floor"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

  def summary(self, section: dict) -> str:
    return "; ".join(f"KLOM P95 D_f ({protocol}): " + " ".join(
        f"{k}={v['forget']['p95']:.3f}" for k, v in rows.items())
        for protocol, rows in section.items())
