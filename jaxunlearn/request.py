"""One request: validated, locked, claimed, with its original model, frozen.

Every entry point (``jaxunlearn run``, ``jaxunlearn audit``, tuning,
``experiments/compare_methods.py``) starts the same way::

    with request.open_request(cfg, workdir, outputs=("results.json",)) as req:
      ...   # req is frozen: stages return new values, they never change it

:func:`open_request`, in this order:

1. validates everything the request will use, before any write: the config
   (schema and plugins), the data, the splits, the model, every unlearning
   plan (``run``'s own ``unlearn`` block, each ``audit.methods`` entry, each
   compared method: all checked as strictly, and traced once on abstract
   arrays), the evaluators, the transforms, and the caller's own ``checks``;
2. takes the work directory's lock (process 0), and checks every file of
   the finished stages it will load (the original and the caller's
   ``restores``): a damaged one is refused before anything changes;
3. claims the work directory: its secret, ``run.json`` (the one original it
   holds), and moves earlier ``outputs`` aside;
4. restores the original model, or trains it.

If anything fails after the claim (an error, a refusal found during work, a
full disk, Ctrl-C), the earlier ``outputs`` are put back and any this request
wrote are removed: a failed request never retires good results.

Stage keys come from the stage's name (:meth:`Request.key`,
:func:`jaxunlearn.stages.stage_key`), so no caller keeps track of a shared
split of the root key. The model stages themselves are :mod:`jaxunlearn.stages`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, data as data_lib, deprecation, evaluators, models
from jaxunlearn import parallel, plan as plan_lib, plugins, registry, splits as splits_lib
from jaxunlearn import stages
from jaxunlearn import train as train_lib, transforms, workdir as workdir_lib
from jaxunlearn.errors import ConfigError, DataError, JaxUnlearnError, PluginError, WorkdirError

__all__ = ["open_request", "Request", "MethodSpec", "Prepared", "prepare", "original_fingerprint",
           "check_model_input", "previous_name"]

@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """An ``unlearn`` block to plan, its label, and how errors name it and its fields
  (:func:`plan.make_plan`)."""
  label: str
  block: Any
  where: str = ""
  fields: str = ""


def _prepared(name: str, doc: str) -> property:
  return property(lambda self: getattr(self.prep, name), doc=doc)


@dataclasses.dataclass(frozen=True)
class Request:
  """A validated request with its original model. Frozen: nothing changes it.

  Attributes:
    prep: everything known before the lock (:class:`Prepared`); its fields
      are read through the request (``req.cfg``, ``req.splits``, ...).
    secret: the work dir's key for forget-set hashes.
    fingerprint: what the original depends on (``run.json``).
    original: the original model.
  """
  prep: Prepared
  secret: bytes
  fingerprint: Mapping[str, Any]
  original: stages.Trained

  cfg = _prepared("cfg", "The config, validated and frozen (plugin blocks filled in).")
  workdir = _prepared("workdir", "The work directory (absolute).")
  data = _prepared("data", "The dataset as loaded (before transforms).")
  x_train = _prepared("x_train", "The training inputs every model trains on (after data "
                      "transforms), read-only.")
  y_train = _prepared("y_train", "The training labels every model trains on, read-only.")
  transforms = _prepared("transforms", "Names of the transforms applied.")
  splits = _prepared("splits", "D_f, D_r, D_s and the held-out split.")
  model = _prepared("model", "The flax module.")
  mesh = _prepared("mesh", "The devices batches are split over.")
  plans = _prepared("plans", "The unlearning plans, by label.")
  evaluators = _prepared("evaluators", "Names of the evaluators ``run`` runs, in order.")

  @property
  def cache(self) -> stages.StageCache:
    return self.prep.cache

  def key(self, name: str):
    """The PRNG key of the stage ``name`` (``original``, ``retrain``, ``reference``, ...)."""
    return stages.stage_key(self.cfg.seed, name)

  def forget_hash(self) -> str:
    return splits_lib.index_hash(self.splits.forget_idx, self.secret)

  def heldout(self) -> tuple:
    """``(x, y)`` of the held-out examples of D_f's classes, or ``()``."""
    h = plan_lib.heldout_rows(self.splits.holdout_idx, self.y_train, self.splits.forget_idx)
    return (self.x_train[h], self.y_train[h]) if h.size else ()

  def apply_fn(self, batch_stats) -> Callable:
    return train_lib.eval_apply_fn(self.model, batch_stats)

  def abstract_variables(self) -> dict:
    return stages.abstract_variables(self.model, self.cfg.train, self.data.input_shape)

  def train(self, stage: str, rows: np.ndarray, **kwargs) -> stages.Trained:
    """Deprecated: :func:`jaxunlearn.stages.train_stage`."""
    deprecation.note("jaxunlearn.request.Request.train", "jaxunlearn.stages.train_stage")
    return stages.train_stage(self, stage, rows, **kwargs)

  def restore(self, stage: str, reused: bool = False) -> stages.Trained:
    """Deprecated: :func:`jaxunlearn.stages.restore_stage`."""
    deprecation.note("jaxunlearn.request.Request.restore", "jaxunlearn.stages.restore_stage")
    return stages.restore_stage(self, stage, reused)


