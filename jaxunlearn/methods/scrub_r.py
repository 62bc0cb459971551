"""SCRUB+R: SCRUB, then rewind to the epoch whose D_f error matches held-out error.

The student is kept after every epoch ``i = 1..E``. With ``e_fv`` the final
student's error on held-out examples of D_f's classes (``x_heldout``, never
trained on), the run returns the student after epoch

    i* = argmin_i |err(D_f; theta_i) - e_fv|

(the first on ties). The original (index 0 in the authors' list) is not a
candidate: their code would reload a checkpoint it never wrote. The run's
summary reports ``rewind_epoch`` (``i* + 1``, 1-based), ``heldout_error``
(``e_fv``) and that epoch's ``forget_error``. Source:
``meghdadk/SCRUB:MIA_experiments.ipynb``, cell 18, ``scrub()``. Needs
``--config.holdout.size``; keeps E copies of the parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, helpers, scrub


def rewind_index(forget_errors, heldout_error):
  """The 0-based epoch whose D_f error is closest to ``heldout_error`` (first on ties)."""
  return jnp.argmin(jnp.abs(forget_errors - heldout_error))


@base.register("scrub_r")
class ScrubR(scrub.Scrub):
  """SCRUB with the rewind: return the epoch whose D_f error is closest to held-out error."""
  description = ("SCRUB+R: SCRUB, then rewind to the epoch whose D_f error is closest to "
                 "the error on held-out examples of D_f's classes")
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain", "x_heldout", "y_heldout")

  def validate(self, hp):
    base.Method.validate(self, hp)
    scrub.validate_scrub(hp, "scrub_r")

  def cost(self, shape, hp):
    # SCRUB's steps, the D_f error after every epoch and the held-out error in finish (forward).
    if shape.n_heldout < 1:
      raise ConfigError("method 'scrub_r' evaluates held-out examples of D_f's classes and the "
                        "run's shape has n_heldout=0; pass their number (the run keeps some "
                        "with --config.holdout.size=0.05)")
    forward = shape.epochs * helpers.batched_rows(shape.n_forget) \
        + helpers.batched_rows(shape.n_heldout)
    return scrub.scrub_cost(shape, self._hparam(hp, "msteps"), "scrub_r") \
        + base.FORWARD_ONLY * forward

  def make(self, env):
    inp, epochs = env.inputs, env.epochs

    def init_extra(params):
      stack = jax.tree.map(lambda p: jnp.zeros((epochs, *p.shape), p.dtype), params)
      return {"teacher": params, "params": stack, "forget_error": jnp.zeros(epochs)}

    inner = helpers.gradient_method(
        env, scrub.scrub_loss_fn("scrub_r", env, lambda extra: extra["teacher"]), init_extra)

    def epoch_end(state):
      e = state.step // env.steps_per_epoch - 1
      ex = state.extra
      err = helpers.error_rate(env.apply_fn, state.params, inp.x_forget, inp.y_forget)
      stack = jax.tree.map(lambda s, p: s.at[e].set(p), ex["params"], state.params)
      return state._replace(extra={**ex, "params": stack,
                                   "forget_error": ex["forget_error"].at[e].set(err)})

    def pick(state):
      e_fv = helpers.error_rate(env.apply_fn, state.params, inp.x_heldout, inp.y_heldout)
      return rewind_index(state.extra["forget_error"], e_fv), e_fv

    def finish(state):
      i, _ = pick(state)
      return jax.tree.map(lambda s: s[i], state.extra["params"])

    def summary(state):
      i, e_fv = pick(state)
      return {"rewind_epoch": i + 1, "heldout_error": e_fv,
              "forget_error": state.extra["forget_error"][i]}

    return inner._replace(epoch_end=epoch_end, finish=finish, summary=summary)
