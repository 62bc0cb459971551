"""Probes over a grid of output temperatures from one set of runs (logits * tau).

    python -m experiments.quality.probe_tau --seed 100 --forget flip --lr 0.01 --epochs 3

Each probe is appended to runs/quality/probes.jsonl (``lab.PROBES``).
"""
import argparse
import itertools
import json
import time

from experiments.quality import lab as lab_lib
from experiments.quality.lab import Candidate as C
from experiments.quality import methods as qm  # noqa: F401

if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip")
  p.add_argument("--protocol", default="single")
  p.add_argument("--grid", required=True,
                 help='JSON list of dicts: {"lr":..,"epochs":..,"bs":..,"warmup":..,"end":..,'
                      '"perturb":..,"shrink":..,"wnoise":..}')
  p.add_argument("--taus", default="1.0,1.1,1.2,1.3")
  p.add_argument("--m", type=int, default=32)
  p.add_argument("--reps", type=int, default=1, help="repeats with other probe keys")
  args = p.parse_args()
  lab = lab_lib.Lab(args.seed, args.forget)
  taus = [float(t) for t in args.taus.split(",")]
  for g in json.loads(args.grid):
    hp = {"warmup": g.get("warmup", 0.0), "end_frac": g.get("end", 0.0)}
    for k in ("shrink", "wnoise", "fw", "kd", "q", "kd_temp", "kd_scale", "ema", "wd", "mix",
              "refresh", "warm_steps", "alpha", "max_steps", "early_steps", "late_batch"):
      if k in g:
        hp[k] = g[k]
    label = "lite_" + "_".join(f"{k}{v}" for k, v in g.items())
    meth = g.get("method", "q_recon")
    cand = C(label, meth, {"epochs": g.get("epochs", 3), "learning_rate": g["lr"],
                           "remain_batch_size": g.get("bs", 64), "forget_batch_size": 16,
                           **{f"{meth}.{k}": v for k, v in g.get("opts", {}).items()}},
             hparams=hp, prepare="repair",
             prep={"perturb": g.get("perturb", "reinit_all"), **g.get("prep", {})})
    agg = {}
    for rep in range(args.reps):
      t = time.perf_counter()
      params = lab.run_many(cand, m=args.m, protocol=args.protocol, seed=rep)
      wall = time.perf_counter() - t
      for r in lab.score_params(params, label, taus):
        r.update(seed=args.seed, forget=args.forget, protocol=args.protocol, wall_s=wall,
                 candidate=cand.__dict__, time=time.strftime("%H:%M:%S"), rep=rep)
        if args.reps == 1:
          print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                            for k, v in r.items() if k != "candidate"}), flush=True)
        agg.setdefault(r["tau"], []).append(r)
        lab_lib.append_log(lab_lib.PROBES, r, default=str)
    if args.reps > 1:
      import numpy as np
      for tau, rs in agg.items():
        f = [r["relF_vs_oracle32"] for r in rs]
        print(f"{label} tau {tau}: relF mean {np.mean(f):.3f} (reps {', '.join(f'{v:.2f}' for v in f)})"
              f" spread {np.mean([r['spread_ratio'] for r in rs]):.2f} |zbar| "
              f"{np.mean([r['absz_mean_of_runs_median'] for r in rs]):.2f} z_med "
              f"{np.mean([r['z_median'] for r in rs]):+.2f} test_gap "
              f"{np.mean([r['test_gap'] for r in rs]):+.4f}", flush=True)
  lab.close()
