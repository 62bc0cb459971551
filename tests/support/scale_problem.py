"""A tiny problem shared by the sharding checks (8 devices, two processes, one device).

Importing this module touches no device, so scripts can set XLA_FLAGS or start
multi-process JAX first.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import methods, models, train, unlearn

INPUT_SHAPE = (8,)
NUM_CLASSES = 4
N = 96
BATCH = 32          # divides over 1, 2, 4 and 8 devices
FORGET = 24
FORGET_BATCH = 8
REMAIN_BATCH = 16


def data(seed: int = 0):
  """Learnable random data: labels from a fixed random linear map."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, *INPUT_SHAPE)).astype(np.float32)
  w = rng.normal(size=(INPUT_SHAPE[0], NUM_CLASSES)).astype(np.float32)
  y = np.argmax(x @ w, -1).astype(np.int32)
  return x, y


def model():
  return models.get_model("mlp", NUM_CLASSES, hidden=(16,))


def optimizer(lr: float = 0.1):
  return train.make_optimizer(ml_collections.ConfigDict(
      {"optimizer": "sgd", "learning_rate": lr, "momentum": 0.9}))


def fit(mesh, driver: str = "loop", epochs: int = 2, batch_size: int = BATCH):
  """Trains the MLP from seed 0; returns the FitResult."""
  x, y = data()
  m, opt = model(), optimizer()
  state = train.init_state(m, opt, jax.random.key(0), INPUT_SHAPE)
  return train.fit(m, opt, state, jnp.asarray(x), jnp.asarray(y), epochs=epochs,
                   batch_size=batch_size, key=jax.random.key(1), driver=driver, mesh=mesh,
                   progress=False)


def initial_params():
  m, opt = model(), optimizer()
  return train.init_state(m, opt, jax.random.key(0), INPUT_SHAPE).params


def unlearn_run(mesh, epochs: int = 2):
  """A few lightweight-unlearning steps from fixed parameters; returns UnlearnResult."""
  x, y = data()
  m = model()
  apply_fn = train.eval_apply_fn(m, {})
  params = initial_params()
  ref_logits = np.random.default_rng(1).normal(size=(FORGET, NUM_CLASSES)).astype(np.float32)
  ref_probs = jax.nn.softmax(jnp.asarray(ref_logits), -1)
  fn = unlearn.make_unlearn_fn(
      "lightweight", apply_fn, epochs=epochs, n_forget=FORGET, n_remain=N - FORGET,
      forget_batch_size=FORGET_BATCH, remain_batch_size=REMAIN_BATCH, mesh=mesh,
      optimizer_cfg=ml_collections.ConfigDict({"optimizer": "sgd", "momentum": 0.9}))
  inputs = methods.Inputs(x_forget=jnp.asarray(x[:FORGET]), ref_probs=ref_probs,
                          x_remain=jnp.asarray(x[FORGET:]), y_remain=jnp.asarray(y[FORGET:]))
  return unlearn.unlearn(fn, params, inputs, {"learning_rate": 0.05, "lam": 0.5},
                         key=jax.random.key(2), mesh=mesh, progress=False)


def shadow_inputs(k: int):
  """Keys and per-shadow data (each shadow sees its own random half of the data)."""
  x, y = data()
  rng = np.random.default_rng(3)
  rows = np.stack([rng.permutation(N)[:N // 2] for _ in range(k)])
  keys = jax.random.split(jax.random.key(4), k)
  return keys, x[rows], y[rows]


def shadow_train_fn():
  return train.make_train_fn(model(), optimizer(), INPUT_SHAPE, epochs=2, batch_size=16)


def max_abs_diff(a, b) -> float:
  leaves = jax.tree.leaves(jax.tree.map(
      lambda u, v: float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)))),
      a, b))
  return max(leaves)
