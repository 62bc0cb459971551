"""The attribution store's per-example OUT estimates against real retraining, on D_f.

    python experiments/matching/check_attribution.py --config configs/quick_audit.py \
        --seed 100 --workdir runs/check_attribution --out out/check_attribution

Issue 24, item 2's check: for each D_f example, the attribution store's OUT
mean phi (the mean over the store's models that did not train on it,
:mod:`jaxunlearn.attribution`) against the mean phi of the audit's retrain
population (``audit.num_models`` models trained from scratch on D_r), as a
Pearson and a Spearman correlation and as an error in units of retraining's
own standard deviation per example (bias: the mean signed error; and the
median absolute error). The same for the store's OUT standard deviation
against retraining's (their ratio), which a per-run target drawn from the OUT
population would inherit.

The two are not the same quantity, and the gap is the point of the check: no
store model leaves out all of D_f (each trains on about half of it, and on
the memorised and backdoored sets the other altered images still teach what
they teach), and a store model trains on a keep fraction of the data for the
same epochs as retraining, so fewer steps. Runs on the selection seed (100)
by default: what this shows chooses a teacher, and is not a reported figure.

Writes ``check_attribution.{json,md}`` into ``--out``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments import common  # noqa: E402


def _machine() -> str:
  return f"{platform.machine()} host, {os.cpu_count()} cores"


def compare(estimate: np.ndarray, estimate_sd: np.ndarray, retrain_phi: np.ndarray) -> dict:
  """Per-example estimates ``[n]`` (mean, sd) against a retrain population's phi ``[N, n]``."""
  mean, sd = retrain_phi.mean(0), retrain_phi.std(0, ddof=1)
  ok = np.isfinite(estimate) & np.isfinite(estimate_sd) & (sd > 0)
  err = (estimate[ok] - mean[ok]) / sd[ok]

  def ranks(v):
    return np.argsort(np.argsort(v)).astype(float)

  return {"n_examples": int(ok.sum()), "n_unscored": int((~ok).sum()),
          "pearson": float(np.corrcoef(estimate[ok], mean[ok])[0, 1]),
          "spearman": float(np.corrcoef(ranks(estimate[ok]), ranks(mean[ok]))[0, 1]),
          "bias_in_retrain_sd": float(err.mean()),
          "median_abs_error_in_retrain_sd": float(np.median(np.abs(err))),
          "share_within_one_sd": float(np.mean(np.abs(err) <= 1.0)),
          "sd_ratio_median": float(np.median(estimate_sd[ok] / sd[ok])),
          "retrain_phi_mean": float(mean[ok].mean()), "estimate_phi_mean": float(estimate[ok].mean())}


def markdown(r: dict) -> str:
  rows = ["| estimate | examples | Pearson | Spearman | bias (retrain sd) | median abs error "
          "(retrain sd) | within 1 sd | sd ratio (median) |",
          "|---|---|---|---|---|---|---|---|"]
  for name, c in r["comparisons"].items():
    rows.append(f"| {name} | {c['n_examples']} | {c['pearson']:.3f} | {c['spearman']:.3f} | "
                f"{c['bias_in_retrain_sd']:+.2f} | {c['median_abs_error_in_retrain_sd']:.2f} | "
                f"{c['share_within_one_sd']:.2f} | {c['sd_ratio_median']:.2f} |")
  return "\n".join([
      f"# Attribution OUT estimates against retraining on D_f ({r['config']}, seed {r['seed']})",
      "", f"Store: K = {r['num_models']} models at keep fraction {r['keep_fraction']} "
      f"({r['store_cost_in_retrainings']:.1f} retrainings, one-off; D_f kept at "
      f"{'a per-model rate' if r['forget_rate'] else 'the same rate'}); retrain population: "
      f"N = {r['n_retrain']} models on D_r. |D_f| = {r['n_forget']}.", "", *rows, "",
      f"`{r['command']}`; {r['machine']}; {r['date']}."])


def main(argv=None) -> dict:
  from jaxunlearn import attribution, auditor, request, results, scripts
  from jaxunlearn.audits import RETRAIN
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/quick_audit.py", type=common._config_file)
  p.add_argument("--seed", type=int, default=100,
                 help="run and forget seed (default: the selection seed, 100)")
  p.add_argument("--num-models", type=int, default=attribution.DEFAULT_NUM_MODELS)
  p.add_argument("--keep-fraction", type=float, default=attribution.DEFAULT_KEEP_FRACTION)
  p.add_argument("--forget-rate", default="", choices=attribution.FORGET_RATES,
                 help="'uniform': the store keeps D_f at a per-model rate, and the count-0 "
                      "regression (attribution.count_zero) is compared too; 'zero': rates with "
                      "several models at none of D_f, and the step fit too")
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True, type=scripts.out_dir())
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 type=common._set_item)
  args = p.parse_args(argv)
  cfg = common.load_config(args.config, args.set)
  cfg.seed, cfg.forget.seed = args.seed, args.seed
  with request.open_request(cfg, args.workdir, methods=[], checks=(auditor.check,)) as req:
    audit = auditor.Auditor(req)
    retrain = np.asarray(audit.train_population(RETRAIN, audit.remain_rows)["phi"])
    store = attribution.build(req.prep, attribution.Settings(num_models=args.num_models,
                                                             keep_fraction=args.keep_fraction,
                                                             forget_rate=args.forget_rate))
    pos = store.positions(req.splits.forget_idx)
    forget_idx = np.asarray(req.splits.forget_idx)
  est = store.estimates
  comparisons = {
      "OUT mean (models without the example)": compare(est["out_mean"][pos], est["out_std"][pos],
                                                       retrain),
      "IN mean (models with it; the original's side)": compare(est["in_mean"][pos],
                                                               est["in_std"][pos], retrain),
  }
  if args.forget_rate:
    zero = attribution.count_zero(store, forget_idx)
    comparisons["count-0 regression (own and others' membership at 0)"] = compare(
        zero["mean"], zero["std"], retrain)
    zero2 = attribution.count_zero(store, forget_idx, degree=2)
    comparisons["count-0 regression, quadratic in the others' share"] = compare(
        zero2["mean"], zero2["std"], retrain)
  if args.forget_rate == "zero":
    step = attribution.count_zero(store, forget_idx, degree=2, step=True)
    comparisons["count-0 regression, quadratic and a step at none (matching's step)"] = compare(
        step["mean"], step["std"], retrain)
  meta = store.meta
  r = {"forget_rate": args.forget_rate,"config": args.config, "seed": args.seed, "num_models": store.num_models,
       "keep_fraction": meta["keep_fraction"], "n_forget": int(pos.size),
       "n_retrain": int(retrain.shape[0]),
       "store_cost_in_retrainings": meta["cost"]["one_off_examples"]
       / meta["cost"]["retrain_examples"],
       "comparisons": comparisons, "machine": _machine(), "environment": results.environment(),
       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
       "command": " ".join(["check_attribution.py", *(sys.argv[1:] if argv is None else argv)])}
  text = markdown(r)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "check_attribution.json").write_text(json.dumps(r, indent=2))
  (out / "check_attribution.md").write_text(text + "\n")
  print(text)
  return r


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
