"""Per-example memorisation scores from an attribution store (built once per training set).

    python experiments/attribute.py --config configs/quick_audit.py --workdir runs/quick_audit \
        --out out/attribute [--set FIELD=VALUE] [--num-models 64] [--keep-fraction 0.5]

Builds (or loads) the attribution store of the config's training set
(:mod:`jaxunlearn.attribution`: K models, each on a random keep-mask of the
training rows, under ``WORKDIR/attribution/<key>/`` or ``--root``), without
training the run's original. Writes ``OUT/memorisation.csv`` (one row per
training row: its dataset ``index``, ``label``, ``score`` = IN mean phi - OUT
mean phi, ``in_count``, ``out_count``) and ``OUT/attribution.json`` (the
store, its one-off cost in examples, the score's quantiles and the most
memorised rows). A killed build resumes from its finished chunks.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

TOP = 20


def summary(store, scores, command: str) -> dict:
  """The JSON summary: where the store is, what it cost, the scores' spread, the top rows."""
  import numpy as np
  finite = np.isfinite(scores)
  q = {f"q{int(100 * p)}": float(np.quantile(scores[finite], p)) if finite.any() else None
       for p in (0.1, 0.5, 0.9, 0.99)}
  order = np.argsort(-np.where(finite, scores, -np.inf))[:TOP]
  meta = store.meta
  return {
      "store": str(store.path), "key": meta["key"], "num_models": meta["num_models"],
      "keep_fraction": meta["keep_fraction"], "n_train": meta["n_train"],
      "n_heldout": meta["n_heldout"], "cost": meta["cost"],
      "cost_in_retrainings": meta["cost"]["one_off_examples"] / meta["cost"]["retrain_examples"],
      "memorisation": {"what": "IN mean phi - OUT mean phi (Feldman)", **q,
                       "mean": float(np.mean(scores[finite])) if finite.any() else None,
                       "unscored": int((~finite).sum())},
      "most_memorised": [{"index": int(store.rows[j]), "label": int(store.labels[j]),
                          "score": float(scores[j])} for j in order],
      "command": command}


def main(argv=None) -> dict:
  from jaxunlearn import attribution, request as request_lib, scripts
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--config", type=common._config_file,
                 help="config file (configs/*.py)")
  p.add_argument("--workdir", help="the run's work dir (the store lives under it "
                 "unless --root)")
  p.add_argument("--out", required=True, type=scripts.out_dir(), help="output folder")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 type=common._set_item, help="config override, e.g. --set train.epochs=5")
  p.add_argument("--num-models", type=int, default=attribution.DEFAULT_NUM_MODELS,
                 help="K models (default %(default)s)")
  p.add_argument("--keep-fraction", type=float, default=attribution.DEFAULT_KEEP_FRACTION,
                 help="share of the training rows each model trains on (default %(default)s)")
  p.add_argument("--seed", type=int, default=0, help="the masks' and models' seed")
  p.add_argument("--chunk-size", type=int, default=0,
                 help="models per compiled call and saved chunk (0: audit.chunk_size)")
  p.add_argument("--memory-fraction", type=float, default=0.0,
                 help="share of available memory (0: audit.memory_fraction)")
  p.add_argument("--forget-rate", default="", choices=attribution.FORGET_RATES,
                 help="'uniform': keep D_f at a per-model rate (read with attribution.count_zero; "
                      "the store then belongs to the forget set)")
  p.add_argument("--root", default="", help="folder of stores shared by work dirs "
                 "(default: WORKDIR/attribution)")
  args = p.parse_args(argv)
  missing = [flag for flag in ("config", "workdir") if getattr(args, flag) is None]
  if missing:
    p.error(f"the following arguments are required: --{', --'.join(missing)}")
  cfg = common.load_config(args.config, args.set)
  settings = attribution.Settings(num_models=args.num_models, keep_fraction=args.keep_fraction,
                                  seed=args.seed, chunk_size=args.chunk_size,
                                  memory_fraction=args.memory_fraction, root=args.root,
                                  forget_rate=args.forget_rate)
  prep = request_lib.prepare(cfg, args.workdir)
  store = attribution.build(prep, settings)
  scores = attribution.memorisation(store)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "memorisation.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["index", "label", "score", "in_count", "out_count"])
    for j in range(store.rows.size):
      w.writerow([int(store.rows[j]), int(store.labels[j]), f"{scores[j]:.6g}",
                  int(store.estimates["in_count"][j]), int(store.estimates["out_count"][j])])
  result = summary(store, scores, " ".join(sys.argv if argv is None else ["attribute.py", *argv]))
  (out / "attribution.json").write_text(json.dumps(result, indent=2))
  print(f"attribution store {store.path} ({store.num_models} models); memorisation of "
        f"{store.rows.size} rows -> {out / 'memorisation.csv'}")
  return result


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
