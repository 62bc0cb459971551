"""The IDX format (MNIST, Fashion-MNIST, KMNIST, EMNIST) and the ``idx:DIR`` dataset.

An IDX file is a big-endian header, then the items as raw bytes: a magic
number whose third byte is the item type (0x08: unsigned byte) and whose
fourth is the number of dimensions, then one 32-bit size per dimension. Images
are ``0x00000803`` (count, rows, columns), labels ``0x00000801`` (count).
Files may be gzip-compressed. Pure NumPy and :mod:`gzip`; no TensorFlow.

``idx:DIR`` reads the four files of one set in DIR, found by pattern, exactly
one per role (:data:`ROLES`); EMNIST's prefixed names
(``emnist-balanced-train-images-idx3-ubyte.gz``) match. Items come in the
files' order. Every problem is refused in one line naming the file.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from jaxunlearn import data
from jaxunlearn.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_HEADER = {IMAGES_MAGIC: 16, LABELS_MAGIC: 8}

# role -> the pattern its file matches (with or without ``.gz``), in the order they are read.
ROLES = {
    "train images": "*train-images-idx3-ubyte",
    "train labels": "*train-labels-idx1-ubyte",
    "test images": "*t10k-images-idx3-ubyte",
    "test labels": "*t10k-labels-idx1-ubyte",
}


def find_files(directory: str | os.PathLike) -> dict[str, Path]:
  """The file of each role in ``directory``.

  Returns:
    ``{role: path}`` for every role of :data:`ROLES`.

  Raises:
    DataError: ``directory`` is not a folder, or a role has no file or more than one.
  """
  directory = Path(directory)
  if not directory.is_dir():
    what = "is not a folder" if directory.exists() else "does not exist"
    raise DataError(f"idx:{directory} {what}; give the folder holding the four IDX files "
                    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
  names = sorted(p.name for p in directory.iterdir() if p.is_file())
  found = {}
  for role, pattern in ROLES.items():
    matches = [n for n in names
               if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, pattern + ".gz")]
    if not matches:
      raise DataError(f"idx:{directory} has no {role} file ({pattern}[.gz]); give the folder "
                      "holding all four IDX files of one set")
    if len(matches) > 1:
      raise DataError(f"idx:{directory} has {len(matches)} {role} files "
                      f"({', '.join(matches)}); keep one set per folder and point idx: at it")
    found[role] = directory / matches[0]
  return found


def read(path: str | os.PathLike, magic: int) -> np.ndarray:
  """Reads one IDX file of unsigned bytes, gzip-compressed or raw.

  Args:
    path: the file.
    magic: :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`, what the file must be.

  Returns:
    uint8 array, ``(count, rows, columns)`` for images, ``(count,)`` for labels.

  Raises:
    DataError: unreadable, a wrong magic number, a zero size, or not exactly the bytes its header
      says (truncated, or with bytes after the last item).
  """
  path = Path(path)
  what = "images" if magic == IMAGES_MAGIC else "labels"
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except EOFError:
    raise DataError(f"{path} is truncated: its gzip stream ends early; fetch the file "
                    "again") from None
  except (OSError, zlib.error) as e:
    raise DataError(f"cannot read {path} ({type(e).__name__}: {e}); fetch the file "
                    "again") from None
  size = _HEADER[magic]
  if len(raw) < size:
    raise DataError(f"{path} is truncated: {len(raw)} bytes, fewer than an IDX {what} header's "
                    f"{size}; fetch the file again")
  found = int.from_bytes(raw[:4], "big")
  if found != magic:
    raise DataError(f"{path} has magic number 0x{found:08x}, not 0x{magic:08x} (IDX {what}: "
                    f"unsigned bytes, {size // 4 - 1} dimension(s)); is it the {what} file of an "
                    "IDX set?")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", size // 4 - 1, 4))
  if 0 in shape:
    raise DataError(f"{path} declares {what} of shape {shape}, which holds nothing; fetch the "
                    "file again")
  expected = size + int(np.prod(shape))
  if len(raw) < expected:
    raise DataError(f"{path} is truncated: its header declares {shape[0]} {what} "
                    f"({expected} bytes in all) but it holds {len(raw)} bytes; fetch the file "
                    "again")
  if len(raw) > expected:
    raise DataError(f"{path} holds {len(raw) - expected} byte(s) after the {shape[0]} {what} "
                    "its header declares; is it an IDX file?")
  return np.frombuffer(raw, np.uint8, expected - size, size).reshape(shape)


def read_set(directory: str | os.PathLike, num_classes: int = 0) -> dict:
  """Reads and checks the four files of one IDX set in ``directory``.

  Args:
    directory: the folder (:func:`find_files`).
    num_classes: the number of classes (0: the training labels' largest plus one).

  Returns:
    ``{"x_train", "y_train", "x_test", "y_test", "num_classes"}``: uint8 images
    ``(N, rows, columns)`` and uint8 labels, in the files' order.

  Raises:
    DataError: one line naming the file: a bad file (:func:`read`), images and labels of
      different counts, test images of another size than the training images, a label out of
      range, or a class no training label has.
  """
  files = find_files(directory)
  x_train = read(files["train images"], IMAGES_MAGIC)
  y_train = read(files["train labels"], LABELS_MAGIC)
  x_test = read(files["test images"], IMAGES_MAGIC)
  y_test = read(files["test labels"], LABELS_MAGIC)
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    if x.shape[0] != y.shape[0]:
      raise DataError(f"{files[split + ' labels']} holds {y.shape[0]} labels but "
                      f"{files[split + ' images'].name} holds {x.shape[0]} images; the two "
                      "files are of different sets")
  if x_test.shape[1:] != x_train.shape[1:]:
    raise DataError(f"{files['test images']} holds {x_test.shape[1]}x{x_test.shape[2]} images "
                    f"but {files['train images'].name} holds {x_train.shape[1]}x"
                    f"{x_train.shape[2]}; the two files are of different sets")
  declared = bool(num_classes)
  num_classes = int(num_classes) or int(y_train.max()) + 1
  for split, y in (("train", y_train), ("test", y_test)):
    bad = np.flatnonzero(y >= num_classes)
    if bad.size:
      why = (f"for num_classes={num_classes}" if declared else
             f"of the {num_classes} classes the training labels make (0..{num_classes - 1})")
      raise DataError(f"{files[split + ' labels']} holds label {int(y[bad[0]])} (item "
                      f"{int(bad[0])}, {bad.size} such), out of range {why}; fix the labels "
                      "or set --config.num_classes")
  if not declared:
    missing = np.setdiff1d(np.arange(num_classes), y_train)
    if missing.size:
      raise DataError(f"{files['train labels']} makes {num_classes} classes (largest label "
                      f"{num_classes - 1}) but no item has the labels {missing[:8].tolist()}; "
                      "fix the stray labels or say how many classes there are with "
                      "--config.num_classes")
  return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
          "num_classes": num_classes}


def load_dir(directory: str | os.PathLike, *, name: str, num_classes: int = 0,
             input_scale: float = 0.0) -> data.Dataset:
  """The IDX set in ``directory`` as a :class:`~jaxunlearn.data.Dataset` (source ``idx:DIR``)."""
  arrays = read_set(directory, num_classes)
  return data.from_arrays(
      arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], name=name,
      num_classes=arrays["num_classes"], input_scale=input_scale,
      source=f"idx:{Path(directory).absolute()}")


@data.register("idx", takes_argument=True, metavar="DIR",
               example="idx:/usr/share/datasets/fashion-mnist")
def _load_idx(source: data.Source) -> data.Dataset:
  """Four IDX files (MNIST's format: MNIST, Fashion-MNIST, KMNIST, EMNIST) in a folder."""
  if not source.argument.strip():
    raise DataError("idx: needs a folder, e.g. idx:/usr/share/datasets/fashion-mnist")
  return load_dir(source.argument, name=f"idx:{source.argument}",
                  num_classes=source.num_classes, input_scale=source.input_scale)
