"""Populations on 8 forced CPU devices against 1 device; prints one JSON line.

Run by tests/test_populations.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set before JAX starts).
The same populations (a training one and an unlearning one) run split over 8
devices in one chunk of 8 and on one device in chunks of 4; member i's key
depends on neither.
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxunlearn import models, parallel, plan, plugins, populations as pops, stages  # noqa: E402
from tests.support import tiny  # noqa: E402


def main():
  x, y, xt, yt = tiny.make_arrays()
  x_all, y_all = jnp.asarray(x), jnp.asarray(y)
  forget, remain = np.arange(12), np.arange(12, x.shape[0])
  data = pops.EvalData(x_all[forget], y_all[forget], x_all[remain], y_all[remain],
                       jnp.asarray(xt), jnp.asarray(yt))
  model = models.get_model("mlp", tiny.NUM_CLASSES, hidden=(16,))
  shape = x.shape[1:]
  train = pops.train_member(model, optax.adam(1e-3), shape, epochs=2, batch_size=32,
                            keep_params=False)
  u = plugins.default_config().unlearn
  u.method, u.epochs, u.forget_batch_size, u.remain_batch_size = "finetune", 1, 4, 16
  u.learning_rate = 0.02
  unlearn = pops.unlearn_member(model, shape, plan.make_plan("finetune", u), n_forget=12,
                                n_remain=remain.size)
  params = model.init(jax.random.key(3), jnp.zeros((1, *shape)), train=False)["params"]
  rows = jnp.asarray(remain, jnp.int32)
  populations = {
      "train": pops.Population("t", 8, train, (), (rows, x_all, y_all, data)),
      "unlearn": pops.Population("u", 8, unlearn, (), (params, {}, jnp.asarray(forget), rows,
                                                       x_all, y_all, (), (), data))}
  out = {"device_count": jax.device_count()}
  for kind, pop in populations.items():
    phis = []
    for mesh, chunk in ((parallel.make_mesh(), 8), (parallel.make_mesh(jax.devices()[:1]), 4)):
      with tempfile.TemporaryDirectory() as d:
        r = pops.run_population(pop, jax.random.key(0), stages.StageCache(Path(d)), n_audit=12,
                                chunk_size=chunk, mesh=mesh, progress=False)
      phis.append(r["phi"])
    out[f"max_abs_diff_{kind}"] = float(np.abs(phis[0] - phis[1]).max())
    out[f"phi_spread_{kind}"] = float(phis[0].std(0).mean())
  fn = parallel.vmap_sharded(lambda k: jax.random.normal(k, ()), parallel.make_mesh())
  res = fn(jax.random.split(jax.random.key(0), 8))
  out["sharded_devices"] = len(res.sharding.device_set)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
