"""Named, cached stages of a work directory.

A stage is a pytree saved as a crash-safe checkpoint under
``WORKDIR/checkpoints/<stage>`` (:mod:`jaxunlearn.checkpoint`). Its name
carries a hash of what it depends on (:func:`spec_hash`), so a rerun finds it
and a changed setting makes a new one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from jaxunlearn import checkpoint


def spec_hash(obj) -> str:
  """A short stable hash of a JSON-able spec."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


class StageCache:
  """``load_or_build`` named stages under ``root`` (``WORKDIR/checkpoints``)."""

  def __init__(self, root: Path):
    self.root = Path(root)

  def path(self, stage: str) -> Path:
    return self.root / stage

  def exists(self, stage: str) -> bool:
    return checkpoint.exists(self.path(stage))

  def metadata(self, stage: str) -> dict:
    return checkpoint.metadata(self.path(stage))

  def load_or_build(self, stage: str, build: Callable[[], tuple[Any, dict]],
                    abstract: Callable[[], Any], *, protected: bool = False
                    ) -> tuple[Any, dict, bool]:
    """Restores ``stage``, or runs ``build() -> (tree, meta)`` and saves it.

    Args:
      stage: the stage name (a directory name).
      build: makes the pytree and its JSON metadata.
      abstract: returns the pytree's structure (e.g. from ``jax.eval_shape``)
        to restore into.
      protected: never overwrite it, even on request.

    Returns:
      ``(tree, meta, reused)``.
    """
    if self.exists(stage):
      tree, meta = checkpoint.restore(self.path(stage), abstract())
      return tree, meta, True
    tree, meta = build()
    checkpoint.save(self.path(stage), tree, {"stage": stage, **meta}, protected=protected)
    return tree, meta, False
