"""Speedup of unlearning over retraining: side by side in one process, or per request by mode.

    python benchmarks/speedup.py --dataset mnist5k --model lenet5 --epochs 20 --repeats 3
    python benchmarks/speedup.py --quick --repeats 3        # configs/quick.py's schedule
    python benchmarks/speedup.py --dataset synthetic:cifar:50000 --model resnet18 --epochs 10
    python benchmarks/speedup.py --config configs/fmnist_mlp.py --repeats 1 --out out/speedup_fmnist
    python benchmarks/speedup.py --modes --config configs/quick.py --out out/speedup_modes

**Side by side** (the default; ``speedup.{json,md}`` into ``--out``). Three costs on the same
data and schedule (optimizer, batch size, epochs):

* retrain: from scratch on D_r (the exact-unlearning baseline);
* reference + unlearn: train the reference model on D_s, then Algorithm 1;
* unlearn alone: Algorithm 1 with an existing reference model (reuse).

With ``--config`` (and ``--set`` overrides), side by side takes its data, model (with
``model_kwargs``, e.g. an MLP's widths), training and unlearning schedule, |D_f| and
|D_s| from that config file instead of the flags; ``--repeats``, ``--seed``, the drivers
and ``--out`` still come from the command line.

Each is timed after a warm-up (compilation excluded; the persistent
compilation cache makes repeats skip recompiling) and the median of
``--repeats`` runs is reported, with both ratios. Per stage, milliseconds per
step; the unlearning step's cost per example against a training step's
(an unlearning step of quick processes 8 + 64 images, a training step 64);
and each speedup's *bound*, the ratio of examples processed (retraining's
against the reference's and unlearning's), with measured / bound. Targets
(issue "performance"): per-example step ratio <= 1.3 and reused speedup >=
0.8 x its bound.

**Per request, by mode** (``--modes``; ``speedup_modes.{json,md}`` into ``--out``): what
each way of running the paper's method costs per request. Runs the real pipeline
(``jaxunlearn.pipeline.run``, the same timing as ``results.json``: device seconds,
compilation apart) on ``--config`` (with ``--set`` overrides) in three modes:

* ``paper``: the config as given; the paper's reference trains 50 epochs on
  D_s (10% of D) against the original's 20 on D. Bound: speedup without
  reuse <= retrain / reference ~ (20 * |D_r|) / (50 * |D_s|) = 3.96x.
* ``equal_epochs``: the reference trains as many epochs as the original.
  Bound: ~ |D_r| / |D_s| = 9.9x.
* ``holdout``: ``reference.source=holdout``: D_s comes from a held-out split
  (``--holdout_size``) that no original and no forget request touches, so one
  reference serves every request; the second request (another forget seed)
  reuses it and its cost is the unlearning alone. Bound: retrain / unlearn,
  where unlearning takes ``unlearn.epochs`` passes over D_f (a few steps) plus
  the forward passes that make its inputs.

Each mode reports retrain, reference and unlearn seconds, the speedup
``retrain / (reference + unlearn)`` and the per-request speedup with the
reference reused, ``retrain / unlearn``.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxunlearn import methods, models, splits as splits_lib, train, unlearn  # noqa: E402
from jaxunlearn import scripts  # noqa: E402
from jaxunlearn.errors import ConfigError  # noqa: E402


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--dataset", default="mnist5k",
                 help="mnist5k, npz:PATH, synthetic:mnist:N or synthetic:cifar:N")
  p.add_argument("--model", default="lenet5")
  p.add_argument("--dtype", default="float32", help="computation dtype (bfloat16 for mixed precision)")
  p.add_argument("--epochs", type=int, default=20, help="training epochs (original and retrain)")
  p.add_argument("--reference_epochs", type=int, default=0, help="0: same as --epochs")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--optimizer", default="adam")
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--forget_fraction", type=float, default=0.01)
  p.add_argument("--reference_fraction", type=float, default=0.1)
  p.add_argument("--unlearn_epochs", type=int, default=2)
  p.add_argument("--lam", type=float, default=0.01)
  p.add_argument("--unlearn_lr", type=float, default=0.01)
  p.add_argument("--forget_batch_size", type=int, default=64)
  p.add_argument("--remain_batch_size", type=int, default=64)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--driver", default="auto")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--unlearn_driver", default="auto", help="auto | scan | loop")
  p.add_argument("--quick", action="store_true",
                 help="configs/quick.py's schedule: reference 50 epochs, unlearning 5 epochs "
                      "in forget batches of 8, lam 0.2, lr 0.02")
  p.add_argument("--out", default="", type=scripts.out_dir(optional=True),
                 help="folder for speedup.{json,md} (speedup_modes.{json,md} with --modes)")
  p.add_argument("--config", default="",
                 help="take data, model and schedule from this config file (side by side); "
                      "the config to run (--modes; default configs/quick.py)")
  p.add_argument("--set", action="append", default=[], help="FIELD=VALUE config overrides")
  modes = p.add_argument_group("per request, by mode (--modes)")
  modes.add_argument("--modes", action="store_true",
                     help="run the pipeline in its three modes instead (needs --out)")
  modes.add_argument("--holdout_size", type=float, default=0.1,
                     help="held-out split for the holdout mode (fraction or count)")
  args = p.parse_args(argv)
  if args.modes and not args.out:
    raise ConfigError("--modes writes speedup_modes.{json,md}: give the folder with --out")
  if args.quick:
    args.reference_epochs, args.unlearn_epochs, args.forget_batch_size = 50, 5, 8
    args.lam, args.unlearn_lr = 0.2, 0.02
  args.model_kwargs, args.forget_size, args.reference_size = {}, 0, 0
  if args.modes:
    args.config = args.config or "configs/quick.py"
  elif args.config:
    schedule_from_config(args)
  elif args.set:
    raise ConfigError("--set overrides a config file's fields: give the file with --config")
  return args


def schedule_from_config(args) -> None:
  """Side by side on a config file: its data, model and schedule replace the flags'."""
  from experiments import common as exp_common
  if args.quick:
    raise ConfigError("--quick and --config both set the schedule: give one of them")
  cfg = exp_common.load_config(args.config, args.set)
  t, u = cfg.train, cfg.unlearn
  args.dataset, args.model = cfg.dataset, cfg.model
  args.model_kwargs = dict(cfg.model_kwargs)
  args.epochs, args.batch_size = t.epochs, t.batch_size
  args.optimizer, args.learning_rate = t.optimizer, t.learning_rate
  args.reference_epochs = cfg.reference.epochs
  args.forget_fraction, args.forget_size = cfg.forget.fraction, int(cfg.forget.size)
  ref = float(cfg.reference.size)
  args.reference_fraction, args.reference_size = (ref, 0) if ref < 1 else (0.1, int(ref))
  args.unlearn_epochs, args.lam, args.unlearn_lr = u.epochs, u.lam, u.learning_rate
  args.forget_batch_size, args.remain_batch_size = u.forget_batch_size, u.remain_batch_size


