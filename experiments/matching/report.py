"""The fair table: the settings chosen on seed 100, reported on seeds 0-4 and three forget sets.

    python experiments/matching/report.py --seeds 0,1,2,3,4 --forget flip,random,backdoor \
        --out out/matching_report

For each seed and forget set (quick_audit's MLP on mnist5k, N = 32, ``epsilon`` and
``klom``), one audit runs every row as a plan of one request: each family's setting
``experiments/matching/selection.py`` chose on the selection seed (``--selection``, never
reported here), and ``importance_retrain`` as ``configs/quick_audit.py`` ships it. Per row and set, each figure is
the mean and standard deviation over seeds:

* relative F in both protocols (the oracle, a second retrain population scored against the
  first, is 1 by construction; its F is the retrain-vs-retrain floor, reported per set);
* KLOM P95 and median on D_f (single protocol) and its floor (the oracle's P95), KLOM P95 on
  the retain and held-out probes;
* test accuracy minus the retrain population's;
* examples per request as a fraction of retraining's, and for ``matching`` the teacher
  store's one-off cost (paid per forget set on these benchmarks).

Writes ``report.{json,md}`` into ``--out`` (every seed's figures, and the summary).
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

# Beside the selected rows: importance_retrain as configs/quick_audit.py ships it (chosen on
# seed 100 earlier, by experiments/quality).
SHIPPED = {"isr": "importance_retrain:retrain_fraction=0.1875,remain_batch_size=12,"
                  "learning_rate=0.002"}
LABELS = {"retrain_short@0.1": "rs_10", "retrain_short@0.2": "rs_20", "retrain_short@0.5": "rs_50",
          "retrain_short@0.05": "rs_5", "matching@0.05": "matching_5",
          "matching@0.02": "matching_2"}


def rows_from(selection: dict) -> dict:
  """``{label: entry}``: each family's chosen entry (``selection.py``'s ``chosen``), then
  :data:`SHIPPED`."""
  out = {}
  for family, chosen in selection["chosen"].items():
    out[LABELS.get(family, family.replace("@", "_").replace(".", "p"))] = chosen["entry"]
  return {**out, **SHIPPED}


FIGURES = ("relative_f_single", "relative_f_per_seed", "klom_p95_forget", "klom_median_forget",
           "klom_p95_retain", "klom_p95_heldout", "test_acc_minus_retrain", "cost_fraction")


def _klom(klom: dict, label: str, split: str, stat: str):
  return klom.get("single", {}).get(label, {}).get(split, {}).get(stat)


def seed_figures(res: dict, rows) -> dict:
  """One audit's figures per row (and the oracle's floors)."""
  eps, klom = res["epsilon"], res.get("klom", {})
  retrain_acc = eps["single"]["oracle"]["test_acc"]
  out = {"oracle_f": eps["single"]["oracle"]["forgetting_quality"],
         "klom_floor_p95_forget": _klom(klom, "oracle", "forget", "p95"),
         "klom_floor_median_forget": _klom(klom, "oracle", "forget", "median"),
         "klom_floor_p95_retain": _klom(klom, "oracle", "remain", "p95"),
         "klom_floor_p95_heldout": _klom(klom, "oracle", "heldout", "p95"),
         "retrain_test_acc": retrain_acc, "rows": {}}
  # Doing nothing (the originals): one population, the same in both protocols' terms.
  none = eps["single"]["none"]
  out["rows"]["none"] = {
      "relative_f_single": none["relative_f"], "relative_f_per_seed": none["relative_f"],
      "klom_p95_forget": _klom(klom, "none", "forget", "p95"),
      "klom_median_forget": _klom(klom, "none", "forget", "median"),
      "klom_p95_retain": _klom(klom, "none", "remain", "p95"),
      "klom_p95_heldout": _klom(klom, "none", "heldout", "p95"),
      "test_acc_minus_retrain": none["test_acc"] - retrain_acc, "cost_fraction": 0.0}
  for label in rows:
    s, q = eps["single"][label], eps["per_seed"][label]
    m = res["methods"][label]
    steps = m["schedule"]["steps"]
    out["rows"][label] = {
        "relative_f_single": s["relative_f"], "relative_f_per_seed": q["relative_f"],
        "klom_p95_forget": _klom(klom, label, "forget", "p95"),
        "klom_median_forget": _klom(klom, label, "forget", "median"),
        "klom_p95_retain": _klom(klom, label, "remain", "p95"),
        "klom_p95_heldout": _klom(klom, label, "heldout", "p95"),
        "test_acc_minus_retrain": s["test_acc"] - retrain_acc,
        "steps": steps, "schedule": m["schedule"],
        "teacher": res.get("teachers", {}).get(label)}
  return out


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seeds", default="0,1,2,3,4")
  p.add_argument("--forget", default="flip,random,backdoor")
  p.add_argument("--selection", default="out/matching_select/flip100/select.json",
                 help="selection.py's select.json: the chosen setting of each family")
  p.add_argument("--rows", default="", help="comma-separated row labels (default: all)")
  p.add_argument("--extra", action="append", default=[], metavar="LABEL=ENTRY",
                 help="a row beside the selected ones (an audit.methods entry), repeatable")
  p.add_argument("--num-models", type=int, default=32)
  p.add_argument("--share-stores", default="", metavar="DIR",
                 help="one folder of attribution stores for every seed's work dir (each work "
                      "dir's attribution/ becomes a link to it), so that requests on the same "
                      "training set share a store whose key does not depend on D_f")
  p.add_argument("--root", default="runs/matching_report")
  p.add_argument("--out", default="out/matching_report")
  args = p.parse_args(argv)
  from experiments.quality import lab
  from jaxunlearn import auditor, request as request_lib, results as results_lib
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  sets = [s.strip() for s in args.forget.split(",") if s.strip()]
  unknown = [s for s in sets if s not in ("flip", "random", "backdoor", "flip_pool")]
  if unknown:
    raise SystemExit(f"--forget: unknown set(s) {unknown}; use flip, random and/or backdoor")
  bad = [e for e in args.extra if "=" not in e or not e.split("=", 1)[0]]
  if bad:
    raise SystemExit(f"--extra {bad[0]!r}: give LABEL=ENTRY, e.g. m=matching:noise=0.8")
  if not Path(args.selection).is_file():
    raise SystemExit(f"--selection {args.selection}: no such file; run "
                     "experiments/matching/selection.py first (its select.json)")
  selection = json.loads(Path(args.selection).read_text())
  if selection.get("seed") in seeds:
    raise SystemExit(f"--seeds: {selection['seed']} chose the settings; report on others")
  extra = dict(e.split("=", 1) for e in args.extra)
  rows = {k: v for k, v in {**rows_from(selection), **extra}.items()
          if not args.rows or k in [r.strip() for r in args.rows.split(",")]}
  out_dir = Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / "report.json"
  record = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
  for forget in sets:
    for seed in seeds:
      key = f"{forget}{seed}"
      done = record["runs"].get(key, {})
      if done.get("rows_entries") == rows:
        # Done (a rerun picks up here): its figures read again from its audit.json, so a
        # figure added to seed_figures later reaches every seed; costs and wall time kept.
        res = json.loads((Path(args.root) / key / "audit.json").read_text())
        fig = seed_figures(res, rows)
        for label, old in done["rows"].items():
          if label in fig["rows"] and "cost_fraction" in old:
            fig["rows"][label]["cost_fraction"] = old["cost_fraction"]
        fig["wall_s"], fig["rows_entries"] = done.get("wall_s"), rows
        record["runs"][key] = fig
        continue
      if args.share_stores:
        share(Path(args.root) / key, Path(args.share_stores))
      cfg = lab.make_config(seed, forget, holdout=0, n_models=args.num_models)
      cfg.audit.statistics = ("epsilon", "klom")
      cfg.audit.methods = tuple(f"{k}={v}" for k, v in rows.items())
      t0 = time.time()
      res = auditor.run_audit(cfg, Path(args.root) / key)
      fig = seed_figures(res, rows)
      fig["wall_s"] = time.time() - t0
      with request_lib.open_request(cfg, Path(args.root) / key, methods=auditor.method_specs(cfg)
                                    ) as req:
        for label in rows:
          # As results.json counts it: the run's schedule and a reference model per request.
          c = results_lib.unlearn_cost(req, req.plans[label])
          fig["rows"][label]["cost_fraction"] = c["fraction_of_retrain"]
      fig["rows_entries"] = rows
      record["runs"][key] = fig
      # Free this key's compiled runs: hundreds in one process exhaust the LLVM JIT's memory
      # maps on CPU (vm.max_map_count).
      jax.clear_caches()
      path.write_text(json.dumps(record, indent=2))
      print(key, json.dumps({k: (round(v["relative_f_single"], 3),
                                 round(v["relative_f_per_seed"], 3)) for k, v in
                             fig["rows"].items()}), f"{fig['wall_s']:.0f} s", flush=True)
  table_rows = {"none": "the originals (no unlearning)", **rows}
  summary = summarise(record, table_rows, sets, seeds)
  record["summary"] = summary
  path.write_text(json.dumps(record, indent=2))
  md = markdown(summary, table_rows, sets, seeds, args.num_models)
  (out_dir / "report.md").write_text(md)
  print(md)
  return record


def share(workdir: Path, stores: Path) -> None:
  """Makes ``workdir/attribution`` a link to ``stores`` (created if absent); refuses a work dir
  that already has stores of its own, which the link would hide."""
  stores.mkdir(parents=True, exist_ok=True)
  link = workdir / "attribution"
  if link.is_symlink():
    if link.resolve() != stores.resolve():
      raise SystemExit(f"{link} links to {link.resolve()}, not --share-stores {stores}")
    return
  if link.exists():
    raise SystemExit(f"{link} holds stores of its own; move them into --share-stores {stores} "
                     "or use another --root")
  workdir.mkdir(parents=True, exist_ok=True)
  link.symlink_to(stores.resolve(), target_is_directory=True)


def summarise(record: dict, rows, sets, seeds) -> dict:
  out = {}
  for forget in sets:
    # Only runs of these very rows (a run kept from another selection is left out).
    runs = [record["runs"][f"{forget}{s}"] for s in seeds if f"{forget}{s}" in record["runs"]
            and record["runs"][f"{forget}{s}"].get("rows_entries")
            == {k: v for k, v in rows.items() if k != "none"}]
    if not runs:
      continue
    entry = {"seeds": len(runs)}
    for name in ("oracle_f", "klom_floor_p95_forget", "klom_floor_median_forget",
                 "klom_floor_p95_retain", "klom_floor_p95_heldout", "retrain_test_acc"):
      v = np.array([r[name] for r in runs if r.get(name) is not None], float)
      if v.size:
        entry[name] = [float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0]
    for label in rows:
      e = {}
      for fig in FIGURES:
        v = np.array([r["rows"][label][fig] for r in runs
                      if label in r["rows"] and r["rows"][label].get(fig) is not None], float)
        if v.size:
          e[fig] = [float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0]
      t = [r["rows"][label].get("teacher") for r in runs if label in r["rows"]]
      if t and t[0]:
        e["teacher_one_off_retrainings"] = float(np.mean([x["one_off_retrainings"] for x in t]))
      entry[label] = e
    out[forget] = entry
  return out


def _ms(x, digits=2):
  return "" if x is None else f"{x[0]:.{digits}f} ± {x[1]:.{digits}f}"


def markdown(summary, rows, sets, seeds, n) -> str:
  lines = [f"# The fair table: seeds {','.join(map(str, seeds))}, N = {n}, mean ± std over seeds",
           ""]
  for forget in sets:
    if forget not in summary:
      continue
    s = summary[forget]
    lines += [f"## {forget} ({s['seeds']} seeds)", "",
              f"oracle F (retrain vs retrain) {_ms(s['oracle_f'], 3)}; KLOM P95 D_f floor "
              f"{_ms(s['klom_floor_p95_forget'])}, median {_ms(s['klom_floor_median_forget'])}; "
              f"KLOM P95 floor on retain {_ms(s.get('klom_floor_p95_retain'))}, held-out "
              f"{_ms(s.get('klom_floor_p95_heldout'))}; "
              f"retrain test acc {_ms(s['retrain_test_acc'], 4)}", "",
              "| row | examples (x retrain) | rel. F single | rel. F per seed | KLOM P95 D_f | "
              "KLOM median D_f | KLOM P95 retain | KLOM P95 held-out | test acc - retrain |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label in rows:
      e = s.get(label, {})
      cost = e.get("cost_fraction")
      extra = f" + store {e['teacher_one_off_retrainings']:.0f}x" \
          if "teacher_one_off_retrainings" in e else ""
      lines.append(
          f"| {label} | {'' if cost is None else f'{cost[0]:.3f}'}{extra} | "
          f"{_ms(e.get('relative_f_single'))} | {_ms(e.get('relative_f_per_seed'))} | "
          f"{_ms(e.get('klom_p95_forget'))} | {_ms(e.get('klom_median_forget'))} | "
          f"{_ms(e.get('klom_p95_retain'))} | {_ms(e.get('klom_p95_heldout'))} | "
          f"{_ms(e.get('test_acc_minus_retrain'), 4)} |")
    lines.append("")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  scripts.run(main)
