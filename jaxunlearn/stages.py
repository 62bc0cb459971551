"""The model stages of a request, and the named, cached stages of a work directory.

The model stages are ``original``, ``retrain``, ``reference`` and
``unlearned`` (:mod:`jaxunlearn.pipeline` strings them together). Stage names
carry what they depend on:

* ``original``: the model trained on D_f and D_r (never overwritten);
* ``retrain-<forget hash>``: trained from scratch on D_r;
* ``reference-<D_s hash>-e<epochs>``: trained on D_s, only for methods that
  use a reference model; reused by any later request whose D_f does not touch D_s;
* ``unlearned-<forget hash>-<settings hash>``: the original after unlearning.

A stage is a pytree saved as a crash-safe checkpoint under
``WORKDIR/checkpoints/<stage>`` (:mod:`jaxunlearn.checkpoint`). Its name
carries a hash of what it depends on (:func:`jaxunlearn.hashing.spec_hash`),
so a rerun finds it and a changed setting makes a new one. Every cached stage
(models, population chunks, shadow models) goes through
:meth:`StageCache.load_or_build`; model stages come back as :class:`Trained`.
Each stage's key comes from its name (:func:`stage_key`).

The functions here take the request (:class:`jaxunlearn.request.Request`) and
return new values; they never change it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import checkpoint, registry, splits as splits_lib, train as train_lib
from jaxunlearn import unlearn as unlearn_lib
from jaxunlearn.errors import ConfigError, NonFiniteError, SplitError
from jaxunlearn.hashing import spec_hash

__all__ = ["stage_key", "Trained", "StageCache", "abstract_variables", "peak_host_memory_mb",
           "train_stage", "run_stage_names", "verify_finished",
           "restore_stage", "retrain_stage", "find_reference", "reference_stage", "method_inputs",
           "unlearn_stage", "check_finite"]


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

  def __init__(self, root: Path, implementation: dict | None = None):
    self.root = Path(root)
    self.implementation = implementation

  def scoped(self, implementation: dict | None) -> "StageCache":
    """This cache as a plugin of ``implementation`` sees it
    (:meth:`jaxunlearn.registry.Registry.implementation`): ``None`` (the package's own
    plugin) sees the stages as they are; any other implementation's stage names get
    ``-i<hash of the implementation>``, so it never reuses a stage another one made."""
    return StageCache(self.root, implementation)

  def path(self, stage: str) -> Path:
    if self.implementation is None:
      return self.root / stage
    return self.root / f"{stage}-i{spec_hash(self.implementation)}"

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
      with registry.library_call():
        tree, meta = checkpoint.restore(self.path(stage), abstract())
      return tree, meta, True
    tree, meta = build()
    _check_structure(stage, tree, abstract())
    (check or (lambda t: check_finite(stage, t)))(tree)
    with registry.library_call(), interrupts_deferred():
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


@contextlib.contextmanager
def interrupts_deferred():
  """Ctrl-C (SIGINT) inside waits for the block to end, then interrupts as it would have.

  A checkpoint being written finishes (Orbax's threads included) instead of being cut
  off mid-write: the interrupt then leaves a finished stage, never Orbax's own traceback.
  Only in the main thread and where Python handles SIGINT (not where it is ignored).
  """
  previous = signal.getsignal(signal.SIGINT)
  if threading.current_thread() is not threading.main_thread() or not callable(previous):
    yield
    return
  received = []
  signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:
    previous(signal.SIGINT, received[0])


def _check_structure(stage: str, tree, abstract) -> None:
  want = jax.tree.map(lambda a: tuple(a.shape), abstract)
  got = jax.tree.map(lambda a: tuple(np.shape(a)), tree)
  if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
    raise ConfigError(f"stage {stage!r} came out with another structure or shape than "
                      "expected; nothing was saved (a plugin that changes parameter shapes?)")


def stage_key(seed: int, name: str):
  """The key of stage ``name`` under ``seed``: ``fold_in(key(seed), crc32(name))``.

  A stable hash of the name, not a position in a shared split: adding a stage
  changes no other stage's key.
  """
  return jax.random.fold_in(jax.random.key(int(seed)), zlib.crc32(name.encode()))


def peak_host_memory_mb() -> float:
  """The process's peak resident memory so far, in MiB (a high-water mark: recorded at the end
  of a stage it covers that stage and every one before it in the process)."""
  import resource
  import sys
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, KiB


def abstract_variables(model, train_cfg, input_shape) -> dict:
  """``{"params", "batch_stats"}`` of ``model`` as ``jax.ShapeDtypeStruct`` leaves."""
  opt = train_lib.make_optimizer(train_cfg)
  state = jax.eval_shape(lambda k: train_lib.init_state(model, opt, k, input_shape),
                         jax.random.key(0))
  return {"params": state.params, "batch_stats": state.batch_stats}


def train_stage(req, stage: str, rows: np.ndarray, *, epochs: int, key, protected: bool = False,
                extra_meta: dict | None = None,
                reused: Callable[[dict], bool] | None = None) -> Trained:
  """Trains a model from scratch on ``req.x_train[rows]``, unless ``stage`` is saved already.

  Args:
    req: a request, or the prepared request that trains the original
      (anything with ``cfg``, ``model``, ``data``, ``x_train``, ``y_train``,
      ``mesh`` and ``cache``).
    stage: the stage name.
    rows: the training rows.
    epochs: epochs to train.
    key: the stage's key (:func:`stage_key`).
    protected: never overwrite it, even on request.
    extra_meta: more metadata saved with it.
    reused: ``reused(meta) -> bool``: the stage serves another request than
      the one it was trained for.
  """
  cfg = req.cfg

  def build():
    optimizer = train_lib.optimizer_for_rows(cfg.train, rows.size, epochs)
    init_key, data_key = jax.random.split(key)
    state = train_lib.init_state(req.model, optimizer, init_key, req.data.input_shape)
    x, y = jnp.asarray(req.x_train[rows]), jnp.asarray(req.y_train[rows])
    result = train_lib.fit(req.model, optimizer, state, x, y, epochs=epochs,
                           batch_size=cfg.train.batch_size, key=data_key,
                           driver=cfg.train.driver, mesh=req.mesh, stage=stage.split("-")[0],
                           progress=cfg.report.progress)
    meta = {"time_s": result.run_s, "compile_s": result.compile_s,
            "peak_host_memory_mb": peak_host_memory_mb(), "epochs": epochs,
            "n_examples": int(rows.size), "history": result.history, **(extra_meta or {})}
    return result.state.params, result.state.batch_stats, meta

  return req.cache.model(stage, build, abstract_variables(req.model, cfg.train,
                                                          req.data.input_shape),
                         lambda bs: train_lib.eval_apply_fn(req.model, bs), protected=protected,
                         reused=reused)


def restore_stage(req, stage: str, reused: bool = False) -> Trained:
  """A saved model stage of ``req``'s work dir."""
  variables, meta = checkpoint.restore(req.cache.path(stage), req.abstract_variables())
  bs = variables.get("batch_stats") or {}
  return Trained(variables["params"], bs, req.apply_fn(bs), meta, stage, reused)


