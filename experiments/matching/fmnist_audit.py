"""`matching` rows in the Fashion-MNIST per-example audit (epsilon only), on its work dir.

    cp -r <compare_methods --audit's out/fmnist_audit_methods/work/seed0>/. runs/fm_audit/
    python experiments/matching/fmnist_audit.py "m2s=matching:retrain_fraction=0.02,..." ...
    python experiments/matching/fmnist_audit.py --forget random --statistics epsilon,klom \
        "m_out=matching:...,teacher_fit=out,teacher_models=128,teacher_keep=0.9" ...
    python experiments/matching/fmnist_audit.py --forget flip_pool --seed 1 \
        --share-stores runs/fm_audit_flip_pool/attribution \
        "m_pool=matching:...,teacher_fit=pool" ...
    python experiments/matching/fmnist_audit.py --summarise runs/fm_audit_flip_pool \
        runs/fm_audit_flip_pool_seed1 ... --labels none,m_pool,...
    python experiments/matching/fmnist_audit.py --score runs/fm_audit_flip_pool_seed100

The audit of ``experiments/RESULTS_fmnist.md`` ("The per-example audit at 60,000 images":
``configs/fmnist_audit.py`` with ``configs/fmnist_audit_methods.py``'s hold-out, seed 0, N = 16)
with the given ``audit.methods`` entries instead of its four methods, and ``epsilon`` alone
(a teacher fitted to one D_f cannot serve U-LiRA's members): its retrain, oracle and none
populations are read from the work dir, so only the teacher store and the entries' runs are
computed. ``--forget random`` keeps the labels (600 random images, the random set at this
scale): its populations are its own, trained in its work dir on the first call. Prints relative
F (single, per seed) and test accuracy per row.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


N_TRAIN = 60_000
POOL_SIZE = 2_400       # flip_pool: flipped for every request (4% of the training images)
POOL_FORGET = 600       # D_f, drawn from the pool by the seed (1%, as the flip audit's)
FORGET_SETS = ("flip", "random", "flip_pool")


def pool_files(seed: int, size: int, forget: int, pool_seed: int, pool_dir="runs/pools"):
  """``(pool file, forget file)``: ``size`` of Fashion-MNIST's training rows drawn once (not by
  the seed), and ``forget`` of them drawn by ``seed`` (as ``lab.pool_files`` on mnist5k)."""
  import numpy as np
  pool_dir = Path(pool_dir)
  pool_dir.mkdir(parents=True, exist_ok=True)
  pool = np.sort(np.random.default_rng(pool_seed).choice(N_TRAIN, size, replace=False))
  rows = np.sort(np.random.default_rng([seed, pool_seed]).choice(pool, forget, replace=False))
  files = (pool_dir / f"fmnist_pool{size}_of_{N_TRAIN}.txt",
           pool_dir / f"fmnist_pool{size}_of_{N_TRAIN}_forget{forget}_seed{seed}.txt")
  for f, r in zip(files, (pool, rows)):
    f.write_text("\n".join(str(int(i)) for i in r) + "\n")
  return str(files[0]), str(files[1])


def make_config(forget: str, seed: int):
  """The audit's config for one of ``FORGET_SETS`` and a request seed (``audit.methods`` and
  ``audit.statistics`` left as ``configs/fmnist_audit_methods.py`` has them)."""
  from configs import fmnist_audit_methods
  from jaxunlearn.errors import ConfigError
  if forget not in FORGET_SETS:
    raise ConfigError(f"unknown Fashion-MNIST forget set {forget!r}; use one of {FORGET_SETS}")
  cfg = fmnist_audit_methods.get_config("finetune")
  cfg.seed = seed
  if forget == "random":
    cfg.label_flip.enabled = False
  elif forget == "flip_pool":
    from experiments.quality import lab
    cfg.holdout.size = 0                      # the pool is drawn from every training row
    pool, rows = pool_files(seed, POOL_SIZE, POOL_FORGET, lab.POOL_SEED)
    cfg.label_flip.index_file = pool
    cfg.label_flip.seed = lab.POOL_SEED
    cfg.forget.mode = "indices"
    cfg.forget.index_file = rows
  return cfg


def default_workdir(forget: str, seed: int) -> str:
  """``runs/fm_audit`` (flip), ``runs/fm_audit_<forget>``; ``_seed<seed>`` added unless seed 0."""
  workdir = "runs/fm_audit" if forget == "flip" else f"runs/fm_audit_{forget}"
  return workdir + (f"_seed{seed}" if seed else "")


def summarise(workdirs, labels) -> str:
  """A markdown table, mean ± std over the work dirs' ``audit.json``: relative F single / per
  seed, KLOM P95 on D_f (single) over its floor, test accuracy minus the oracle's (single)."""
  import numpy as np
  from jaxunlearn.errors import ConfigError
  missing = [str(w) for w in workdirs if not (Path(w) / "audit.json").is_file()]
  if missing:
    raise ConfigError(f"--summarise: {missing[0]} holds no audit.json; run this script's audit "
                      "in it first (or name another work dir)")
  audits = [json.loads((Path(w) / "audit.json").read_text()) for w in workdirs]
  for w, a in zip(workdirs, audits):
    unknown = [label for label in labels if label not in a["epsilon"]["single"]]
    if unknown:
      raise ConfigError(f"--summarise: {w}'s audit has no row {unknown[0]!r}; its rows: "
                        f"{', '.join(a['epsilon']['single'])}")

  def ms(values, digits=2):
    v = np.asarray(values, float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.{digits}f}"
  lines = [f"{len(audits)} work dirs: {', '.join(str(w) for w in workdirs)}",
           "| row | rel. F single | rel. F per seed | KLOM P95 D_f / floor "
           "| test acc − retrain |",
           "|---|---|---|---|---|"]
  for label in labels:
    eps = [(a["epsilon"]["single"][label], a["epsilon"]["per_seed"][label]) for a in audits]
    klom = [a["klom"]["single"][label]["forget"]["p95"] / a["klom"]["single"]["oracle"][
        "forget"]["p95"] for a in audits if "klom" in a]
    acc = [a["epsilon"]["single"][label]["test_acc"] - a["epsilon"]["single"]["oracle"][
        "test_acc"] for a in audits]
    lines.append(f"| {label} | {ms([s.get('relative_f') or 0 for s, _ in eps])} | "
                 f"{ms([q.get('relative_f') or 0 for _, q in eps])} | "
                 f"{ms(klom) + 'x' if klom else '-'} | {ms(100 * np.asarray(acc), 1)} pt |")
  return "\n".join(lines)


