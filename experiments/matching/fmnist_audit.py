"""`matching` rows in the Fashion-MNIST per-example audit (epsilon only), on its work dir.

    cp -r <compare_methods --audit's out/fmnist_audit_methods/work/seed0>/. runs/fm_audit/
    python experiments/matching/fmnist_audit.py "m2s=matching:retrain_fraction=0.02,..." ...
    python experiments/matching/fmnist_audit.py --forget random --statistics epsilon,klom \
        "m_out=matching:...,teacher_fit=out,teacher_models=128,teacher_keep=0.9" ...

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


def main(argv=None) -> dict:
  import argparse
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("entries", nargs="+", metavar="LABEL=ENTRY")
  p.add_argument("--forget", default="flip", choices=("flip", "random", "flip_pool"),
                 help="flip: the audit's 600 label-flipped images; random: 600 random images, "
                      "labels kept; flip_pool: 2,400 training images flipped for every request "
                      "and 600 of them forgotten (seed 0's), no hold-out (random and flip_pool "
                      "train their own populations in --workdir)")
  p.add_argument("--workdir", default="", help="default runs/fm_audit_<forget> "
                                               "(runs/fm_audit for flip)")
  p.add_argument("--statistics", default="epsilon", help="comma-separated, e.g. epsilon,klom")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if any("=" not in e for e in args.entries):
    raise SystemExit("give audit.methods entries as LABEL=ENTRY")
  from configs import fmnist_audit_methods
  from jaxunlearn import auditor
  cfg = fmnist_audit_methods.get_config("finetune")
  cfg.seed = 0
  cfg.audit.statistics = tuple(s.strip() for s in args.statistics.split(",") if s.strip())
  cfg.audit.methods = tuple(args.entries)
  if args.forget == "random":
    cfg.label_flip.enabled = False
  elif args.forget == "flip_pool":
    from experiments.quality import lab
    cfg.holdout.size = 0                      # the pool is drawn from every training row
    pool, rows = pool_files(cfg.seed, POOL_SIZE, POOL_FORGET, lab.POOL_SEED)
    cfg.label_flip.index_file = pool
    cfg.label_flip.seed = lab.POOL_SEED
    cfg.forget.mode = "indices"
    cfg.forget.index_file = rows
  workdir = args.workdir or ("runs/fm_audit" if args.forget == "flip"
                             else f"runs/fm_audit_{args.forget}")
  t0 = time.time()
  res = auditor.run_audit(cfg, workdir)
  eps = res["epsilon"]
  for label in ["oracle", "none"] + [e.split("=", 1)[0] for e in args.entries]:
    s, q = eps["single"].get(label, {}), eps["per_seed"].get(label, {})
    print(label, s.get("relative_f"), q.get("relative_f"), s.get("test_acc"), flush=True)
  print(f"wall {time.time() - t0:.0f} s; teachers {json.dumps(res.get('teachers', {}))}")
  return res


if __name__ == "__main__":
  main()
