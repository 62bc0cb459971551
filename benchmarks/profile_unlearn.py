"""Where an unlearning run's time goes: each compiled piece of the host driver, timed.

    python benchmarks/profile_unlearn.py                          # quick's schedule, LeNet-5
    python benchmarks/profile_unlearn.py --forget-batch-size 64 --epochs 2   # speedup.py's default

:func:`jaxunlearn.unlearn.unlearn` compiles a run's pieces (``start``, the
epoch's ``rows``, the ``step``, ``epoch_end``, ``finished``, ``finish``,
``summary``) and calls them from a host loop. This script wraps the compilation the driver
uses so that every call blocks until its result is ready and adds its
seconds to its piece, then runs the paper's method (``lightweight``) on
mnist5k's first 40 images as D_f and the next 3,960 as D_r, with a fixed
uniform ``ref_probs`` (the reference's forward pass is not part of the
driver). Blocking after each call removes the overlap of host and device
work, so the pieces add up to a little more than an unblocked run. Beside
them: one training step of the same model on a remain batch, compiled and
timed the same way, and the unlearning step per example against it (an
unlearning step processes forget + remain rows, a training step remain
rows).
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxunlearn import scripts  # noqa: E402


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--model", default="lenet5", help="a registered model (mlp, lenet5, ...)")
  p.add_argument("--epochs", type=int, default=5)
  p.add_argument("--forget-batch-size", type=int,
                 default=8)
  p.add_argument("--remain-batch-size", type=int,
                 default=64)
  p.add_argument("--n-forget", type=int, default=40)
  p.add_argument("--n-remain", type=int, default=3960)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--dataset", default="mnist5k", help="mnist5k or npz:PATH")
  args = p.parse_args(argv)
  for flag in ("epochs", "forget_batch_size", "remain_batch_size", "n_forget", "n_remain",
               "repeats"):
    if getattr(args, flag) < 1:
      p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
  return args


class _Timed:
  """``parallel.jit(...)`` whose compiled calls block and add their seconds to ``totals``."""

  def __init__(self, jitted, name, totals, calls):
    self.jitted, self.name, self.totals, self.calls = jitted, name, totals, calls

  def lower(self, *args, **kwargs):
    lowered, outer = self.jitted.lower(*args, **kwargs), self

    class _Lowered:
      def compile(self):
        import jax
        compiled = lowered.compile()

        def call(*a, **k):
          t0 = time.perf_counter()
          out = jax.block_until_ready(compiled(*a, **k))
          outer.totals[outer.name] += time.perf_counter() - t0
          outer.calls[outer.name] += 1
          return out
        return call
    return _Lowered()


def main(argv=None) -> dict:
  args = parse_args(argv)
  import jax
  import jax.numpy as jnp
  import optax
  from jaxunlearn import data as data_lib, methods, models, parallel, train, unlearn
  from jaxunlearn.errors import ConfigError
  d = data_lib.load(args.dataset, num_classes=10)
  need = args.n_forget + args.n_remain
  if need > d.n_train:
    raise ConfigError(f"--n-forget + --n-remain = {need} exceeds the dataset's "
                              f"{d.n_train} training images")
  model = models.get_model(args.model, d.num_classes)
  params, batch_stats = models.init_variables(model, jax.random.key(0), d.input_shape)
  apply_fn = train.eval_apply_fn(model, batch_stats)
  x, y = jnp.asarray(d.x_train[:need]), jnp.asarray(d.y_train[:need])
  inputs = methods.Inputs(x_forget=x[:args.n_forget],
                          ref_probs=jnp.full((args.n_forget, d.num_classes), 1 / d.num_classes),
                          x_remain=x[args.n_forget:], y_remain=y[args.n_forget:])
  fn = unlearn.make_unlearn_fn("lightweight", apply_fn, epochs=args.epochs,
                               n_forget=args.n_forget, n_remain=args.n_remain,
                               forget_batch_size=args.forget_batch_size,
                               remain_batch_size=args.remain_batch_size)
  hp = {"learning_rate": 0.02, "lam": 0.2}
  totals, calls = collections.defaultdict(float), collections.Counter()
  plain_jit = parallel.jit

  def timed_jit(f, mesh, **kwargs):
    return _Timed(plain_jit(f, mesh, **kwargs), f.__name__, totals, calls)

  unlearn.parallel.jit = timed_jit
  try:
    unlearn.unlearn(fn, params, inputs, hp, key=jax.random.key(1), progress=False)  # compiles
    totals.clear()
    calls.clear()
    run_s = [unlearn.unlearn(fn, params, inputs, hp, key=jax.random.key(1),
                             progress=False).run_s for _ in range(args.repeats)]
  finally:
    unlearn.parallel.jit = plain_jit

  # One training step on a remain batch (gathered from D_r as training gathers it).
  opt = optax.sgd(0.02)
  rbs = args.remain_batch_size

  @jax.jit
  def train_step(p, s, rows):
    def loss(p):
      return optax.softmax_cross_entropy_with_integer_labels(
          apply_fn(p, inputs.x_remain[rows]), inputs.y_remain[rows]).mean()
    g = jax.grad(loss)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  p, s = params, opt.init(params)
  rows = jnp.arange(rbs, dtype=jnp.int32)
  jax.block_until_ready(train_step(p, s, rows))
  per = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    for _ in range(20):
      p, s = train_step(p, s, rows)
    jax.block_until_ready(p)
    per.append((time.perf_counter() - t0) / 20)
  train_ms = 1000 * statistics.median(per)

  n = args.repeats
  steps = fn.epochs * fn.steps_per_epoch
  fbs = min(args.forget_batch_size, args.n_forget)
  pieces = {k: {"calls_per_run": calls[k] / n, "ms_per_run": 1000 * totals[k] / n}
            for k in totals}
  step_ms = pieces["step"]["ms_per_run"] / max(pieces["step"]["calls_per_run"], 1)
  run_ms = 1000 * statistics.median(run_s)
  report = {"model": args.model, "epochs": fn.epochs, "steps": steps, "forget_batch": fbs,
            "remain_batch": rbs, "run_ms": run_ms, "pieces": pieces,
            "unlearn_step_ms": step_ms, "train_step_ms": train_ms,
            "step_ratio_per_example": (step_ms / (fbs + rbs)) / (train_ms / rbs),
            "run_ratio_per_example": (run_ms / steps / (fbs + rbs)) / (train_ms / rbs)}
  print(f"{args.model}: {fn.epochs} epochs x {fn.steps_per_epoch} steps of {fbs} + {rbs} rows; "
        f"run {run_ms:.1f} ms (median of {n}, every call blocking)")
  print("| piece | calls per run | ms per run (blocked) |\n|---|---|---|")
  for k, v in pieces.items():
    print(f"| {k} | {v['calls_per_run']:.0f} | {v['ms_per_run']:.2f} |")
  print(f"unlearning step {step_ms:.2f} ms, training step {train_ms:.2f} ms; per example: "
        f"step alone {report['step_ratio_per_example']:.2f}x, whole run "
        f"{report['run_ratio_per_example']:.2f}x a training step")
  return report


if __name__ == "__main__":
  scripts.run(main)
