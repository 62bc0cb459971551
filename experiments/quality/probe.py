"""Quick probes: a few runs of a candidate from the single original, per-example z-error.
Each probe is appended to runs/quality/probes.jsonl (``lab.PROBES``).

    python -m experiments.quality.probe --seed 100 --forget flip --set NAME ...

A probe is not an audit (no epsilon-score); it ranks ideas before a population
is spent on them. z = (phi of a run - mean phi of the retrained population) /
their per-example std (a retrained model drawn afresh has |z| median ~0.67).
"""
from __future__ import annotations

import argparse
import json
import time

from experiments.quality import lab as lab_lib
from experiments.quality.lab import Candidate as C
from experiments.quality import methods as qm  # noqa: F401  (registers the methods)

REPAIR = {"optimizer": "adam", "learning_rate": 1e-3, "remain_batch_size": 64,
          "forget_batch_size": 32}


def sets():
  S = {}
  S["ft_adam_e4"] = [C("ft_adam_e4", "q_repair", {**REPAIR, "epochs": 4}, prepare="repair",
                       prep={"perturb": "none"})]
  S["reinit_all"] = [C(f"reinit_all_e{e}", "q_repair", {**REPAIR, "epochs": e},
                       prepare="repair", prep={"perturb": "reinit_all"}) for e in (4, 20)]
  S["shrink"] = [C(f"shrink{a}_n{nz}_e{e}", "q_repair", {**REPAIR, "epochs": e},
                   hparams={"shrink": a, "wnoise": nz}, prepare="repair",
                   prep={"perturb": "shrink"})
                 for a, nz, e in ((0.5, 0.0, 4), (0.3, 0.0, 4), (0.5, 0.3, 4), (0.3, 0.5, 4),
                                  (0.1, 0.5, 4))]
  S["head"] = [C(f"head_s{a}_e{e}", "q_repair", {**REPAIR, "epochs": e},
                 hparams={"shrink": a, "wnoise": 0.0}, prepare="repair",
                 prep={"perturb": "reinit_head"}) for a, e in ((1.0, 4), (0.5, 4))]
  S["frac"] = [C(f"frac{r}_e4", "q_repair", {**REPAIR, "epochs": 4}, hparams={"reset": r},
                 prepare="repair", prep={"perturb": "reinit_frac"}) for r in (0.3, 0.6, 0.9)]
  S["ft_long"] = [C(f"ft_lr{lr}_e{e}", "q_repair", {**REPAIR, "epochs": e, "learning_rate": lr},
                    prepare="repair", prep={"perturb": "none"})
                  for lr, e in ((1e-3, 10), (1e-3, 20), (3e-3, 4), (1e-2, 4), (3e-3, 10))]
  S["ft_cos"] = [C(f"ftcos_lr{lr}_e{e}", "q_repair",
                   {**REPAIR, "epochs": e, "learning_rate": lr, "schedule": "cosine"},
                   prepare="repair", prep={"perturb": "none"})
                 for lr, e in ((3e-3, 4), (1e-2, 4), (2e-2, 4), (1e-2, 3), (5e-3, 4))]
  M = {"optimizer": "sgd", "learning_rate": 0.02, "forget_batch_size": 8,
       "remain_batch_size": 64}
  S["ideal"] = [C(f"ideal_{d}_fw{fw}_e{e}_lr{lr}", "q_match",
                  {**M, "epochs": e, "learning_rate": lr, "q_match.divergence": d},
                  hparams={"fw": fw}, prepare="targets", prep={"target": "ideal"},
                  diag="ideal")
                for d, fw, e, lr in (("kl", 1.0, 5, 0.02), ("lp_mse", 1.0, 5, 0.02),
                                     ("lp_mse", 1.0, 20, 0.02), ("lp_mse", 0.3, 20, 0.02),
                                     ("logit_mse", 1.0, 20, 0.02))]
  S["ideal_adam"] = [C(f"idealA_{d}_fw{fw}_e{e}_lr{lr}", "q_repair",
                       {**REPAIR, "epochs": e, "learning_rate": lr, "q_repair.divergence": d,
                        "schedule": sch},
                       hparams={"fw": fw}, prepare="repair",
                       prep={"target": "ideal", "perturb": "none"}, diag="ideal")
                     for d, fw, e, lr, sch in (("logit_mse", 1.0, 4, 1e-3, "constant"),
                                               ("lp_mse", 1.0, 4, 1e-3, "constant"),
                                               ("phi_mse", 1.0, 4, 1e-3, "constant"),
                                               ("logit_mse", 3.0, 4, 1e-3, "constant"),
                                               ("logit_mse", 1.0, 4, 3e-3, "cosine"))]
  S["ftcos32"] = [C(f"ftcos_lr{lr}_e{e}", "q_repair",
                     {**REPAIR, "epochs": e, "learning_rate": lr, "schedule": "cosine"},
                     prepare="repair", prep={"perturb": "none"})
                   for lr, e in ((1e-2, 4), (2e-2, 4), (3e-2, 4), (2e-2, 3))]
  FX = {**REPAIR, "epochs": 4, "learning_rate": 2e-2, "schedule": "cosine",
        "forget_batch_size": 16}
  S["ftx"] = [C(f"ftx_{er}_fw{fw}_u{u}", "q_ftx", {**FX, "q_ftx.erase": er},
                hparams={"fw": fw, "erase_until": u, "phi_stop": -8.0}, prepare="repair",
                prep={"perturb": "none", "target": "ref"})
              for er, fw, u in (("ascent", 0.3, 0.25), ("uniform", 0.3, 0.25),
                                ("uniform", 1.0, 0.25), ("reflabel", 0.3, 0.25),
                                ("target", 0.3, 0.25), ("uniform", 0.3, 1.0))]
  S["ref"] = [C("ft_none_e0", "q_repair", {**REPAIR, "epochs": 1, "learning_rate": 0.0},
                prepare="repair", prep={"perturb": "none"}),
              C("reinit_all_e20", "q_repair", {**REPAIR, "epochs": 20}, prepare="repair",
                prep={"perturb": "reinit_all"}),
              C("ftcos_lr0.02_e4", "q_repair",
                {**REPAIR, "epochs": 4, "learning_rate": 2e-2, "schedule": "cosine"},
                prepare="repair", prep={"perturb": "none"}),
              C("ft_lr0.001_e20", "q_repair", {**REPAIR, "epochs": 20, "learning_rate": 1e-3},
                prepare="repair", prep={"perturb": "none"})]
  RC = {"remain_batch_size": 64, "forget_batch_size": 16}
  S["recon"] = [C(f"recon_lr{lr}_e{e}_w{w}_end{ef}", "q_recon",
                  {**RC, "epochs": e, "learning_rate": lr},
                  hparams={"warmup": w, "end_frac": ef}, prepare="repair",
                  prep={"perturb": "none"})
                for lr, e, w, ef in ((0.02, 3, 0.0, 0.0), (0.02, 3, 0.0, 0.1), (0.02, 3, 0.1, 0.0),
                                     (0.01, 3, 0.0, 0.0), (0.005, 3, 0.0, 0.0),
                                     (0.01, 2, 0.0, 0.0), (0.02, 2, 0.0, 0.0))]
  S["sal"] = [C(f"sal_{sal}_{rs}_q{q}_lr{lr}", "q_recon", {**RC, "epochs": 3, "learning_rate": lr},
                hparams={"q": q, "rnoise": 1.0}, prepare="repair",
                prep={"perturb": "salient", "sal": sal, "reset": rs})
              for sal, rs, q, lr in (("ratio", "reinit", 0.01, 0.005), ("ratio", "reinit", 0.05, 0.005),
                                     ("ratio", "reinit", 0.2, 0.005), ("grad_f", "reinit", 0.05, 0.005),
                                     ("ratio", "zero", 0.05, 0.005), ("ratio", "reinit", 0.05, 0.002))]
  S["lite"] = [C(f"lite_lr{lr}_e{e}_end{ef}_b{b}", "q_recon",
                 {**RC, "epochs": e, "learning_rate": lr, "remain_batch_size": b},
                 hparams={"end_frac": ef}, prepare="repair", prep={"perturb": "reinit_all"})
               for lr, e, ef, b in ((0.003, 3, 0.0, 64), (0.005, 3, 0.0, 64), (0.01, 3, 0.0, 64),
                                    (0.003, 4, 0.0, 64), (0.005, 4, 0.0, 64), (0.003, 3, 0.0, 32))]
  S["lite_tau"] = [C(f"lite_lr{lr}_e{e}_tau{t}", "q_recon",
                     {**RC, "epochs": e, "learning_rate": lr},
                     hparams={"tau": t}, prepare="repair", prep={"perturb": "reinit_all"})
                   for lr, e, t in ((0.01, 3, 1.2), (0.01, 3, 1.4), (0.02, 3, 1.0), (0.02, 3, 1.2),
                                    (0.005, 3, 1.5))]
  S["orig_tau"] = [C(f"orig_tau{t}", "q_recon", {**RC, "epochs": 1, "learning_rate": 0.0},
                     hparams={"tau": t}, prepare="repair", prep={"perturb": "none"})
                   for t in (1.0, 1.3, 1.46, 1.6)]
  return S


