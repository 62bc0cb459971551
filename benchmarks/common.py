"""Shared helpers of the benchmark scripts: synthetic data, machine line, cache, outputs."""

from __future__ import annotations

import datetime
import json
import platform
import tempfile
from pathlib import Path

import jax
import numpy as np

SHAPES = {"mnist": (28, 28, 1), "cifar": (32, 32, 3)}


def synthetic(kind: str, n: int, n_test: int = 1000, num_classes: int = 10, seed: int = 0):
  """Random images of a real dataset's shape, with learnable labels.

  Labels depend on the mean brightness of each image's left half, so a model
  can learn them and the forget/retrain losses behave like real data.
  """
  from jaxunlearn import data
  shape = SHAPES[kind]
  rng = np.random.default_rng(seed)
  x = rng.random((n + n_test, *shape), dtype=np.float32)
  score = x[:, :, : shape[1] // 2].mean(axis=(1, 2, 3))
  y = np.digitize(score, np.quantile(score, np.linspace(0, 1, num_classes + 1)[1:-1]))
  return data.from_arrays(x[:n], y[:n], x[n:], y[n:], name=f"synthetic_{kind}",
                          num_classes=num_classes)


def load(name: str):
  """``synthetic:mnist:60000``, ``synthetic:cifar:50000`` or any ``data.load`` name."""
  if name.startswith("synthetic:"):
    _, kind, n = name.split(":")
    return synthetic(kind, int(n))
  from jaxunlearn import data
  return data.load(name)


def machine() -> str:
  """One line: backend, devices (:func:`jaxunlearn.results.environment`), host CPU and cores."""
  from jaxunlearn import results
  env = results.environment()
  cpu = platform.processor() or platform.machine()
  return (f"{env['backend']}: {env['device_count']} x {env['device']} (host {cpu}, "
          f"{_cores()} cores)")


def _cores() -> int:
  import os
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def today() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def versions() -> str:
  import flax
  import optax
  return f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"


def enable_compile_cache() -> str:
  """Persistent compilation cache in a temp dir, so repeats skip recompiling.

  A cache already configured (``JAX_COMPILATION_CACHE_DIR``; the test suite sets one
  per session) is kept as it is, so a script called in process does not move it.
  """
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  d = tempfile.mkdtemp(prefix="jaxunlearn-cc-")
  jax.config.update("jax_compilation_cache_dir", d)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return d


class Cfg(dict):
  """A dict with attribute access: stands in for a ConfigDict (no ml_collections needed)."""
  __getattr__ = dict.__getitem__


def markdown_table(header, rows) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def write_outputs(out, name: str, result, text: str = "") -> Path | None:
  """Writes a benchmark's outputs into the folder ``out``: ``<name>.json`` (``result``) and,
  when ``text`` is given, ``<name>.md``. Every benchmark with an ``--out`` writes through
  here. Does nothing when ``out`` is empty; returns the folder.
  """
  if not out:
    return None
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
  if text:
    (out / f"{name}.md").write_text(text.rstrip("\n") + "\n")
  return out
