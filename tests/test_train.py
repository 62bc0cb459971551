"""The train step, the two epoch drivers and the config-built optimizer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn import models, train
from jaxunlearn.errors import ConfigError, NonFiniteError


def toy_data(n=96, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 6)).astype(np.float32)
  y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


def opt_cfg(**kw):
  c = ml_collections.ConfigDict(dict(optimizer="sgd", learning_rate=0.1, momentum=0.9,
                                     weight_decay=0.0, schedule="constant"))
  c.update(kw)
  return c


def run_fit(driver, lr=0.1, epochs=6):
  model = models.get_model("mlp", 2, hidden=(16,))
  x, y = toy_data()
  optimizer = train.make_optimizer(opt_cfg(learning_rate=lr))
  state = train.init_state(model, optimizer, jax.random.key(0), (6,))
  return train.fit(model, optimizer, state, x, y, epochs=epochs, batch_size=32,
                   key=jax.random.key(1), driver=driver, progress=False)


def test_scan_and_loop_drivers_agree_and_learn():
  loop, scan = run_fit("loop"), run_fit("scan")
  assert int(loop.state.step) == int(scan.state.step) == 18
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               loop.state.params, scan.state.params)
  assert loop.history[-1]["loss"] < loop.history[0]["loss"]
  assert loop.history[-1]["acc"] > 0.8
  assert loop.compile_s > 0 and loop.run_s > 0


def test_non_finite_loss_names_stage_and_step():
  with pytest.raises(NonFiniteError, match=r"stage 'train'.*epoch \d+, step \d+"):
    run_fit("loop", lr=1e30, epochs=3)


def test_train_fn_is_pure_and_vmappable():
  model = models.get_model("mlp", 2, hidden=(8,))
  optimizer = train.make_optimizer(opt_cfg())
  fn = train.make_train_fn(model, optimizer, (6,), epochs=2, batch_size=32)
  x, y = toy_data()
  keys = jax.random.split(jax.random.key(0), 3)
  states, losses = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(keys, x, y)
  assert losses.shape == (3, 2)
  w = states.params["Dense_0"]["kernel"]
  assert w.shape[0] == 3 and not np.allclose(w[0], w[1])
  single, _ = jax.jit(fn)(keys[1], x, y)
  np.testing.assert_allclose(w[1], single.params["Dense_0"]["kernel"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_optimizers_build(name, schedule):
  tx = train.make_optimizer(opt_cfg(optimizer=name, schedule=schedule, weight_decay=1e-4), 100)
  params = {"w": jnp.ones(3)}
  updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
  assert np.all(np.asarray(updates["w"]) < 0)


def test_unknown_optimizer_and_driver():
  with pytest.raises(ConfigError, match="optimizer"):
    train.make_optimizer(opt_cfg(optimizer="lion"))
  with pytest.raises(ConfigError, match="driver"):
    train.resolve_driver("fast")


def test_predict_pads_last_batch():
  model = models.get_model("mlp", 2, hidden=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 6)))["params"]
  x, _ = toy_data(n=25)
  fn = lambda p, xb: model.apply({"params": p}, xb)
  np.testing.assert_allclose(train.predict(fn, params, x, batch_size=10), fn(params, x),
                             rtol=1e-5, atol=1e-6)
