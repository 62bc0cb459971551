"""Is training bit-reproducible on this backend? Trains each model twice, same key.

    python benchmarks/determinism.py
    XLA_FLAGS=--xla_gpu_deterministic_ops=true python benchmarks/determinism.py

Prints, per model, whether two runs gave bit-identical parameters, and (on an
accelerator) how far the result is from the same run on the CPU.
"""
import numpy as np, jax, jax.numpy as jnp
from jaxunlearn import models, train

class Cfg(dict):
  __getattr__ = dict.__getitem__

CFG = Cfg(optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.0, schedule="constant")
SETUPS = [("mlp", {"hidden": (256, 128)}, (784,)), ("lenet5", {}, (28, 28, 1)),
          ("resnet18", {"stage_sizes": (1, 1, 1, 1), "num_filters": 16}, (32, 32, 3))]

def params_after_training(name, kw, shape, n=2048):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(n, *shape)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  model = models.get_model(name, 10, **kw)
  opt = train.make_optimizer(CFG, 100)
  key = jax.random.key(0)
  state = train.init_state(model, opt, key, shape)
  out = train.fit(model, opt, state, x, y, epochs=2, batch_size=128, key=key,
                  driver="scan", progress=False)
  return np.concatenate([np.asarray(l).ravel() for l in jax.tree.leaves(out.state.params)])

print("backend", jax.default_backend(), jax.devices()[0].device_kind, "jax", jax.__version__)
for name, kw, shape in SETUPS:
  a = params_after_training(name, kw, shape)
  b = params_after_training(name, kw, shape)
  same = a.tobytes() == b.tobytes()
  line = f"{name}: two runs {'bit-identical' if same else f'differ, max |diff| {np.abs(a - b).max():.3g}'}"
  if jax.default_backend() != "cpu":
    with jax.default_device(jax.devices("cpu")[0]):
      c = params_after_training(name, kw, shape)
    line += f"; vs CPU max |diff| {np.abs(a - c).max():.3g}"
  print(line, flush=True)
