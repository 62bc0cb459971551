"""Device meshes, shardings and multi-process start-up.

Data parallelism is ``jax.jit`` over a :class:`jax.sharding.Mesh` with one
``'data'`` axis: batches are split over devices with ``P('data')`` and the
train state is replicated with ``P()``; XLA inserts the gradient all-reduce.
The same code runs on one CPU, several forced CPU devices, a GPU or a pod
slice; nothing in the config is device-specific.

Uneven sizes:

* a training or unlearning batch that does not divide over the devices is an
  error (:func:`check_batch_size`): padding it would change the gradient, so
  the user picks a size;
* evaluation batches (``train.predict``) are padded up to a multiple of the
  device count and the padded rows are dropped from the output;
* a stack of K models (:func:`vmap_sharded`) is padded up to a multiple of the
  device count by repeating the last model's inputs, and the extra models are
  dropped from the output (``pad=False`` makes it an error instead).

Multi-process (several hosts, or a pod slice): call
:func:`initialize_distributed` before anything touches a device. Every process
runs the same program on the same data; small datasets live on every device
whole and batches are gathered on-device by index, so training needs no
per-step host input. Host-fed batches (evaluation) are built with
:func:`global_batch`: each process transfers only the rows its own devices
hold (``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxunlearn.errors import ConfigError

__all__ = ["DATA_AXIS", "make_mesh", "num_devices", "batch_sharding", "replicated",
           "check_batch_size", "padded_size", "put", "replicate", "shard", "shard_batch", "jit",
           "local_rows", "global_batch", "to_host", "vmap_sharded", "distributed_settings",
           "initialize_distributed"]

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with a ``'data'`` axis.

  Args:
    devices: the devices to use, in mesh order. ``None`` means every device
      of every process, ordered by :func:`jax.make_mesh` (topology-aware on
      TPU slices).
  """
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))
  devices = list(devices)
  if not devices:
    raise ConfigError("make_mesh() got an empty device list; pass at least one device")
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def num_devices(mesh: Mesh) -> int:
  return int(mesh.devices.size)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch: leading axis split over the ``'data'`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of a replicated array (parameters, optimizer state)."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """Raises ConfigError unless ``batch_size`` divides evenly over the mesh."""
  n = num_devices(mesh)
  if batch_size % n:
    raise ConfigError(
        f"{what} {batch_size} does not divide over {n} devices; choose a "
        f"multiple of {n} (e.g. {max(n, batch_size - batch_size % n)})")


def padded_size(size: int, mesh: Mesh) -> int:
  """``size`` rounded up to a multiple of the mesh's device count."""
  n = num_devices(mesh)
  return -(-int(size) // n) * n


def _is_key(a) -> bool:
  return isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def put(tree, sharding: NamedSharding):
  """Places every leaf of ``tree`` with ``sharding``.

  Every process must pass the same values (the whole array, not its own
  part). Typed PRNG keys are moved as their raw data, which also works when
  the sharding spans other processes' devices.
  """
  def one(a):
    if _is_key(a):
      data = jax.device_put(jax.random.key_data(a), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    return jax.device_put(a, sharding)
  return jax.tree.map(one, tree)


def replicate(tree, mesh: Mesh):
  """Places every leaf of ``tree`` on all devices of ``mesh``."""
  return put(tree, replicated(mesh))


def shard(tree, mesh: Mesh):
  """Splits the leading axis of every leaf of ``tree`` over the ``'data'`` axis."""
  return put(tree, batch_sharding(mesh))


def shard_batch(x, mesh: Mesh):
  """Inside a jitted function: splits ``x`` over the ``'data'`` axis."""
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def jit(fn: Callable, mesh: Mesh | None, *, in_shardings=None, out_shardings=None,
        donate_argnums=(), static_argnums=()) -> Callable:
  """``jax.jit`` over ``mesh`` with explicit shardings.

  Inputs and outputs default to replicated; batches are split inside ``fn``
  with :func:`shard_batch`. With ``mesh=None`` this is a plain ``jax.jit``.
  """
  if mesh is None:
    return jax.jit(fn, donate_argnums=donate_argnums, static_argnums=static_argnums)
  rep = replicated(mesh)
  return jax.jit(fn, in_shardings=rep if in_shardings is None else in_shardings,
                 out_shardings=rep if out_shardings is None else out_shardings,
                 donate_argnums=donate_argnums, static_argnums=static_argnums)


def local_rows(num_rows: int, mesh: Mesh) -> np.ndarray:
  """Indices of the rows of a ``num_rows`` batch that this process's devices hold."""
  index_map = batch_sharding(mesh).addressable_devices_indices_map((num_rows,))
  starts = sorted({(s[0].start or 0, s[0].stop if s[0].stop is not None else num_rows)
                   for s in index_map.values()})
  return np.concatenate([np.arange(lo, hi) for lo, hi in starts])


def global_batch(x, mesh: Mesh) -> jax.Array:
  """A batch split over the ``'data'`` axis, fed by every process.

  Args:
    x: the whole batch (leading axis divisible by the device count); every
      process passes the same rows and transfers only the ones its own
      devices hold.
  """
  n = int(x.shape[0])
  check_batch_size(n, mesh, "global batch")
  local = np.asarray(x[local_rows(n, mesh)])
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local, x.shape)


def to_host(tree):
  """Numpy copies of every leaf, on every process (gathered across hosts if needed)."""
  def one(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree.map(one, tree)


def _pad_rows(a, k: int, k_pad: int):
  if k_pad == k:
    return a
  rows = np.concatenate([np.arange(k), np.full(k_pad - k, k - 1)])
  return a[rows]


def vmap_sharded(fn: Callable, mesh: Mesh | None = None, *, in_axes: int | None |
                 Sequence[int | None] = 0, pad: bool = True) -> Callable:
  """``jax.vmap(fn, in_axes)`` with the mapped (model) axis split over devices.

  Meant for many independent models at once, e.g. shadow models::

    train = train_lib.make_train_fn(model, opt, shape, epochs=5, batch_size=32)
    states, losses = vmap_sharded(train, mesh)(keys, xs, ys)   # K models

  Each device runs ``jax.vmap(fn)`` over its own ``K / N`` models
  (``shard_map``, so no data moves between devices); outputs keep the model
  axis sharded with ``P('data')``.

  Args:
    fn: a pure function of positional array arguments.
    mesh: the mesh (default: all devices).
    in_axes: per positional argument, ``0`` (mapped: leading axis is the
      model axis) or ``None`` (shared by all models, replicated); one value
      applies to every argument.
    pad: if K does not divide over the devices, repeat the last model's
      inputs up to the next multiple and drop the extra outputs. ``False``
      raises ConfigError instead.

  Returns:
    ``run(*args)`` returning ``jax.vmap(fn, in_axes)(*args)``.
  """
  mesh = make_mesh() if mesh is None else mesh
  n = num_devices(mesh)
  cache: dict[tuple, Callable] = {}

  def compiled(axes):
    if axes not in cache:
      specs = tuple(P(DATA_AXIS) if ax == 0 else P() for ax in axes)
      body = jax.shard_map(jax.vmap(fn, in_axes=axes), mesh=mesh, in_specs=specs,
                           out_specs=P(DATA_AXIS), check_vma=False)
      cache[axes] = jax.jit(body, in_shardings=tuple(NamedSharding(mesh, s) for s in specs),
                            out_shardings=batch_sharding(mesh))
    return cache[axes]

  def prepare(*args):
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    if len(axes) != len(args) or any(ax not in (0, None) for ax in axes):
      raise ConfigError(f"vmap_sharded: in_axes must be 0 or None for each of the {len(args)} "
                        f"arguments, got {in_axes!r}")
    sizes = {int(leaf.shape[0]) for a, ax in zip(args, axes) if ax == 0
             for leaf in jax.tree.leaves(a)}
    if len(sizes) != 1:
      raise ConfigError(f"vmap_sharded: mapped arguments need one common leading (model) "
                        f"axis size, got {sorted(sizes) or 'no mapped argument'}")
    k = sizes.pop()
    k_pad = padded_size(k, mesh)
    if k_pad != k and not pad:
      raise ConfigError(f"{k} models do not divide over {n} devices; use a multiple of {n} "
                        f"or pad=True")
    placed = []
    for a, ax in zip(args, axes):
      if ax == 0:
        placed.append(shard(jax.tree.map(lambda x: _pad_rows(x, k, k_pad), a), mesh))
      else:
        placed.append(replicate(a, mesh))
    return axes, placed, k, k_pad

  def trim(out, k, k_pad):
    return jax.tree.map(lambda x: x[:k], out) if k_pad != k else out

  def run(*args):
    axes, placed, k, k_pad = prepare(*args)
    return trim(compiled(axes)(*placed), k, k_pad)

  def compile_for(*args) -> Callable:
    """Compiles for arguments of these shapes; returns ``call(*args)`` that runs it
    (so compilation can be timed apart from the run)."""
    axes, placed, _, _ = prepare(*args)
    exe = compiled(axes).lower(*placed).compile()

    def call(*args):
      _, placed, k, k_pad = prepare(*args)
      return trim(exe(*placed), k, k_pad)
    return call

  run.compile = compile_for
  return run


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
  value = environ.get(name, "")
  if not value:
    return default
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def distributed_settings(parallel_cfg, environ: Mapping[str, str] | None = None
                         ) -> dict[str, Any] | None:
  """Arguments for ``jax.distributed.initialize``, or None for a single process.

  Config fields win; empty ones fall back to the environment variables
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``;
  what is still unset is left to JAX's own cluster detection (Cloud TPU,
  SLURM, Open MPI, Kubernetes). Multi-process starts when
  ``parallel.distributed`` is True or a coordinator address is given.

  Args:
    parallel_cfg: the ``config.parallel`` block (or a full config holding it).
    environ: the environment (default ``os.environ``).

  Raises:
    ConfigError: inconsistent settings.
  """
  environ = os.environ if environ is None else environ
  p = parallel_cfg if "distributed" in parallel_cfg else parallel_cfg.get("parallel")
  if p is None:
    return None
  address = p.coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS", "")
  num = p.num_processes or _env_int(environ, "JAX_NUM_PROCESSES", 0)
  pid = p.process_id if p.process_id >= 0 else _env_int(environ, "JAX_PROCESS_ID", -1)
  if not (p.distributed or address):
    return None
  if num < 0:
    raise ConfigError(f"parallel.num_processes must be >= 0 (0: detect), got {num}")
  if pid < -1:
    raise ConfigError(f"parallel.process_id must be >= 0 (-1: detect), got {pid}")
  if num and pid >= num:
    raise ConfigError(f"parallel.process_id {pid} is out of range for {num} processes; "
                      f"use 0..{num - 1}")
  if address and ":" not in address:
    raise ConfigError(f"parallel.coordinator_address {address!r} needs a port, e.g. "
                      f"'{address}:1234'")
  return {"coordinator_address": address or None, "num_processes": num or None,
          "process_id": pid if pid >= 0 else None}


def initialize_distributed(parallel_cfg, environ: Mapping[str, str] | None = None) -> bool:
  """Starts multi-process JAX if the config or environment asks for it.

  Must run before anything touches a device (the CLI calls it first).

  Returns:
    Whether this is a multi-process run.

  Raises:
    ConfigError: bad settings, or JAX could not start (one line).
  """
  settings = distributed_settings(parallel_cfg, environ)
  if settings is None:
    return False
  if jax.distributed.is_initialized():
    return True
  try:
    jax.distributed.initialize(**settings)
  except (RuntimeError, ValueError) as e:
    msg = " ".join(str(e).split())[:300]
    raise ConfigError(
        f"cannot start multi-process JAX ({msg}); check parallel.coordinator_address, "
        f"parallel.num_processes and parallel.process_id (or JAX_COORDINATOR_ADDRESS, "
        f"JAX_NUM_PROCESSES, JAX_PROCESS_ID)") from None
  return True
