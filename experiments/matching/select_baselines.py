"""Selection on seed 100 for the methods that start from the original, by the fair table's rule.

    python experiments/matching/select_baselines.py --seed 100 --forget flip
        # -> out/matching_select/baselines_flip100/select.json

The fair benchmark asks every method to be tuned on the selection seed with the same objective
and a comparable budget of settings. ``selection.py`` did this for short retraining and
``matching``; this script does it for the methods that fine-tune the original, each from its
settings in ``configs/audit_methods.py`` (its authors' optimiser and epochs, and the learning
rate and main knob the proxy objective of ``tune_methods.py`` chose on the MLP):

* round 1, 9 settings: the learning rate (``ssd``: its ``alpha``, it has no rate) at 1/3, 1 and
  3 times the shipped value x the generic output temperature (``unlearn.output_temperature``)
  at 1.0, 1.2 and 1.5;
* rounds 2 to 4, each 3 settings per edge: a method whose choice (or, where no setting keeps
  test accuracy, its most accurate setting) sits at an edge of its grid gets one more value
  beyond that edge (the knob 3x further, the temperature 0.9 below 1.0, or the next of 2.0 and
  3.0 above 1.5), crossed with the other axis's values at the choice's; a choice inside the
  grid ends the method's rounds.

At most 27 settings per method (most need 12-18), as ``retrain_short`` @ 0.5 had 22 and
``matching`` @ 0.05 17.
The objective is ``selection.objective``: the mean of relative F over the two protocols, among
settings whose single-protocol test accuracy is at most ``--max-acc-drop`` below the retrain
population's. One audit (``epsilon`` and ``klom``, N = 32) per round on one work dir, so the
retrain, oracle and none populations are trained once. ``ct`` (no conv layer on the MLP) and
``scrub_r`` (it needs a held-out split, which the fair table's setting does not keep) are left
out and named in the output.

Writes ``select.{json,md}`` into ``--out`` (every setting's figures, its round, the chosen
ones marked; ``report.py --selection`` reads it) and prints the chosen entries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxunlearn import scripts  # noqa: E402

TEMPERATURES = (1.0, 1.2, 1.5)
FACTORS = (1 / 3, 1.0, 3.0)
# Where the temperature is widened past its edges: one step below 1.0, then up this ladder.
T_BELOW, T_LADDER = 0.9, (1.5, 2.0, 3.0)
# The methods that start from the original, as configs/audit_methods.py ships them.
METHODS = ("lightweight", "finetune", "gradient_ascent", "neggrad_plus", "random_label",
           "salun", "l1_sparse", "scrub", "bad_teacher", "msg", "random_reinit", "ssd",
           "reset_distill")
LEFT_OUT = {"ct": "no conv layer to transpose on the MLP",
            "scrub_r": "needs a held-out split; the fair table's setting keeps none"}


def _tag(x: float) -> str:
  return f"{x:.3g}".replace(".", "p").replace("-", "m").replace("+", "")


def base_fields(method: str) -> dict:
  """The shipped ``unlearn`` fields of ``method`` (``configs/audit_methods.py``), with the
  method's own fields written as an ``audit.methods`` entry spells them (no block prefix)."""
  from configs import audit_methods
  fields = {**audit_methods.SETTINGS.get(method, {}), **audit_methods.TUNED.get(method, {})}
  return {k.split(".", 1)[1] if k.startswith(f"{method}.") else k: v for k, v in fields.items()}


def knob(method: str) -> str:
  """The axis scaled by :data:`FACTORS`: the learning rate, or ``ssd``'s ``alpha``."""
  return "alpha" if method == "ssd" else "learning_rate"


def entry(method: str, value: float, temperature: float) -> tuple[str, str]:
  """``(label, audit.methods entry)`` of one setting."""
  fields = base_fields(method)
  fields[knob(method)] = float(f"{value:.6g}")
  fields["output_temperature"] = temperature
  text = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in fields.items())
  return f"{method}_k{_tag(value)}_t{_tag(temperature)}", f"{method}:{text}"


