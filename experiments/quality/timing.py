"""Seconds per request on this machine: retraining (the pipeline's training loop) against
one run of isr (the library's ``importance_retrain`` through its host driver, compilation
excluded), and the backdoor's attack success of isr models.

    python -m experiments.quality.timing --seed 0 --forget flip --reps 3
"""

import argparse
import json
import os
import time

import jax
import numpy as np

from experiments.quality import evaluate as ev
from experiments.quality import lab as lab_lib
from jaxunlearn import plan as plan_lib, train as train_lib, triggers, unlearn as unlearn_lib


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--forget", default="flip")
  p.add_argument("--reps", type=int, default=3)
  args = p.parse_args()
  lab = lab_lib.Lab(args.seed, args.forget)
  s, cfg, model = lab.s, lab.cfg, lab.req.model
  x_r, y_r = lab.x_all[s.remain_idx], lab.y_all[s.remain_idx]
  out = {"load_average_start": os.getloadavg()}
  # retraining: the pipeline's train_stage loop (driver auto: a host loop over a jitted step)
  rt = []
  for r in range(args.reps):
    steps = cfg.train.epochs * (s.remain_idx.size // cfg.train.batch_size)
    opt = train_lib.make_optimizer(cfg.train, steps)
    k = jax.random.key(10 + r)
    state = train_lib.init_state(model, opt, k, lab.req.data.input_shape)
    res = train_lib.fit(model, opt, state, x_r, y_r, epochs=cfg.train.epochs,
                        batch_size=cfg.train.batch_size, key=k, progress=False)
    rt.append((res.run_s, res.compile_s))
  out["retrain_run_s"] = [round(a, 2) for a, _ in rt]
  # isr: the library's host driver (unlearn.unlearn), as `jaxunlearn run` would time it (the
  # fresh initialisation is the run's start, timed as run time)
  cand = ev.isr()
  plan = plan_lib.make_plan(cand.label, lab.unlearn_cfg(cand))
  fn = plan.make_fn(lab.apply, model=model, input_shape=lab.req.data.input_shape,
                    batch_stats=lab.original.batch_stats, n_forget=int(s.n_forget),
                    n_remain=int(s.remain_idx.size))
  inputs = plan.build_inputs(x_forget=lab.x_all[s.forget_idx], y_forget=lab.y_all[s.forget_idx],
                             x_remain=x_r, y_remain=y_r)
  it = []
  accs = []
  for r in range(args.reps):
    key = jax.random.key(20 + r)
    res = unlearn_lib.unlearn(fn, lab.original.params, inputs, plan.hparam_arrays(), key=key,
                              progress=False)
    it.append((res.run_s, res.compile_s))
    logits = np.asarray(lab.apply(res.params, lab.req.data.x_test))
    accs.append(float(np.mean(logits.argmax(-1) == lab.req.data.y_test)))
  out["isr_run_s"] = [round(a, 2) for a, _ in it]
  out["isr_compile_s"] = [round(b, 2) for _, b in it]
  out["isr_test_acc"] = accs
  out["ratio_median"] = float(np.median([a for a, _ in it]) / np.median([a for a, _ in rt]))
  out["note"] = ("isr's host driver runs exactly retraining's step count (unlearn.steps), "
                 "each step on remain_batch_size rows it draws itself")
  if args.forget == "backdoor":
    x_t, y_t = lab.req.data.x_test, lab.req.data.y_test
    target = int(cfg.backdoor.target_class)
    keep = y_t != target
    x_trig = triggers.stamp(x_t[keep], cfg.backdoor)
    def success(params):
      return float(np.mean(np.asarray(lab.apply(params, x_trig)).argmax(-1) == target))
    pm = lab.run_many(cand, m=8)
    out["attack_success_isr"] = [success(jax.tree.map(lambda a: a[i], pm)) for i in range(8)]
    out["attack_success_original"] = success(lab.original.params)
    out["attack_success_retrain"] = [success(jax.tree.map(lambda a: a[i], lab.retrain["params"]))
                                     for i in range(8)]
  out["load_average_end"] = os.getloadavg()
  print(json.dumps(out, indent=1))
  lab.close()


if __name__ == "__main__":
  main()
