"""The final figures (seeds 0, 1, 2) from the population log, as markdown.

    python -m experiments.quality.final_table [--controls] [--log PATH]

The log is runs/quality/results.jsonl (``lab.RESULTS``, written by ``evaluate.py``) unless
``--log`` names another; the one behind RESULTS_quality.md section 4 is in the repository at
commit 872bac2 (README.md here).

With ``--controls`` each (seed, forget set) work dir is opened (cached populations only) to
read the oracle's and ``none``'s F.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

LOG = Path(__file__).resolve().parents[2] / "runs" / "quality" / "results.jsonl"
SEEDS = (0, 1, 2)
FORGETS = ("flip", "backdoor", "random")


def load(path: Path = LOG):
  rows = [json.loads(line) for line in open(path) if line.strip()]
  eps, uli = {}, {}
  for r in rows:
    if r.get("note") != "final" or r["seed"] not in SEEDS:
      continue
    if "ulira" in r:
      uli[(r["seed"], r["forget"], r["label"])] = r["ulira"]
    else:
      eps[(r["seed"], r["forget"], r["label"])] = r     # the last record wins
  return eps, uli


def ms(v, nd=2):
  v = [x for x in v if x is not None]
  if not v:
    return "n/a"
  return f"{np.mean(v):.{nd}f} ± {np.std(v):.{nd}f}" if len(v) > 1 else f"{v[0]:.{nd}f}"


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--controls", action="store_true")
  p.add_argument("--log", type=Path, default=LOG)
  args = p.parse_args()
  eps, uli = load(args.log)
  labels = sorted({k[2] for k in eps}, key=lambda s: (not s.startswith("isr"), s))
  controls = {}
  if args.controls:
    from experiments.quality import lab as lab_lib
    for s in SEEDS:
      for f in FORGETS:
        lab = lab_lib.Lab(s, f)
        controls[(s, f)] = {"oracle": lab.eps_oracle["forgetting_quality"],
                            "none": lab.eps_none["forgetting_quality"],
                            "retrain_test": float(np.mean(lab.retrain["test_acc"])),
                            "none_test": float(np.mean(lab.none["test_acc"]))}
        lab.close()
    print("Controls (per seed 0 / 1 / 2): oracle F, none F (none rel.), retrained and original "
          "test accuracy\n")
    print("| forget set | oracle F | none F | none rel. | retrained test acc | originals' test acc |")
    print("|---|---|---|---|---|---|")
    for f in FORGETS:
      c = [controls[(s, f)] for s in SEEDS]
      j = lambda key, nd=3: " / ".join(f"{x[key]:.{nd}f}" for x in c)  # noqa: E731
      rel = " / ".join(f"{x['none'] / x['oracle']:.2f}" for x in c)
      print(f"| {f} | {j('oracle')} | {j('none')} | {rel} | {j('retrain_test', 4)} "
            f"| {j('none_test', 4)} |")
    print()
  for f in FORGETS:
    print(f"### {f}: relative F (mean ± std over seeds 0, 1, 2; per seed in brackets), "
          "test-accuracy gap to retraining, cost\n")
    print("| method | rel. F single | rel. F per-seed | phi median (single) | spread (single) "
          "| test gap single / per-seed (points) | cost (x retrain) |")
    print("|---|---|---|---|---|---|---|")
    for lab in labels:
      ks = [(s, f, lab) for s in SEEDS if (s, f, lab) in eps]
      if not ks:
        continue
      rs = [eps[k] for k in ks]
      def col(p, key):
        return [r[p][key] for r in rs if p in r]
      rel_s, rel_p = col("single", "relF"), col("perseed", "relF")
      name = "isr (this work)" if lab.startswith("isr") else lab
      print(f"| {name} | {ms(rel_s)} [{', '.join(f'{x:.2f}' for x in rel_s)}] "
            f"| {ms(rel_p)} [{', '.join(f'{x:.2f}' for x in rel_p)}] "
            f"| {ms(col('single', 'phi_median'))} | {ms(col('single', 'spread_ratio'))} "
            f"| {ms([100 * x for x in col('single', 'test_acc_gap')], 1)} / "
            f"{ms([100 * x for x in col('perseed', 'test_acc_gap')], 1)} "
            f"| {rs[0]['cost']['fraction_of_retrain']:.3f} |")
    print()
  if uli:
    print("### U-LiRA (16 originals x 2 forget sets; AUC / balanced accuracy per seed)\n")
    print("| forget set | method | AUC | balanced acc | TPR @ 1% FPR |")
    print("|---|---|---|---|---|")
    for (s, f, lab), u in sorted(uli.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
      print(f"| {f} (seed {s}) | {lab} | {u['auc']:.3f} | {u['balanced_acc']:.3f} "
            f"| {u['tpr_at_1pct_fpr']:.3f} |")


if __name__ == "__main__":
  main()
