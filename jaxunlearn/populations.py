"""Populations: N models under one ``jax.vmap``, sharded, chunked and resumable.

A population is N members, each a pure function of its own key (and of
per-member arrays, e.g. the rows it trains on). Every member returns the
same small record (:func:`member_record`): the base record
(:data:`jaxunlearn.audits.RECORD`: the logit-scaled confidence phi on the
audited examples, its accuracy on D_r and on the test set), the audit
statistics' own fields (:attr:`jaxunlearn.audits.Statistic.record`) and, when
asked, its parameters. The record's schema is part of every chunk's stage name.
:func:`run_population` evaluates the members in chunks of ``chunk_size``:

* each chunk is one call of :func:`parallel.vmap_sharded` (the model axis
  split over the devices, ``jax.vmap`` on each);
* each finished chunk is a checkpointed stage,
  ``checkpoints/pop-<population>-<spec hash>-c<i>``, so a killed run resumes
  without redoing finished chunks;
* member ``i`` uses ``fold_in(key, i)`` whatever the chunking or the device
  count, so 1 device and 8 devices give the same phi.

The member builders (:func:`train_member`, :func:`unlearn_member`) are the
kinds of population of the audits: models trained from scratch on given rows
(retrain, oracle, originals on all of D, U-LiRA's originals on keep-masks)
and unlearning runs of any registered method from given parameters, each
drawing and training its own reference model when the method uses one. Both
build their runs from an :class:`jaxunlearn.plan.UnlearnPlan`, as ``run`` does.
"""

from __future__ import annotations

import dataclasses
import weakref
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import hashing, parallel, stages, train as train_lib
from jaxunlearn.audits import base as audits_base, phi as phi_lib
from jaxunlearn.errors import ConfigError
from jaxunlearn.registry import qualified_name

__all__ = ["Population", "EvalData", "ReferenceSettings", "run_population", "record_schema",
           "member_stage", "member_record", "cached_member", "train_member", "unlearn_member",
           "save_phi", "resolve_driver", "balanced_chunk", "estimate_bytes", "memory_limit_bytes",
           "available_bytes", "available_host_bytes", "epoch_step_rows",
           "DRIVERS", "REFERENCE_MODES"]


class EvalData(NamedTuple):
  """What every member is measured on (shared by all members; a pytree)."""
  x_audit: Any        # [n, ...] audited examples, as trained on
  y_audit: Any        # [n] their labels, as trained on
  x_remain: Any       # D_r (or a sample of it) for remain accuracy
  y_remain: Any
  x_test: Any
  y_test: Any
  # {name: (x, y)}: examples beside D_f that phi is also recorded on, as phi_<name>
  # (audit statistics' probes); None: the record holds phi on D_f only.
  probes: Any = None


@dataclasses.dataclass(frozen=True)
class Population:
  """N members of one kind.

  Attributes:
    name: the population's name (``phi/<name>.npy``); letters, digits, ``_``.
    size: N.
    member: ``member(key, *mapped, *shared) -> dict`` of ``phi`` ``[n]``,
      ``remain_acc`` and ``test_acc`` scalars, and ``params`` /
      ``batch_stats`` if ``keep_params``.
    mapped: per-member arrays (pytrees), leading axis N.
    shared: arrays every member gets whole.
    spec: JSON-able: everything the result depends on (hashed into stage names).
    keep_params: also return (and save) each member's parameters.
    abstract_params: ``(params, batch_stats)`` structure of one member
      (``jax.ShapeDtypeStruct`` leaves), needed with ``keep_params``.
    fields: the record's extra per-example fields, by name (the member
      computes them; their schema is hashed into the stage names).
    driver: ``"vmap"`` (a chunk is one call of the vmapped member, split over
      the devices) or ``"loop"`` (the compiled single member, called for each
      member in turn: faster for conv nets on XLA:CPU; see :func:`resolve_driver`).
    probes: the record's ``phi_<name>`` fields on ``EvalData.probes``, as
      ``(name, size, rows digest)`` (hashed into the stage names).
  """
  name: str
  size: int
  member: Callable
  mapped: tuple = ()
  shared: tuple = ()
  spec: dict = dataclasses.field(default_factory=dict)
  keep_params: bool = False
  abstract_params: Any = None
  fields: tuple = ()
  driver: str = "vmap"
  probes: tuple = ()    # ((name, size, rows digest), ...) of EvalData.probes, in that order


