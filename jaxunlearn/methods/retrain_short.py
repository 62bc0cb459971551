"""Short retraining: a fresh model trained uniformly on D_r at a fraction of retraining's cost.

The baseline every cheaper method has to beat (issue 24): it reads D_r only,
never D_f, the original's parameters, a reference or the held-out split, so
over run keys it is exact unlearning with a shorter recipe; what it gives up
is accuracy and the confidence a full run reaches. A run:

* starts from a freshly initialised model of the same architecture (the
  run's key: ``fold_in(key, TAG_INIT)``);
* takes plain minibatches of ``unlearn.remain_batch_size`` rows of D_r, the
  driver's shuffled passes (``epoch_over="steps"``: without a step count the
  run is ``unlearn.epochs`` passes over D_r), and a gradient step on their
  mean cross-entropy;
* with Adam, its learning rate cosine-decayed from ``learning_rate`` to
  ``end_fraction * learning_rate`` over the run (its own optimizer, as
  ``importance_retrain``: ``unlearn.optimizer``, ``schedule``, ``momentum``
  and ``weight_decay`` are not used);
* and at the end scales the output layer (the last top-level ``Dense``) by
  ``temperature``: logits times ``temperature``. A shorter run leaves a
  softer model than retraining; the scale restores the confidence the audits
  read (1: none).

Length: ``unlearn.retrain_fraction`` (0.1, 0.2 and 0.5 are the benchmark's
points) makes the run process that fraction of retraining's examples,
derived for each run from its own |D_r| and the ``train`` block
(:func:`jaxunlearn.plan.retrain_steps`): ``round(fraction * train.epochs *
floor(|D_r| / train.batch_size) * train.batch_size / remain_batch_size)``
steps, so no spec hard-codes a dataset's step count. ``unlearn.steps`` (an
explicit count) or ``unlearn.epochs`` (passes over D_r) work as for
``importance_retrain``. Its cost is ``steps * remain_batch_size`` examples
(the default :meth:`Method.cost`): ``fraction`` of retraining's, exactly when
``fraction`` of retraining's examples is a whole number of steps.

A model with batch norm needs ``unlearn.bn_mode="train"`` (a fresh model's
statistics are its own).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, erase, helpers
from jaxunlearn.methods.importance_retrain import cosine_to, scale_output_layer

NAME = "retrain_short"
TAG_INIT = 0x72736831     # fold_in tag of the run key: the fresh model


def scaled_output(params, temperature):
  """``params`` with the output layer times ``temperature`` (this method's error if none)."""
  try:
    return scale_output_layer(params, temperature)
  except ConfigError:
    raise ConfigError(f"method {NAME!r} scales the output layer and finds no top-level Dense "
                      "layer (Dense_<i>); use a model whose output layer is a top-level "
                      f"nn.Dense, or set {NAME}.temperature=1") from None


@base.register(NAME)
class RetrainShort(base.Method):
  """A fresh model on uniform minibatches of D_r, Adam with a cosine, logits scaled."""
  description = ("a fresh model trained uniformly on D_r for a fraction of retraining's "
                 "examples (unlearn.retrain_fraction), output scaled by temperature")
  inputs = ("x_remain", "y_remain")
  hparams = {"end_fraction": 0.2, "temperature": 1.0}
  hparam_docs = {
      "end_fraction": "the cosine schedule ends at end_fraction x learning_rate, in [0, 1]",
      "temperature": "the output layer's final scale (1: none), > 0"}
  epoch_over = "steps"
  output_scale = "temperature"      # its own output temperature (no generic wrapper)
  search_space = {"learning_rate": (1e-3, 3e-3, 1e-2),
                  "temperature": (1.0, 1.1, 1.2, 1.3, 1.5)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "end_fraction", 0.0, 1.0, method=NAME)
    helpers.validate_range(hp, "temperature", 0.0, 100.0, low_open=True, method=NAME)

  def make(self, env):
    if jax.tree.leaves(env.batch_stats) and env.bn_mode != "train":
      raise ConfigError(f"method {NAME!r} trains a fresh model; on a model with batch norm its "
                        "statistics must be its own: set unlearn.bn_mode='train'")
    hp = env.hparams
    total = env.epochs * env.steps_per_epoch
    opt = optax.adam(cosine_to(hp["learning_rate"], hp["end_fraction"], total))

    def init(params):
      del params   # a fresh model: the original's weights are never read
      fresh = erase.fresh_params(env._replace(key=jax.random.fold_in(env.key, TAG_INIT)), NAME)
      return base.UnlearnState(jnp.zeros((), jnp.int32), fresh, opt.init(fresh))

    def step(state, batch):
      def loss_fn(params):
        return base.cross_entropy(env.apply_fn(params, batch.x_remain), batch.y_remain)
      loss, grads = jax.value_and_grad(loss_fn)(state.params)
      updates, opt_state = opt.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      return state._replace(step=state.step + 1, params=params, opt_state=opt_state), \
          {"loss": loss}

    def finish(state):
      return scaled_output(state.params, hp["temperature"])
    return base.UpdateRule(init, step, finish=finish)
