"""U-LiRA of `matching` with a shared store, beside the retrain control, on seeds' work dirs.

    python experiments/matching/ulira_shared.py --seeds 0,1,2,3,4 --forget random \
        --entry "matching_out=matching:...,teacher_fit=out,..." --root runs/matching_ulira \
        --share-stores runs/shared_attribution --out out/matching_ulira

U-LiRA (the ``ulira`` statistic: quick_audit's 16 originals, each trained on D_r and half of D_f,
each unlearned twice forgetting half of what it kept; with ``--setting fmnist``, Fashion-MNIST at
60,000 images, ``fmnist_audit.py``'s config, 8 originals x 2) forgets a different subset of D_f per
member. A teacher fitted to the request's D_f cannot serve that; a store whose rates do not depend
on D_f can (:func:`jaxunlearn.attribution.member_teachers`), so this is the audit the fair table
could not run for ``matching``. Per seed and entry: balanced accuracy and AUC with the permutation
null's 99th percentile, TPR at 1% FPR; the retrain control (a model retrained without each forget
set; chance is 0.5) and the identity control (no unlearning) beside them. Mean and standard
deviation over seeds. Writes ``ulira.{json,md}`` into ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxunlearn import scripts  # noqa: E402

FIGURES = ("balanced_accuracy", "auc", "tpr_at_1pct_fpr")


def _row(entry: dict) -> dict:
  return {"balanced_accuracy": entry["balanced_acc"], "auc": entry["auc"],
          "tpr_at_1pct_fpr": entry["tpr_at_1pct_fpr"],
          "null_q99_balanced_accuracy": entry.get("null_balanced_acc_q99"),
          "null_q99_auc": entry.get("null_auc_q99"),
          "test_acc": entry.get("test_acc")}


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seeds", default="0,1,2,3,4")
  p.add_argument("--forget", default="random", choices=("flip", "random", "backdoor",
                                                        "flip_pool"))
  p.add_argument("--entry", action="append", default=[], metavar="LABEL=ENTRY")
  p.add_argument("--root", default="runs/matching_ulira")
  p.add_argument("--share-stores", default="", metavar="DIR")
  p.add_argument("--out", default="out/matching_ulira")
  p.add_argument("--setting", default="mnist5k", choices=("mnist5k", "fmnist"),
                 help="mnist5k: quick_audit's game on the embedded data; fmnist: the "
                      "Fashion-MNIST audit at 60,000 images (fmnist_audit.py's config: 8 "
                      "originals x 2 forget sets; --forget flip, random or flip_pool)")
  args = p.parse_args(argv)
  if not args.entry or any("=" not in e for e in args.entry):
    raise SystemExit("give at least one --entry LABEL=ENTRY")
  from experiments.matching import report
  from experiments.quality import lab
  from jaxunlearn import auditor
  from jaxunlearn.errors import ConfigError
  if args.setting == "fmnist":
    from experiments.matching import fmnist_audit
    if args.forget not in fmnist_audit.FORGET_SETS:
      raise ConfigError(f"--setting fmnist: unknown --forget {args.forget!r}; use one of "
                        f"{fmnist_audit.FORGET_SETS}")
    make = fmnist_audit.make_config
  else:
    make = lambda forget, seed: lab.make_config(seed, forget, holdout=0)  # noqa: E731
  labels = [e.split("=", 1)[0] for e in args.entry]
  runs = {}
  for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
    work = Path(args.root) / f"{args.forget}{seed}"
    if args.share_stores:
      report.share(work, Path(args.share_stores))
    cfg = make(args.forget, seed)
    cfg.audit.statistics = ("ulira",)
    cfg.audit.methods = tuple(args.entry)
    t0 = time.time()
    res = auditor.run_audit(cfg, work)["ulira"]
    runs[seed] = {k: _row(res[k]) for k in ("retrain_control", "identity_control", *labels)}
    runs[seed]["wall_s"] = time.time() - t0
    jax.clear_caches()
    print(seed, json.dumps({k: v["balanced_accuracy"] for k, v in runs[seed].items()
                            if isinstance(v, dict)}), f"{runs[seed]['wall_s']:.0f} s", flush=True)
  rows = ("retrain_control", "identity_control", *labels)
  summary = {r: {f: [float(np.mean([runs[s][r][f] for s in runs])),
                     float(np.std([runs[s][r][f] for s in runs], ddof=1)) if len(runs) > 1
                     else 0.0] for f in (*FIGURES, "null_q99_balanced_accuracy")}
             for r in rows}
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  record = {"setting": args.setting, "forget": args.forget, "entries": args.entry, "runs": runs,
            "summary": summary}
  (out / "ulira.json").write_text(json.dumps(record, indent=2))
  seeds = ",".join(map(str, runs))
  md = [f"# U-LiRA, {args.setting}, {args.forget} set, seeds {seeds}: mean ± std", "",
        "| population | balanced acc | null q99 | AUC | TPR @ 1% FPR |", "|---|---|---|---|---|"]
  for r in rows:
    e = summary[r]
    md.append(f"| {r} | {e['balanced_accuracy'][0]:.3f} ± {e['balanced_accuracy'][1]:.3f} | "
              f"{e['null_q99_balanced_accuracy'][0]:.3f} | {e['auc'][0]:.3f} ± {e['auc'][1]:.3f} "
              f"| {e['tpr_at_1pct_fpr'][0]:.3f} ± {e['tpr_at_1pct_fpr'][1]:.3f} |")
  (out / "ulira.md").write_text("\n".join(md) + "\n")
  print("\n".join(md))
  return record


if __name__ == "__main__":
  scripts.run(main)
