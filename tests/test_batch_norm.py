"""Batch norm during unlearning, on a tiny ResNet (LeNet and the MLP have none).

* ``unlearn.bn_mode=train`` updates the running statistics as PyTorch references unlearn in
  train mode, and the unlearned stage saves them; ``eval`` keeps the original's.
* Bad Teacher's random teacher runs with a fresh model's own statistics.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxunlearn import checkpoint, methods, models, pipeline, train, unlearn
from jaxunlearn.methods import bad_teacher
from tests.support import tiny

RESNET = {"model": "resnet18", "eval__evaluators": (), "retrain__enabled": False}


@pytest.fixture(scope="module")
def trained():
  """A tiny ResNet trained on the tiny data: params and running statistics."""
  x, y, _, _ = tiny.make_arrays()
  model = models.get_model("resnet18", tiny.NUM_CLASSES, stage_sizes=(1,), num_filters=4)
  opt = optax.adam(1e-2)
  state = train.init_state(model, opt, jax.random.key(0), x.shape[1:])
  res = train.fit(model, opt, state, jnp.asarray(x), jnp.asarray(y), epochs=5, batch_size=32,
                  key=jax.random.key(1), progress=False)
  return model, res.state.params, res.state.batch_stats, x, y


def test_bad_teachers_random_teacher_has_its_own_statistics(trained):
  model, params, stats, x, _ = trained
  shape = x.shape[1:]
  env = methods.MethodEnv(
      apply_fn=train.eval_apply_fn(model, stats), init_fn=None, optimizer=optax.sgd(0.0),
      hparams={"temperature": jnp.float32(1.0), "remain_fraction": jnp.float32(0.3)},
      inputs=methods.Inputs(x_forget=jnp.asarray(x[:12]), x_remain=jnp.asarray(x[12:])),
      key=jax.random.key(3), epochs=1, steps_per_epoch=1,
      init_variables_fn=lambda k: models.init_variables(model, k, shape),
      apply_with_stats=lambda p, s, xx: train.apply_model(model, p, s, xx, train=False)[0],
      batch_stats=stats)
  state = bad_teacher.BadTeacher().make(env).init(params)
  bad, own = models.init_variables(model, jax.random.fold_in(env.key, 0), shape)
  x_f = jnp.asarray(x[:64])
  got, competent = bad_teacher.teacher_logits(env, state.extra, x_f, x_f)
  want = train.apply_model(model, bad, own, x_f, train=False)[0]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
  np.testing.assert_allclose(np.asarray(competent),
                             np.asarray(train.apply_model(model, params, stats, x_f, False)[0]),
                             atol=1e-6)
  # With the original's statistics (the defect) the random teacher is far more confident.
  wrong = train.apply_model(model, bad, stats, x_f, train=False)[0]
  conf = lambda z: float(jax.nn.softmax(z).max(-1).mean())  # noqa: E731
  assert conf(got) < conf(wrong)


@pytest.mark.slow    # compiles a train-mode run twice (about 9 s): in the full suite
def test_train_mode_updates_statistics_and_the_driver_equals_the_pure_run(trained):
  model, params, stats, x, y = trained
  inputs = methods.Inputs(x_forget=jnp.asarray(x[:12]), y_forget=jnp.asarray(y[:12]),
                          x_remain=jnp.asarray(x[12:]), y_remain=jnp.asarray(y[12:]))
  fm = unlearn.FlaxModel(model, x.shape[1:], stats)
  hp = unlearn.default_hparams("neggrad_plus", 0.05)
  kw = dict(epochs=1, n_forget=12, n_remain=x.shape[0] - 12, forget_batch_size=4,
            remain_batch_size=16, flax_model=fm)
  apply_fn = train.eval_apply_fn(model, stats)
  eval_fn = unlearn.make_unlearn_fn("neggrad_plus", apply_fn, **kw)
  train_fn = unlearn.make_unlearn_fn("neggrad_plus", apply_fn, bn_mode="train", **kw)
  assert not eval_fn.bn_train and train_fn.bn_train
  out, _ = jax.jit(train_fn)(params, inputs, jax.random.key(2), hp)
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), out["batch_stats"], stats)
  assert max(jax.tree.leaves(moved)) > 1e-3
  driven = unlearn.unlearn(train_fn, params, inputs, hp, key=jax.random.key(2), progress=False)
  for a, b in zip(jax.tree.leaves((driven.params, driven.batch_stats)),
                  jax.tree.leaves((out["params"], out["batch_stats"]))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # Train mode normalises with the batch's statistics: a different run from eval mode.
  e_out, _ = jax.jit(eval_fn)(params, inputs, jax.random.key(2), hp)
  assert unlearn.unlearn(eval_fn, params, inputs, hp, key=jax.random.key(2),
                         progress=False).batch_stats is None
  diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), e_out, out["params"])
  assert max(jax.tree.leaves(diff)) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_the_pipeline_saves_the_statistics_of_its_mode(tmp_path, bn_mode):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  cfg = tiny.config(npz, unlearn__method="finetune", unlearn__bn_mode=bn_mode, **RESNET)
  cfg.model_kwargs = ml_collections.ConfigDict({"stage_sizes": (1,), "num_filters": 4})
  r = pipeline.run(cfg, tmp_path / "work")
  assert r["config"]["unlearn"]["bn_mode"] == bn_mode
  stages = tmp_path / "work" / "checkpoints"
  meta = checkpoint.metadata(stages / r["stages"]["unlearned"])
  assert meta["bn_mode"] == bn_mode
  from jaxunlearn import request, stages as stages_lib
  with request.open_request(cfg, tmp_path / "work") as req:
    original = req.original.batch_stats
    unlearned = stages_lib.restore_stage(req, r["stages"]["unlearned"]).batch_stats
  moved = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                           unlearned, original)))
  assert (moved > 1e-4) == (bn_mode == "train"), moved
  json.dumps(r)
