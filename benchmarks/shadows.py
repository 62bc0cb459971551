"""Shadow models: K trained at once under one vmap against K trained one after another.

    PYTHONPATH=. python benchmarks/shadows.py --ks 1,8,32 --epochs 2 --pool-size 256

For each K, three ways to train K shadow models (LeNet-5 on ``mnist5k`` by
default, each on its own random half of a pool of ``--pool-size`` images):

* ``vmap``: one jitted call of ``jax.vmap(train)`` over the K shadows' keys
  and data, ``train`` being :func:`jaxunlearn.train.make_train_fn` (the whole
  run under ``lax.scan``) - :func:`jaxunlearn.membership.make_shadow_train_fn`;
* ``vmap loop``: the same vmapped train step driven from a host loop
  (``mia.train_shadows(driver='loop')``, the default on CPU);
* ``sequential``: a Python loop calling the same jitted single-model
  ``train`` K times.

Run time and compile time are measured apart (compile once per K for the
vmapped versions, once in all for the sequential one). Prints a Markdown table
with the machine and date.
"""

from __future__ import annotations

import datetime
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import data as data_lib, membership, models, train as train_lib
from jaxunlearn import results, scripts


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--ks", default="1,8,32", help="comma-separated shadow counts")
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--pool-size", type=int, default=256, help="each shadow trains on half")
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--model", default="lenet5")
  p.add_argument("--dataset", default="mnist5k")
  p.add_argument("--no-loop", action="store_true", help="skip the 'vmap loop' column")
  return p.parse_args(argv)


def machine() -> str:
  env = results.environment()
  return (f"{env['host']} ({platform.platform()}), {os.cpu_count()} CPU cores, "
          f"backend {env['backend']}, device {env['device']} x{env['device_count']}")


def main(argv=None):
  args = parse_args(argv)
  ks = [int(k) for k in args.ks.split(",")]
  data = data_lib.load(args.dataset)
  model = models.get_model(args.model, data.num_classes)
  optimizer = optax.adam(1e-3)
  x_pool = jnp.asarray(data.x_train[:args.pool_size])
  y_pool = jnp.asarray(data.y_train[:args.pool_size])
  n_in = args.pool_size // 2
  batch = min(args.batch_size, n_in)
  key = jax.random.key(0, impl="rbg")

  train = train_lib.make_train_fn(model, optimizer, data.input_shape, epochs=args.epochs,
                                  batch_size=batch)
  single = jax.jit(lambda k, idx, x, y: train(k, x[idx], y[idx]))
  idx0 = jnp.zeros((n_in,), jnp.int32)
  t0 = time.perf_counter()
  single = single.lower(key, idx0, x_pool, y_pool).compile()
  seq_compile = time.perf_counter() - t0

  rows = []
  for k in ks:
    in_idx = jnp.asarray(membership.shadow_in_indices(0, k, args.pool_size))
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(k))

    fn = membership.make_shadow_train_fn(model, optimizer, data.input_shape, epochs=args.epochs,
                                  batch_size=batch)
    t0 = time.perf_counter()
    fn = fn.lower(keys, in_idx, x_pool, y_pool).compile()
    v_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fn(keys, in_idx, x_pool, y_pool))
    v_run = time.perf_counter() - t0

    t0 = time.perf_counter()
    out = [single(keys[i], in_idx[i], x_pool, y_pool) for i in range(k)]
    jax.block_until_ready(out)
    s_run = time.perf_counter() - t0

    row = [k, v_run, v_compile, s_run, seq_compile if k == ks[0] else 0.0, s_run / v_run]
    if not args.no_loop:
      shadows = membership.train_shadows(model, optimizer, data.input_shape, x_pool, y_pool,
                                  np.asarray(in_idx), key, epochs=args.epochs,
                                  batch_size=batch, driver="loop")
      row += [shadows.time_s, shadows.compile_s]
    rows.append(row)
    print(f"K={k} done", flush=True)

  header = ["K", "vmap run s", "vmap compile s", "sequential run s", "sequential compile s",
            "sequential / vmap"]
  if not args.no_loop:
    header += ["vmap loop run s", "vmap loop compile s"]
  steps = args.epochs * (n_in // batch)
  lines = [
      f"Machine: {machine()}",
      f"Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
      f"Versions: jax {jax.__version__}, python {platform.python_version()}",
      f"Setup: {args.model} on {args.dataset}, {n_in} images per shadow, {args.epochs} epochs, "
      f"batch {batch} ({steps} steps per shadow); sequential compile is paid once for all K.",
      "",
      "| " + " | ".join(header) + " |",
      "|" + "---|" * len(header),
  ]
  for row in rows:
    lines.append("| " + " | ".join(str(c) if isinstance(c, int) else f"{c:.2f}" for c in row)
                 + " |")
  # Other processes on a shared machine slow every column alike; say how busy it was.
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  if load is not None:
    lines.insert(3, f"Load average at the end (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / "
                    f"{load[2]:.2f}")
  print("\n".join(lines))
  return rows


if __name__ == "__main__":
  scripts.run(main)