def record_schema(fields: dict, probes: tuple = ()) -> list:
  """The record's schema: its field names and where each is computed (hashed into stage names).
  Without probes it is what it was before probes existed, so saved chunks keep their names."""
  return audits_base.RECORD.schema(fields) + [
      [f"phi_{name}", qualified_name(phi_lib.logit_confidence), int(size), digest]
      for name, size, digest in sorted(probes)]


def member_stage(pop: Population, chunk: int, chunk_size: int) -> str:
  """The checkpoint stage of one chunk."""
  digest = hashing.spec_hash({"spec": pop.spec, "size": pop.size, "chunk_size": chunk_size,
                             "keep_params": pop.keep_params,
                             "record": record_schema(dict(pop.fields), pop.probes),
                             **({"driver": pop.driver} if pop.driver != "vmap" else {})})
  return f"pop-{pop.name}-{digest}-c{chunk:03d}"


def member_record(apply_fn: Callable, params, data: EvalData, fields: dict = None) -> dict:
  """One member's record: phi and every extra field on the audited examples, accuracy on
  D_r and on the test set."""
  def acc(x, y):
    return jnp.mean(jnp.argmax(apply_fn(params, x), -1) == y)
  logits = apply_fn(params, data.x_audit)
  # Computed in the order of audits.RECORD's fields (the order they have always been traced in).
  compute = {"phi": lambda: phi_lib.logit_confidence(logits, data.y_audit),
             "remain_acc": lambda: acc(data.x_remain, data.y_remain),
             "test_acc": lambda: acc(data.x_test, data.y_test)}
  out = {name: compute[name]() for name in audits_base.RECORD.names}
  for name, fn in (fields or {}).items():
    out[name] = jnp.asarray(fn(logits.astype(jnp.float32), data.y_audit), jnp.float32)
  for name, (x, y) in (data.probes or {}).items():
    out[f"phi_{name}"] = jnp.asarray(phi_lib.logit_confidence(apply_fn(params, x), y),
                                     jnp.float32)
  return out


def _abstract_record(pop: Population, rows: int, n_audit: int) -> dict:
  """The shapes of ``rows`` members' records: what a saved chunk is restored as."""
  out = {f.name: jax.ShapeDtypeStruct((rows, n_audit) if f.per_example else (rows,),
                                      jnp.float32) for f in audits_base.RECORD.base}
  for name, _ in pop.fields:
    out[name] = jax.ShapeDtypeStruct((rows, n_audit), jnp.float32)
  for name, size, _ in pop.probes:
    out[f"phi_{name}"] = jax.ShapeDtypeStruct((rows, int(size)), jnp.float32)
  if pop.keep_params:
    stack = lambda t: jax.tree.map(  # noqa: E731
        lambda a: jax.ShapeDtypeStruct((rows, *a.shape), a.dtype), t)
    out.update(zip(audits_base.RECORD.kept, map(stack, pop.abstract_params)))
  return out


DRIVERS = ("auto", "vmap", "loop")


def resolve_driver(driver: str, params, mesh=None) -> str:
  """``auto``: ``loop`` for a model with conv kernels on one CPU device, else ``vmap``.

  XLA:CPU runs the grouped convolutions of a vmapped conv net much slower than
  one model at a time (benchmarks/RESULTS.md: populations of LeNet-5 and of
  the MLP); elsewhere one vmapped call wins.
  """
  if driver not in DRIVERS:
    raise ConfigError(f"unknown population driver {driver!r}; use one of {DRIVERS}")
  if driver != "auto":
    return driver
  one_cpu = jax.default_backend() == "cpu" and (mesh is None or mesh.devices.size == 1)
  has_conv = any(getattr(a, "ndim", len(getattr(a, "shape", ()))) == 4
                 for a in jax.tree.leaves(params))
  return "loop" if one_cpu and has_conv else "vmap"


_SHARDED = weakref.WeakKeyDictionary()
_SINGLE = weakref.WeakKeyDictionary()


def _single(member: Callable) -> Callable:
  """``jax.jit(member)``, one per member function (compiled once for every member)."""
  if member not in _SINGLE:
    _SINGLE[member] = jax.jit(member)
  return _SINGLE[member]


def _sharded(member: Callable, mesh, axes) -> Callable:
  """``vmap_sharded(member)``, one per (member, mesh, axes): populations that share a
  member function and shapes (e.g. retrain and oracle) share its compiled code."""
  per_member = _SHARDED.setdefault(member, {})
  if (mesh, axes) not in per_member:
    per_member[(mesh, axes)] = parallel.vmap_sharded(member, mesh, in_axes=axes)
  return per_member[(mesh, axes)]