def original_fingerprint(cfg, splits: splits_lib.Splits, secret: bytes | None,
                         data_hash: str) -> dict:
  """What the original model depends on; a work dir holds one original.

  ``data_hash`` is the dataset's content (:func:`jaxunlearn.data.content_hash`):
  a file rewritten under the same path is other data. A model or data transform
  that is not the package's own under its name (replaced, or a plugin) adds its
  implementation (``model_implementation``, a transform's ``implementation``),
  so a work dir's original is never served as another implementation's; the
  package's own add nothing, so their fingerprints stay as they were.
  """
  # The dataset by its registered name and its content: the same npz file moved elsewhere is
  # the same data; another file under the same path is not.
  fp = {"dataset": data_lib.parse_name(cfg.dataset)[0], "data_hash": data_hash,
        "model": cfg.model,
        "model_kwargs": cfg.model_kwargs.to_dict(), "train": cfg.train.to_dict(),
        "seed": cfg.seed}
  fp["train"].pop("driver", None)
  model_impl = models.implementation(cfg.model)
  if model_impl is not None:
    fp["model_implementation"] = model_impl
  if splits.holdout_idx.size:
    fp["holdout_hash"] = splits_lib.index_hash(splits.holdout_idx)
  active = transforms.active(cfg)
  if active:
    # A transform of D_f makes the original depend on the forget set.
    fp["transforms"] = {name: _with_implementation(t.fingerprint(cfg),
                                                   transforms.implementation(name))
                        for name, t in active.items()}
    fp["forget_hash"] = splits_lib.index_hash(splits.forget_idx, secret)
  return json.loads(json.dumps(fp))


def _with_implementation(fingerprint: dict, implementation: dict | None) -> dict:
  return fingerprint if implementation is None else {**fingerprint,
                                                     "implementation": implementation}


