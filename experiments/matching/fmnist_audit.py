"""`matching` rows in the Fashion-MNIST per-example audit (epsilon only), on its work dir.

    cp -r <compare_methods --audit's out/fmnist_audit_methods/work/seed0>/. runs/fm_audit/
    python experiments/matching/fmnist_audit.py "m2s=matching:retrain_fraction=0.02,..." ...

The audit of ``experiments/RESULTS_fmnist.md`` ("The per-example audit at 60,000 images":
``configs/fmnist_audit.py`` with ``configs/fmnist_audit_methods.py``'s hold-out, seed 0, N = 16)
with the given ``audit.methods`` entries instead of its four methods, and ``epsilon`` alone
(a teacher fitted to one D_f cannot serve U-LiRA's members): its retrain, oracle and none
populations are read from the work dir, so only the teacher store and the entries' runs are
computed. Prints relative F (single, per seed) and test accuracy per row.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> dict:
  entries = list(sys.argv[1:] if argv is None else argv)
  if not entries or any("=" not in e for e in entries):
    raise SystemExit("give at least one audit.methods entry LABEL=ENTRY")
  from configs import fmnist_audit_methods
  from jaxunlearn import auditor
  cfg = fmnist_audit_methods.get_config("finetune")
  cfg.seed = 0
  cfg.audit.statistics = ("epsilon",)
  cfg.audit.methods = tuple(entries)
  t0 = time.time()
  res = auditor.run_audit(cfg, "runs/fm_audit")
  eps = res["epsilon"]
  for label in ["oracle", "none"] + [e.split("=", 1)[0] for e in entries]:
    s, q = eps["single"].get(label, {}), eps["per_seed"].get(label, {})
    print(label, s.get("relative_f"), q.get("relative_f"), s.get("test_acc"), flush=True)
  print(f"wall {time.time() - t0:.0f} s; teachers {json.dumps(res.get('teachers', {}))}")
  return res


if __name__ == "__main__":
  main()
