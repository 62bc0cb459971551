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
  in both). Both protocols (``LABEL`` and ``LABEL_per_seed``). Beside them, where the runs
  themselves miss: their mean bias and error against retraining and against the teacher (in
  retraining's standard deviations), their spread against retraining's (the median ratio),
  and relative F with only their spread moved to the oracle population's (``sd_fixed``), with
  each row's run mean moved onto the teacher (``mean_to_teacher``: the runs reaching their
  targets), and with the mean bias taken off every row (``bias_removed``). "The teacher" is
  always the store's OUT mean above: for a row that read another fit (``teacher_fit="step"``
  or ``"quadratic"``) the distance to it is not the distance to its own targets.
* **An influence correction** (``--influence``, a pool store): the part of the teacher's error
  that comes from *which* other pool rows a request forgets, predicted by the original model's
  output-layer influence (Gauss-Newton, damped): ``u_ij`` the change of row ``i``'s phi when
  pool row ``j`` leaves training. Its scale is fitted on the store (each row's OUT models
  against the pool rows each left out), then the teacher is moved by
  ``alpha * sum_j u_ij (1[j in D_f] - share of the row's OUT models without j)``: the within-row
  R^2 on the store, the teacher's rms before and after, and relative F of the runs moved by the
  same amount.
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


def counterfactual(phi_dir: Path, labels, retrain, oracle, teacher_phi=None, shift=None) -> dict:
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
      if teacher_phi is not None:
        out[name].update(run_errors(u, retrain, oracle, teacher_phi, oracle_f))
      if shift is not None:
        out[name]["influence_moved"] = relative_f(u + shift, retrain, oracle_f)
  return out


def run_errors(u, retrain, oracle, teacher_phi, oracle_f) -> dict:
  """Where the runs ``u`` ``[N, n]`` miss: mean bias and rms against retraining's mean and the
  teacher's phi (retraining's stds), the median spread ratio, and relative F with the spread
  fixed, the means moved onto the teacher, and the bias removed."""
  mean, sd = retrain.mean(0), retrain.std(0, ddof=1)
  m, dev = u.mean(0), u - u.mean(0)
  bias = float(np.mean((m - mean) / sd))
  return {"bias": bias, "rms_vs_retrain": float(np.sqrt(np.mean(((m - mean) / sd) ** 2))),
          "rms_vs_teacher": float(np.sqrt(np.mean(((m - teacher_phi) / sd) ** 2))),
          "sd_ratio_median": float(np.median(u.std(0, ddof=1) / sd)),
          "sd_fixed": relative_f(dev / u.std(0) * oracle.std(0) + m, retrain, oracle_f),
          "mean_to_teacher": relative_f(dev + teacher_phi, retrain, oracle_f),
          "bias_removed": relative_f(u - bias * sd, retrain, oracle_f)}


def head_ggn_influence(feats, logits, f_rows, f_labels, pool_rows, pool_labels,
                       damping: float) -> np.ndarray:
  """``[|f_rows|, |pool_rows|]``: the change of each D_f row's phi when a pool row leaves the
  training set, by the output layer's influence function: ``g_i^T (G + d)^{-1} l_j / n``, with
  ``g_i`` the gradient of row ``i``'s phi and ``l_j`` of row ``j``'s cross-entropy in the output
  layer's weights and bias, ``G`` the layer's Gauss-Newton matrix over all ``n`` training rows
  and ``d`` ``damping`` times its mean diagonal."""
  h = np.concatenate([feats, np.ones((feats.shape[0], 1))], 1).astype(np.float64)
  z = np.asarray(logits, np.float64)
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  n, d, c = h.shape[0], h.shape[1], z.shape[1]
  g = np.zeros((d, c, d, c))
  for a in range(c):
    for b in range(a, c):
      w = p[:, a] * (a == b) - p[:, a] * p[:, b]
      blk = (h * w[:, None]).T @ h / n
      g[:, a, :, b] = blk
      g[:, b, :, a] = blk
  g = g.reshape(d * c, d * c)
  g += damping * np.trace(g) / g.shape[0] * np.eye(g.shape[0])
  q = p[f_rows].copy()
  q[np.arange(f_rows.size), f_labels] = 0.0
  q /= q.sum(1, keepdims=True)
  dphi = -q
  dphi[np.arange(f_rows.size), f_labels] += 1.0
  dloss = p[pool_rows].copy()
  dloss[np.arange(pool_rows.size), pool_labels] -= 1.0
  grad_phi = (h[f_rows][:, :, None] * dphi[:, None, :]).reshape(f_rows.size, -1)
  grad_loss = (h[pool_rows][:, :, None] * dloss[:, None, :]).reshape(pool_rows.size, -1)
  return grad_phi @ np.linalg.solve(g, grad_loss.T) / n


def influence_shift(work, prep, store, labels, retrain, teacher_phi, damping) -> dict:
  """``--influence``: the teacher's error predicted from which pool rows D_f holds (see the
  module's docstring); returns the record and, under ``"shift"``, the phi move per D_f row."""
  import jax
  from jaxunlearn import attribution, checkpoint, train
  from jaxunlearn.errors import ConfigError
  from jaxunlearn.methods import matching
  if not damping >= 0:
    raise ConfigError(f"--influence {damping}: the damping must be >= 0 (e.g. 0.1)")
  pool = attribution.pool_rows(prep)
  if pool is None or store.meta.get("forget_rate") != "pool":
    raise ConfigError("--influence reads a pool store (forget_rate='pool') on a request with a "
                      "fixed pool (label_flip.index_file); give one")
  state, _ = checkpoint.restore(work / "checkpoints" / "original")
  apply_fn = train.eval_apply_fn(prep.model, state.get("batch_stats", {}))
  params = state["params"]
  head = matching.output_head(params)
  x = np.asarray(prep.x_train)
  feats_fn = jax.jit(lambda xb: (matching.head_features(apply_fn, params, head, xb),
                                 apply_fn(params, xb)))
  parts = [feats_fn(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)]
  feats = np.concatenate([np.asarray(f) for f, _ in parts])
  logits = np.concatenate([np.asarray(z) for _, z in parts])
  y = np.asarray(prep.y_train)
  f_rows = np.asarray(prep.splits.forget_idx)
  u = head_ggn_influence(feats, logits, f_rows, y[f_rows], pool, y[pool], damping)
  left = ~np.asarray(store.keep, bool)[:, store.positions(pool)]        # [K, |pool|]
  f_pos = store.positions(f_rows)
  z_f = np.asarray(store.logits(), np.float64)[:, f_pos, :]
  phi_all = phi_of(z_f, np.broadcast_to(labels, z_f.shape[:2]))                   # [K, n_f]
  in_f = np.isin(pool, f_rows).astype(float)
  sd = retrain.std(0, ddof=1)
  xs, ys, moves = [], [], []
  col = np.searchsorted(pool, f_rows)
  for a in range(f_rows.size):
    out = left[:, col[a]]
    share = left[out].mean(0)
    xs.append((left[out] - share) @ u[a] / sd[a])
    ys.append((phi_all[out, a] - phi_all[out, a].mean()) / sd[a])
    moves.append((in_f - share) @ u[a])
  xv, yv = np.concatenate(xs), np.concatenate(ys)
  alpha = float(xv @ yv / (xv @ xv))
  shift = alpha * np.asarray(moves)
  err = (teacher_phi - retrain.mean(0)) / sd
  return {"damping": damping, "alpha": alpha,
          "r2_within_row": float(1 - np.mean((yv - alpha * xv) ** 2) / np.mean(yv ** 2)),
          "rms_before": float(np.sqrt(np.mean(err ** 2))),
          "rms_after": float(np.sqrt(np.mean((err + shift / sd) ** 2))),
          "corr_error_move": float(np.corrcoef(err, shift)[0, 1]), "shift": shift}


def locate(setting: str, forget: str, seed: int, root: str = ""):
  """A look's work dir, a function making its config, and the command that makes the work dir:
  ``mnist5k``, a look's (``look.py``, ``<root or runs/step<seed>>/<forget>``); ``fmnist``, a
  Fashion-MNIST audit's (``fmnist_audit.py`` at 60,000 images; ``root`` is the work dir)."""
  from experiments.quality import lab
  from jaxunlearn.errors import ConfigError
  if setting == "fmnist":
    from experiments.matching import fmnist_audit
    if forget not in fmnist_audit.FORGET_SETS:
      raise ConfigError(f"--setting fmnist: unknown --forget {forget!r}; use one of "
                        f"{fmnist_audit.FORGET_SETS}")
    return (Path(root or fmnist_audit.default_workdir(forget, seed)),
            lambda: fmnist_audit.make_config(forget, seed),
            f"fmnist_audit.py --forget {forget} --seed {seed}")
  return (Path(root or f"runs/step{seed}") / forget,
          lambda: lab.make_config(seed, forget, holdout=0, n_models=32),
          f"look.py on seed {seed}'s {forget!r} set")


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
  p.add_argument("--influence", type=float, default=None, metavar="DAMPING",
                 help="with a pool store: correct the teacher by the original's output-layer "
                      "influence, damped by DAMPING x the Gauss-Newton matrix's mean diagonal "
                      "(e.g. 0.1), its scale fitted on the store; report what it is worth")
  args = p.parse_args(argv)
  from jaxunlearn import attribution
  from jaxunlearn import request as request_lib
  from jaxunlearn.errors import ConfigError
  work, make, first = locate(args.setting, args.forget, args.seed, args.root)
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
                           if store.meta.get("forget_rate") in ("uniform", "zero") else None)}
  teacher_phi = phi_of(target, labels)
  influence = (influence_shift(work, prep, store, labels, retrain, teacher_phi, args.influence)
               if args.influence is not None else None)
  res["counterfactual"] = counterfactual(phi_dir, [r for r in args.runs.split(",") if r],
                                         retrain, oracle, teacher_phi,
                                         influence.pop("shift") if influence else None)
  res["influence"] = influence
  print(json.dumps(res, indent=1))
  d = Path(args.out or f"out/teacher_error/{'fm_' if args.setting == 'fmnist' else ''}"
               f"{args.forget}{args.seed}")
  d.mkdir(parents=True, exist_ok=True)
  (d / f"{Path(args.store).name}.json").write_text(json.dumps(res, indent=2))
  return res


if __name__ == "__main__":
  scripts.run(main)