def round_one(methods=METHODS) -> dict:
  """``{method: {(knob value, temperature): (label, entry)}}``: the 3 x 3 grids."""
  out = {}
  for m in methods:
    v0 = float(base_fields(m)[knob(m)])
    out[m] = {(v0 * f, t): entry(m, v0 * f, t) for f in FACTORS for t in TEMPERATURES}
  return out


def widen(points, choice) -> list[tuple[float, float]]:
  """The settings one step past each edge of ``points`` (``(knob, temperature)`` pairs) that
  ``choice`` sits on, crossed with the other axis's values tried at the choice's."""
  ks = sorted({k for k, _ in points})
  ts = sorted({t for _, t in points})
  k, t = choice
  new = []
  if k == ks[0]:
    new += [(k / 3, tt) for tt in ts if (k, tt) in points]
  if k == ks[-1]:
    new += [(k * 3, tt) for tt in ts if (k, tt) in points]
  if t == ts[0] and t > T_BELOW:
    new += [(kk, T_BELOW) for kk in ks if (kk, t) in points]
  above = [x for x in T_LADDER if x > t]
  if t == ts[-1] and above:
    new += [(kk, above[0]) for kk in ks if (kk, t) in points]
  return [p for p in dict.fromkeys(new) if p not in points]


def edges(points, choice) -> list[str]:
  """Which edges of its grid ``choice`` sits on (``knob low/high``, ``temperature low/high``),
  including those past which :func:`widen` does not go."""
  ks = sorted({k for k, _ in points})
  ts = sorted({t for _, t in points})
  k, t = choice
  return [name for name, on in (("knob low", k == ks[0]), ("knob high", k == ks[-1]),
                                 ("temperature low", t == ts[0]),
                                 ("temperature high", t == ts[-1])) if on]


def pick(grid: dict, scores: dict):
  """``(point, feasible)``: the best feasible point of one method, else the one closest to
  feasible (the highest test accuracy), which widening moves past."""
  feasible = {p: scores[lab]["objective"] for p, (lab, _) in grid.items()
              if scores[lab]["objective"] is not None}
  if feasible:
    return max(feasible, key=feasible.get), True
  return max(grid, key=lambda p: scores[grid[p][0]]["test_acc"]), False


def argv_of(args) -> list[str]:
  """The shared flags of a per-method process."""
  return ["--seed", str(args.seed), "--forget", args.forget, "--num-models",
          str(args.num_models), "--max-acc-drop", str(args.max_acc_drop), "--rounds",
          str(args.rounds), *(["--workdir", args.workdir] if args.workdir else [])]


