"""A linear datamodel fitted on a large keep-0.5 store, read where retraining is (offline).

    python experiments/matching/datamodel_look.py --seed 100 --forget random \
        --store runs/step100/random/attribution/<K = 1,700, keep 0.5> \
        --out-store runs/step100/random/attribution/558b8dab8766

The nineteenth look of ``experiments/matching/README.md``, on the selection seed only; trains
nothing. The shared OUT teacher errs per row because its models kept most of D_f's other rows
(eighteenth look). A store whose models each keep half of all rows varies how many of D_f's rows
a model kept, so each D_f row's phi can be regressed over its K models on its own membership
and on each other D_f row's (a linear datamodel, as Datamodel Matching fits), and the effects
read off:

* ``own_i``: what row ``i``'s own membership adds; ``cross_i``: the sum of the other D_f rows'
  effects on row ``i`` (one coefficient each, ``--fit rows``; or one shared slope on their
  count, ``--fit count``).

Targets for each D_f row's mean phi, scored against the retrain population's mean in its
standard deviations (rms), beside the oracle population's (the floor):

* ``out``: the ``--out-store``'s OUT mean of phi (the shared teacher);
* ``out_corrected``: that minus ``keep * cross_i`` (its OUT models kept a ``keep`` share of the
  other rows, retraining none);
* ``dmm``: the originals' mean phi (the audit's ``none`` population) minus ``own_i + cross_i``:
  the original's outputs minus the estimated effect of D_f.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.matching import teacher_error as te  # noqa: E402
from jaxunlearn import scripts  # noqa: E402


def effects(phi: np.ndarray, keep_f: np.ndarray, fit: str) -> tuple[np.ndarray, np.ndarray]:
  """``(own [n_f], cross [n_f])`` from phi ``[K, n_f]`` and D_f's masks ``keep_f [K, n_f]``."""
  k_models, n_f = keep_f.shape
  own, cross = np.empty(n_f), np.empty(n_f)
  kept = keep_f.astype(float)
  for i in range(n_f):
    others = np.delete(kept, i, axis=1)
    cols = [others] if fit == "rows" else [others.sum(1, keepdims=True)]
    x = np.concatenate([np.ones((k_models, 1)), kept[:, i:i + 1], *cols], 1)
    coef, *_ = np.linalg.lstsq(x, phi[:, i], rcond=None)
    own[i] = coef[1]
    cross[i] = coef[2:].sum() if fit == "rows" else coef[2] * (n_f - 1)
  return own, cross


def rms(estimate, mean, sd) -> float:
  return float(np.sqrt(np.mean(((estimate - mean) / sd) ** 2)))


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="random")
  p.add_argument("--store", required=True, help="a store of many models at keep 0.5")
  p.add_argument("--out-store", required=True, help="the shared store whose OUT mean is corrected")
  p.add_argument("--root", default="")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  from experiments.quality import lab
  from jaxunlearn import attribution
  from jaxunlearn import request as request_lib
  from jaxunlearn.errors import ConfigError
  work = Path(args.root or f"runs/step{args.seed}") / args.forget
  missing = [n for n in ("retrain", "oracle", "none") if not (work / "phi" / f"{n}.npy").is_file()]
  if missing:
    raise ConfigError(f"{work / 'phi'} holds no {missing[0]}.npy; run look.py on seed "
                      f"{args.seed}'s {args.forget!r} set first")
  prep = request_lib.prepare(lab.make_config(args.seed, args.forget, holdout=0, n_models=32),
                             work)
  retrain, oracle, none = (np.load(work / "phi" / f"{n}.npy") for n in ("retrain", "oracle",
                                                                          "none"))
  mean, sd = retrain.mean(0), retrain.std(0, ddof=1)
  big, small = attribution.load(args.store), attribution.load(args.out_store)
  pos_b, pos_s = big.positions(prep.splits.forget_idx), small.positions(prep.splits.forget_idx)
  phi_b = big.phi()[:, pos_b].astype(np.float64)
  keep_b = np.asarray(big.keep[:, pos_b], bool)
  phi_s = small.phi()[:, pos_s].astype(np.float64)
  out_s = ~np.asarray(small.keep[:, pos_s], bool)
  out_mean = np.array([phi_s[out_s[:, j], j].mean() for j in range(pos_s.size)])
  keep_share = float(small.meta["keep_fraction"])
  res = {"seed": args.seed, "forget": args.forget, "store": str(args.store),
         "num_models": big.num_models, "keep_fraction": float(big.meta["keep_fraction"]),
         "floor_rms": rms(oracle.mean(0), mean, sd), "out_rms": rms(out_mean, mean, sd),
         "fits": {}}
  for fit in ("count", "rows"):
    own, cross = effects(phi_b, keep_b, fit)
    res["fits"][fit] = {
        "cross_median_in_retrain_sd": float(np.median(cross / sd)),
        "cross_rms_in_retrain_sd": float(np.sqrt(np.mean((cross / sd) ** 2))),
        "out_corrected_rms": rms(out_mean - keep_share * cross, mean, sd),
        "dmm_rms": rms(none.mean(0) - own - cross, mean, sd),
        "dmm_own_only_rms": rms(none.mean(0) - own, mean, sd)}
  print(json.dumps(res, indent=1))
  d = Path(args.out or f"out/datamodel_look/{args.forget}{args.seed}")
  d.mkdir(parents=True, exist_ok=True)
  (d / "datamodel_look.json").write_text(json.dumps(res, indent=2))
  return res


if __name__ == "__main__":
  scripts.run(main)