def retrain_stage(req) -> Trained:
  """The model trained from scratch on D_r (the gold standard and the timing baseline)."""
  return train_stage(req, _retrain_name(req.forget_hash()), req.splits.remain_idx,
                     epochs=req.cfg.train.epochs, key=req.key("retrain"))


def _retrain_name(forget_hash: str) -> str:
  return f"retrain-{forget_hash}"


def _reference_name(req, secret: bytes) -> str:
  """The reference stage a request trains (D_s and the schedule in its name)."""
  s, cfg = req.splits, req.cfg
  return f"reference-{splits_lib.index_hash(s.reference_idx, secret)}-e{cfg.reference.epochs}"


def _unlearned_name(forget_hash: str, plan, reference_stage: str | None) -> str:
  return f"unlearned-{forget_hash}-{spec_hash({**plan.spec(), 'reference': reference_stage})}"


def run_stage_names(prep, secret: bytes | None) -> list[str]:
  """The model stages besides the original that a run of each of ``prep``'s plans loads when
  they are finished (``retrain-*``, ``reference-*``, ``unlearned-*``), by name.

  Args:
    prep: the prepared request (:class:`jaxunlearn.request.Prepared`).
    secret: the work dir's secret; None (a new work dir) names none.
  """
  if secret is None:
    return []
  fhash = splits_lib.index_hash(prep.splits.forget_idx, secret)
  names = [_retrain_name(fhash)] if prep.cfg.retrain.enabled else []
  for plan in prep.plans.values():
    ref = None
    if plan.needs_reference:
      ref = (find_reference(prep) if prep.cfg.reference.reuse else None) \
          or _reference_name(prep, secret)
      names.append(ref)
    names.append(_unlearned_name(fhash, plan, ref))
  return list(dict.fromkeys(names))


def verify_finished(cache: StageCache, names) -> None:
  """Checks every file of each finished stage in ``names`` (unfinished ones are skipped):
  raises CheckpointError for a damaged one, before anything loads it or changes the work dir."""
  for name in names:
    if cache.exists(name):
      checkpoint.verify(cache.path(name))


def find_reference(req) -> str | None:
  """A saved reference model whose D_s avoids this request's D_f, if any."""
  root = req.cache.root
  if not root.is_dir():
    return None
  want = {"epochs": req.cfg.reference.epochs, "n_examples": int(req.splits.reference_idx.size),
          "source": req.cfg.reference.source}
  for d in sorted(root.glob("reference-*")):
    if not checkpoint.exists(d):
      continue
    meta = checkpoint.metadata(d)
    if any(meta.get(k, "remain" if k == "source" else None) != v for k, v in want.items()):
      continue
    ref_idx = np.asarray(meta["reference_idx"], np.int64)
    if not np.intersect1d(ref_idx, req.splits.forget_idx).size:
      return d.name
  return None


