"""DIAGNOSTIC: per-example targets for D_f from features a method could compute.

M = one run of a re-convergence candidate (the original fine-tuned on D_r at a low
peak rate: its confidence on never-seen examples is near the retrained models').
Features of an example under M (shifted copies, nearest D_r neighbours, references)
are mapped to M's own phi by least squares on the calibration split (seen by no model);
the map is applied to D_f and compared with the retrained population's per-example mean
(z in units of its per-example std). Retrained models are read only to score.
"""
import numpy as np, jax, jax.numpy as jnp
from experiments.quality import lab as L, methods as qm
from experiments.quality.lab import Candidate as C
from jaxunlearn.audits import phi as P


def main():
  lab = L.Lab(100, "flip")
  s = lab.s
  xc = np.asarray(lab.x_all[lab.cal_idx]); yc = np.asarray(lab.y_all[lab.cal_idx])
  xf = np.asarray(lab.x_all[s.forget_idx]); yf = np.asarray(lab.y_all[s.forget_idx])
  xr = np.asarray(lab.x_all[s.remain_idx])
  rng = np.random.default_rng(0)
  ycw = np.stack([(yc + 1 + rng.integers(0, 9, yc.size)) % 10 for _ in range(3)])  # 3 wrong labels each
  def phi(lg, y): return P.logit_confidence_numpy(lg, np.broadcast_to(y, lg.shape[:-1]))
  def shift(x, dy, dx): return np.roll(np.roll(x, dy, 1), dx, 2)
  def dirs(d): return [(d,0),(-d,0),(0,d),(0,-d),(d,d),(-d,-d),(d,-d),(-d,d)]
  phi_r = lab.retrain_phi("forget"); mu, sd = phi_r.mean(0), phi_r.std(0)
  cand = C("recon_lr0.005_e3", "q_recon", {"remain_batch_size": 64, "forget_batch_size": 16,
           "epochs": 3, "learning_rate": 0.005}, prepare="repair", prep={"perturb": "none"})
  pM = lab.run_one(cand)
  M = lambda x: np.asarray(lab.apply(pM, jnp.asarray(x)))
  refs = lab.refs_for("single", 4)
  R = lambda x: np.asarray(jax.vmap(lambda p: lab.apply(p, jnp.asarray(x)))(refs)).mean(0)
  def nn_idx(x):
    d = ((x.reshape(len(x), -1)[:, None, :] - xr.reshape(len(xr), -1)[None]) ** 2).sum(-1)
    return np.argsort(d, 1)[:, :10]
  def feats(x, ys):
    lg = {"self": M(x), "ref": R(x), "knn": np.mean([M(xr[nn_idx(x)[:, k]]) for k in range(10)], 0)}
    for d in (1, 2, 3):
      lg[f"shift{d}"] = np.mean([M(shift(x, *v)) for v in dirs(d)], 0)
    return {k: np.stack([phi(v, y) for y in ys]) for k, v in lg.items()}
  Fc, Ff = feats(xc, ycw), feats(xf, yf[None])
  tc = Fc["self"]
  print("M on D_f: phi median", np.median(Ff["self"]).round(2), "|z| median", np.median(np.abs((Ff["self"][0]-mu)/sd)).round(2))
  for names in (["ref"], ["knn"], ["shift1"], ["shift2"], ["shift3"], ["shift2", "shift3"],
                ["ref", "knn", "shift3"], ["ref", "knn", "shift2", "shift3"], ["ref", "knn", "shift1", "shift2", "shift3"]):
    X = np.stack([Fc[n].ravel() for n in names], 1); X1 = np.c_[X, np.ones(len(X))]
    w = np.linalg.lstsq(X1, tc.ravel(), rcond=None)[0]
    res_c = np.sqrt(np.mean((X1 @ w - tc.ravel()) ** 2))
    Xf = np.c_[np.stack([Ff[n].ravel() for n in names], 1), np.ones(len(yf))]
    pred = Xf @ w
    z = (pred - mu) / sd
    print("+".join(names), "cal rmse", res_c.round(2), "| D_f: pred median", np.median(pred).round(2),
          "z median", np.median(z).round(2), "|z| median", np.median(np.abs(z)).round(2), "corr", np.corrcoef(pred, mu)[0,1].round(3))
  print("retrain mu median", np.median(mu).round(2), "sd median", np.median(sd).round(2))


if __name__ == "__main__":
  main()
