"""A look on the selection seed: some audit.methods entries on one seed's forget sets.

    python experiments/matching/look.py --seed 100 --forget flip,backdoor \
        --entry "mt=matching:retrain_fraction=0.05,anchor=teacher,..." [--entry ...]

The research loop of ``experiments/matching/README.md``: for each forget set, one audit
(quick_audit's MLP on mnist5k, ``epsilon`` and ``klom``, N = 32) of the entries, in the work
dir ``runs/step<seed>/<set>`` (its populations and teacher stores cached across looks). Prints,
per entry: relative F in both protocols, test accuracy beside the retrain population's, KLOM
P95 on D_f, retain and held-out points (and the oracle's, the floor), and the steps run.
Writes ``look.json`` into ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxunlearn import scripts  # noqa: E402


def _k(klom: dict, label: str, split: str):
  v = klom.get("single", {}).get(label, {}).get(split, {}).get("p95")
  return None if v is None else round(float(v), 2)


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip")
  p.add_argument("--entry", action="append", default=[], metavar="LABEL=ENTRY")
  p.add_argument("--num-models", type=int, default=32)
  p.add_argument("--root", default="")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  sets = [s.strip() for s in args.forget.split(",") if s.strip()]
  bad = [s for s in sets if s not in ("flip", "random", "backdoor", "flip_pool")]
  if bad or not args.entry:
    raise SystemExit(f"--forget {bad} unknown (use flip, random, backdoor, flip_pool)" if bad else
                     "give at least one --entry LABEL=ENTRY")
  from experiments.quality import lab
  from jaxunlearn import auditor
  root = Path(args.root or f"runs/step{args.seed}")
  out = {"seed": args.seed, "entries": args.entry, "sets": {}}
  for forget in sets:
    cfg = lab.make_config(args.seed, forget, holdout=0, n_models=args.num_models)
    cfg.audit.statistics = ("epsilon", "klom")
    cfg.audit.methods = tuple(args.entry)
    t0 = time.time()
    res = auditor.run_audit(cfg, root / forget)
    eps, klom = res["epsilon"], res.get("klom", {})
    acc = eps["single"]["oracle"]["test_acc"]
    rows = {"floor": {"klom_p95_forget": _k(klom, "oracle", "forget"),
                      "klom_p95_retain": _k(klom, "oracle", "remain"),
                      "klom_p95_heldout": _k(klom, "oracle", "heldout"), "test_acc": acc}}
    for label in (e.split("=", 1)[0] for e in args.entry):
      s, q = eps["single"][label], eps["per_seed"][label]
      rows[label] = {"relative_f_single": round(s["relative_f"], 3),
                     "relative_f_per_seed": round(q["relative_f"], 3),
                     "test_acc": round(s["test_acc"], 4),
                     "test_acc_per_seed": round(q["test_acc"], 4),
                     "klom_p95_forget": _k(klom, label, "forget"),
                     "klom_p95_retain": _k(klom, label, "remain"),
                     "klom_p95_heldout": _k(klom, label, "heldout"),
                     "steps": res["methods"][label]["schedule"]["steps"]}
    out["sets"][forget] = {"wall_s": time.time() - t0, "rows": rows}
    print(forget, f"{time.time() - t0:.0f} s", flush=True)
    for label, r in rows.items():
      print(f"  {label}: {json.dumps(r)}", flush=True)
  d = Path(args.out or f"out/look{args.seed}")
  d.mkdir(parents=True, exist_ok=True)
  (d / "look.json").write_text(json.dumps(out, indent=2))
  return out


if __name__ == "__main__":
  scripts.run(main)