def check_model_input(model, name: str, input_shape, factory=None) -> None:
  """Raises DataError unless ``model`` can be initialised on inputs of ``input_shape``.

  The model's first call: a model registered from outside the package (``factory``) that
  raises gets a :class:`~jaxunlearn.errors.PluginError` naming it; a built-in one that
  cannot take the inputs a DataError.
  """
  try:
    jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *input_shape)), train=False),
                   jax.random.key(0))
  except DataError as e:
    if f"'{name}'" in str(e):
      raise
    raise DataError(f"model '{name}': {e}") from e
  except JaxUnlearnError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if factory is not None and not registry.qualified_name(factory).startswith("jaxunlearn."):
      raise PluginError(f"model {name!r} ({registry.qualified_name(factory)}) failed in its "
                        f"first call, on inputs of shape {tuple(input_shape)}: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        kind="model", name=name,
                        where=registry.qualified_name(factory)) from e
    # Flax / XLA shape errors are long and of many types; report one line.
    raise DataError(f"model '{name}' cannot take inputs of shape {tuple(input_shape)} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "choose a model that fits the dataset") from e


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Everything of a request that is known before the lock (internal)."""
  cfg: ml_collections.FrozenConfigDict
  workdir: Path
  data: data_lib.Dataset
  x_train: np.ndarray
  y_train: np.ndarray
  transforms: tuple
  splits: splits_lib.Splits
  model: Any
  mesh: Any
  plans: Mapping[str, plan_lib.UnlearnPlan]
  evaluators: tuple
  data_hash: str

  @property
  def cache(self) -> stages.StageCache:
    """The work dir's cached stages (``WORKDIR/checkpoints``)."""
    return stages.StageCache(self.workdir / "checkpoints")


def _read_only(a) -> np.ndarray:
  a = np.array(a, copy=True)
  a.setflags(write=False)
  return a


def prepare(cfg, workdir, *, methods: Iterable[MethodSpec] | None = None,
            checks: Iterable[Callable[[Prepared], None]] = ()) -> Prepared:
  """Validates everything and loads the data; writes nothing (step 1 of :func:`open_request`)."""
  if workdir is None or not str(workdir).strip():
    raise WorkdirError("--workdir is empty; name a directory for checkpoints and results, e.g. "
                       "--workdir runs/quick")
  # A copy: the caller's config is not changed (plugin blocks, renamed fields).
  cfg = config_lib.mutable_copy(cfg)
  cfg = plugins.check_config(cfg)
  frozen = ml_collections.FrozenConfigDict(cfg)
  workdir = Path(workdir).absolute()
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"work directory {workdir} is a file; pass a directory")
  data = data_lib.load(cfg.dataset, data_dir=cfg.data_dir or None,
                       num_classes=cfg.num_classes, input_scale=cfg.input_scale)
  model = models.get_model(cfg.model, data.num_classes, **cfg.model_kwargs.to_dict())
  check_model_input(model, cfg.model, data.input_shape, factory=models.MODELS.get(cfg.model))
  n = data.n_train
  splits = splits_lib.make_splits(
      n, data.y_train, seed=config_lib.resolve_seed(cfg.forget.seed, cfg), mode=cfg.forget.mode,
      fraction=cfg.forget.fraction, size=cfg.forget.size, index_file=cfg.forget.index_file,
      classes=tuple(cfg.forget.classes),
      reference_size=config_lib.resolve_size(cfg.reference.size, n),
      holdout_size=config_lib.resolve_size(cfg.holdout.size, n), holdout_seed=cfg.seed,
      reference_source=cfg.reference.source)
  specs = list(methods) if methods is not None else [MethodSpec(cfg.unlearn.method, cfg.unlearn)]
  labels = [s.label for s in specs]
  if len(set(labels)) != len(labels):
    raise ConfigError(f"two unlearning plans share a label ({labels}); name them "
                      "'label=method:...'")
  plans = {s.label: plan_lib.make_plan(s.label, s.block, where=s.where, train=cfg.train,
                                        fields=s.fields)
           for s in specs}
  mesh = parallel.make_mesh()
  # Every batch must divide over the devices; checked here, before any write.
  for size in (splits.train_idx.size, splits.remain_idx.size, splits.reference_idx.size):
    parallel.check_batch_size(min(cfg.train.batch_size, size), mesh, "train.batch_size")
  heldout = plan_lib.heldout_rows(splits.holdout_idx, data.y_train, splits.forget_idx)
  for p in plans.values():
    u = p.block
    parallel.check_batch_size(min(u.forget_batch_size, splits.n_forget), mesh,
                              f"{p.label}: unlearn.forget_batch_size")
    parallel.check_batch_size(u.remain_batch_size, mesh, f"{p.label}: unlearn.remain_batch_size")
    if p.needs_heldout and not heldout.size:
      what = "needs held-out examples" if splits.holdout_idx.size == 0 else \
          "needs held-out examples of D_f's classes, and none of the held-out split has one"
      raise ConfigError(f"{p.label}: method {p.name!r} (stop {p.stop!r}) {what}; keep some out "
                        "of training with --config.holdout.size=0.05 (a fraction or a count)")
  info = evaluators.DataInfo(n_train=n, n_test=data.n_test, num_classes=data.num_classes,
                             input_shape=tuple(data.input_shape), n_forget=splits.n_forget)
  names = tuple(evaluators.selected(cfg))
  for name in names:
    ev = evaluators.get(name)()
    with registry.guard("evaluator", name, ev, "validate"):
      ev.validate(frozen, info)
  for name, t in transforms.active(cfg).items():
    with registry.guard("data transform", name, t, "validate"):
      t.validate(frozen, data.num_classes, tuple(data.input_shape))
  x_train, y_train, applied = transforms.apply_all(frozen, data.x_train, data.y_train,
                                                   splits.forget_idx, data.num_classes)
  prepared = Prepared(frozen, workdir, data, _read_only(x_train), _read_only(y_train),
                      tuple(applied), splits, model, mesh, plans, names,
                      data_lib.content_hash(data))
  abstract = stages.abstract_variables(model, cfg.train, data.input_shape)
  for p in plans.values():
    fields = next((s.fields for s in specs if s.label == p.label), "")
    for note in plan_lib.check_model_fit(p, abstract["batch_stats"], fields=fields):
      print(f"jaxunlearn: note: {note}", file=sys.stderr)
    plan_lib.abstract_check(p, abstract["params"], abstract["batch_stats"], model=model,
                            input_shape=data.input_shape, n_forget=splits.n_forget,
                            n_remain=int(splits.remain_idx.size),
                            num_classes=data.num_classes, n_heldout=int(heldout.size))
    if p.needs_teacher:         # its attribution store's sizes, before anything trains
      from jaxunlearn import attribution
      attribution.check_teacher(prepared, p)
  for check in checks:
    check(prepared)
  secret = workdir_lib.read_secret(workdir) if workdir.is_dir() else None
  # Without the secret (a new work dir) the forget hash is not known yet: it is
  # checked again under the lock, before the first write.
  workdir_lib.check(workdir, original_fingerprint(frozen, splits, secret, prepared.data_hash),
                    ignore=() if secret is not None else ("forget_hash",),
                    num_classes=data.num_classes,
                    classes_of=lambda digest: data_lib.classes_with_hash(data, digest))
  return prepared


