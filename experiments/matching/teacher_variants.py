"""Corrections of a shared store's OUT teacher, scored offline against retraining.

    python experiments/matching/teacher_variants.py --seed 100 --forget random \
        --store runs/step100/random/attribution/558b8dab8766 --runs o90_w1,o90_w1_rep
    python experiments/matching/teacher_variants.py --seed 100 --forget flip_pool \
        --store runs/step100/flip_pool/attribution/951e2736d6bc --runs pq128_w3,pq128_w10

The eighteenth look of ``experiments/matching/README.md``, on the selection seed only. Each
variant gives every D_f row a new mean phi; it is scored as ``teacher_error.py`` scores the OUT
mean (error in retraining's standard deviations), and by the relative F of finished runs with
each row's phi moved by the variant's change of the row's mean (the runs track their targets:
their mean lands within 0.2 retraining stds of the target's). Variants:

* ``shrink``: each logit of a row's OUT mean shrunk toward a prediction from its IN mean (a
  least-squares line, one for the label's logit and one for the others, fitted on the training
  rows outside D_f), with the empirical-Bayes weight ``tau^2 / (tau^2 + var_out / n_out)``.
* ``control``: phi regressed over all K models on the row's own membership and on each model's
  mean deviation on the 20 test images nearest the row (in the store's mean logits), a control
  variate for what a model does near the row whatever its mask; read at membership 0 and the
  deviation's mean.
* ``pool_pair`` and ``pool_kernel`` (``flip_pool`` only): a linear model of how the pool rows a
  model kept move a row's phi, fitted over every pool row's OUT models with one slope per group
  (``pair``: the kept rows with the same true class and flipped label; ``kernel``: those
  groups and the same flipped label, each row weighted by its pixel cosine similarity to the
  row to the 4th power), and read where retraining is: the other rows of D_f gone, the rest of
  the pool kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.matching import teacher_error as te  # noqa: E402
from jaxunlearn import scripts  # noqa: E402


def _out_mean_phi(z, keep, labels, j) -> float:
  """Row ``j``'s mean phi over its OUT models (a mean of phi, not the phi of mean logits)."""
  zj = z[~keep[:, j], j]
  return float(te.phi_of(zj, np.full(zj.shape[0], labels[j])).mean())


def shrink(z, keep, labels, pos):
  out = ~keep
  n_out, n_in = out.sum(0), keep.sum(0)
  fit_rows = (n_out >= 2) & (n_in >= 1)      # a pool store leaves rows outside its pool IN
  fit_rows[pos] = False
  n_out, n_in = np.maximum(n_out, 1), np.maximum(n_in, 1)
  om = np.einsum("kn,knc->nc", out, z) / n_out[:, None]
  im = np.einsum("kn,knc->nc", keep, z) / n_in[:, None]
  var = np.einsum("kn,knc->nc", out, (z - om) ** 2) / np.maximum(n_out - 1, 1)[:, None]
  noise = var / n_out[:, None]
  is_label = np.eye(z.shape[-1], dtype=bool)[labels]
  est = om.copy()
  for group in (is_label, ~is_label):
    fit = group & fit_rows[:, None]
    coef = np.polyfit(im[fit], om[fit], 1)
    pred = np.polyval(coef, im[group])
    tau2 = max(np.mean((om[fit] - np.polyval(coef, im[fit])) ** 2) - np.mean(noise[fit]), 1e-6)
    w = tau2 / (tau2 + noise[group])
    est[group] = w * om[group] + (1 - w) * pred
  return te.phi_of(est[pos], labels[pos])


def control(z, keep, labels, pos, held_z, held_labels, k_near=20):
  phi = te.phi_of(z[:, pos], labels[pos][None].repeat(z.shape[0], 0))
  held_phi = te.phi_of(held_z, held_labels[None].repeat(held_z.shape[0], 0))
  dev = held_phi - held_phi.mean(0)
  held_mean, z_mean = held_z.mean(0), z.mean(0)
  out = np.empty(pos.size)
  for a, j in enumerate(pos):
    near = np.argsort(((held_mean - z_mean[j]) ** 2).sum(1))[:k_near]
    x = np.stack([np.ones(z.shape[0]), keep[:, j].astype(float), dev[:, near].mean(1)], 1)
    coef, *_ = np.linalg.lstsq(x, phi[:, a], rcond=None)
    out[a] = coef[0]
  return out


