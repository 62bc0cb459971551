"""The probe log (probes.jsonl) and the population log (results.jsonl) as markdown tables,
in the order the variants were tried: one row per logged probe or population, with its
settings, its figures and whether it meets the goal.

    python -m experiments.quality.log_table probes > /tmp/probes.md
    python -m experiments.quality.log_table results > /tmp/results.md
    python -m experiments.quality.log_table probes --log PATH   # another log

The logs are written under ``runs/quality/`` (``probe.py``, ``probe_tau.py``, ``evaluate.py``);
the logs behind RESULTS_quality.md are in the repository's history (README.md here).

Goal (RESULTS_quality.md section 5): relative F >= 0.8, test accuracy at most 1 point below
retraining's, at most 1/5 of retraining's examples. ``pass`` is ``yes`` when all three hold,
``no (...)`` names the ones that do not, and ``-`` marks a probe with no relative F (m < 32
runs, per-example z-statistics only).

Costs are examples processed per request (forward+backward; forward-only at 1/3) for the
setting's sizes (memorised D_f: |D_r| = 3,300, |D_f| = 100; random: 3,366 and 34), as a
fraction of retraining (20 x floor(|D_r| / 64) x 64).
"""

import argparse
import json
import math
from pathlib import Path

LOGS = Path(__file__).resolve().parents[2] / "runs" / "quality"
GOAL_REL_F, GOAL_GAP, GOAL_COST = 0.8, -0.01, 0.2