def measure(args) -> dict:
  common.enable_compile_cache()
  data = common.load(args.dataset)
  kwargs = {} if args.dtype == "float32" else {"dtype": args.dtype}
  model = models.get_model(args.model, data.num_classes, **args.model_kwargs, **kwargs)
  n = data.n_train
  s = splits_lib.make_splits(n, data.y_train, seed=args.seed, fraction=args.forget_fraction,
                             size=args.forget_size,
                             reference_size=args.reference_size
                             or int(round(args.reference_fraction * n)))
  ref_epochs = args.reference_epochs or args.epochs
  opt_cfg = common.Cfg(optimizer=args.optimizer, learning_rate=args.learning_rate, momentum=0.9,
                       weight_decay=0.0, schedule="constant")
  mesh = None
  x_all, y_all = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

  def fit(idx, epochs, key):
    optimizer = train.make_optimizer(opt_cfg)
    state = train.init_state(model, optimizer, jax.random.fold_in(key, 1), data.input_shape)
    x, y = x_all[idx], y_all[idx]
    return train.fit(model, optimizer, state, x, y, epochs=epochs, batch_size=args.batch_size,
                     key=key, driver=args.driver, mesh=mesh, progress=False)

  key = jax.random.key(args.seed)
  original = fit(np.arange(n), args.epochs, jax.random.fold_in(key, 0))
  apply_fn = train.eval_apply_fn(model, original.state.batch_stats)
  x_f = x_all[s.forget_idx]
  x_r, y_r = x_all[s.remain_idx], y_all[s.remain_idx]

  def unlearn_once(ref_state, key):
    ref_apply = train.eval_apply_fn(model, ref_state.batch_stats)
    t0 = _now()
    ref_probs = jax.nn.softmax(ref_apply(ref_state.params, x_f), -1).block_until_ready()
    ref_probs_s = _now() - t0
    fn = unlearn.make_unlearn_fn("lightweight", apply_fn, epochs=args.unlearn_epochs,
                                 n_forget=int(x_f.shape[0]), n_remain=int(x_r.shape[0]),
                                 forget_batch_size=args.forget_batch_size,
                                 remain_batch_size=args.remain_batch_size)
    inputs = methods.Inputs(x_forget=jnp.asarray(x_f), ref_probs=ref_probs,
                            x_remain=jnp.asarray(x_r), y_remain=jnp.asarray(y_r))
    res = unlearn.unlearn(fn, original.state.params, inputs,
                          {"learning_rate": args.unlearn_lr, "lam": args.lam}, key=key,
                          progress=False, driver=args.unlearn_driver)
    return res, ref_probs_s, fn.epochs * fn.steps_per_epoch

  # Warm-up: one run of each (compiles and fills the cache), not timed.
  fit(s.remain_idx, 1, key)
  warm_ref = fit(s.reference_idx, 1, key)
  unlearn_once(warm_ref.state, key)

  bs = args.batch_size
  steps = {"retrain": args.epochs * (s.remain_idx.size // min(bs, s.remain_idx.size)),
           "reference": ref_epochs * (s.reference_idx.size // min(bs, s.reference_idx.size))}
  n_f = s.n_forget
  fbs = min(args.forget_batch_size, n_f)
  rbs = min(args.remain_batch_size, int(s.remain_idx.size))
  rows = {"retrain": [], "reference": [], "unlearn": [], "compile_retrain": [],
          "ms_retrain": [], "ms_reference": [], "ms_unlearn": [], "step_ratio": [],
          "speedup": [], "speedup_reused": []}
  for r in range(args.repeats):
    k = jax.random.fold_in(key, 100 + r)
    retrain = fit(s.remain_idx, args.epochs, k)
    ref = fit(s.reference_idx, ref_epochs, k)
    res, ref_probs_s, steps["unlearn"] = unlearn_once(ref.state, k)
    unlearn_s = res.run_s + ref_probs_s
    rows["retrain"].append(retrain.run_s)
    rows["reference"].append(ref.run_s)
    rows["unlearn"].append(unlearn_s)
    rows["compile_retrain"].append(retrain.compile_s)
    for name, secs in (("retrain", retrain.run_s), ("reference", ref.run_s),
                       ("unlearn", res.run_s)):
      rows[f"ms_{name}"].append(1000 * secs / steps[name])
    # Per example: an unlearning step sees fbs forget + rbs remain images, a training step bs.
    rows["step_ratio"].append((rows["ms_unlearn"][-1] / (fbs + rbs))
                              / (rows["ms_retrain"][-1] / bs))
    rows["speedup"].append(retrain.run_s / (ref.run_s + unlearn_s))
    rows["speedup_reused"].append(retrain.run_s / unlearn_s)
  med = {k: statistics.median(v) for k, v in rows.items()}
  total = med["reference"] + med["unlearn"]
  examples = {"retrain": steps["retrain"] * bs, "reference": steps["reference"] * bs,
              "unlearn": steps["unlearn"] * (fbs + rbs)}
  bound = examples["retrain"] / (examples["reference"] + examples["unlearn"])
  bound_reused = examples["retrain"] / examples["unlearn"]
  return {
      "config": args.config, "overrides": args.set, "dataset": args.dataset,
      "model": args.model, "model_kwargs": args.model_kwargs, "dtype": args.dtype, "n_train": n,
      "n_forget": s.n_forget, "n_reference": int(s.reference_idx.size),
      "epochs": args.epochs, "reference_epochs": ref_epochs, "unlearn_epochs": args.unlearn_epochs,
      "batch_size": args.batch_size, "repeats": args.repeats,
      "retrain_s": med["retrain"], "reference_s": med["reference"], "unlearn_s": med["unlearn"],
      "total_s": total, "speedup": med["speedup"], "speedup_reused": med["speedup_reused"],
      "ms_per_step": {k: med[f"ms_{k}"] for k in ("retrain", "reference", "unlearn")},
      "steps": steps, "examples": examples, "step_ratio_per_example": med["step_ratio"],
      "bound": bound, "bound_reused": bound_reused,
      "of_bound": med["speedup"] / bound, "of_bound_reused": med["speedup_reused"] / bound_reused,
      "unlearn_driver": train.resolve_driver(args.unlearn_driver), "runs": rows,
      "machine": common.machine(), "date": common.today(), "versions": common.versions(),
  }


def _now():
  import time
  return time.perf_counter()


HEADER = ["dataset", "model", "n", "epochs (ref)", "unlearn epochs", "unlearn s", "reference s",
          "total s", "retrain s", "ms/step retrain / ref / unlearn",
          "unlearn step / train step, per example", "speedup (bound, of bound)",
          "speedup, reference reused (bound, of bound)"]


def row(r: dict) -> list:
  ms = r["ms_per_step"]
  return [r["dataset"], r["model"] + ("" if r["dtype"] == "float32" else f" ({r['dtype']})"),
          r["n_train"], f"{r['epochs']} ({r['reference_epochs']})", r["unlearn_epochs"],
          r["unlearn_s"], r["reference_s"], r["total_s"], r["retrain_s"],
          f"{ms['retrain']:.2f} / {ms['reference']:.2f} / {ms['unlearn']:.2f}",
          r["step_ratio_per_example"],
          f"{r['speedup']:.2f}x ({r['bound']:.1f}x, {r['of_bound']:.2f})",
          f"{r['speedup_reused']:.2f}x ({r['bound_reused']:.1f}x, {r['of_bound_reused']:.2f})"]


def mode_row(mode: str, r: dict, bound: str) -> dict:
  """One mode's figures from a pipeline run's ``results.json`` record."""
  t = r["time_s"]
  return {"mode": mode, "retrain_s": t["retrain"], "reference_s": t.get("reference", 0.0),
          "unlearn_s": t["unlearn"], "speedup": r["speedup"],
          "speedup_reused": r["speedup_amortized"], "reference_reused": r["reference_reused"],
          "reference_epochs": r["config"]["reference"]["epochs"],
          "train_epochs": r["config"]["train"]["epochs"], "n_reference": r["n_reference"],
          "n_remain": r["n_remain"], "acc_test_unlearned": r["models"]["unlearned"]["acc_test"],
          "reference_stage": r["stages"].get("reference"),
          "bound": bound}


def measure_modes(args) -> dict:
  """The pipeline in the paper's, the equal-epochs and the holdout modes (module docstring)."""
  from experiments import common as exp_common
  out = Path(args.out)
  base = list(args.set) + ["eval.evaluators=()", "report.progress=False"]
  rows = []
  cfg = exp_common.load_config(args.config, base)
  r = exp_common.run(cfg, out / "work")
  rows.append(mode_row("paper", r, "retrain / reference: (train epochs x |D_r|) / "
                                   "(reference epochs x |D_s|)"))
  cfg = exp_common.load_config(args.config, base + [f"reference.epochs={cfg.train.epochs}"])
  r = exp_common.run(cfg, out / "work")
  rows.append(mode_row("equal_epochs", r, "|D_r| / |D_s|"))
  hold = base + [f"holdout.size={args.holdout_size}", "reference.source=holdout"]
  cfg = exp_common.load_config(args.config, hold)
  first = exp_common.run(cfg, out / "work_holdout")
  rows.append(mode_row("holdout, first request", first, "as paper (the reference is trained)"))
  cfg = exp_common.load_config(args.config, hold + [f"forget.seed={cfg.seed + 1}"])
  second = exp_common.run(cfg, out / "work_holdout")
  if not second["reference_reused"]:
    raise RuntimeError("the second holdout request did not reuse the reference model")
  rows.append(mode_row("holdout, later request", second, "retrain / unlearn (reference reused)"))
  return {"config": args.config, "overrides": args.set, "rows": rows,
          "machine": common.machine(), "load_average": os.getloadavg(),
          "environment": second["environment"], "date": common.today(),
          "versions": common.versions(), "command": " ".join(sys.argv)}


def modes_markdown(result: dict) -> str:
  lines = ["| mode | ref epochs / train epochs | retrain s | reference s | unlearn s | speedup | "
           "speedup, reference reused | bound |", "|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(f"| {r['mode']} | {r['reference_epochs']} / {r['train_epochs']} | "
                 f"{r['retrain_s']:.2f} | {r['reference_s']:.2f} | {r['unlearn_s']:.3f} | "
                 f"{r['speedup']:.2f}x | {r['speedup_reused']:.1f}x | {r['bound']} |")
  lines += ["", f"Machine: {result['machine']}; load average {result['load_average']}; "
                f"{result['date']}; `{result['command']}`."]
  return "\n".join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.modes:
    r = measure_modes(args)
    name, text = "speedup_modes", modes_markdown(r)
  else:
    r = measure(args)
    name = "speedup"
    text = (f"Machine: {r['machine']}; {r['versions']}; {r['date']}; median of {r['repeats']}"
            "\n\n" + common.markdown_table(HEADER, [row(r)]))
  print(text)
  common.write_outputs(args.out, name, r, text)
  return r


if __name__ == "__main__":
  scripts.run(main)