def score(workdir, caps=(0.02, 0.005)) -> str:
  """A markdown table of every row in ``workdir``'s ``audit.json``, with the selection's
  objective (``selection.objective``: mean relative F of the two protocols, among rows whose
  test accuracy is at most ``cap`` below retraining's; none, and F ``-``, where the oracle's F
  was 0) at each cap; the best row of each family
  (the label up to its first ``_``) at each cap is marked ``*cap``."""
  from experiments.matching import selection
  from jaxunlearn.errors import ConfigError
  path = Path(workdir) / "audit.json"
  if not path.is_file():
    raise ConfigError(f"--score: {workdir} holds no audit.json; run this script's audit in it "
                      "first (or name another work dir)")
  a = json.loads(path.read_text())
  eps, klom = a["epsilon"], a.get("klom", {}).get("single", {})
  retrain_acc = eps["single"]["oracle"]["test_acc"]
  floor = klom.get("oracle", {}).get("forget", {}).get("p95")
  rows = []
  for label in eps["single"]:
    if label in ("oracle", "retrain"):
      continue
    s, q = eps["single"][label], eps["per_seed"][label]
    k = klom.get(label, {}).get("forget", {}).get("p95")
    no_f = s.get("relative_f") is None or q.get("relative_f") is None   # the oracle's F was 0
    rows.append({"label": label, "family": label.split("_")[0],
                 "single": s.get("relative_f"), "per_seed": q.get("relative_f"),
                 "acc": 100 * (s["test_acc"] - retrain_acc),
                 "klom": None if k is None or not floor else k / floor,
                 "obj": [None if no_f else selection.objective(s, q, retrain_acc, c)
                         for c in caps]})
  marks = {}
  for i, _ in enumerate(caps):
    best = {}
    for r in rows:
      if r["obj"][i] is not None and r["obj"][i] > best.get(r["family"], (None, -1.0))[1]:
        best[r["family"]] = (r["label"], r["obj"][i])
    for label, _ in best.values():
      marks.setdefault(label, []).append(f"*{caps[i]:g}")
  rows.sort(key=lambda r: (r["family"], -0.5 * ((r["single"] or 0.0) + (r["per_seed"] or 0.0))))
  head = " | ".join(f"objective, acc cap {100 * c:g} pt" for c in caps)
  lines = [f"{workdir}: retrain test acc {retrain_acc:.4f}; KLOM P95 D_f floor "
           f"{floor if floor is None else round(floor, 3)}",
           f"| row | rel. F single | rel. F per seed | KLOM P95 D_f / floor | test acc − retrain "
           f"| {head} |", "|---|---|---|---|---|" + "---|" * len(caps)]
  for r in rows:
    obj = " | ".join("(no F)" if r["single"] is None or r["per_seed"] is None else "(acc)"
                     if o is None else f"{o:.3f}" for o in r["obj"])
    k = "-" if r["klom"] is None else f"{r['klom']:.2f}x"
    name = r["label"] + (" " + " ".join(marks[r["label"]]) if r["label"] in marks else "")
    f = ["-" if v is None else f"{v:.2f}" for v in (r["single"], r["per_seed"])]
    lines.append(f"| {name} | {f[0]} | {f[1]} | {k} | "
                 f"{r['acc']:+.1f} pt | {obj} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  import argparse
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["--score"]:
    if len(argv) != 2:
      raise SystemExit("--score WORKDIR")
    print(score(argv[1]))
    return {}
  if argv[:1] == ["--summarise"]:
    rest = argv[1:]
    if "--labels" not in rest or rest.index("--labels") + 1 >= len(rest):
      raise SystemExit("--summarise WORKDIR ... --labels LABEL,LABEL")
    i = rest.index("--labels")
    print(summarise(rest[:i], rest[i + 1].split(",")))
    return {}
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("entries", nargs="+", metavar="LABEL=ENTRY")
  p.add_argument("--forget", default="flip", choices=FORGET_SETS,
                 help="flip: the audit's 600 label-flipped images; random: 600 random images, "
                      "labels kept; flip_pool: 2,400 training images flipped for every request "
                      "and 600 of them forgotten (seed 0's), no hold-out (random and flip_pool "
                      "train their own populations in --workdir)")
  p.add_argument("--workdir", default="", help="default runs/fm_audit_<forget> "
                                               "(runs/fm_audit for flip)")
  p.add_argument("--statistics", default="epsilon", help="comma-separated, e.g. epsilon,klom")
  p.add_argument("--seed", type=int, default=0,
                 help="the request's seed (flip_pool: which 600 of the pool it forgets)")
  p.add_argument("--share-stores", default="", metavar="DIR",
                 help="link the work dir's attribution/ to DIR (report.py's --share-stores), so "
                      "that requests on the same training data read one store")
  args = p.parse_args(argv)
  if any("=" not in e for e in args.entries):
    raise SystemExit("give audit.methods entries as LABEL=ENTRY")
  from jaxunlearn import auditor
  cfg = make_config(args.forget, args.seed)
  cfg.audit.statistics = tuple(s.strip() for s in args.statistics.split(",") if s.strip())
  cfg.audit.methods = tuple(args.entries)
  workdir = args.workdir or default_workdir(args.forget, args.seed)
  if args.share_stores:
    from experiments.matching import report
    report.share(Path(workdir), Path(args.share_stores))
  t0 = time.time()
  res = auditor.run_audit(cfg, workdir)
  eps = res["epsilon"]
  for label in ["oracle", "none"] + [e.split("=", 1)[0] for e in args.entries]:
    s, q = eps["single"].get(label, {}), eps["per_seed"].get(label, {})
    print(label, s.get("relative_f"), q.get("relative_f"), s.get("test_acc"), flush=True)
  print(f"wall {time.time() - t0:.0f} s; teachers {json.dumps(res.get('teachers', {}))}")
  return res


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
