"""Named, cached stages of a work directory.

A stage is a pytree saved as a crash-safe checkpoint under
``WORKDIR/checkpoints/<stage>`` (:mod:`jaxunlearn.checkpoint`). Its name
carries a hash of what it depends on (:func:`spec_hash`), so a rerun finds it
and a changed setting makes a new one. Every cached stage (models, population
chunks, shadow models) goes through :meth:`StageCache.load_or_build`; model
stages come back as :class:`Trained`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from jaxunlearn import checkpoint
from jaxunlearn.errors import NonFiniteError


def spec_hash(obj) -> str:
  """A short stable hash of a JSON-able spec."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Trained:
  """A model stage: its variables, how to apply it, and its metadata."""
  params: Any
  batch_stats: Any
  apply_fn: Callable          # apply_fn(params, x) -> logits, eval mode
  meta: dict                  # time_s, compile_s, history, ...
  stage: str
  reused: bool = False        # trained for an earlier request (a reused reference)


def check_finite(stage: str, tree) -> None:
  """Raises NonFiniteError if any leaf of ``tree`` holds NaN or inf (nothing is saved then)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    a = np.asarray(leaf)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
      where = jax.tree_util.keystr(path)
      raise NonFiniteError(f"stage {stage!r}: {where} holds non-finite values; nothing was "
                           "saved; lower the learning rate")


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
                    abstract: Callable[[], Any], *, protected: bool = False,
                    check: Callable[[Any], None] | None = None) -> tuple[Any, dict, bool]:
    """Restores ``stage``, or runs ``build() -> (tree, meta)`` and saves it.

    Args:
      stage: the stage name (a directory name).
      build: makes the pytree and its JSON metadata.
      abstract: returns the pytree's structure (e.g. from ``jax.eval_shape``)
        to restore into, and that a built tree must match.
      protected: never overwrite it, even on request.
      check: ``check(tree)`` raising for a result later stages cannot use;
        runs before the save (default: every float leaf is finite).

    Returns:
      ``(tree, meta, reused)``.
    """
    if self.exists(stage):
      tree, meta = checkpoint.restore(self.path(stage), abstract())
      return tree, meta, True
    tree, meta = build()
    _check_structure(stage, tree, abstract())
    (check or (lambda t: check_finite(stage, t)))(tree)
    checkpoint.save(self.path(stage), tree, {"stage": stage, **meta}, protected=protected)
    return tree, meta, False

  def model(self, stage: str, build: Callable[[], tuple[Any, Any, dict]], abstract_variables,
            make_apply: Callable[[Any], Callable], *, protected: bool = False,
            reused: Callable[[dict], bool] | None = None) -> Trained:
    """A model stage: restored, or ``build() -> (params, batch_stats, meta)`` and saved.

    Args:
      abstract_variables: ``{"params", "batch_stats"}`` structure of the model.
      make_apply: ``make_apply(batch_stats) -> apply_fn`` (eval mode).
      reused: ``reused(meta) -> bool``: the stage serves another request than
        the one it was trained for.
    """
    def build_tree():
      params, batch_stats, meta = build()
      return {"params": params, "batch_stats": batch_stats}, meta

    tree, meta, _ = self.load_or_build(stage, build_tree, lambda: abstract_variables,
                                       protected=protected)
    bs = tree.get("batch_stats") or {}
    return Trained(tree["params"], bs, make_apply(bs), {"stage": stage, **meta}, stage,
                   bool(reused(meta)) if reused is not None else False)


def _check_structure(stage: str, tree, abstract) -> None:
  from jaxunlearn.errors import ConfigError
  want = jax.tree.map(lambda a: tuple(a.shape), abstract)
  got = jax.tree.map(lambda a: tuple(np.shape(a)), tree)
  if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
    raise ConfigError(f"stage {stage!r} came out with another structure or shape than "
                      "expected; nothing was saved (a plugin that changes parameter shapes?)")
