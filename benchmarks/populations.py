"""Populations: N models under one vmap against N trained one after another (CPU).

    PYTHONPATH=. python benchmarks/populations.py --models mlp,lenet5 --ns 1,8,32 --epochs 2
    PYTHONPATH=. python benchmarks/populations.py --shadows --ks 1,8,32 --epochs 2 --pool-size 256

**Audit members** (the default). Each member is one audit member
(:func:`jaxunlearn.populations.train_member`): train a model from scratch on ``--n-train``
mnist5k images, then its phi on 100 audited images and its accuracy on the training and
test sets. ``vmap``: one jitted call of ``jax.vmap(member)`` over N keys (what
:func:`populations.run_population` runs per chunk, on one device here); ``loop``: the same
jitted single-model member called N times (compiled once). Run time and compile time are
kept apart; the table gives the cost per model of each against one run alone, and the
driver ``audit.driver=auto`` picks (:func:`jaxunlearn.populations.resolve_driver`).

**Shadow models** (``--shadows``). For each K, three ways to train K shadow models
(``--model`` on ``--dataset``, LeNet-5 on mnist5k by default, each on its own random half
of a pool of ``--pool-size`` images):

* ``vmap``: one jitted call of ``jax.vmap(train)`` over the K shadows' keys and data,
  ``train`` being :func:`jaxunlearn.train.make_train_fn` (the whole run under
  ``lax.scan``) - :func:`jaxunlearn.membership.make_shadow_train_fn`;
* ``vmap loop``: the same vmapped train step driven from a host loop
  (``mia.train_shadows(driver='loop')``, the default on CPU);
* ``sequential``: a Python loop calling the same jitted single-model ``train`` K times.

Run time and compile time are measured apart (compile once per K for the vmapped
versions, once in all for the sequential one).

Both print a Markdown table with the machine, the date and the load average; with
``--out`` they also write ``populations.{json,md}`` or ``shadows.{json,md}`` there.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxunlearn import data as data_lib, membership, models, populations as pops  # noqa: E402
from jaxunlearn import scripts, train as train_lib  # noqa: E402


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--out", default="", type=scripts.out_dir(optional=True),
                 help="folder for populations.{json,md} (shadows.{json,md} with --shadows)")
  members = p.add_argument_group("audit members (the default)")
  members.add_argument("--models", type=scripts.name_list("--models"), default="mlp")
  members.add_argument("--ns", type=scripts.int_list("--ns"), default="1,8,32,64")
  members.add_argument("--n-train", type=int, default=1000)
  members.add_argument("--hidden", type=int, default=128)
  shadows = p.add_argument_group("shadow models (--shadows)")
  shadows.add_argument("--shadows", action="store_true",
                       help="time K shadow models instead of audit members")
  shadows.add_argument("--ks", type=scripts.int_list("--ks"), default="1,8,32",
                       help="comma-separated shadow counts")
  shadows.add_argument("--pool-size", type=int, default=256, help="each shadow trains on half")
  shadows.add_argument("--model", default="lenet5")
  shadows.add_argument("--dataset", default="mnist5k")
  shadows.add_argument("--no-loop", action="store_true", help="skip the 'vmap loop' column")
  return p.parse_args(argv)


def load_average() -> str:
  # Other processes on a shared machine slow every column alike; say how busy it was.
  return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def head(setup: str) -> list:
  return [f"Machine: {common.machine()}", f"Date: {common.today()}",
          f"Versions: {common.versions()}", f"Load average at the start: {load_average()}",
          f"Setup: {setup}", ""]


def members(args) -> tuple[dict, str]:
  """Audit members: a vmapped population against a loop of one jitted member."""
  d = data_lib.load("mnist5k")
  x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
  rows_idx = jnp.arange(args.n_train)
  data = pops.EvalData(x[:100], y[:100], x[: args.n_train], y[: args.n_train],
                       jnp.asarray(d.x_test), jnp.asarray(d.y_test))
  lines = head(f"{args.epochs} epochs on {args.n_train} images, batch {args.batch_size}.")
  header = ["model", "N", "vmap run s", "loop run s", "one run s", "vmap s / model",
            "loop s / model", "faster", "auto picks"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  print("\n".join(lines), flush=True)
  rows = []
  for name in args.models:
    kwargs = {"hidden": (args.hidden,)} if name == "mlp" else {}
    model = models.get_model(name, d.num_classes, **kwargs)
    member = pops.train_member(model, optax.adam(1e-3), d.input_shape, epochs=args.epochs,
                               batch_size=args.batch_size)
    auto = pops.resolve_driver("auto", models.init_variables(model, jax.random.key(0),
                                                             d.input_shape)[0])
    one_c = jax.jit(member).lower(jax.random.key(0), rows_idx, x, y, data).compile()
    t0 = time.perf_counter()
    jax.block_until_ready(one_c(jax.random.key(0), rows_idx, x, y, data))
    one_s = time.perf_counter() - t0
    for n in args.ns:
      keys = jax.random.split(jax.random.key(1), n)
      many_c = jax.jit(jax.vmap(member, in_axes=(0, None, None, None, None))).lower(
          keys, rows_idx, x, y, data).compile()
      t0 = time.perf_counter()
      jax.block_until_ready(many_c(keys, rows_idx, x, y, data))
      vmap_s = time.perf_counter() - t0
      t0 = time.perf_counter()
      for k in keys:
        out = one_c(k, rows_idx, x, y, data)
      jax.block_until_ready(out)
      loop_s = time.perf_counter() - t0
      rows.append({"model": name, "n": n, "vmap_s": vmap_s, "loop_s": loop_s, "one_s": one_s,
                   "faster": "vmap" if vmap_s < loop_s else "loop", "auto": auto})
      line = (f"| {name} | {n} | {vmap_s:.2f} | {loop_s:.2f} | {one_s:.3f} | {vmap_s / n:.3f} | "
              f"{loop_s / n:.3f} | {rows[-1]['faster']} | {auto} |")
      lines.append(line)
      print(line, flush=True)
  lines += ["", f"Load average at the end: {load_average()}"]
  print("\n" + lines[-1])
  return {"rows": rows, "args": vars(args)}, "\n".join(lines)


def shadows(args) -> tuple[dict, str]:
  """K shadow models: one vmapped run, the vmapped step in a host loop, and K runs in a row."""
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
  for k in args.ks:
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

    row = [k, v_run, v_compile, s_run, seq_compile if k == args.ks[0] else 0.0, s_run / v_run]
    if not args.no_loop:
      trained = membership.train_shadows(model, optimizer, data.input_shape, x_pool, y_pool,
                                         np.asarray(in_idx), key, epochs=args.epochs,
                                         batch_size=batch, driver="loop")
      row += [trained.time_s, trained.compile_s]
    rows.append(row)
    print(f"K={k} done", flush=True)

  header = ["K", "vmap run s", "vmap compile s", "sequential run s", "sequential compile s",
            "sequential / vmap"]
  if not args.no_loop:
    header += ["vmap loop run s", "vmap loop compile s"]
  steps = args.epochs * (n_in // batch)
  lines = head(f"{args.model} on {args.dataset}, {n_in} images per shadow, {args.epochs} "
               f"epochs, batch {batch} ({steps} steps per shadow); sequential compile is paid "
               "once for all K.")
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    lines.append("| " + " | ".join(str(c) if isinstance(c, int) else f"{c:.2f}" for c in row)
                 + " |")
  lines += ["", f"Load average at the end: {load_average()}"]
  text = "\n".join(lines)
  print(text)
  return {"rows": [dict(zip(header, row)) for row in rows], "args": vars(args)}, text


def main(argv=None) -> dict:
  args = parse_args(argv)
  name = "shadows" if args.shadows else "populations"
  result, text = (shadows if args.shadows else members)(args)
  common.write_outputs(args.out, name, result, text)
  return result


if __name__ == "__main__":
  scripts.run(main)
