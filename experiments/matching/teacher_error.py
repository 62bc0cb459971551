"""Where a shared store's teacher errs, and what fixing it would be worth, offline.

    python experiments/matching/teacher_error.py --seed 100 --forget random \
        --store runs/step100/random/attribution/558b8dab8766 --runs o90_w1,o90_w1_rep

Reads one look's work dir (``runs/step<seed>/<forget>``, made by ``look.py``; with ``--setting
fmnist`` a Fashion-MNIST audit's, made by ``fmnist_audit.py``): its retrain and
oracle populations' phi on D_f, an attribution store in it, and the phi of finished matching
rows. Trains and runs nothing. Prints and writes (``--out``):

* **The teacher against retraining**: per D_f row, phi of the OUT models' mean logits (the
  target ``attribution.out_teacher`` gives) minus the retrain population's mean phi, in
  retraining's standard deviations: quantiles, median |error| and the root mean square, beside
  the same for the oracle population's mean (the floor at N models).
* **Sampling or structure**: the root mean square when each row's target is the mean of ``m``
  of its OUT models drawn at random (30 draws per ``m``; on the rows with at
  least the 25th percentile of OUT counts). A fit of ``rms^2 = b^2 + s^2 / m``
  splits the error into what more store models would remove (``s^2 / m``) and what they would
  not (``b``: the store models that left a row out differ from retraining on it).
* **The share of D_f kept** (a store with D_f at per-model rates only): each row's OUT
  models fitted on the share of the other D_f rows they kept, read at shares 0 to 0.9.
* **What a better teacher is worth** (``--runs``): relative F of each row's runs as they are;
  with each D_f row's run mean moved to the oracle population's (the teacher's mean error
  removed, the runs' spread kept); and with mean and standard deviation moved (a teacher right
  in both). Both protocols (``LABEL`` and ``LABEL_per_seed``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxunlearn import scripts  # noqa: E402

M_SUBSAMPLE = (4, 8, 13, 20, 30, 45)


def phi_of(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The margin ``z_y - logsumexp_{j != y} z_j`` of logits ``[..., C]`` at ``labels``."""
  z = np.asarray(logits, np.float64)
  zy = np.take_along_axis(z, labels[..., None], -1)[..., 0]
  other = z.copy()
  np.put_along_axis(other, labels[..., None], -np.inf, -1)
  top = other.max(-1)
  return zy - (top + np.log(np.exp(other - top[..., None]).sum(-1)))


def summary(err: np.ndarray) -> dict:
  return {"q10": float(np.quantile(err, 0.1)), "median": float(np.median(err)),
          "q90": float(np.quantile(err, 0.9)), "median_abs": float(np.median(np.abs(err))),
          "rms": float(np.sqrt(np.mean(err ** 2)))}


def sampling_curve(logits, out, labels, retrain_phi, rng, draws: int = 30) -> dict:
  """``{"rows": r, "curve": {m: rms}}``: the error when each row's target averages ``m`` random
  OUT models, on the rows with at least ``m_max`` OUT models (``m_max`` the 25th percentile of
  the rows' OUT counts, so that the same three quarters of D_f or more enter every point)."""
  counts = out.sum(0)
  m_max = int(np.quantile(counts, 0.25))
  rows = np.flatnonzero(counts >= m_max)
  mean, sd = retrain_phi.mean(0)[rows], retrain_phi.std(0, ddof=1)[rows]
  curve = {}
  for m in sorted({*(m for m in M_SUBSAMPLE if m < m_max), m_max}):
    if m < 2:
      continue
    rms = []
    for _ in range(draws):
      pick = [rng.choice(np.flatnonzero(out[:, j]), m, replace=False) for j in rows]
      target = np.stack([logits[p, j].mean(0) for j, p in zip(rows, pick)])
      rms.append(np.sqrt(np.mean(((phi_of(target, labels[rows]) - mean) / sd) ** 2)))
    curve[m] = float(np.mean(rms))
  return {"rows": int(rows.size), "curve": curve}


def split(curve: dict) -> dict | None:
  """Least squares of ``rms^2 = b^2 + s^2 / m`` over the curve's points."""
  if len(curve) < 2:
    return None
  m = np.array(list(curve), float)
  x = np.stack([np.ones_like(m), 1.0 / m], 1)
  (b2, s2), *_ = np.linalg.lstsq(x, np.array(list(curve.values())) ** 2, rcond=None)
  return {"structural_rms": float(np.sqrt(max(b2, 0.0))), "sampling_var": float(s2)}


def share_readout(logits, keep_f, labels, retrain_phi, shares=(0.0, 0.25, 0.5, 0.9)) -> dict:
  """A store with D_f at per-model rates: each row's OUT models' logits fitted on the share of
  the other D_f rows each kept (a line), read at each of ``shares``; ``{share: rms}``."""
  mean, sd = retrain_phi.mean(0), retrain_phi.std(0, ddof=1)
  n_f = keep_f.shape[1]
  res = {}
  for at in shares:
    target = np.empty(logits.shape[1:])
    for j in range(n_f):
      o = ~keep_f[:, j]
      share = keep_f[o].sum(1) / (n_f - 1)
      x = np.stack([np.ones(o.sum()), share], 1)
      coef, *_ = np.linalg.lstsq(x, logits[o, j], rcond=None)
      target[j] = coef[0] + coef[1] * at
    res[at] = float(np.sqrt(np.mean(((phi_of(target, labels) - mean) / sd) ** 2)))
  return res


