"""Sharding checks on several forced CPU devices; prints one JSON line.

Run by tests/test_parallel.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must be set
before JAX starts, and the rest of the suite runs on one device). Every
sharded result is compared with the same computation on one device.

Usage: sharding_checks.py REFERENCE_NPZ: the one-device results are also
saved there, for the two-process checks to compare against.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from tests.support import scale_problem as sp
from jaxunlearn import parallel, train
from jaxunlearn.errors import ConfigError


def sharding_info(tree) -> dict:
  leaves = jax.tree.leaves(tree)
  return {"devices": min(len(a.sharding.device_set) for a in leaves),
          "replicated": all(a.sharding.is_fully_replicated for a in leaves),
          "specs": sorted({str(a.sharding.spec) for a in leaves
                           if isinstance(a.sharding, jax.sharding.NamedSharding)})}


def compiled_step(mesh):
  m, opt = sp.model(), sp.optimizer()
  state = train.init_state(m, opt, jax.random.key(0), sp.INPUT_SHAPE)
  x, y = sp.data()
  step = parallel.jit(train.make_train_step(m, opt, mesh), mesh, donate_argnums=(0,))
  compiled = step.lower(state, x, y, jnp.arange(sp.BATCH)).compile()
  hlo = compiled.as_text()
  ins, outs = compiled.input_shardings[0], compiled.output_shardings
  return {"in_specs": sorted({str(s.spec) for s in jax.tree.leaves(ins)}),
          "out_specs": sorted({str(s.spec) for s in jax.tree.leaves(outs)}),
          "in_devices": min(len(s.device_set) for s in jax.tree.leaves(ins)),
          "all_reduce": "all-reduce" in hlo,
          # Per-device activations of the first layer: batch / devices rows.
          "per_device_rows": f"f32[{sp.BATCH // mesh.devices.size},16]" in hlo}


def main(reference_path: str):
  n = jax.device_count()
  mesh = parallel.make_mesh()
  one_device = parallel.make_mesh(jax.devices()[:1])
  out = {"device_count": n, "auto_driver": train.resolve_driver("auto", mesh),
         "auto_driver_one_device": train.resolve_driver("auto", one_device)}
  reference = {}

  def keep(name, tree):
    for i, leaf in enumerate(jax.tree.leaves(tree)):
      reference[f"{name}_{i}"] = np.asarray(leaf)

  # One single-device run is the reference for both drivers (they take the
  # same steps in the same order).
  fit_single = sp.fit(None, "loop")
  keep("fit", fit_single.state.params)
  for driver in ("loop", "scan"):
    sharded = sp.fit(mesh, driver)
    out[f"fit_{driver}"] = {
        "diff": sp.max_abs_diff(sharded.state.params, fit_single.state.params),
        "loss": [h["loss"] for h in sharded.history],
        "loss_single": [h["loss"] for h in fit_single.history],
        **sharding_info(sharded.state)}
  out["step_sharded"] = compiled_step(mesh)
  out["step_single"] = compiled_step(one_device)

  sharded, single = sp.unlearn_run(mesh), sp.unlearn_run(None)
  keep("unlearn", single.params)
  reference["unlearn_kl"] = np.asarray([h["kl_forget"] for h in single.history])
  out["unlearn"] = {"diff": sp.max_abs_diff(sharded.params, single.params),
                    "moved": sp.max_abs_diff(sharded.params, sp.initial_params()),
                    **sharding_info(sharded.params)}

  x, _ = sp.data()
  apply_fn = train.eval_apply_fn(sp.model(), {})
  logits = train.predict(apply_fn, single.params, x[:37], batch_size=12, mesh=mesh)
  logits_single = train.predict(apply_fn, single.params, x[:37], batch_size=12, mesh=one_device)
  direct = np.asarray(jax.jit(apply_fn)(single.params, x[:37]))
  reference["predict"] = direct
  out["predict"] = {"shape": list(logits.shape), "diff": sp.max_abs_diff(logits, direct),
                    "diff_single": sp.max_abs_diff(logits_single, direct)}

  train_fn = sp.shadow_train_fn()
  run = parallel.vmap_sharded(train_fn, mesh)
  keys, xs, ys = sp.shadow_inputs(n)
  ref_states, ref_losses = jax.jit(jax.vmap(train_fn))(keys, xs, ys)
  keep("shadow", ref_states.params)
  # k = n - 3 is padded to n models, so it reuses the compiled function.
  for k in (n, n - 3):
    states, losses = run(keys[:k], xs[:k], ys[:k])
    ref = jax.tree.map(lambda a: a[:k], ref_states.params)
    out[f"shadow_{k}"] = {"diff": sp.max_abs_diff(states.params, ref),
                          "loss_diff": sp.max_abs_diff(losses, ref_losses[:k]),
                          "spread": sp.max_abs_diff(jax.tree.map(lambda a: a[0], states.params),
                                                    jax.tree.map(lambda a: a[1], states.params)),
                          "shape": list(losses.shape), **sharding_info(states.params)}
  try:
    parallel.vmap_sharded(train_fn, mesh, pad=False)(keys[:n - 3], xs[:n - 3], ys[:n - 3])
    out["shadow_no_pad_error"] = None
  except ConfigError as e:
    out["shadow_no_pad_error"] = str(e)
  try:
    sp.fit(mesh, batch_size=12)
    out["batch_error"] = None
  except ConfigError as e:
    out["batch_error"] = str(e)
  np.savez(reference_path, **reference)
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1])