def pool_groups(z, keep, labels, true_labels, pool, pos, x, kind):
  """Mean phi per D_f row read at retraining's pool, from group slopes fitted on the store."""
  phi = te.phi_of(z[:, pool], labels[pool][None].repeat(z.shape[0], 0))
  kept = keep[:, pool].astype(float)
  out = ~keep[:, pool]
  a, b = true_labels[pool], labels[pool]
  pair = (a[:, None] == a[None]) & (b[:, None] == b[None])
  np.fill_diagonal(pair, False)
  if kind == "pair":
    weights = [pair.astype(float)]
  else:
    xn = x[pool] / np.linalg.norm(x[pool], axis=1, keepdims=True)
    sim = np.clip(xn @ xn.T, 0, None) ** 4
    np.fill_diagonal(sim, 0.0)
    same_true = (a[:, None] == a[None]) & ~pair
    np.fill_diagonal(same_true, False)
    same_label = (b[:, None] == b[None]) & (a[:, None] != a[None])
    weights = [pair * sim, same_true * sim, same_label * sim]
  feats = [kept @ w.T for w in weights]                    # [K, P] each
  xs, ys = [], []
  for i in range(pool.size):
    o = out[:, i]
    f = np.stack([g[o, i] for g in feats], 1)
    xs.append(f - f.mean(0))
    ys.append(phi[o, i] - phi[o, i].mean())
  beta, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)
  retrain_keeps = (~np.isin(pool, pos)).astype(float)
  est = []
  for j in pos:
    i = int(np.searchsorted(pool, j))
    o = out[:, i]
    move = sum(bt * (w[i] @ retrain_keeps - g[o, i].mean()) for bt, w, g in zip(beta, weights,
                                                                                feats))
    est.append(phi[o, i].mean() + move)
  return np.array(est), beta


def main(argv=None) -> dict:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="random")
  p.add_argument("--store", required=True)
  p.add_argument("--runs", default="")
  p.add_argument("--root", default="")
  p.add_argument("--out", default="")
  p.add_argument("--setting", default="mnist5k", choices=("mnist5k", "fmnist"),
                 help="mnist5k: a look's work dir (look.py, under --root); fmnist: a "
                      "Fashion-MNIST audit's (fmnist_audit.py at 60,000 images; --root is the "
                      "work dir itself)")
  args = p.parse_args(argv)
  from jaxunlearn import attribution
  from jaxunlearn import request as request_lib
  from jaxunlearn.audits import epsilon
  from jaxunlearn.errors import ConfigError
  work, make, first = te.locate(args.setting, args.forget, args.seed, args.root)
  runs = [r for r in args.runs.split(",") if r]
  missing = [f"{n}.npy" for n in ("retrain", "oracle", *runs) if not (work / "phi" /
                                                                      f"{n}.npy").is_file()]
  if missing:
    raise ConfigError(f"{work / 'phi'} holds no {missing[0]}; run {first} first, and name rows "
                      "it ran in --runs")
  prep = request_lib.prepare(make(), work)
  store = attribution.load(args.store)
  pos = store.positions(prep.splits.forget_idx)
  z = np.asarray(store.logits(), np.float64)
  keep = np.asarray(store.keep, bool)
  labels = np.asarray(store.labels)
  retrain = np.load(work / "phi" / "retrain.npy")
  oracle = np.load(work / "phi" / "oracle.npy")
  mean, sd = retrain.mean(0), retrain.std(0, ddof=1)
  out_mean = np.stack([z[~keep[:, j], j].mean(0) for j in pos])
  base_phi = te.phi_of(out_mean, labels[pos])
  variants = {"out_mean": base_phi,
              "shrink": shrink(z, keep, labels, pos),
              "control": base_phi + (control(z, keep, labels, pos,
                                             np.asarray(store.logits(heldout=True), np.float64),
                                             np.asarray(store.heldout_labels))
                                     - np.array([_out_mean_phi(z, keep, labels, j)
                                                 for j in pos]))}
  slopes = {}
  if store.meta.get("forget_rate") == "pool":
    pool = store.positions(np.asarray(store.meta["pool"]))
    true_labels = np.asarray(prep.data.y_train)[store.rows]
    x = np.asarray(prep.data.x_train)[store.rows].reshape(store.rows.size, -1).astype(float)
    for kind in ("pair", "kernel"):
      est, beta = pool_groups(z, keep, labels, true_labels, pool, pos, x, kind)
      base_mean_phi = np.array([_out_mean_phi(z, keep, labels, j) for j in pos])
      variants[f"pool_{kind}"] = base_phi + est - base_mean_phi
      slopes[f"pool_{kind}"] = [float(v) for v in beta]
  oracle_f = epsilon.forgetting_quality(epsilon.per_example_epsilon(oracle, retrain),
                                        oracle.shape[0])
  res = {"seed": args.seed, "forget": args.forget, "store": str(args.store), "slopes": slopes,
         "variants": {}}
  for name, est in variants.items():
    row = {"error": te.summary((est - mean) / sd), "runs": {}}
    for label in runs:
      for run in (label, f"{label}_per_seed"):
        if not (work / "phi" / f"{run}.npy").is_file():
          continue                # a row audited under the single protocol only
        u = np.load(work / "phi" / f"{run}.npy")
        row["runs"][run] = {"as_run": te.relative_f(u, retrain, oracle_f),
                            "moved": te.relative_f(u + est - base_phi, retrain, oracle_f)}
    res["variants"][name] = row
    shown = " ".join(f"{k} {v['as_run']:.3f}->{v['moved']:.3f}" for k, v in row["runs"].items())
    print(f"{name:12s} rms {row['error']['rms']:.2f} median|e| {row['error']['median_abs']:.2f} "
          f"| {shown}", flush=True)
  d = Path(args.out or f"out/teacher_variants/{'fm_' if args.setting == 'fmnist' else ''}"
                       f"{args.forget}{args.seed}")
  d.mkdir(parents=True, exist_ok=True)
  (d / "variants.json").write_text(json.dumps(res, indent=2))
  return res


if __name__ == "__main__":
  scripts.run(main)