def relative_f(unlearned, retrain, oracle_f) -> float:
  from jaxunlearn.audits import epsilon
  eps = epsilon.per_example_epsilon(unlearned, retrain)
  return epsilon.forgetting_quality(eps, unlearned.shape[0]) / oracle_f


def counterfactual(phi_dir: Path, labels, retrain, oracle) -> dict:
  from jaxunlearn.audits import epsilon
  oracle_f = epsilon.forgetting_quality(epsilon.per_example_epsilon(oracle, retrain),
                                        oracle.shape[0])
  from jaxunlearn.errors import ConfigError
  out = {}
  for label in labels:
    if not (phi_dir / f"{label}.npy").is_file():
      raise ConfigError(f"--runs {label!r}: {phi_dir} holds no {label}.npy; name a row of a "
                        "finished look in this work dir")
    for name in (label, f"{label}_per_seed"):
      path = phi_dir / f"{name}.npy"
      if not path.is_file():
        continue                  # a row audited under the single protocol only
      u = np.load(path)
      dev = u - u.mean(0)
      out[name] = {"as_run": relative_f(u, retrain, oracle_f),
                   "mean_fixed": relative_f(dev + oracle.mean(0), retrain, oracle_f),
                   "mean_and_sd_fixed": relative_f(
                       dev / u.std(0) * oracle.std(0) + oracle.mean(0), retrain, oracle_f)}
  return out


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="random")
  p.add_argument("--store", required=True, help="an attribution store's folder")
  p.add_argument("--runs", default="", help="comma-separated row labels of finished looks")
  p.add_argument("--root", default="", help="mnist5k: the looks' root (runs/step<seed>); "
                 "fmnist: the work dir itself (fmnist_audit.py's default)")
  p.add_argument("--setting", default="mnist5k", choices=("mnist5k", "fmnist"),
                 help="mnist5k: a look's work dir (look.py); fmnist: a Fashion-MNIST audit's "
                      "(fmnist_audit.py, at 60,000 images)")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  from experiments.quality import lab
  from jaxunlearn import attribution
  from jaxunlearn import request as request_lib
  from jaxunlearn.errors import ConfigError
  if args.setting == "fmnist":
    from experiments.matching import fmnist_audit
    if args.forget not in fmnist_audit.FORGET_SETS:
      raise ConfigError(f"--setting fmnist: unknown --forget {args.forget!r}; use one of "
                        f"{fmnist_audit.FORGET_SETS}")
    work = Path(args.root or fmnist_audit.default_workdir(args.forget, args.seed))
    make = lambda: fmnist_audit.make_config(args.forget, args.seed)  # noqa: E731
    first = f"fmnist_audit.py --forget {args.forget} --seed {args.seed}"
  else:
    work = Path(args.root or f"runs/step{args.seed}") / args.forget
    make = lambda: lab.make_config(args.seed, args.forget, holdout=0, n_models=32)  # noqa: E731
    first = f"look.py on seed {args.seed}'s {args.forget!r} set"
  phi_dir = work / "phi"
  if not (phi_dir / "retrain.npy").is_file() or not (phi_dir / "oracle.npy").is_file():
    raise ConfigError(f"{phi_dir} holds no retrain and oracle phi; run {first} first")
  cfg = make()               # after the check: flip_pool's config writes the pool's index files
  prep = request_lib.prepare(cfg, work)           # validates and loads; writes nothing
  store = attribution.load(args.store)
  pos = store.positions(prep.splits.forget_idx)
  out = ~np.asarray(store.keep[:, pos], bool)
  logits = np.asarray(store.logits(), np.float64)[:, pos, :]
  labels = np.asarray(store.labels)[pos]
  retrain, oracle = np.load(phi_dir / "retrain.npy"), np.load(phi_dir / "oracle.npy")
  if retrain.shape[1] != pos.size:
    raise ConfigError(f"{phi_dir}: phi has {retrain.shape[1]} D_f rows and the request "
                      f"{pos.size}; the work dir and --seed/--forget disagree")
  mean, sd = retrain.mean(0), retrain.std(0, ddof=1)
  target = np.stack([logits[out[:, j], j].mean(0) for j in range(pos.size)])
  curve = sampling_curve(logits, out, labels, retrain, np.random.default_rng(0))
  res = {"seed": args.seed, "forget": args.forget, "store": str(args.store),
         "num_models": store.num_models, "keep_fraction": float(store.meta["keep_fraction"]),
         "out_models_per_row": {"min": int(out.sum(0).min()), "median": float(np.median(
             out.sum(0)))},
         "teacher_error": summary((phi_of(target, labels) - mean) / sd),
         "oracle_floor": summary((oracle.mean(0) - mean) / sd),
         "sampling_curve": curve, "split": split(curve["curve"]),
         "share_readout": (share_readout(logits, ~out, labels, retrain)
                           if store.meta.get("forget_rate") in ("uniform", "zero") else None),
         "counterfactual": counterfactual(phi_dir, [r for r in args.runs.split(",") if r],
                                          retrain, oracle)}
  print(json.dumps(res, indent=1))
  d = Path(args.out or f"out/teacher_error/{'fm_' if args.setting == 'fmnist' else ''}"
               f"{args.forget}{args.seed}")
  d.mkdir(parents=True, exist_ok=True)
  (d / f"{Path(args.store).name}.json").write_text(json.dumps(res, indent=2))
  return res


if __name__ == "__main__":
  scripts.run(main)