def pause_point_after_chunk(pop: Population, chunk: int, stage: str) -> None:
  """A pause point: called after each chunk of a population is saved, and does nothing.

  The kill tests (``tests/killpoint/``) wrap it to stop a run between two chunks, where a
  rerun must resume from the saved ones."""


def balanced_chunk(size: int, chunk_size: int) -> int:
  """The chunk size actually used: as many chunks as ``chunk_size`` needs, evenly filled.

  Every chunk is one compiled call of the same shape, so the last one is
  padded; evening the chunks out keeps the padding below one model per chunk
  (65 members in chunks of 64 run as 2 chunks of 33, not 64 + 64).
  """
  chunk_size = max(1, min(int(chunk_size), int(size)))
  n_chunks = -(-int(size) // chunk_size)
  return -(-int(size) // n_chunks)


def estimate_bytes(*, members: int, chunk_size: int, param_bytes: int, rows: int,
                   example_bytes: int, n_audit: int, n_fields: int, keep_params: bool,
                   per_member_params: bool, reference_rows: int = 0, step_rows: int = 0) -> int:
  """A population's peak memory, roughly: what grows with N plus one chunk at work.

  Grows with N: each member's key, its per-member inputs (rows it trains on,
  starting parameters) and its record (phi on ``n_audit`` examples, probes
  included, and the fields, parameters when kept). One chunk: per member, the
  parameters, gradients and optimizer state (about five copies), the training
  rows it gathers, a reference model's the same when it trains one, and
  ``step_rows``: the row indices and per-step metrics of an unlearning run's
  epoch (``steps x batch rows``, :func:`epoch_step_rows`).
  """
  chunk = balanced_chunk(members, chunk_size)
  grows = members * (8 + rows * 4 + n_audit * 4 * (1 + n_fields) + 8
                     + param_bytes * (int(keep_params) + int(per_member_params)))
  working = chunk * (5 * param_bytes + rows * example_bytes + 4 * step_rows
                     + (5 * param_bytes + reference_rows * example_bytes if reference_rows
                        else 0))
  return int(grows + working)


def epoch_step_rows(plan, n_forget: int, n_remain: int) -> int:
  """What one epoch of ``plan``'s run holds per step, summed over the epoch: its forget and
  remain row indices (``[steps, batch]`` each) and a few per-step metrics (4 bytes each)."""
  shape = plan.run_shape(n_forget, n_remain)
  return int(shape.steps_per_epoch) * (int(shape.forget_batch_size)
                                       + int(shape.remain_batch_size) + 4)


# Where the kernel says how much memory can be had without swapping (MemAvailable, kB).
MEMINFO = "/proc/meminfo"


def available_host_bytes() -> tuple[int, str]:
  """``(bytes, what)``: the host memory available now: ``MemAvailable`` of ``/proc/meminfo``
  (memory free plus what the kernel can reclaim), else psutil's ``available`` if installed,
  else the total (``what`` says which)."""
  import os
  try:
    with open(MEMINFO) as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "MemAvailable":
          number, *unit = value.split()
          scale = {"kb": 1024, "mb": 2**20, "gb": 2**30, "b": 1}.get(
              (unit[0] if unit else "b").lower())
          if scale is not None and int(number) >= 0:
            return int(number) * scale, "available host memory"
  except (OSError, ValueError, UnicodeDecodeError):
    pass
  try:
    import psutil
    return int(psutil.virtual_memory().available), "available host memory"
  except Exception:   # not installed, or no reading on this platform
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host memory (total)"


def available_bytes(device=None) -> tuple[int, str]:
  """``(bytes, what)``: the memory a population can still take: the accelerator's limit less
  what is in use, or the host's available memory on CPU (:func:`available_host_bytes`)."""
  device = device or jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
      free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
      return max(free, 0), f"available {device.device_kind} memory"
  return available_host_bytes()


def memory_limit_bytes(fraction: float, device=None, *, host: bool = False) -> tuple[int, str]:
  """``(fraction x available memory, what it is a share of)``: the accelerator's memory not in
  use, or the host's available memory (on CPU, or with ``host``: numpy work on the host)."""
  total, what = available_host_bytes() if host else available_bytes(device)
  return int(fraction * total), f"{total / 2**30:.1f} GiB {what}"


def run_population(pop: Population, key, cache: stages.StageCache, *, n_audit: int,
                   chunk_size: int, mesh=None, progress: bool = True) -> dict:
  """All members of ``pop``, chunk by chunk; finished chunks are restored, not rerun.

  Args:
    pop: the population.
    key: the population's key; member ``i`` gets ``fold_in(key, i)``.
    cache: where the chunks are saved (``WORKDIR/checkpoints``).
    n_audit: number of audited examples (phi's second axis).
    chunk_size: members per compiled call (and per checkpoint).
    mesh: the devices the model axis is split over (default: all).
    progress: a progress bar over the chunks.

  Returns:
    dict of numpy arrays with leading axis N: ``phi`` ``[N, n_audit]``,
    ``remain_acc``, ``test_acc`` (and ``params`` / ``batch_stats``), plus
    ``chunks_reused``, the number of chunks restored from disk.
  """
  if pop.size < 1:
    raise ConfigError(f"population {pop.name!r} needs at least 1 member, got {pop.size}")
  if chunk_size < 1:
    raise ConfigError(f"audit.chunk_size must be a positive integer, got {chunk_size}")
  mesh = parallel.make_mesh() if mesh is None else mesh
  chunk_size = balanced_chunk(pop.size, chunk_size)
  n_chunks = -(-pop.size // chunk_size)
  axes = (0,) + (0,) * len(pop.mapped) + (None,) * len(pop.shared)
  if pop.driver == "loop":
    single = _single(pop.member)

    def fn(chunk_keys, *args):
      mapped = args[:len(pop.mapped)]
      outs = [single(chunk_keys[j], *jax.tree.map(lambda a: a[j], mapped), *pop.shared)
              for j in range(chunk_keys.shape[0])]
      return jax.tree.map(lambda *a: jnp.stack(a), *outs)
  else:
    fn = _sharded(pop.member, mesh, axes)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(pop.size))
  bar = None
  if progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=n_chunks, desc=f"{pop.name:>24}", unit="chunk")
  parts, reused = [], 0
  for c in range(n_chunks):
    lo, hi = c * chunk_size, min((c + 1) * chunk_size, pop.size)
    # Every chunk has chunk_size rows (the last one padded), so one compile serves all.
    rows = np.minimum(np.arange(lo, lo + chunk_size), pop.size - 1)
    stage = member_stage(pop, c, chunk_size)

    def build(rows=rows, hi=hi, lo=lo):
      mapped = jax.tree.map(lambda a: a[rows], pop.mapped)
      out = fn(keys[rows], *mapped, *pop.shared)
      out = jax.tree.map(lambda a: np.asarray(a)[: hi - lo], parallel.to_host(out))
      return out, {"population": pop.name, "members": [lo, hi], "spec": pop.spec}

    def check(out):
      probed = tuple(f"phi_{name}" for name, _, _ in pop.probes)
      if not all(np.all(np.isfinite(out[k])) for k in ("phi", *dict(pop.fields), *probed)):
        raise ConfigError(f"population {pop.name!r}: a member's phi is not finite; lower the "
                          "learning rates")

    tree, _, was_saved = cache.load_or_build(
        stage, build, lambda hi=hi, lo=lo: _abstract_record(pop, hi - lo, n_audit), check=check)
    reused += int(was_saved)
    if not was_saved:
      pause_point_after_chunk(pop, c, stage)
    parts.append(jax.tree.map(np.asarray, tree))
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  out = jax.tree.map(lambda *a: np.concatenate(a), *parts)
  out["chunks_reused"] = reused
  return out


# --- members ------------------------------------------------------------------------------


_MEMBERS: dict = {}


def cached_member(cache_key: tuple, make: Callable[[], Callable]) -> Callable:
  """The member function under ``cache_key``, ``make()`` the first time in a process.

  Compiled code is cached per member function (:func:`run_population`), so
  populations (and audits) whose members share a key, e.g. the same model,
  recipe, row counts and record schema, compile once. The key must hold
  everything the member's code depends on.
  """
  if cache_key not in _MEMBERS:
    _MEMBERS[cache_key] = make()
  return _MEMBERS[cache_key]


def train_member(model, optimizer, input_shape, *, epochs: int, batch_size: int,
                 keep_params: bool = False, fields: dict | None = None) -> Callable:
  """``member(key, rows, x_all, y_all, data) -> record``: trains from scratch on ``x_all[rows]``."""
  train = train_lib.make_train_fn(model, optimizer, input_shape, epochs=epochs,
                                  batch_size=batch_size)

  def member(key, rows, x_all, y_all, data: EvalData):
    state, _ = train(key, x_all[rows], y_all[rows])
    out = member_record(train_lib.eval_apply_fn(model, state.batch_stats), state.params, data,
                        fields)
    if keep_params:
      out["params"], out["batch_stats"] = state.params, state.batch_stats
    return out
  return member


REFERENCE_MODES = ("draw", "rows", "given")


@dataclasses.dataclass(frozen=True)
class ReferenceSettings:
  """How each member of an unlearning population gets its reference model.

  ``mode``:

  * ``draw``: D_s (``size`` rows) drawn from the member's D_r with its key,
    then trained (``reference.source=remain``: each request draws its own);
  * ``rows``: trained with the member's key on fixed rows, the member's
    ``reference`` argument (``holdout``, runs that stand for other work dirs);
  * ``given``: one trained reference for every member, the ``reference``
    argument ``(params, batch_stats)`` (``holdout``: every request of one work
    dir reuses its reference).
  """
  mode: str
  size: int
  epochs: int
  optimizer: Any              # optax optimizer of the reference's training
  batch_size: int


def unlearn_member(model, input_shape, plan, *, n_forget: int, n_remain: int,
                   reference: ReferenceSettings | None = None,
                   fields: dict | None = None) -> Callable:
  """``member(key, params, batch_stats, f_rows, r_rows, x_all, y_all, heldout, reference, data,
  teacher=None) -> record``.

  One whole unlearning run of ``plan`` (:class:`jaxunlearn.plan.UnlearnPlan`)
  from ``params`` with D_f = ``x_all[f_rows]`` and D_r = ``x_all[r_rows]``. A
  method that uses a reference model gets it as ``reference.mode`` says
  (:class:`ReferenceSettings`). ``heldout`` is ``(x, y)`` or ``()`` for methods
  that ask for held-out examples; ``teacher`` is ``{input field: array}`` for methods that read
  one (the same D_f for every member: :func:`jaxunlearn.attribution.request_teacher`).
  """
  ref_train = None
  if plan.needs_reference:
    if reference is None or reference.mode not in REFERENCE_MODES:
      raise ConfigError(f"method {plan.name!r} needs reference settings with a mode in "
                        f"{REFERENCE_MODES}")
    if reference.mode != "given":
      ref_train = train_lib.make_train_fn(model, reference.optimizer, input_shape,
                                          epochs=reference.epochs,
                                          batch_size=min(reference.batch_size, reference.size))

  def member(key, params, batch_stats, f_rows, r_rows, x_all, y_all, heldout, ref_arg,
             data: EvalData, teacher=None):
    apply_fn = train_lib.eval_apply_fn(model, batch_stats)
    ref_key, run_key = jax.random.split(key)
    x_f, x_r = x_all[f_rows], x_all[r_rows]
    reference_probs = None
    if plan.needs_reference:
      if reference.mode == "given":
        ref_params, ref_stats = ref_arg
      else:
        s_key, t_key = jax.random.split(ref_key)
        ds = (jax.random.choice(s_key, r_rows, (reference.size,), replace=False)
              if reference.mode == "draw" else ref_arg)
        ref_state, _ = ref_train(t_key, x_all[ds], y_all[ds])
        ref_params, ref_stats = ref_state.params, ref_state.batch_stats
      ref_apply = train_lib.eval_apply_fn(model, ref_stats)
      reference_probs = lambda x: jax.nn.softmax(ref_apply(ref_params, x), -1)  # noqa: E731
    inputs = plan.build_inputs(x_forget=x_f, y_forget=y_all[f_rows], x_remain=x_r,
                               y_remain=y_all[r_rows], heldout=heldout,
                               original_logits=lambda x: apply_fn(params, x),
                               reference_probs=reference_probs, teacher=teacher)
    run = plan.make_fn(apply_fn, model=model, input_shape=input_shape, batch_stats=batch_stats,
                       n_forget=n_forget, n_remain=n_remain)
    new, _ = run(params, inputs, run_key, plan.hparam_arrays())
    if run.bn_train:
      new, apply_fn = new["params"], train_lib.eval_apply_fn(model, new["batch_stats"])
    return member_record(apply_fn, new, data, fields)
  return member


def save_phi(out_dir, name: str, phi: np.ndarray, **masks) -> None:
  """Writes ``<out_dir>/<name>.npy`` (phi, ``[N, n]``) and ``<name>.masks.npz``."""
  from jaxunlearn import workdir as workdir_lib
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  workdir_lib.atomic_write(out_dir / f"{name}.npy", lambda f: np.save(f, np.asarray(phi)))
  workdir_lib.atomic_write(out_dir / f"{name}.masks.npz", lambda f: np.savez(
      f, **{k: np.asarray(v) for k, v in masks.items()}))
