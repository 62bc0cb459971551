"""Seconds per request on this machine: retraining (the pipeline's training loop) against
one run of isr (the library's host driver, epoch by epoch, compilation excluded), and
the backdoor's attack success of isr models.

    python -m experiments.quality.timing --seed 0 --forget flip --reps 3
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.quality import evaluate as ev
from experiments.quality import lab as lab_lib
from experiments.quality import methods as qm
from jaxunlearn import methods, train as train_lib, unlearn as unlearn_lib


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--forget", default="flip")
  p.add_argument("--reps", type=int, default=3)
  args = p.parse_args()
  lab = lab_lib.Lab(args.seed, args.forget)
  s, cfg, model = lab.s, lab.cfg, lab.ctx.model
  x_r, y_r = lab.x_all[s.remain_idx], lab.y_all[s.remain_idx]
  out = {"load_average_start": os.getloadavg()}
  # retraining: the pipeline's train_stage loop (driver auto: a host loop over a jitted step)
  rt = []
  for r in range(args.reps):
    steps = cfg.train.epochs * (s.remain_idx.size // cfg.train.batch_size)
    opt = train_lib.make_optimizer(cfg.train, steps)
    k = jax.random.key(10 + r)
    state = train_lib.init_state(model, opt, k, lab.ctx.data.input_shape)
    res = train_lib.fit(model, opt, state, x_r, y_r, epochs=cfg.train.epochs,
                        batch_size=cfg.train.batch_size, key=k, progress=False)
    rt.append((res.run_s, res.compile_s))
  out["retrain_run_s"] = [round(a, 2) for a, _ in rt]
  # isr: the library's host driver (unlearn.unlearn), as `jaxunlearn run` would time it
  cand = ev.isr()
  u = lab._unlearn_cfg(cand)
  method = methods.resolve_method(cand.method, u)
  hp = {"learning_rate": float(u.learning_rate), **methods.get(cand.method).hparams,
        **cand.hparams}
  init_fn = lambda k: model.init(k, jnp.zeros((1, *lab.ctx.data.input_shape)),  # noqa: E731
                                 train=False)["params"]
  fn = unlearn_lib.make_unlearn_fn(
      method, lab.apply, epochs=int(u.epochs), n_forget=int(s.n_forget),
      n_remain=int(s.remain_idx.size), forget_batch_size=int(u.forget_batch_size),
      remain_batch_size=int(u.remain_batch_size), optimizer_cfg=u, init_fn=init_fn)
  it = []
  accs = []
  for r in range(args.reps):
    key = jax.random.key(20 + r)
    arr = qm.Arrays(apply_fn=lab.apply, params=lab.original.params, ref_params=None,
                    x_f=lab.x_all[s.forget_idx], y_f=lab.y_all[s.forget_idx], x_r=x_r, y_r=y_r,
                    x_c=None, y_c=None, extra={}, init_fn=init_fn)
    t0 = time.perf_counter()
    inputs, params0 = qm.prep_repair(jax.random.fold_in(key, 1), arr, hp, cand.prep)
    params0 = jax.block_until_ready(params0)
    prep_s = time.perf_counter() - t0
    res = unlearn_lib.unlearn(fn, params0, inputs, hp, key=key, progress=False)
    it.append((res.run_s + prep_s, res.compile_s))
    logits = np.asarray(lab.apply(res.params, lab.ctx.data.x_test))
    accs.append(float(np.mean(logits.argmax(-1) == lab.ctx.data.y_test)))
  out["isr_run_s"] = [round(a, 2) for a, _ in it]
  out["isr_compile_s"] = [round(b, 2) for _, b in it]
  out["isr_test_acc"] = accs
  out["ratio_median"] = float(np.median([a for a, _ in it]) / np.median([a for a, _ in rt]))
  out["note"] = ("isr's host driver runs 21 passes of ceil(|D_r| / 64) steps and the steps "
                 "past retraining's 1,020 compute a gradient they then discard; each step also "
                 "gathers the library's unused remain batch")
  if args.forget == "backdoor":
    from jaxunlearn import backdoor
    x_t, y_t = lab.ctx.data.x_test, lab.ctx.data.y_test
    target = int(cfg.backdoor.target_class)
    keep = y_t != target
    x_trig = backdoor.stamp(x_t[keep], cfg.backdoor)
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
