"""An honest speedup table: what each way of running the paper's method costs per request.

    PYTHONPATH=. python benchmarks/speedup_modes.py --config configs/quick.py --out out/speedup_modes

Runs the real pipeline (``jaxunlearn.pipeline.run``, the same timing as
``results.json``: device seconds, compilation apart) in three modes and
writes ``speedup_modes.{json,md}``:

* ``paper``: the config as given; the paper's reference trains 50 epochs on
  D_s (10% of D) against the original's 20 on D. Bound: speedup without
  reuse <= retrain / reference ~ (20 * |D_r|) / (50 * |D_s|) = 3.96x.
* ``equal_epochs``: the reference trains as many epochs as the original.
  Bound: ~ |D_r| / |D_s| = 9.9x.
* ``holdout``: ``reference.source=holdout``: D_s comes from a held-out split
  that no original and no forget request touches, so one reference serves
  every request; the second request (another forget seed) reuses it and its
  cost is the unlearning alone. Bound: retrain / unlearn, where unlearning
  takes ``unlearn.epochs`` passes over D_f (a few steps) plus the forward
  passes that make its inputs.

Each mode reports retrain, reference and unlearn seconds, the speedup
``retrain / (reference + unlearn)`` and the per-request speedup with the
reference reused, ``retrain / unlearn``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402
from jaxunlearn import scripts  # noqa: E402


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/quick.py")
  p.add_argument("--out", required=True)
  p.add_argument("--set", action="append", default=[], help="FIELD=VALUE config overrides")
  p.add_argument("--holdout_size", type=float, default=0.1,
                 help="held-out split for the holdout mode (fraction or count)")
  return p.parse_args(argv)


def _row(mode, r, bound):
  t = r["time_s"]
  return {"mode": mode, "retrain_s": t["retrain"], "reference_s": t.get("reference", 0.0),
          "unlearn_s": t["unlearn"], "speedup": r["speedup"],
          "speedup_reused": r["speedup_amortized"], "reference_reused": r["reference_reused"],
          "reference_epochs": r["config"]["reference"]["epochs"],
          "train_epochs": r["config"]["train"]["epochs"], "n_reference": r["n_reference"],
          "n_remain": r["n_remain"], "acc_test_unlearned": r["models"]["unlearned"]["acc_test"],
          "reference_stage": r["stages"].get("reference"),
          "bound": bound}


def main(argv=None) -> dict:
  args = parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  base = list(args.set) + ["eval.evaluators=()", "report.progress=False"]
  rows = []

  cfg = common.load_config(args.config, base)
  r = common.run(cfg, out / "work")
  rows.append(_row("paper", r, "retrain / reference: (train epochs x |D_r|) / "
                               "(reference epochs x |D_s|)"))
  cfg = common.load_config(args.config, base + [f"reference.epochs={cfg.train.epochs}"])
  r = common.run(cfg, out / "work")
  rows.append(_row("equal_epochs", r, "|D_r| / |D_s|"))
  hold = base + [f"holdout.size={args.holdout_size}", "reference.source=holdout"]
  cfg = common.load_config(args.config, hold)
  first = common.run(cfg, out / "work_holdout")
  rows.append(_row("holdout, first request", first, "as paper (the reference is trained)"))
  cfg = common.load_config(args.config, hold + [f"forget.seed={cfg.seed + 1}"])
  second = common.run(cfg, out / "work_holdout")
  if not second["reference_reused"]:
    raise RuntimeError("the second holdout request did not reuse the reference model")
  rows.append(_row("holdout, later request", second, "retrain / unlearn (reference reused)"))

  load = os.getloadavg()
  result = {"config": args.config, "overrides": args.set, "rows": rows,
            "machine": f"{second['environment']['host']} ({platform.platform()}), "
                       f"{os.cpu_count()} CPU cores",
            "load_average": load, "environment": second["environment"],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}
  (out / "speedup_modes.json").write_text(json.dumps(result, indent=2))
  (out / "speedup_modes.md").write_text(markdown(result))
  print(markdown(result))
  return result


def markdown(result) -> str:
  lines = ["| mode | ref epochs / train epochs | retrain s | reference s | unlearn s | speedup | "
           "speedup, reference reused | bound |", "|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(f"| {r['mode']} | {r['reference_epochs']} / {r['train_epochs']} | "
                 f"{r['retrain_s']:.2f} | {r['reference_s']:.2f} | {r['unlearn_s']:.3f} | "
                 f"{r['speedup']:.2f}x | {r['speedup_reused']:.1f}x | {r['bound']} |")
  lines += ["", f"Machine: {result['machine']}; load average {result['load_average']}; "
                f"{result['date']}; `{result['command']}`."]
  return "\n".join(lines)


if __name__ == "__main__":
  scripts.run(main)
