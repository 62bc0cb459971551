"""The probe log (probes.jsonl) and the population log (results.jsonl) as markdown tables,
in the order the variants were tried.

    python -m experiments.quality.log_table probes > /tmp/probes.md
    python -m experiments.quality.log_table results > /tmp/results.md

Costs are examples processed per request (forward+backward; forward-only at 1/3) for the
setting's sizes (memorised D_f: |D_r| = 3,300, |D_f| = 100; random: 3,366 and 34), as a
fraction of retraining (20 x floor(|D_r| / 64) x 64).
"""

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def probes():
  rows = [json.loads(l) for l in open(HERE / "probes.jsonl")]
  print("| # | time | forget | protocol | variant | tau | rel. F | spread | phi med | abs z | "
        "abs zbar | gap | cal_w z | cal_t z | cost |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for i, r in enumerate(rows, 1):
    cand = r.get("candidate") or {}
    if isinstance(cand, str):
      cand = {}
    label = r["label"].replace("|", "/")
    if r.get("rep") is not None:
      label += f" (rep {r['rep']})"
    cost = probe_cost(cand, r.get("forget", "flip")) if cand else float("nan")
    print(f"| {i} | {r.get('time', '')} | {r.get('forget', '')} | {r.get('protocol', 'single')} "
          f"| {label} | {f(r.get('tau'))} | {f(r.get('relF_vs_oracle32'))} "
          f"| {f(r.get('spread_ratio'))} | {f(r.get('phi_median'))} | {f(r.get('absz_median'))} "
          f"| {f(r.get('absz_mean_of_runs_median'))} | {f(r.get('test_gap'), 3)} "
          f"| {f(r.get('cal_wrong_z_median'))} | {f(r.get('cal_true_z_median'))} | {f(cost, 3)} |")


def results():
  rows = [json.loads(l) for l in open(HERE / "results.jsonl")]
  print("| # | seed | forget | population | protocol | F | rel. F | phi med | spread | test acc "
        "(gap) | retain acc | cost (x retrain) | note |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for i, r in enumerate(rows, 1):
    if "ulira" in r:
      u = r["ulira"]
      print(f"| {i} | {r['seed']} | {r['forget']} | {r['label']} | U-LiRA | AUC {u['auc']:.3f} "
            f"| bal.acc {u['balanced_acc']:.3f} | | | test {u['test_acc']:.4f} | "
            f"{u['retain_acc']:.4f} | | {r.get('note', '')} |")
      continue
    c = r.get("cost") or {}
    for p in ("single", "perseed"):
      if p not in r:
        continue
      s = r[p]
      print(f"| {i} | {r['seed']} | {r['forget']} | {r['label']} | {p} | {s['F']:.3f} "
            f"| {s['relF']:.2f} | {s['phi_median']:.2f} | {s['spread_ratio']:.2f} "
            f"| {s['test_acc']:.4f} ({s['test_acc_gap']:+.4f}) | {s['retain_acc']:.4f} "
            f"| {f(c.get('fraction_of_retrain'), 3)} | {r.get('note', '')} |")


if __name__ == "__main__":
  {"probes": probes, "results": results}[sys.argv[1]]()
