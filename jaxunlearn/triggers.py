"""A backdoor planted in the forget set, the paper's third test of forgetting.

Every D_f image gets a trigger (a small square patch of constant value) and
the label ``target_class``; the original model trains on D_r and the poisoned
D_f, so it learns "trigger -> target class". A model that has forgotten D_f
has no reason to follow the trigger. Attack success is the share of triggered
test images whose true class is not the target that the model classifies as
the target (the paper: 98% on the original, < 20% after unlearning).

Config (``backdoor.*``): ``enabled``, ``target_class``, ``patch_size``
(pixels), ``patch_value`` (in the data's [0, 1] scale), ``position``
(a corner or ``center``) and ``margin`` (pixels from the corner's edges).
"""

from __future__ import annotations

import numpy as np

import ml_collections

from jaxunlearn.errors import ConfigError

__all__ = ["default_config", "validate", "describe", "stamp", "poison", "attack_success",
           "patch_slices", "POSITIONS"]

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left", "center")


def default_config() -> ml_collections.ConfigDict:
  """The ``backdoor`` config block (owned by the backdoor evaluator, read by the transform)."""
  c = ml_collections.ConfigDict()
  c.enabled = False
  c.target_class = 0
  c.patch_size = 3
  c.patch_value = 1.0
  c.position = "bottom_right"  # bottom_right | bottom_left | top_right | top_left | center
  c.margin = 1                 # pixels between the patch and the image edges
  return c


def validate(cfg, input_shape, num_classes: int) -> None:
  """Raises ConfigError unless the trigger fits the inputs and the target class exists."""
  if not 0.0 <= cfg.patch_value <= 1.0:
    raise ConfigError(f"backdoor.patch_value must be in [0, 1] (inputs are scaled to [0, 1]), "
                      f"got {cfg.patch_value}")
  if not 0 <= cfg.target_class < num_classes:
    raise ConfigError(f"backdoor.target_class must be in [0, {num_classes}), got "
                      f"{cfg.target_class}")
  if len(input_shape) != 3:
    raise ConfigError(f"the backdoor trigger needs images (H, W, C), got inputs of shape "
                      f"{tuple(input_shape)}; set backdoor.enabled=False for feature vectors")
  patch_slices(input_shape[0], input_shape[1], int(cfg.patch_size), cfg.position,
               int(cfg.margin))


def patch_slices(height: int, width: int, patch_size: int, position: str,
                 margin: int) -> tuple[slice, slice]:
  """Rows and columns the trigger covers in a ``height x width`` image.

  Raises:
    ConfigError: unknown position, or the patch does not fit.
  """
  if position not in POSITIONS:
    raise ConfigError(f"backdoor.position must be one of {POSITIONS}, got {position!r}")
  if patch_size < 1 or margin < 0:
    raise ConfigError(f"backdoor.patch_size must be >= 1 and backdoor.margin >= 0, got "
                      f"{patch_size} and {margin}")
  if patch_size + margin > min(height, width):
    raise ConfigError(f"backdoor patch {patch_size}x{patch_size} with margin {margin} does not "
                      f"fit a {height}x{width} image; use a smaller backdoor.patch_size")
  if position == "center":
    top, left = (height - patch_size) // 2, (width - patch_size) // 2
  else:
    top = margin if position.startswith("top") else height - margin - patch_size
    left = margin if position.endswith("left") else width - margin - patch_size
  return slice(top, top + patch_size), slice(left, left + patch_size)


def stamp(x: np.ndarray, cfg) -> np.ndarray:
  """A copy of the NHWC images ``x`` with the trigger stamped on every one."""
  x = np.asarray(x)
  if x.ndim != 4:
    raise ConfigError(f"the backdoor trigger needs NHWC images, got inputs of shape {x.shape}; "
                      "set backdoor.enabled=False for feature vectors")
  rows, cols = patch_slices(x.shape[1], x.shape[2], int(cfg.patch_size), cfg.position,
                            int(cfg.margin))
  out = x.copy()
  out[:, rows, cols, :] = cfg.patch_value
  return out


def poison(x_train: np.ndarray, y_train: np.ndarray, forget_idx: np.ndarray, cfg,
           num_classes: int | None = None):
  """Copies of the training arrays with the trigger on, and the target label for, D_f.

  Args:
    x_train, y_train: the clean training set (not modified).
    forget_idx: positions of D_f.
    cfg: the ``backdoor`` config block.
    num_classes: the classifier's class count (default: ``max(y_train) + 1``).

  Returns:
    ``(x_poisoned, y_poisoned)``.

  Raises:
    ConfigError: bad trigger settings or a target class out of range.
  """
  num_classes = int(np.max(y_train)) + 1 if num_classes is None else int(num_classes)
  if not 0 <= cfg.target_class < num_classes:
    raise ConfigError(f"backdoor.target_class must be in [0, {num_classes}), got "
                      f"{cfg.target_class}")
  x = np.array(x_train, copy=True)
  y = np.array(y_train, copy=True)
  x[forget_idx] = stamp(x_train[forget_idx], cfg)
  y[forget_idx] = cfg.target_class
  return x, y


def attack_success(triggered_logits: np.ndarray, target_class: int) -> float:
  """Share of (triggered, non-target-class) examples predicted as ``target_class``."""
  return float(np.mean(np.argmax(triggered_logits, -1) == target_class))


def describe(cfg) -> str:
  return (f"{cfg.patch_size}x{cfg.patch_size} patch of value {cfg.patch_value} at "
          f"{cfg.position} (margin {cfg.margin}) -> class {cfg.target_class}")
