"""Populations: N models under one vmap against N trained in a Python loop (CPU).

    PYTHONPATH=. python benchmarks/populations.py --ns 1,8,32,64 --epochs 2 --n-train 1000

Each member is one audit member (:func:`jaxunlearn.populations.train_member`):
train an MLP from scratch on ``--n-train`` mnist5k images, then its phi on 100
audited images and its accuracy on the training and test sets. ``vmap``: one
jitted call of ``jax.vmap(member)`` over N keys (what
:func:`populations.run_population` runs per chunk, on one device here);
``loop``: the same jitted single-model member called N times (compiled once).
Run time and compile time are kept apart. Prints a Markdown table.
"""

from __future__ import annotations

import datetime
import os
import platform
import time

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import data as data_lib, models, populations as pops
from jaxunlearn import scripts


def main(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--ns", default="1,8,32,64")
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--n-train", type=int, default=1000)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--batch-size", type=int, default=64)
  args = p.parse_args(argv)
  d = data_lib.load("mnist5k")
  x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
  rows = jnp.arange(args.n_train)
  data = pops.EvalData(x[:100], y[:100], x[: args.n_train], y[: args.n_train],
                       jnp.asarray(d.x_test), jnp.asarray(d.y_test))
  model = models.get_model("mlp", d.num_classes, hidden=(args.hidden,))
  member = pops.train_member(model, optax.adam(1e-3), d.input_shape, epochs=args.epochs,
                             batch_size=args.batch_size)
  one = jax.jit(member)
  t0 = time.perf_counter()
  one_c = one.lower(jax.random.key(0), rows, x, y, data).compile()
  loop_compile = time.perf_counter() - t0
  print(f"Machine: {platform.node()} ({platform.platform()}), {os.cpu_count()} CPU cores, "
        f"backend {jax.default_backend()} x{jax.device_count()}, load average "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} at start. "
        f"Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
        f"jax {jax.__version__}. MLP ({args.hidden},), {args.epochs} epochs on "
        f"{args.n_train} images, batch {args.batch_size}.\n")
  print("| N | vmap run s | vmap compile s | loop run s | loop / vmap | vmap s per model |")
  print("|---|---|---|---|---|---|")
  for n in (int(v) for v in args.ns.split(",")):
    keys = jax.random.split(jax.random.key(1), n)
    many = jax.jit(jax.vmap(member, in_axes=(0, None, None, None, None)))
    t0 = time.perf_counter()
    many_c = many.lower(keys, rows, x, y, data).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(many_c(keys, rows, x, y, data))
    vmap_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in keys:
      out = one_c(k, rows, x, y, data)
    jax.block_until_ready(out)
    loop_s = time.perf_counter() - t0
    print(f"| {n} | {vmap_s:.2f} | {compile_s:.2f} | {loop_s:.2f} | {loop_s / vmap_s:.2f} | "
          f"{vmap_s / n:.3f} |", flush=True)
  print(f"\nloop compile s (once): {loop_compile:.2f}; load average at end "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  scripts.run(main)