if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip")
  p.add_argument("--set", nargs="+", required=True)
  p.add_argument("--m", type=int, default=4)
  p.add_argument("--protocol", default="single")
  p.add_argument("--audit-set", default="all")
  args = p.parse_args()
  lab = lab_lib.Lab(args.seed, args.forget)
  S = sets()
  extra = None
  if any(n.startswith("ideal") for n in args.set):
    # DIAGNOSTIC ONLY: the retrained population's mean logits on D_f
    import numpy as np
    import jax.numpy as jnp
    rl = lab.retrain_logits(lab.x_all[lab.s.forget_idx])
    rl = rl - rl.mean(-1, keepdims=True)
    extra = {"ideal_logits": jnp.asarray(rl.mean(0)), "ideal_sd": jnp.asarray(rl.std(0).mean(-1))}
  for name in args.set:
    for cand in S[name]:
      r = lab.probe(cand, m=args.m, extra=extra if cand.diag else None,
                    protocol=args.protocol, audit_set=args.audit_set)
      r.update(seed=args.seed, forget=args.forget, candidate=cand.__dict__,
               time=time.strftime("%H:%M:%S"))
      print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                        if k != "candidate"}), flush=True)
      lab_lib.append_log(lab_lib.PROBES, r, default=str)
  lab.close()