def merge(d: Path, methods) -> dict:
  """One ``select.{json,md}`` in ``d`` from the per-method ones in ``d/<method>``."""
  parts = [json.loads((d / m / "select.json").read_text()) for m in methods]
  out = {**{k: v for k, v in parts[0].items() if k not in ("rows", "chosen", "wall_s")},
         "wall_s": {m: p["wall_s"] for m, p in zip(methods, parts)},
         "rows": [r for p in parts for r in p["rows"]],
         "chosen": {k: {**v, "at_edge": edges(
             {(r["knob_value"], r["temperature"]) for r in p["rows"] if r["family"] == k},
             next((r["knob_value"], r["temperature"]) for r in p["rows"]
                  if r["label"] == v["label"]))}
             for p in parts for k, v in p["chosen"].items()},
         "none_feasible": [m for p in parts for m in p["none_feasible"]]}
  (d / "select.json").write_text(json.dumps(out, indent=2))
  md = [(d / m / "select.md").read_text().splitlines() for m in methods]
  lines = md[0][:6] + [line for part in md for line in part[6:]]
  (d / "select.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(json.dumps(out["chosen"], indent=2))
  return out


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip", choices=("flip", "random", "backdoor"))
  p.add_argument("--num-models", type=int, default=32)
  p.add_argument("--max-acc-drop", type=float, default=0.02)
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--rounds", type=int, default=4, choices=(1, 2, 3, 4))
  p.add_argument("--redo", default="", help="comma-separated methods whose per-method result "
                 "is made again (more rounds; the work dir's cached runs are reused)")
  p.add_argument("--workdir", default="",
                 help="default: runs/matching_select/<forget><seed>, selection.py's")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  unknown = [m for m in methods if m not in METHODS]
  redo = [m.strip() for m in args.redo.split(",") if m.strip()]
  unknown = unknown or [m for m in redo if m not in methods]
  if unknown:
    raise SystemExit(f"--methods/--redo: {unknown} not among {methods} "
                     f"(left out: {LEFT_OUT})")
  d = Path(args.out or f"out/matching_select/baselines_{args.forget}{args.seed}")
  if len(methods) > 1:
    # One process per method: a hundred compiled runs in one process exhaust the LLVM JIT's
    # memory maps (vm.max_map_count) on CPU. The work dir's populations are shared through its
    # cache, so each process trains only its own method's runs.
    for m in methods:
      if (d / m / "select.json").is_file() and m not in redo:
        continue
      cmd = [sys.executable, __file__, "--methods", m, "--out", str(d / m),
             *(a for a in argv_of(args) if a)]
      print("$", " ".join(cmd), flush=True)
      subprocess.run(cmd, check=True)
    return merge(d, methods)
  from experiments.matching import selection
  from experiments.quality import lab
  from jaxunlearn import auditor
  grids = round_one(methods)
  rounds = {m: {pt: 1 for pt in g} for m, g in grids.items()}
  workdir = Path(args.workdir or f"runs/matching_select/{args.forget}{args.seed}")
  walls, res, scores, open_ = [], None, {}, set(methods)
  for r in range(1, args.rounds + 1):
    cfg = lab.make_config(args.seed, args.forget, holdout=0, n_models=args.num_models)
    cfg.audit.statistics = ("epsilon", "klom")
    cfg.audit.methods = tuple(f"{lab_}={e}" for g in grids.values() for lab_, e in g.values())
    t0 = time.time()
    res = auditor.run_audit(cfg, workdir)
    walls.append(time.time() - t0)
    retrain_acc = res["epsilon"]["single"]["oracle"]["test_acc"]
    scores = {lab_: selection.score(res, lab_, retrain_acc, args.max_acc_drop)
              for g in grids.values() for lab_, _ in g.values()}
    print(f"round {r}: {len(scores)} settings, {walls[-1]:.0f} s", flush=True)
    if r == args.rounds:
      break
    for m in sorted(open_):
      new = widen(set(grids[m]), pick(grids[m], scores)[0])
      if not new:
        open_.discard(m)
      for pt in new:
        grids[m][pt] = entry(m, *pt)
        rounds[m][pt] = r + 1
    if not open_:
      break
  rows, chosen = [], {}
  for m, g in grids.items():
    best, feasible = pick(g, scores)
    for pt, (lab_, e) in g.items():
      rows.append({"family": m, "label": lab_, "entry": e, "round": rounds[m][pt],
                   "knob": knob(m), "knob_value": pt[0], "temperature": pt[1], **scores[lab_]})
    if feasible:
      chosen[m] = {"label": g[best][0], "entry": g[best][1],
                   "objective": scores[g[best][0]]["objective"], "settings": len(g),
                   "at_edge": edges(set(g), best)}
  out = {"seed": args.seed, "forget": args.forget, "num_models": args.num_models,
         "max_acc_drop": args.max_acc_drop, **selection.floors(res), "wall_s": walls,
         "left_out": LEFT_OUT, "rows": rows, "chosen": chosen,
         "none_feasible": [m for m in grids if m not in chosen]}
  d.mkdir(parents=True, exist_ok=True)
  (d / "select.json").write_text(json.dumps(out, indent=2))
  lines = [f"# Selection of the from-original methods: seed {args.seed}, {args.forget} set, "
           f"N = {args.num_models}", "",
           f"retrain test acc {retrain_acc:.4f}; oracle F {out['oracle_f']:.3f}; KLOM P95 D_f "
           f"floor {out['klom_floor_p95_forget']}; wall per round "
           f"{', '.join(f'{w:.0f}' for w in walls)} s; left out: {LEFT_OUT}", "",
           *selection.table(rows, chosen, first="method", with_round=True)]
  (d / "select.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(json.dumps(chosen, indent=2))
  return out


if __name__ == "__main__":
  scripts.run(main)
