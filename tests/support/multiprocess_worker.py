"""One of two local JAX processes (2 forced CPU devices each) for test_parallel.py.

Usage: multiprocess_worker.py PROCESS_ID PORT OUTDIR

Process 0 takes its multi-process settings from the config, process 1 from
the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID),
so both start-up paths are exercised. Both run sharded unlearning, training,
evaluation, shadow training and a checkpoint round trip over the 4 devices of
both processes and write what they got to OUTDIR/process_<id>.npz.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tests.support import scale_problem as sp  # noqa: E402
from jaxunlearn import checkpoint, config, parallel, train  # noqa: E402

NUM_PROCESSES = 2


def main(process_id: int, port: int, outdir: str) -> None:
  cfg = config.base_config()
  address = f"127.0.0.1:{port}"
  if process_id == 0:
    cfg.parallel.distributed = True
    cfg.parallel.coordinator_address = address
    cfg.parallel.num_processes = NUM_PROCESSES
    cfg.parallel.process_id = process_id
  else:
    os.environ.update({"JAX_COORDINATOR_ADDRESS": address,
                       "JAX_NUM_PROCESSES": str(NUM_PROCESSES),
                       "JAX_PROCESS_ID": str(process_id)})
  config.check_schema(cfg)
  assert parallel.initialize_distributed(cfg)
  assert jax.process_count() == NUM_PROCESSES, jax.process_count()
  assert jax.process_index() == process_id

  mesh = parallel.make_mesh()
  out = {"device_count": jax.device_count(), "local_device_count": jax.local_device_count()}

  result = sp.unlearn_run(mesh)
  params = result.params
  out["unlearn_devices"] = min(len(a.sharding.device_set) for a in jax.tree.leaves(params))
  out["unlearn_addressable"] = all(a.is_fully_addressable for a in jax.tree.leaves(params))
  for i, leaf in enumerate(jax.tree.leaves(parallel.to_host(params))):
    out[f"unlearn_{i}"] = leaf
  out["unlearn_kl"] = np.asarray([h["kl_forget"] for h in result.history])

  fitted = sp.fit(mesh, "auto")   # the scan on several CPU devices, as in the pipeline
  for i, leaf in enumerate(jax.tree.leaves(parallel.to_host(fitted.state.params))):
    out[f"fit_{i}"] = leaf

  x, _ = sp.data()
  apply_fn = train.eval_apply_fn(sp.model(), {})
  out["predict"] = train.predict(apply_fn, params, x[:37], batch_size=12, mesh=mesh)

  # Eight shadow models, two per device (the 8-device checks' reference).
  keys, xs, ys = sp.shadow_inputs(8)
  states, _ = parallel.vmap_sharded(sp.shadow_train_fn(), mesh)(keys, xs, ys)
  for i, leaf in enumerate(jax.tree.leaves(parallel.to_host(states.params))):
    out[f"shadow_{i}"] = leaf

  # As the pipeline restores: a target without shardings (Orbax then uses the
  # saved ones, over both processes).
  ckpt = os.path.join(outdir, "ckpt")
  checkpoint.save(ckpt, {"params": params}, {"processes": NUM_PROCESSES})
  target = jax.eval_shape(lambda: {"params": params})
  restored, meta = checkpoint.restore(ckpt, target)
  out["restore_diff"] = sp.max_abs_diff(parallel.to_host(restored),
                                        parallel.to_host({"params": params}))
  out["restore_devices"] = min(len(a.sharding.device_set) for a in jax.tree.leaves(restored))
  out["restore_meta"] = meta["processes"]

  np.savez(os.path.join(outdir, f"process_{process_id}.npz"), **out)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
