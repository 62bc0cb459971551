"""Tunes each method over its search space on a selection seed that is never reported.

    python experiments/tune_methods.py --config configs/quick.py --methods all \
        --seed 100 --out out/tune_methods

For each method: ``--config``, its settings from ``--settings`` (untuned:
the authors' defaults), then ``--set``; seed and forget seed set to
``--seed``. The whole grid (learning rate x the method's main knob, at most
16 points) runs as one vmapped call; the point with the lowest objective of
:mod:`jaxunlearn.tuning` wins. Writes ``tune_methods.{json,csv,md}`` and
prints the ``TUNED`` dict to paste into the settings file.
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common, method_requests  # noqa: E402

NAME = "tune_methods"
HEADER = ["method", "points", "chosen", "objective", "RA", "FA", "HA", "MIA", "grid s",
          "compile s"]


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick.py")
  p.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
  p.add_argument("--seed", type=int, default=100, help="selection seed (also the forget seed)")
  p.add_argument("--settings", default=str(common.ROOT / "configs" / "quick_methods.py"))
  args = p.parse_args(argv)
  out = Path(args.out)
  settings = method_requests.load_settings(args.settings)
  from jaxunlearn import methods, tuning
  names = methods.names() if args.methods == "all" else \
      [m.strip() for m in args.methods.split(",") if m.strip()]
  results, rows, tuned = [], [], {}
  for name in names:
    cfg = common.load_config(args.config)
    settings.apply(cfg, name, tuned=False)
    for item in args.set:
      field, _, raw = item.partition("=")
      common.set_field(cfg, field, common.parse_value(raw))
    cfg.seed = args.seed
    cfg.forget.seed = args.seed
    r = tuning.tune(cfg, out / "work" / f"seed{args.seed}")
    results.append(r)
    best = r["grid"][r["best_index"]]
    shared = ("learning_rate", "output_temperature", *methods.get(name).shared_hparams)
    knobs = {(k if k in shared else f"{name}.{k}"): float(f"{v:.6g}")
             for k, v in r["best"].items()}
    tuned[name] = knobs
    rows.append([name, len(r["grid"]), ", ".join(f"{k}={v:g}" for k, v in r["best"].items()),
                 f"{best['objective']:.4f}", f"{best['acc_remain']:.4f}",
                 f"{best['acc_forget']:.4f}", f"{best['acc_heldout']:.4f}",
                 f"{best['mia']:.4f}", f"{r['grid_s']:.1f}", f"{r['compile_s']:.1f}"])
    # Written after every method, so a stopped run keeps what it finished.
    common.write_outputs(out, NAME, HEADER, rows, results, {**common.provenance(),
                                                            "tuned": tuned})
    print(f"{name}: best {r['best']} objective {best['objective']:.4f} "
          f"(grid of {len(r['grid'])} in {r['grid_s']:.1f}s + compile {r['compile_s']:.1f}s)",
          flush=True)
  ret = results[0]["retrain"] if results else {}
  note = (f"Selection seed and forget seed {args.seed}. Objective: (|dRA| + |dFA| + |dHA|)/3 "
          "+ |dMIA| to the retrained model (RA remain, FA forget, HA held-out accuracy, MIA "
          f"loss-attack balanced accuracy); retrained: RA {ret.get('acc_remain', 0):.4f}, "
          f"FA {ret.get('acc_forget', 0):.4f}, HA {ret.get('acc_heldout', 0):.4f}, "
          f"MIA {ret.get('mia', 0):.4f}. Each grid is one vmapped call (grid s: its run time).")
  text = common.write_outputs(out, NAME, HEADER, rows, results,
                              {**common.provenance(), "tuned": tuned}, note)
  print(text)
  print("TUNED = " + pprint.pformat(tuned, sort_dicts=True))
  return {"results": results, "tuned": tuned, "markdown": text}


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
