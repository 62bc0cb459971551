"""Data transforms applied to the training set before anything trains on it.

A transform changes D_f's examples (e.g. plants a backdoor trigger), so the
original model memorises something that a model which never saw D_f lacks.
Each is registered by name and switched on by its own config block; the
pipeline applies every enabled transform in name order and names none.

Built in:

* ``backdoor``: a trigger patch on every D_f image, relabelled to
  ``backdoor.target_class`` (:mod:`jaxunlearn.triggers`);
* ``label_flip``: every D_f label ``y`` becomes ``(y + 1 + r) mod C`` with
  ``r`` drawn per example in ``[0, C - 2]`` (seeded by ``label_flip.seed``),
  so never the true class: a model fits D_f only by memorising it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from jaxunlearn import triggers


@dataclasses.dataclass(frozen=True)
class Transform:
  """``apply(x, y, forget_idx, cfg, num_classes) -> (x, y)`` (copies); ``enabled(cfg)``."""
  name: str
  enabled: Callable
  apply: Callable
  fingerprint: Callable          # fingerprint(cfg) -> JSON-able settings the original depends on


_REGISTRY: dict[str, Transform] = {}


def register(name: str, *, enabled: Callable, fingerprint: Callable):
  """Decorator: registers ``apply`` as the transform ``name``."""
  def decorator(apply):
    _REGISTRY[name] = Transform(name, enabled, apply, fingerprint)
    return apply
  return decorator


def active(cfg) -> list[Transform]:
  """The transforms a config enables, in name order."""
  return [_REGISTRY[n] for n in sorted(_REGISTRY) if _REGISTRY[n].enabled(cfg)]


def apply_all(cfg, x: np.ndarray, y: np.ndarray, forget_idx: np.ndarray,
              num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Applies every enabled transform; returns ``(x, y, names)`` (inputs are not modified)."""
  names = []
  for t in active(cfg):
    x, y = t.apply(x, y, forget_idx, cfg, num_classes)
    names.append(t.name)
  return x, y, names


register("backdoor", enabled=lambda cfg: bool(cfg.backdoor.enabled),
         fingerprint=lambda cfg: cfg.backdoor.to_dict())(
    lambda x, y, forget_idx, cfg, num_classes: triggers.poison(
        x, y, forget_idx, cfg.backdoor, num_classes=num_classes))


def label_flip(y: np.ndarray, forget_idx: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
  """A copy of ``y`` with D_f's labels moved to a seeded other class."""
  if num_classes < 2:
    from jaxunlearn.errors import ConfigError
    raise ConfigError(f"label_flip needs at least 2 classes, got {num_classes}")
  y = np.array(y, copy=True)
  r = np.random.default_rng(seed).integers(0, num_classes - 1, size=forget_idx.size)
  y[forget_idx] = (y[forget_idx] + 1 + r) % num_classes
  return y


def _flip_seed(cfg) -> int:
  return cfg.label_flip.seed if cfg.label_flip.seed >= 0 else cfg.seed


register("label_flip", enabled=lambda cfg: bool(cfg.label_flip.enabled),
         fingerprint=lambda cfg: {"seed": _flip_seed(cfg)})(
    lambda x, y, forget_idx, cfg, num_classes: (
        x, label_flip(y, forget_idx, num_classes, _flip_seed(cfg))))
