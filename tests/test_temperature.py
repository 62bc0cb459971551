"""The generic output temperature (``unlearn.output_temperature``): a wrapper on any method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import plan as plan_lib, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base


def _rule(final):
  """A one-parameter-tree rule whose ``finish`` returns ``final``."""
  return base.UpdateRule(lambda p: base.UnlearnState(jnp.zeros((), jnp.int32), p, ()),
                         lambda s, b: (s, {}), finish=lambda s: final)


PARAMS = {"Dense_0": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.ones(3)},
          "Dense_1": {"kernel": jnp.full((3, 2), 3.0), "bias": jnp.array([1.0, -2.0])},
          "Conv_0": {"kernel": jnp.ones((1, 1, 1, 2))}}


def test_the_wrapper_scales_the_last_dense_layer_by_hand():
  out = unlearn.with_temperature(_rule(PARAMS), 1.5).finish(None)
  np.testing.assert_array_equal(out["Dense_1"]["kernel"], np.full((3, 2), 4.5))
  np.testing.assert_array_equal(out["Dense_1"]["bias"], [1.5, -3.0])
  for untouched in ("Dense_0", "Conv_0"):     # only the output layer moves
    for name, leaf in PARAMS[untouched].items():
      np.testing.assert_array_equal(out[untouched][name], leaf)
  # The logits of a linear output layer scale with it: x @ (T W) + T b = T (x @ W + b).
  x = jnp.array([[1.0, -1.0, 0.5]])
  np.testing.assert_allclose(x @ out["Dense_1"]["kernel"] + out["Dense_1"]["bias"],
                             1.5 * (x @ PARAMS["Dense_1"]["kernel"] + PARAMS["Dense_1"]["bias"]))


def test_at_one_the_result_is_the_inner_rules_bit_for_bit_and_batch_stats_stay():
  same = unlearn.with_temperature(_rule(PARAMS), jnp.float32(1.0)).finish(None)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(PARAMS)):
    assert np.array_equal(a, b)
  variables = {"params": PARAMS, "batch_stats": {"BatchNorm_0": {"mean": jnp.ones(2)}}}
  out = unlearn.scale_output(variables, 2.0)
  np.testing.assert_array_equal(out["batch_stats"]["BatchNorm_0"]["mean"], np.ones(2))
  np.testing.assert_array_equal(out["params"]["Dense_1"]["bias"], [2.0, -4.0])
  assert unlearn.scale_output({"Conv_0": PARAMS["Conv_0"]}, 2.0)["Conv_0"] is PARAMS["Conv_0"]


def _plan(method, **fields):
  from tests.support import tiny
  cfg = tiny.config("x.npz", unlearn__method=method, **{f"unlearn__{k}": v
                                                        for k, v in fields.items()})
  return plan_lib.make_plan("unlearned", cfg.unlearn, train=cfg.train)


def test_every_method_without_its_own_scale_gets_the_generic_hparam():
  p = _plan("finetune", output_temperature=1.2)
  assert p.hparams["output_temperature"] == 1.2
  assert p.spec()["hparams"]["output_temperature"] == 1.2
  # At 1 the run's spec (and so its stage names) is what it was before the wrapper existed.
  assert "output_temperature" not in _plan("finetune").spec()["hparams"]
  # A distillation temperature is another knob: bad_teacher keeps it and gets the wrapper too.
  bt = _plan("bad_teacher", output_temperature=1.3)
  assert bt.hparams["temperature"] == 1.0 and bt.hparams["output_temperature"] == 1.3
  # A method that scales its output itself keeps its own and has no generic one.
  assert "output_temperature" not in _plan("importance_retrain").hparams


@pytest.mark.parametrize("fields, words", [
    ({"output_temperature": 0.0}, ("unlearn.output_temperature", "> 0")),
    ({"output_temperature": 101.0}, ("unlearn.output_temperature=101", "(0, 100]")),
])
def test_bad_temperatures_are_refused(fields, words):
  with pytest.raises(ConfigError) as e:
    _plan("finetune", **fields)
  for w in words:
    assert w in str(e.value)


def test_a_method_with_its_own_scale_refuses_the_generic_one():
  with pytest.raises(ConfigError, match="unlearn.importance_retrain.temperature instead"):
    _plan("importance_retrain", output_temperature=1.2)
