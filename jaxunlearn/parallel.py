"""Device meshes and shardings.

Data parallelism is ``jax.jit`` over a :class:`jax.sharding.Mesh` with one
``'data'`` axis: batches are split over devices with ``P('data')`` and the
train state is replicated with ``P()``; XLA inserts the gradient all-reduce.
The same code runs on one CPU, several forced CPU devices, a GPU or a pod
slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxunlearn.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with a ``'data'`` axis over ``devices`` (all devices, all hosts by default)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch: leading axis split over the ``'data'`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of a replicated array (parameters, optimizer state)."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """Raises ConfigError unless ``batch_size`` divides evenly over the mesh."""
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(
        f"{what} {batch_size} does not divide over {n} devices; choose a "
        f"multiple of {n} (e.g. {max(n, batch_size - batch_size % n)})")


def replicate(tree, mesh: Mesh):
  """Places every leaf of ``tree`` on all devices of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def shard_batch(x, mesh: Mesh):
  """Splits ``x`` over the ``'data'`` axis (no-op constraint on one device)."""
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))
