"""DIAGNOSTIC: can the output temperature be set from quantities a method has?
Compares phi on D_r (true labels) under the original, the retrained models and lite runs,
and the temperature at which lite runs match the original there."""
import numpy as np, jax, jax.numpy as jnp, sys
from experiments.quality import lab as L
from experiments.quality.lab import Candidate as C
from jaxunlearn.audits import phi as P


def main():
  for forget in sys.argv[1:] or ["flip", "random"]:
    lab = L.Lab(100, forget)
    s = lab.s
    xr, yr = lab.x_all[s.remain_idx], np.asarray(lab.y_all[s.remain_idx])
    xc, yc = lab.x_all[lab.cal_idx], np.asarray(lab.y_all[lab.cal_idx])
    def phis(lg, y): return P.logit_confidence_numpy(np.asarray(lg, np.float64), np.broadcast_to(y, lg.shape[:-1]))
    o_r = phis(lab.apply(lab.original.params, xr), yr)
    r_r = phis(lab.retrain_logits(xr), yr)
    o_c = phis(lab.apply(lab.original.params, xc), yc)
    r_c = phis(lab.retrain_logits(xc), yc)
    cand = C("lite", "q_recon", {"epochs": 3, "learning_rate": 0.01, "remain_batch_size": 64,
             "forget_batch_size": 16}, prepare="repair", prep={"perturb": "reinit_all"})
    params = lab.run_many(cand, m=16)
    lg_r = np.asarray(jax.jit(jax.vmap(lambda q: lab.apply(q, xr)))(params))
    lg_c = np.asarray(jax.jit(jax.vmap(lambda q: lab.apply(q, xc)))(params))
    print(forget, "phi on D_r median: original", np.median(o_r).round(2), "retrain", np.median(r_r).round(2),
          "| on cal (true labels): original", np.median(o_c).round(2), "retrain", np.median(r_c).round(2))
    for stat in ("median", "mean"):
      f = np.median if stat == "median" else np.mean
      for tau in np.arange(1.0, 1.6, 0.05):
        l = f(phis(lg_r * tau, yr))
        if l >= f(o_r):
          print(f"  tau matching the original's {stat} phi on D_r: {tau:.2f}", end="")
          break
      for tau in np.arange(1.0, 1.6, 0.05):
        if f(phis(lg_c * tau, yc)) >= f(o_c):
          print(f"; matching its {stat} phi on cal: {tau:.2f}")
          break
      else:
        print()
    lab.close()


if __name__ == "__main__":
  main()