def previous_name(name: str) -> str:
  """Where an earlier output moves while a request runs: ``results.json`` ->
  ``results.previous.json``."""
  stem, _, ext = name.rpartition(".")
  return f"{stem}.previous.{ext}" if stem else f"{name}.previous"


def _claim(prep: Prepared, outputs: Iterable[str]) -> tuple[bytes, dict, tuple]:
  """Under the lock: the secret, ``run.json``, and no stale ``outputs`` left looking current.

  Earlier ``outputs`` (e.g. ``results.json``) move to ``<stem>.previous.<ext>``.

  Returns:
    ``(secret, fingerprint, moved)``: ``moved`` names the outputs moved aside.
  """
  secret = workdir_lib.read_secret(prep.workdir)
  if secret is None:
    secret = workdir_lib.new_secret()
    if jax.process_index() == 0:
      with workdir_lib.writing(prep.workdir / workdir_lib.SECRET_NAME,
                               workdir_lib.SECRET_BYTES):
        workdir_lib.write_secret(prep.workdir, secret)
  fingerprint = original_fingerprint(prep.cfg, prep.splits, secret, prep.data_hash)
  # Again under the lock: another run may have claimed the work dir meanwhile.
  recorded = workdir_lib.check(prep.workdir, fingerprint)
  if jax.process_index() == 0:
    if not (prep.workdir / "run.json").exists() or recorded:
      workdir_lib.atomic_write(prep.workdir / "run.json",
                               json.dumps({"original": fingerprint}, indent=2))
    if recorded:
      print(f"jaxunlearn: note: work directory {prep.workdir} was made before data hashes; its "
            f"data hash is now recorded as {prep.data_hash} (later runs must use this data)",
            file=sys.stderr)
  moved = []
  if jax.process_index() == 0:
    try:
      for name in outputs:
        path = prep.workdir / name
        if path.exists():
          with workdir_lib.writing(path):
            os.replace(path, prep.workdir / previous_name(name))
          moved.append(name)
    except BaseException:
      _put_back(prep.workdir, moved, moved)
      raise
  return secret, fingerprint, tuple(moved)


