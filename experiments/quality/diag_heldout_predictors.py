"""DIAGNOSTIC: on the held-out calibration set (seen by no model), how precisely can a
never-seen model's phi be predicted from features a method could compute?"""
import numpy as np, jax, jax.numpy as jnp
from experiments.quality import lab as L, methods as qm
from jaxunlearn.audits import phi as P


def main():
  lab = L.Lab(100, "flip")
  s = lab.s
  xc = np.asarray(lab.x_all[lab.cal_idx]); yc = np.asarray(lab.y_all[lab.cal_idx])
  xr = np.asarray(lab.x_all[s.remain_idx]); yr = np.asarray(lab.y_all[s.remain_idx])
  rng = np.random.default_rng(0)
  yw = (yc + 1 + rng.integers(0, 9, yc.size)) % 10
  def phi(lg, y): return P.logit_confidence_numpy(lg, np.broadcast_to(y, lg.shape[:-1]))
  def shift(x, dy, dx): return np.roll(np.roll(x, dy, 1), dx, 2)
  rp = lab.retrain["params"]
  refs = lab.refs_for("single", 4)
  apply = lab.apply
  ref_c = np.asarray(jax.vmap(lambda p: apply(p, xc))(refs)).mean(0)
  # nearest neighbours of cal examples in D_r (pixel L2)
  d = ((xc.reshape(len(xc), -1)[:, None, :] - xr.reshape(len(xr), -1)[None]) ** 2).sum(-1)
  nn = np.argsort(d, 1)[:, :10]
  phis_r = np.stack([phi(np.asarray(apply(jax.tree.map(lambda a: a[j], rp), xc)), yw) for j in range(32)])
  mu, sd = phis_r.mean(0), phis_r.std(0)
  print("retrain seed sd median (cal, wrong labels)", np.median(sd).round(3))
  def fitpred(X, t):
    X1 = np.c_[X, np.ones(len(X))]
    # 2-fold cross-fit
    idx = np.arange(len(t)); a, b = idx % 2 == 0, idx % 2 == 1
    out = np.zeros_like(t)
    for tr, te in ((a, b), (b, a)):
      w = np.linalg.lstsq(X1[tr], t[tr], rcond=None)[0]; out[te] = X1[te] @ w
    return out
  res = {}
  for j in range(4):
    pj = jax.tree.map(lambda a: a[j], rp)
    M = lambda x: np.asarray(apply(pj, x))
    t = phi(M(xc), yw)                       # the never-seen model's own phi
    f_ref = phi(ref_c, yw)
    sh = np.mean([phi(M(shift(xc, dy, dx)), yw) for dy, dx in ((1,0),(-1,0),(0,1),(0,-1))], 0)
    knn = np.stack([phi(M(xr[nn[:, k]]), yw) for k in range(10)], 1).mean(1)
    for name, X in (("ref", f_ref[:, None]), ("shift", sh[:, None]), ("knn", knn[:, None]),
                    ("ref+shift", np.c_[f_ref, sh]), ("all", np.c_[f_ref, sh, knn])):
      pr = fitpred(X, t)
      res.setdefault(name, []).append((np.sqrt(np.mean((pr - t) ** 2)), np.median(np.abs(pr - t) / sd)))
  for k, v in res.items():
    v = np.array(v); print(k, "rmse", v[:, 0].mean().round(3), "median |err|/sd", v[:, 1].mean().round(3))


if __name__ == "__main__":
  main()
