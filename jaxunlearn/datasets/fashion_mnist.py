"""``fashion_mnist``: 60,000 training and 10,000 test images, 28x28, 10 classes.

Resolved, in order, to:

1. a prepared tfds copy (``tfds build fashion_mnist --file_format=array_record``,
   in ``--config.data_dir`` or tfds's default folder);
2. the folder of Debian's ``dataset-fashion-mnist`` package,
   :data:`DEBIAN_DIR`, read as ``idx:`` (:mod:`jaxunlearn.datasets.idx`);
3. otherwise a one-line refusal naming both ways to get the data.

Both sources give the images in the IDX files' order: tfds's builder yields
item ``i`` of each IDX file under the key ``i``, and its writer stores the
records sorted by an MD5 of the split's name and the key
(``tensorflow_datasets/core/hashing.py``); :func:`idx_order` recomputes that
order and the tfds copy is put back into the files' order. So both sources
give the same arrays, the same content hash, and the same D_f for a seed.
``Dataset.source`` (``results.json``'s ``data_source``) says which one served.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from jaxunlearn import data
from jaxunlearn.datasets import idx
from jaxunlearn.errors import DataError

NAME = "fashion_mnist"
NUM_CLASSES = 10
# Where ``apt-get install dataset-fashion-mnist`` puts the four IDX files (gzip).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_order(split: str, n: int) -> np.ndarray:
  """Which IDX item each record of a tfds split stored in tfds's default order holds.

  Args:
    split: the tfds split's name (``"train"``, ``"test"``), the hash's salt.
    n: the number of records.

  Returns:
    ``order`` with record ``j`` of the tfds split = item ``order[j]`` of the IDX file.
  """
  salt = hashlib.md5(split.encode())

  def hkey(i: int) -> bytes:
    h = salt.copy()
    h.update(str(i).encode())
    # Big-endian digests of one length sort as tfds's 128-bit integers do.
    return h.digest()

  return np.array(sorted(range(n), key=hkey), dtype=np.int64)


def _in_idx_order(split: str, a: np.ndarray, shuffled: bool) -> np.ndarray:
  if not shuffled:
    return a
  out = np.empty_like(a)
  out[idx_order(split, a.shape[0])] = a
  return out


@data.register(NAME)
def _load_fashion_mnist(source: data.Source) -> data.Dataset:
  """Fashion-MNIST, 60,000 / 10,000: a prepared tfds copy, else Debian's dataset-fashion-mnist."""
  try:
    a = data.read_tfds(NAME, source.data_dir)
  except data.TfdsUnavailable as e:
    tfds_reason = e.reason
  else:
    return data.from_arrays(
        _in_idx_order("train", a.x_train, a.shuffled),
        _in_idx_order("train", a.y_train, a.shuffled),
        _in_idx_order("test", a.x_test, a.shuffled),
        _in_idx_order("test", a.y_test, a.shuffled),
        name=NAME, num_classes=a.num_classes, source=f"tfds:{a.data_dir}")
  if DEBIAN_DIR.is_dir():
    return idx.load_dir(DEBIAN_DIR, name=NAME, num_classes=NUM_CLASSES)
  raise DataError(
      f"dataset {NAME!r} is not on this machine (tfds: {tfds_reason}; no {DEBIAN_DIR}); "
      "install Debian's copy with `apt-get install dataset-fashion-mnist`, or prepare the tfds "
      f"copy once with `tfds build {NAME} --file_format=array_record` (needs TensorFlow and "
      "internet) and pass --config.data_dir if it is not in tfds's default folder")