def probe_cost(cand: dict, forget: str) -> float:
  n_r, n_f = (3300, 100) if forget in ("flip", "backdoor") else (3366, 34)
  u, hp, prep = cand["unlearn"], cand["hparams"], cand["prep"]
  retrain = 20 * (n_r // 64) * 64
  m = cand["method"]
  e = int(u.get("epochs", 2))
  rbs = int(u.get("remain_batch_size", 64))
  fbs = min(int(u.get("forget_batch_size", 64)), n_f)
  rsteps, fsteps = math.ceil(n_r / rbs), math.ceil(n_f / fbs)
  if float(u.get("learning_rate", 1.0)) == 0.0:
    return 0.0
  if m == "q_match":
    total = e * fsteps * (fbs + rbs)
  elif m in ("q_repair", "q_recon", "q_ftx"):
    total = e * rsteps * rbs
    if prep.get("kd"):
      total += n_r / 3
    fw = float(hp.get("fw", 0.0))
    if fw and m == "q_repair":
      total += e * rsteps * fbs
    if m == "q_ftx" or (m == "q_recon" and fw):
      total += e * rsteps * fbs * float(hp.get("erase_until", 0.25))
    if prep.get("perturb") == "salient":
      total += n_f + 16 * 64
  elif m == "q_is":
    b = int(u.get("q_is.batch", 16))
    if u.get("q_is.steps") == "recipe":
      steps = 20 * (n_r // 64)
    else:
      steps = min(e * rsteps, int(float(hp.get("max_steps", 1e9))))
    early = min(steps, int(float(hp.get("early_steps", 1e9))))
    late_b = min(b, float(hp.get("late_batch", 1e9)))
    total = early * b + (steps - early) * late_b
    refresh = float(hp.get("refresh", 200.0))
    total += math.floor((steps - 1) / refresh) * n_r / 3
  else:
    return float("nan")
  if prep.get("target") and prep.get("target") != "ideal":
    total += (n_f + 200) / 3          # reference (and original) forward passes
  return total / retrain


def f(x, nd=2):
  return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def settings(cand: dict) -> str:
  """A candidate's settings as one cell: method, then its unlearn / hparams / prep entries."""
  if not cand:
    return ""
  parts = [str(cand.get("method", ""))]
  if cand.get("prepare", "repair") != "repair":
    parts.append(f"prepare={cand['prepare']}")
  for block in ("unlearn", "hparams", "prep"):
    parts += [f"{k}={v}" for k, v in (cand.get(block) or {}).items() if v not in ("", None)]
  if cand.get("n_refs", 1) != 1:
    parts.append(f"n_refs={cand['n_refs']}")
  if cand.get("diag"):
    parts.append(f"diag={cand['diag']}")
  return " ".join(parts).replace("|", "/")


def verdict(rel_f, gap, cost) -> str:
  """``yes``, ``no (the figures that miss the goal)`` or ``-`` (no relative F)."""
  if rel_f is None or (isinstance(rel_f, float) and math.isnan(rel_f)):
    return "-"
  missed = []
  if rel_f < GOAL_REL_F:
    missed.append("F")
  if gap is not None and gap < GOAL_GAP:
    missed.append("acc")
  if cost is not None and not math.isnan(cost) and cost > GOAL_COST:
    missed.append("cost")
  return f"no ({', '.join(missed)})" if missed else "yes"


def read_log(path: Path) -> list:
  return [json.loads(line) for line in open(path) if line.strip()]


def probes(path: Path):
  rows = read_log(path)
  print("| # | time | forget | protocol | variant | settings | tau | rel. F | spread | phi med "
        "| abs z | abs zbar | gap | cal_w z | cal_t z | cost | pass |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for i, r in enumerate(rows, 1):
    cand = r.get("candidate") or {}
    if isinstance(cand, str):
      cand = {}
    label = r["label"].replace("|", "/")
    if r.get("rep") is not None:
      label += f" (rep {r['rep']})"
    if r.get("audit_set"):
      label += f" [{r['audit_set']}]"
    cost = probe_cost(cand, r.get("forget", "flip")) if cand else float("nan")
    rel_f = r.get("relF_vs_oracle32")
    print(f"| {i} | {r.get('time', '')} | {r.get('forget', '')} | {r.get('protocol', 'single')} "
          f"| {label} | {settings(cand)} | {f(r.get('tau'))} | {f(rel_f)} "
          f"| {f(r.get('spread_ratio'))} | {f(r.get('phi_median'))} | {f(r.get('absz_median'))} "
          f"| {f(r.get('absz_mean_of_runs_median'))} | {f(r.get('test_gap'), 3)} "
          f"| {f(r.get('cal_wrong_z_median'))} | {f(r.get('cal_true_z_median'))} | {f(cost, 3)} "
          f"| {verdict(rel_f, r.get('test_gap'), cost)} |")


def results(path: Path):
  rows = read_log(path)
  print("| # | seed | forget | population | settings | F single / per-seed | rel. F single / "
        "per-seed | phi med | spread | test acc gap | retain acc | cost (x retrain) | note "
        "| pass |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for i, r in enumerate(rows, 1):
    cand = r.get("candidate") or {}
    if isinstance(cand, str):
      cand = {}
    head = f"| {i} | {r['seed']} | {r['forget']} | {r['label']} | {settings(cand)} "
    if "ulira" in r:
      u = r["ulira"]
      print(f"{head}| U-LiRA AUC {u['auc']:.3f} | bal.acc {u['balanced_acc']:.3f} | | "
            f"| test {u['test_acc']:.4f} | {u['retain_acc']:.4f} | | {r.get('note', '')} "
            f"| {'yes' if u['auc'] <= 0.6 else 'no (AUC)'} |")
      continue
    c = r.get("cost") or {}
    cost = c.get("fraction_of_retrain")
    ps = [r[p] for p in ("single", "perseed") if p in r]
    two = lambda key, fmt: " / ".join(format(s[key], fmt) for s in ps)
    passes = [verdict(s["relF"], s["test_acc_gap"], cost) for s in ps]
    print(f"{head}| {two('F', '.3f')} | {two('relF', '.2f')} | {two('phi_median', '.2f')} "
          f"| {two('spread_ratio', '.2f')} | {two('test_acc_gap', '+.4f')} "
          f"| {two('retain_acc', '.4f')} | {f(cost, 3)} | {r.get('note', '')} "
          f"| {' / '.join(passes)} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("table", choices=("probes", "results"))
  parser.add_argument("--log", type=Path, default=None,
                      help="the jsonl log (default runs/quality/<table>.jsonl)")
  args = parser.parse_args()
  path = args.log or LOGS / f"{args.table}.jsonl"
  {"probes": probes, "results": results}[args.table](path)


if __name__ == "__main__":
  main()
