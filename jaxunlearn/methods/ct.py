"""CT, "convolution transpose" (NeurIPS 2023 unlearning competition, 5th place).

1. Swap the two spatial axes of every 2-D conv kernel: flax's ``(H, W, in,
   out)`` becomes ``(W, H, in, out)``, PyTorch's ``weight.swapaxes(2, 3)``
   on ``(out, in, H, W)``. A 1x1 kernel is unchanged.
2. Repair: CE on D_r (an epoch is a pass over D_r).

Entry's recipe: 3 epochs of SGD lr 1e-3, momentum 0.9, weight decay 5e-4,
cosine annealing per epoch (``CosineAnnealingLR(T_max=epochs)``), batch 64.
Source: ``xcadet/deepunlearn:munl/unlearning/kgltop5.py`` (``rotate_weight``).

Deviations: ``unlearn.schedule = "cosine"`` decays per step, not per epoch.
A model without conv layers is refused (there is nothing to transpose), and
so is a non-square kernel, whose transpose would change the layer's shape
(PyTorch's conv would silently take the new shape).

Deterministic: every run of CT from one original starts from the same
transposed weights; only the batch order differs between runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, erase


def conv_kernels(params) -> dict:
  """Which leaves are 2-D conv kernels (4 axes)."""
  return erase.select(params, lambda names, leaf: names[-1] == "kernel" and leaf.ndim == 4)


def check_transposable(params) -> None:
  """Raises ConfigError unless ``params`` has conv kernels, all of square spatial shape."""
  convs = conv_kernels(params)
  if not erase.any_selected(convs):
    raise ConfigError("method 'ct' transposes convolution kernels and this model has none; "
                      "use a model with conv layers, e.g. --config.model=lenet5")
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = erase.path_names(path)
    if names[-1] == "kernel" and leaf.ndim == 4 and leaf.shape[0] != leaf.shape[1]:
      raise ConfigError(f"method 'ct' cannot transpose the non-square kernel "
                        f"{'/'.join(names)} of shape {tuple(leaf.shape)}; use square kernels")


def transpose_convs(params):
  """``params`` with the spatial axes of every 2-D conv kernel swapped."""
  return jax.tree.map(lambda p, c: jnp.swapaxes(p, 0, 1) if c else p,
                      params, conv_kernels(params))


@base.register("ct")
class ConvolutionTranspose(base.Method):
  """Transpose every conv kernel spatially, then repair on D_r."""
  description = ("CT: swap the spatial axes of every conv kernel, then CE on D_r "
                 "(needs a model with conv layers)")
  inputs = ("x_remain", "y_remain")
  epoch_over = "remain"
  search_space = {"learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)}

  def make(self, env):
    def erase_fn(params):
      check_transposable(params)
      return transpose_convs(params), ()

    return erase.repair_method(env, erase_fn, erase.remain_ce(env))
