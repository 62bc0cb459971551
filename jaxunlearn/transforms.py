"""Data transforms applied to the training set before anything trains on it.

A transform changes D_f's examples (e.g. plants a backdoor trigger), so the
original model memorises something that a model which never saw D_f lacks.
Each is a plugin registered by name and switched on by its config block; the
request applies every enabled transform in name order and names none.

Built in:

* ``backdoor``: a trigger patch on every D_f image, relabelled to
  ``backdoor.target_class`` (:mod:`jaxunlearn.triggers`; the ``backdoor``
  block belongs to the backdoor evaluator, which measures it);
* ``label_flip``: every D_f label ``y`` becomes ``(y + 1 + r) mod C`` with
  ``r`` drawn per example in ``[0, C - 2]`` (seeded by ``label_flip.seed``),
  so never the true class: a model fits D_f only by memorising it. With
  ``label_flip.index_file`` it flips a fixed pool of training rows instead,
  which must hold D_f: the transformed training set is then the same for every
  request that forgets a subset of the pool (a fixed transformed superset), so
  they share one attribution store (:mod:`jaxunlearn.attribution`).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, splits as splits_lib, triggers
from jaxunlearn.errors import ConfigError, SplitError
from jaxunlearn.registry import Registry, guard

__all__ = ["Transform", "register", "get", "names", "active", "apply_all", "Backdoor", "LabelFlip",
           "label_flip"]


class Transform:
  """Base class of data transforms: define :meth:`enabled`, :meth:`apply`, :meth:`fingerprint`."""

  description: str = ""
  field_docs: dict = {}

  def config(self) -> ml_collections.ConfigDict | None:
    """Defaults of its top-level config block (None: it has none, or another plugin owns it)."""
    return None

  def enabled(self, cfg) -> bool:
    raise NotImplementedError

  def validate(self, cfg, num_classes: int, input_shape) -> None:
    """Raises ConfigError for settings that cannot work (called before anything is written)."""

  def apply(self, x: np.ndarray, y: np.ndarray, forget_idx: np.ndarray, cfg,
            num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``(x, y)`` with D_f changed (the inputs are not modified)."""
    raise NotImplementedError

  def fingerprint(self, cfg) -> dict:
    """JSON-able settings the original model depends on."""
    raise NotImplementedError

  def per_forget_set(self, cfg) -> bool:
    """Whether the arrays it makes depend on the forget set (default: yes, it changes D_f)."""
    del cfg
    return True

  def pool_rows(self, cfg, n: int) -> np.ndarray | None:
    """The fixed pool of training rows it changes instead of D_f, if it has one (default:
    None). An attribution store can then serve every request on the pool
    (``forget_rate="pool"``: each model forgets a random part of it)."""
    del cfg, n
    return None


_REGISTRY = Registry("data transform", Transform, "transforms")
register, get, names = _REGISTRY.register, _REGISTRY.get, _REGISTRY.names
# implementation(name): None for the package's own transform, else what tells it from any
# other (part of the original's fingerprint; internal).
implementation = _REGISTRY.implementation


def active(cfg) -> dict[str, Transform]:
  """The transforms a config enables, by name, in name order."""
  return {n: get(n)() for n in names() if get(n)().enabled(cfg)}


def apply_all(cfg, x: np.ndarray, y: np.ndarray, forget_idx: np.ndarray,
              num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Applies every enabled transform; returns ``(x, y, names)`` (inputs are not modified)."""
  applied = []
  for name, t in active(cfg).items():
    with guard("data transform", name, t, "apply"):
      x, y = t.apply(x, y, forget_idx, cfg, num_classes)
    applied.append(name)
  return x, y, applied


@register("backdoor")
class Backdoor(Transform):
  description = "a trigger patch on every D_f image, relabelled to backdoor.target_class"

  def enabled(self, cfg) -> bool:
    return bool(cfg.backdoor.enabled)

  def validate(self, cfg, num_classes, input_shape):
    triggers.validate(cfg.backdoor, input_shape, num_classes)

  def apply(self, x, y, forget_idx, cfg, num_classes):
    return triggers.poison(x, y, forget_idx, cfg.backdoor, num_classes=num_classes)

  def fingerprint(self, cfg) -> dict:
    return cfg.backdoor.to_dict()


def label_flip(y: np.ndarray, forget_idx: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
  """A copy of ``y`` with the rows ``forget_idx`` (D_f, or a pool) moved to a seeded other class."""
  if num_classes < 2:
    raise ConfigError(f"label_flip needs at least 2 classes, got {num_classes}")
  y = np.array(y, copy=True)
  r = np.random.default_rng(seed).integers(0, num_classes - 1, size=forget_idx.size)
  y[forget_idx] = (y[forget_idx] + 1 + r) % num_classes
  return y


@register("label_flip")
class LabelFlip(Transform):
  description = "every D_f label moved to another class (seeded), so D_f must be memorised"
  field_docs = {"enabled": "flip every D_f label to another class",
                "seed": "seeds the new labels (-1: seed)",
                "index_file": "'' flips D_f; else a .npy or text file of training rows to flip "
                              "instead, a fixed pool that must hold D_f (its subsets are "
                              "forgotten, and requests on it share one attribution store; set "
                              "label_flip.seed too, so the pool's labels do not move with seed)"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.enabled = False
    c.seed = -1
    c.index_file = ""
    return c

  @staticmethod
  def pool(cfg, n: int) -> np.ndarray:
    """``label_flip.index_file``'s rows, checked against ``n`` training rows."""
    try:
      return splits_lib.read_index_file(str(cfg.label_flip.index_file), n,
                                        "label_flip.index_file")
    except SplitError as e:
      raise ConfigError(str(e)) from None

  def rows(self, cfg, forget_idx: np.ndarray, n: int) -> np.ndarray:
    """The rows it flips: D_f, or ``label_flip.index_file``'s pool (which must hold D_f)."""
    if not cfg.label_flip.index_file:
      return forget_idx
    pool = self.pool(cfg, n)
    missing = np.setdiff1d(forget_idx, pool)
    if missing.size:
      raise ConfigError(f"label_flip.index_file {cfg.label_flip.index_file!r} must hold every "
                        f"row of D_f, and {missing.size} are not in it (e.g. {int(missing[0])}); "
                        "draw D_f from the pool (forget.mode=indices) or add them to the file")
    return pool

  def per_forget_set(self, cfg) -> bool:
    return not cfg.label_flip.index_file

  def pool_rows(self, cfg, n):
    return self.pool(cfg, n) if cfg.label_flip.index_file else None

  def enabled(self, cfg) -> bool:
    return bool(cfg.label_flip.enabled)

  def validate(self, cfg, num_classes, input_shape):
    if cfg.label_flip.seed < -1:
      raise ConfigError(f"label_flip.seed must be >= 0 (or -1 for seed), got "
                        f"{cfg.label_flip.seed}")
    if num_classes < 2:
      raise ConfigError(f"label_flip needs at least 2 classes, got {num_classes}")

  def apply(self, x, y, forget_idx, cfg, num_classes):
    return x, label_flip(y, self.rows(cfg, forget_idx, len(y)), num_classes,
                         config_lib.resolve_seed(cfg.label_flip.seed, cfg))

  def fingerprint(self, cfg) -> dict:
    fp = {"seed": config_lib.resolve_seed(cfg.label_flip.seed, cfg)}
    if cfg.label_flip.index_file:
      # The pool by its rows, not its path: the original depends on which rows are flipped.
      fp["pool_hash"] = splits_lib.index_hash(self.pool(cfg, 1 << 62))
    return fp
