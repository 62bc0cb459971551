"""Diagnostics on the selection seed: how well can targets on D_f be predicted?

DIAGNOSTIC ONLY: this reads the retrained population (per-example mean and
spread of phi on D_f) to judge predictors; no method reads any of it.

    python -m experiments.quality.diag --seed 100 --forget flip
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from experiments.quality import lab as lab_lib
from experiments.quality import methods as qm
from jaxunlearn.audits import phi as phi_lib


def phi_np(logits, y):
  return np.asarray(phi_lib.logit_confidence_numpy(np.asarray(logits, np.float64),
                                                   np.broadcast_to(y, logits.shape[:-1])))


def summary(name, t, mu, sd):
  z = (t - mu) / sd
  return {"name": name, "corr": float(np.corrcoef(t, mu)[0, 1]),
          "mean_err": float(np.mean(t - mu)), "rmse": float(np.sqrt(np.mean((t - mu) ** 2))),
          "z_abs_median": float(np.median(np.abs(z))), "z_rms": float(np.sqrt(np.mean(z ** 2))),
          "frac_|z|<0.5": float(np.mean(np.abs(z) < 0.5))}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip")
  args = p.parse_args()
  lab = lab_lib.Lab(args.seed, args.forget)
  s = lab.s
  x_f, y_f = lab.x_all[s.forget_idx], np.asarray(lab.y_all[s.forget_idx])
  x_c, y_c = lab.x_all[lab.cal_idx], np.asarray(lab.y_all[lab.cal_idx])
  out = {}
  rl = lab.retrain_logits(x_f)                          # [N, n, C]
  phi_r = phi_np(rl, y_f)
  mu, sd = phi_r.mean(0), phi_r.std(0)
  out["retrain"] = {"phi_median": float(np.median(phi_r)), "mu_range": [float(mu.min()),
                    float(np.median(mu)), float(mu.max())],
                    "sd_quantiles": [float(q) for q in np.quantile(sd, [0.1, 0.5, 0.9])]}
  ol = np.asarray(lab.apply(lab.original.params, x_f))
  out["original_phi_median"] = float(np.median(phi_np(ol, y_f)))
  # Is the original a good stand-in for retrained models on never-seen examples?
  rc = lab.retrain_logits(x_c)
  oc = np.asarray(lab.apply(lab.original.params, x_c))
  rng = np.random.default_rng(0)
  y_wrong = (y_c + 1 + rng.integers(0, 9, y_c.size)) % 10
  pr_c, po_c = phi_np(rc, y_wrong), phi_np(oc, y_wrong)
  out["cal_set_wrong_label"] = {
      "retrain_mean_phi_median": float(np.median(pr_c.mean(0))),
      "original_phi_median": float(np.median(po_c)),
      "corr(original, retrain mean)": float(np.corrcoef(po_c, pr_c.mean(0))[0, 1]),
      "retrain_sd_median": float(np.median(pr_c.std(0)))}
  # Predictors from the references.
  for k in (1, 2, 4):
    refs = lab.refs_for("single", k)
    arr = qm.Arrays(apply_fn=lab.apply, params=lab.original.params, ref_params=refs,
                    x_f=x_f, y_f=y_f, x_r=None, y_r=None, x_c=x_c, y_c=y_c, extra={},
                    init_fn=None)
    for calib in ("none", "affine"):
      t, tsd = qm.target_logits(arr, {"calib": calib})
      tphi = phi_np(np.asarray(t), y_f)
      out[f"ref_k{k}_{calib}"] = summary(f"k{k} {calib}", tphi, mu, sd)
      out[f"ref_k{k}_{calib}"]["target_phi_median"] = float(np.median(tphi))
  # Seed variability of calibrated references (per-seed bank), against retrain's.
  refs = lab.refs_for("perseed", 1)
  phis = []
  for i in range(lab.n_models):
    arr = qm.Arrays(apply_fn=lab.apply, params=jax.tree.map(lambda a: a[i], lab.none["params"]),
                    ref_params=jax.tree.map(lambda a: a[i], refs), x_f=x_f, y_f=y_f, x_r=None,
                    y_r=None, x_c=x_c, y_c=y_c, extra={}, init_fn=None)
    t, _ = qm.target_logits(arr, {"calib": "affine"})
    phis.append(phi_np(np.asarray(t), y_f))
  phis = np.stack(phis)
  out["perseed_ref_affine"] = {
      "sd_over_seeds_median": float(np.median(phis.std(0))),
      "sd_ratio_median(ref/retrain)": float(np.median(phis.std(0) / sd)),
      "mean_over_seeds": summary("perseed mean", phis.mean(0), mu, sd),
      "one_seed": summary("perseed one", phis[0], mu, sd),
      "corr(sd_ref, sd_retrain)": float(np.corrcoef(phis.std(0), sd)[0, 1])}
  # How F would look if runs output exactly these phi (no model in between).
  from jaxunlearn.audits import epsilon as eps_lib
  oracle_f = lab.eps_oracle["forgetting_quality"]
  def rel(u):
    return eps_lib.epsilon_report(u, phi_r)["forgetting_quality"] / oracle_f
  out["rel_F_if_phi_were"] = {
      "perseed refs (calibrated)": rel(phis),
      "perseed refs scaled to retrain sd": rel(phis.mean(0) + (phis - phis.mean(0)) *
                                               np.median(sd / phis.std(0))),
  }
  print(json.dumps(out, indent=1))
  lab.close()


if __name__ == "__main__":
  main()
