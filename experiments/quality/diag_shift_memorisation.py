"""DIAGNOSTIC: is the memorisation of D_f visible on shifted copies of D_f images?"""
import numpy as np, jax, jax.numpy as jnp
from experiments.quality import lab as L
from jaxunlearn.audits import phi as P


def main():
  lab = L.Lab(100, "flip")
  s = lab.s
  xc = np.asarray(lab.x_all[lab.cal_idx]); yc = np.asarray(lab.y_all[lab.cal_idx])
  xf = np.asarray(lab.x_all[s.forget_idx]); yf = np.asarray(lab.y_all[s.forget_idx])
  rng = np.random.default_rng(0)
  yw = (yc + 1 + rng.integers(0, 9, yc.size)) % 10
  def phi(lg, y): return P.logit_confidence_numpy(lg, np.broadcast_to(y, lg.shape[:-1]))
  def shift(x, dy, dx): return np.roll(np.roll(x, dy, 1), dx, 2)
  SH = [(1,0),(-1,0),(0,1),(0,-1),(1,1),(-1,-1),(1,-1),(-1,1)]
  phis_r = np.stack([phi(np.asarray(lab.apply(jax.tree.map(lambda a: a[j], lab.retrain["params"]), xf)), yf) for j in range(32)])
  mu, sd = phis_r.mean(0), phis_r.std(0)
  def evaluate(name, M):
    t = phi(M(xc), yw)
    shc = np.mean([phi(M(shift(xc, *d)), yw) for d in SH], 0)
    shf = np.mean([phi(M(shift(xf, *d)), yf) for d in SH], 0)
    w = np.polyfit(shc, t, 1)
    pred = np.polyval(w, shf)
    z = (pred - mu) / sd
    print(name, "phi(x_f)", np.median(phi(M(xf), yf)).round(2), "shifted phi(x_f)", np.median(shf).round(2),
          "pred median", np.median(pred).round(2), "retrain mu median", np.median(mu).round(2),
          "|z| median", np.median(np.abs(z)).round(2), "z median", np.median(z).round(2), "fit", w.round(2))
  evaluate("original", lambda x: np.asarray(lab.apply(lab.original.params, x)))
  for j in range(3):
    evaluate(f"retrain{j}", lambda x: np.asarray(lab.apply(jax.tree.map(lambda a: a[j], lab.retrain["params"]), x)))
  for j in range(3):
    evaluate(f"none{j}", lambda x: np.asarray(lab.apply(jax.tree.map(lambda a: a[j], lab.none["params"]), x)))


if __name__ == "__main__":
  main()
