"""Populations: N models under one vmap against N trained in a Python loop (CPU).

    PYTHONPATH=. python benchmarks/populations.py --models mlp,lenet5 --ns 1,8,32 --epochs 2

Each member is one audit member (:func:`jaxunlearn.populations.train_member`):
train a model from scratch on ``--n-train`` mnist5k images, then its phi on 100
audited images and its accuracy on the training and test sets. ``vmap``: one
jitted call of ``jax.vmap(member)`` over N keys (what
:func:`populations.run_population` runs per chunk, on one device here);
``loop``: the same jitted single-model member called N times (compiled once).
Run time and compile time are kept apart; the table gives the cost per model
of each against one run alone, and the driver ``audit.driver=auto`` picks
(:func:`jaxunlearn.populations.resolve_driver`). Prints a Markdown table.
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
from jaxunlearn import results, scripts


def main(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--models", type=scripts.name_list("--models"), default="mlp")
  p.add_argument("--ns", type=scripts.int_list("--ns"), default="1,8,32,64")
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
  env = results.environment()
  print(f"Machine: {env['host']} ({platform.platform()}), {os.cpu_count()} CPU cores, "
        f"backend {env['backend']} x{env['device_count']}, load average "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} at start. "
        f"Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
        f"jax {env['jax']}. {args.epochs} epochs on {args.n_train} images, batch "
        f"{args.batch_size}.\n")
  print("| model | N | vmap run s | loop run s | one run s | vmap s / model | loop s / model "
        "| faster | auto picks |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name in args.models:
    kwargs = {"hidden": (args.hidden,)} if name == "mlp" else {}
    model = models.get_model(name, d.num_classes, **kwargs)
    member = pops.train_member(model, optax.adam(1e-3), d.input_shape, epochs=args.epochs,
                               batch_size=args.batch_size)
    auto = pops.resolve_driver("auto", models.init_variables(model, jax.random.key(0),
                                                             d.input_shape)[0])
    one_c = jax.jit(member).lower(jax.random.key(0), rows, x, y, data).compile()
    t0 = time.perf_counter()
    jax.block_until_ready(one_c(jax.random.key(0), rows, x, y, data))
    one_s = time.perf_counter() - t0
    for n in args.ns:
      keys = jax.random.split(jax.random.key(1), n)
      many_c = jax.jit(jax.vmap(member, in_axes=(0, None, None, None, None))).lower(
          keys, rows, x, y, data).compile()
      t0 = time.perf_counter()
      jax.block_until_ready(many_c(keys, rows, x, y, data))
      vmap_s = time.perf_counter() - t0
      t0 = time.perf_counter()
      for k in keys:
        out = one_c(k, rows, x, y, data)
      jax.block_until_ready(out)
      loop_s = time.perf_counter() - t0
      print(f"| {name} | {n} | {vmap_s:.2f} | {loop_s:.2f} | {one_s:.3f} | {vmap_s / n:.3f} | "
            f"{loop_s / n:.3f} | {'vmap' if vmap_s < loop_s else 'loop'} | {auto} |", flush=True)
  print(f"\nload average at end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  scripts.run(main)
