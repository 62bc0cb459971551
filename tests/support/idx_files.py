"""Small IDX file sets (MNIST's format) written by tests: four files, gz or raw."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def write(path, array, magic: int | None = None) -> Path:
  """One IDX file of unsigned bytes; gzip-compressed when ``path`` ends in ``.gz``."""
  path, array = Path(path), np.asarray(array, np.uint8)
  magic = 0x00000800 + array.ndim if magic is None else magic
  raw = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  raw += array.tobytes()
  path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
  return path


def make_arrays(n_train: int = 40, n_test: int = 20, size=(6, 5), num_classes: int = 10,
                seed: int = 0) -> dict:
  """uint8 images and labels with every class in the training labels."""
  rng = np.random.default_rng(seed)
  return {"x_train": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
          "y_train": rng.permutation(np.arange(n_train) % num_classes).astype(np.uint8),
          "x_test": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
          "y_test": (np.arange(n_test) % num_classes).astype(np.uint8)}


def write_set(directory, arrays: dict | None = None, *, gz: bool = True,
              prefix: str = "") -> dict[str, Path]:
  """The four files of one set in ``directory``: ``{"x_train": path, ...}``."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  arrays = make_arrays() if arrays is None else arrays
  suffix = ".gz" if gz else ""
  return {key: write(directory / f"{prefix}{name}{suffix}", arrays[key])
          for key, name in NAMES.items()}
