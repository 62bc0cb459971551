"""DIAGNOSTIC: the structure of the per-example error of the lite recipe (mean over runs
against the retrained mean), on D_f and the calibration split."""
import numpy as np, jax, jax.numpy as jnp
from experiments.quality import lab as L, methods as qm
from experiments.quality.lab import Candidate as C
from jaxunlearn.audits import phi as P


def main():
  lab = L.Lab(100, "flip")
  import sys
  if len(sys.argv) > 1 and sys.argv[1] == "is":
    cand = C("is", "q_is", {"epochs": 20, "learning_rate": 0.002, "remain_batch_size": 65,
             "forget_batch_size": 16, "q_is.batch": "12"},
             hparams={"tau": 1.0, "mix": 0.1, "refresh": 100000.0, "end_frac": 0.2},
             prepare="repair", prep={"perturb": "reinit_all"})
  else:
    cand = C("lite", "q_recon", {"epochs": 3, "learning_rate": 0.01, "remain_batch_size": 64,
             "forget_batch_size": 16}, hparams={"tau": 1.0}, prepare="repair",
             prep={"perturb": "reinit_all"})
  params = lab.run_many(cand, m=32)
  d = lab._audit_data("all")
  lg = np.asarray(jax.jit(jax.vmap(lambda q: lab.apply(q, d.x_audit)))(params))   # [32, n, C]
  rl = lab.retrain_logits(d.x_audit)
  y = np.asarray(d.y_audit)
  n_f, n_c = 100, len(lab.cal_idx)
  def phi(l, tau=1.0): return P.logit_confidence_numpy(l * tau, np.broadcast_to(y, l.shape[:-1]))
  pr = phi(rl); mu, sd = pr.mean(0), pr.std(0)
  for tau in (1.0, 1.2):
    pl = phi(lg, tau); m = pl.mean(0)
    for name, sl in (("D_f", slice(0, n_f)), ("cal_wrong", slice(n_f, n_f + n_c)), ("cal_true", slice(n_f + n_c, None))):
      a, b = np.polyfit(mu[sl], m[sl], 1)
      z = (m[sl] - mu[sl]) / sd[sl]
      resid = (m[sl] - (a * mu[sl] + b)) / sd[sl]
      print(f"tau {tau} {name}: slope {a:.3f} icpt {b:.2f} | mean-of-runs |z| median {np.median(np.abs(z)):.2f} | after best line |z| {np.median(np.abs(resid)):.2f} | run sd/retrain sd {np.median(pl[:, sl].std(0)/sd[sl]):.2f}")
  # centered logits: scale of the lite vs retrain on all three sets
  lc = lg - lg.mean(-1, keepdims=True); rc = rl - rl.mean(-1, keepdims=True)
  print("logit scale (lite / retrain), by set:", [round(float(np.abs(lc[:, s]).mean() / np.abs(rc[:, s]).mean()), 3) for s in (slice(0, n_f), slice(n_f, n_f + n_c))])


if __name__ == "__main__":
  main()