def reference_stage(req) -> Trained:
  """The reference model: one saved for another request if its D_s avoids D_f, else trained.

  The returned model's ``meta["reference_idx"]`` is the D_s it trained on.
  """
  cfg, s = req.cfg, req.splits
  fhash = req.forget_hash()
  if cfg.reference.reuse:
    found = find_reference(req)
    if found is not None:
      meta = req.cache.metadata(found)
      _check_reference_avoids_forget(np.asarray(meta["reference_idx"]), s.forget_idx)
      # Finding the reference this very request trained (a resumed or repeated run) is
      # not reuse; one trained for another forget set is.
      return restore_stage(req, found, reused=meta.get("trained_for") != fhash)
  # Checked again here, not with `assert` (stripped by python -O): the
  # reference model must never see D_f.
  _check_reference_avoids_forget(s.reference_idx, s.forget_idx)
  # The name carries D_s and the schedule: a reference of other epochs is another stage.
  stage = _reference_name(req, req.secret)
  return train_stage(req, stage, s.reference_idx, epochs=cfg.reference.epochs,
                     key=req.key("reference"),
                     extra_meta={"reference_idx": s.reference_idx.tolist(),
                                 "source": cfg.reference.source, "trained_for": fhash},
                     reused=lambda meta: meta.get("trained_for") != fhash)


def _check_reference_avoids_forget(reference_idx, forget_idx) -> None:
  if np.intersect1d(reference_idx, forget_idx).size:
    raise SplitError("the reference subset touches the forget set; the reference model must "
                     "never see D_f")


def method_inputs(req, plan, original: Trained, reference: Trained | None, teacher=None):
  """The arrays ``plan``'s run needs (and only those), from the request's data
  (``teacher``: ``{input field: array}`` for a method that reads one).

  Returns:
    the plan's :class:`jaxunlearn.methods.Inputs`.
  """
  s, bs = req.splits, req.cfg.eval.batch_size
  return plan.build_inputs(
      x_forget=req.x_train[s.forget_idx], y_forget=req.y_train[s.forget_idx],
      x_remain=req.x_train[s.remain_idx], y_remain=req.y_train[s.remain_idx],
      heldout=req.heldout(),
      original_logits=lambda x: train_lib.predict(original.apply_fn, original.params, x, bs),
      reference_probs=None if reference is None else lambda x: jax.nn.softmax(jnp.asarray(
          train_lib.predict(reference.apply_fn, reference.params, x, bs)), -1),
      teacher=teacher)


def unlearn_stage(req, plan, reference: Trained | None,
                  teacher: Callable[[], tuple] | None = None) -> Trained:
  """The original after ``plan``'s unlearning run (cached by D_f and the plan's settings).

  ``teacher``, for a plan that reads one: ``teacher() -> ({input field: array}, info)``
  (:func:`jaxunlearn.attribution.request_teacher`), called only when the stage is built."""
  original, s = req.original, req.splits
  stage = _unlearned_name(req.forget_hash(), plan,
                         reference.stage if reference is not None else None)
  teacher_fn = teacher

  def build():
    teacher, teacher_info = None, None
    if plan.needs_teacher:
      if teacher_fn is None:
        raise ConfigError(f"{plan.label}: method {plan.name!r} reads a teacher and the caller "
                          "gave none (stages.unlearn_stage's teacher)")
      # The one-off precompute (an attribution store), timed and costed on its own.
      t0 = time.perf_counter()
      teacher, teacher_info = teacher_fn()
      teacher_info = {**teacher_info, "time_s": time.perf_counter() - t0}
    # The forward passes that make the inputs (the reference on D_f, ...) are
    # unlearning work: timed, after a first call that compiles them.
    jax.block_until_ready(method_inputs(req, plan, original, reference, teacher))
    t0 = time.perf_counter()
    inputs = jax.block_until_ready(method_inputs(req, plan, original, reference, teacher))
    inputs_s = time.perf_counter() - t0
    with registry.guard("unlearning method", plan.name, plan.method, "its run"):
      fn = plan.make_fn(original.apply_fn, model=req.model, input_shape=req.data.input_shape,
                        batch_stats=original.batch_stats, n_forget=s.n_forget,
                        n_remain=int(s.remain_idx.size), mesh=req.mesh)
      result = unlearn_lib.unlearn(fn, original.params, inputs, plan.hparam_arrays(),
                                   key=req.key("unlearn"), mesh=req.mesh,
                                   progress=req.cfg.report.progress)
    meta = {"time_s": result.run_s + inputs_s, "inputs_s": inputs_s,
            "peak_host_memory_mb": peak_host_memory_mb(),
            "compile_s": result.compile_s, "epochs": len(result.history),
            "stopped_early": result.stopped_early, "history": result.history,
            "stop": plan.stop, "calibrated_step": result.calibrated_step,
            "summary": result.summary, "method": plan.name,
            "hparams": {k: v for k, v in plan.hparams.items() if k != "learning_rate"},
            "reference": reference.stage if reference is not None else None,
            "bn_mode": plan.block.bn_mode,
            **({"teacher": teacher_info} if teacher_info is not None else {})}
    # bn_mode=eval: batch statistics stay the original's, unlearning moves weights only.
    stats = original.batch_stats if result.batch_stats is None else result.batch_stats
    return result.params, stats, meta

  return req.cache.model(stage, build, req.abstract_variables(), req.apply_fn)