def _put_back(workdir: Path, outputs: Iterable[str], moved: Iterable[str]) -> None:
  """After a failed request: the earlier ``outputs`` back in place; those it wrote removed."""
  for name in outputs:
    path = workdir / name
    try:
      if name in moved:
        os.replace(workdir / previous_name(name), path)
      elif path.exists():
        path.unlink()
    except OSError:
      pass   # best effort: the request's own error is the one to report


@contextlib.contextmanager
def open_request(cfg, workdir, *, methods: Iterable[MethodSpec] | None = None,
                 outputs: Iterable[str] = (), wait: bool = False,
                 checks: Iterable[Callable[[Prepared], None]] = (),
                 restores: Callable[[Prepared, bytes | None], Iterable[str]] | None = None):
  """Validates, locks, claims and restores or trains the original; yields a :class:`Request`.

  Args:
    cfg: a config (``configs/*.py``).
    workdir: the work directory; its finished stages are reused.
    methods: the unlearning plans to make (default: the config's own
      ``unlearn`` block, labelled with its method's name).
    outputs: files this request writes; earlier ones are moved aside once the
      request is valid and locked, and put back if it fails.
    wait: wait for another run holding the work dir instead of refusing.
    checks: more ``check(prepared)`` calls (raising ConfigError) run before
      the lock, e.g. the audit's.
    restores: ``restores(prepared, secret)`` names the stages besides the
      original that the request will load (e.g.
      :func:`jaxunlearn.stages.run_stage_names`); each finished one is checked
      file by file before the claim.

  The lock is held until the ``with`` block ends.
  """
  prep = prepare(cfg, workdir, methods=methods, checks=checks)
  outputs = tuple(outputs)
  with workdir_lib.writing(prep.workdir):
    prep.workdir.mkdir(parents=True, exist_ok=True)
  lock = workdir_lib.Lock(prep.workdir, wait=wait) if jax.process_index() == 0 \
      else contextlib.nullcontext()
  with lock:
    # Before the claim: a damaged stage is refused while nothing has changed.
    names = ["original"]
    if restores is not None:
      names += restores(prep, workdir_lib.read_secret(prep.workdir))
    stages.verify_finished(prep.cache, names)
    secret, fingerprint, moved = _claim(prep, outputs)
    try:
      original = stages.train_stage(prep, "original", prep.splits.train_idx,
                                    epochs=prep.cfg.train.epochs,
                                    key=stages.stage_key(prep.cfg.seed, "original"),
                                    protected=True)
      yield Request(prep, secret, fingerprint, original)
    except BaseException:
      if jax.process_index() == 0:
        _put_back(prep.workdir, outputs, moved)
      raise


__getattr__ = deprecation.module_getattr(__name__, {
    "stage_key": "jaxunlearn.stages.stage_key",
    "abstract_variables": "jaxunlearn.stages.abstract_variables",
    "train_stage": "jaxunlearn.stages.train_stage",
    "environment": "jaxunlearn.results.environment",
})

