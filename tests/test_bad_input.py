"""Bad input everywhere a user can reach it: one clear line, exit 2, workdir untouched.

Most rows call ``jaxunlearn.cli.main`` in-process (a subprocess costs seconds
of imports); a few run the real program. Every row runs twice: against a
work directory that does not exist yet (it must still not exist) and against
a copy of a finished run (it must be byte-for-byte unchanged). Index files
and arrays are also fuzzed with hypothesis through the API.
"""

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from jaxunlearn import cli, data, pipeline, splits
from jaxunlearn.errors import (ConfigError, DataError, JaxUnlearnError, SplitError,
                               WorkdirError)
from tests.support import tiny

N = tiny.N_TRAIN


@dataclasses.dataclass
class Case:
  id: str
  # setup(tmp, npz) -> extra CLI arguments (after run --config --workdir --config.dataset)
  setup: Callable
  match: str                      # expected in the error line
  error: type | None = None       # the API exception (pipeline.run), if reachable there
  workdir: Callable | None = None  # tmp -> work directory, for the workdir rows


def _flags(*args):
  return lambda tmp, npz: list(args)


def _index_file(name, content: bytes | str | np.ndarray):
  def setup(tmp, npz):
    path = tmp / name
    if isinstance(content, np.ndarray):
      np.save(path, content)
    else:
      path.write_bytes(content.encode() if isinstance(content, str) else content)
    return ["--config.forget.mode=indices", f"--config.forget.index_file={path}"]
  return setup


def _npz(**arrays):
  def setup(tmp, npz):
    path = tmp / "bad.npz"
    base = dict(zip(("x_train", "y_train", "x_test", "y_test"), tiny.make_arrays()))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return [f"--config.dataset=npz:{path}"]
  return setup


def _config_file(body):
  def setup(tmp, npz):
    path = tmp / "bad_config.py"
    path.write_text("from jaxunlearn.plugins import default_config\n\n\ndef get_config():\n"
                    f"  c = default_config()\n  c.model = 'mlp'\n  {body}\n  return c\n")
    return [f"--config={path}"]
  return setup


def _raw(path_bytes):
  def setup(tmp, npz):
    path = tmp / "raw.npz"
    path.write_bytes(path_bytes)
    return [f"--config.dataset=npz:{path}"]
  return setup


X, Y, XT, YT = tiny.make_arrays()

CASES = [
    # Configs.
    Case("unknown-override", _flags("--config.train.epoch=3"), "unknown config field"),
    Case("unknown-in-file", _config_file("c.train.epoch = 3"), "unknown config field 'train.epoch'",
         ConfigError),
    Case("wrong-type-flag", _flags("--config.train.epochs=two"), "bad flags"),
    Case("wrong-type-file", _config_file("c.unlearn.lam = 'big'"), "lam"),
    Case("negative-forget-size", _flags("--config.forget.size=-3"), "'forget.size' must be >= 0",
         ConfigError),
    Case("zero-batch", _flags("--config.train.batch_size=0"), "'train.batch_size' must be > 0",
         ConfigError),
    Case("negative-epochs", _flags("--config.unlearn.epochs=-1"), "'unlearn.epochs' must be > 0",
         ConfigError),
    Case("negative-reference", _flags("--config.reference.size=-5"),
         "'reference.size' must be a fraction < 1 or a whole count", ConfigError),
    Case("fraction-one", _flags("--config.forget.size=0", "--config.forget.fraction=1.0"),
         "'forget.fraction' must be in (0, 1)", ConfigError),
    Case("fraction-above-one", _flags("--config.forget.fraction=1.5"),
         "'forget.fraction' must be in (0, 1)", ConfigError),
    Case("forget-everything", _flags(f"--config.forget.size={N}"), "must be smaller than the training set",
         SplitError),
    Case("reference-above-remain", _flags("--config.reference.size=229"),
         "larger than the remain set", SplitError),
    Case("reference-fraction-above-remain", _flags("--config.reference.size=0.99"),
         "larger than the remain set", SplitError),
    Case("reference-fractional-count", _flags("--config.reference.size=2.5"),
         "'reference.size' must be a fraction < 1 or a whole count", ConfigError),
    Case("nan-learning-rate", _flags("--config.train.learning_rate=nan"), "finite", ConfigError),
    Case("inf-learning-rate", _flags("--config.unlearn.learning_rate=inf"), "finite", ConfigError),
    Case("lam-zero", _flags("--config.unlearn.lam=0"), "unlearn.lam must be in (0, 1]", ConfigError),
    Case("negative-seed", _flags("--config.seed=-1"), "'seed' must be >= 0", ConfigError),
    Case("bad-forget-seed", _flags("--config.forget.seed=-2"), "'forget.seed'", ConfigError),
    Case("class-not-int", _flags("--config.forget.mode=class", "--config.forget.classes=('a',)"),
         "forget.classes", ConfigError),
    Case("class-absent", _flags("--config.forget.mode=class", "--config.forget.classes=(7,)"),
         "no training example has class", SplitError),
    Case("bad-choice", _flags("--config.train.optimizer=adagrad"), "train.optimizer", ConfigError),
    Case("unknown-method", _flags("--config.unlearn.method=no_such_method"),
         "unknown unlearning method", ConfigError),
    Case("unknown-model", _flags("--config.model=transformer"), "unknown model"),
    Case("model-does-not-fit-data", _config_file("c.model = 'lenet5'"),
         "cannot take inputs of shape"),
    Case("unknown-dataset", _flags("--config.dataset=imagenet"), "unknown dataset", DataError),
    Case("missing-config-file", lambda tmp, npz: [f"--config={tmp / 'nope.py'}"],
         "cannot load the config file"),
    Case("broken-config-file", _config_file("c.train.epochs = (((("), "cannot load the config file"),
    # Index files.
    Case("index-not-integer", _index_file("f.txt", "1 2 three"), "must hold whole numbers only",
         SplitError),
    Case("index-fraction", _index_file("f.txt", "1, 2.5"), "non-integer", SplitError),
    Case("index-float-npy", _index_file("f.npy", np.array([1.0, 2.5])), "non-integer", SplitError),
    Case("index-out-of-range", _index_file("f.txt", f"3 {N}"), "outside [0, 240)", SplitError),
    Case("index-negative", _index_file("f.txt", "-1 5"), "outside [0, 240)", SplitError),
    Case("index-huge", _index_file("f.txt", "5 " + "9" * 30), "outside [0, 240)", SplitError),
    Case("index-duplicate", _index_file("f.txt", "4\n7\n4\n"), "duplicate indices, e.g. 4", SplitError),
    Case("index-empty", _index_file("f.txt", ""), "is empty", SplitError),
    Case("index-empty-npy", _index_file("f.npy", np.zeros(0, np.int64)), "is empty", SplitError),
    Case("index-2d-npy", _index_file("f.npy", np.arange(6).reshape(2, 3)), "1-D", SplitError),
    Case("index-damaged-npy", _index_file("f.npy", b"\x93NUMPY\x01\x00garbage"), "cannot read",
         SplitError),
    Case("index-binary-text", _index_file("f.txt", b"\xff\xfe\x00\x01"), "cannot read", SplitError),
    Case("index-all", _index_file("f.txt", " ".join(map(str, range(N)))), "nothing would remain",
         SplitError),
    Case("index-missing", lambda tmp, npz: ["--config.forget.mode=indices",
                                            f"--config.forget.index_file={tmp / 'none.txt'}"],
         "does not exist", SplitError),
    # Arrays.
    Case("npz-missing", lambda tmp, npz: [f"--config.dataset=npz:{tmp / 'none.npz'}"],
         "does not exist", DataError),
    Case("npz-lengths", _npz(y_train=Y[:-1]), "has 240 rows but y_train has 239", DataError),
    Case("npz-nan", _npz(x_train=np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X)),
         "NaN or infinite", DataError),
    Case("npz-negative-label", _npz(y_test=np.where(np.arange(YT.size) == 0, -1, YT)),
         "negative label", DataError),
    Case("npz-fractional-label", _npz(y_train=Y + 0.5), "non-integer float labels", DataError),
    Case("npz-onehot-labels", _npz(y_train=np.eye(4)[Y]), "labels must be 1-D", DataError),
    Case("npz-rank", _npz(x_train=X.reshape(-1), x_test=XT.reshape(-1)), "inputs must be", DataError),
    Case("npz-shape-mismatch", _npz(x_test=XT[:, :4]), "must share one per-example shape", DataError),
    Case("npz-missing-array", _npz(y_test=None), "lacks the arrays y_test", DataError),
    Case("npz-not-zip", _raw(b"not a zip file at all"), "not an .npz archive", DataError),
    # Work directories.
    Case("workdir-is-file", _flags(), "is a file", WorkdirError,
         workdir=lambda tmp: _file(tmp / "afile")),
    Case("workdir-parent-is-file", _flags(), "is a file", WorkdirError,
         workdir=lambda tmp: _file(tmp / "exe", mode=0o755) / "sub" / "work"),
    Case("workdir-other-config", _flags("--config.train.epochs=3"), "holds a run of a different config",
         WorkdirError, workdir=lambda tmp: tmp / "finished"),
    Case("workdir-bad-run-json", _flags(), "unreadable", WorkdirError,
         workdir=lambda tmp: _file(tmp / "wd" / "run.json", text="{half").parent),
]


def _file(path: Path, mode=0o644, text="x") -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  path.chmod(mode)
  return path


@pytest.fixture(scope="module")
def finished_copy(tmp_path_factory):
  """A finished run that every row must leave unchanged."""
  npz, workdir, _ = tiny.finished_run()
  copy = tmp_path_factory.mktemp("bad_input") / "finished"
  shutil.copytree(workdir, copy)
  return npz, copy


def _check_one_line(code, err):
  assert code == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("jaxunlearn: ") and "Traceback" not in err
  return lines[0]


def _case_workdirs(case, tmp, finished):
  if case.workdir is not None:
    if case.id == "workdir-other-config":
      return [finished]
    return [case.workdir(tmp)]
  return [tmp / "fresh" / "work", finished]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli_row(case, tmp_path, finished_copy, capsys):
  npz, finished = finished_copy
  extra = case.setup(tmp_path, npz)
  for workdir in _case_workdirs(case, tmp_path, finished):
    before = tiny.tree_snapshot(workdir)
    code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, *extra)])
    out = capsys.readouterr()
    line = _check_one_line(code, out.err)
    assert case.match in line, line
    assert out.out == ""
    assert tiny.tree_snapshot(workdir) == before, f"{workdir} changed"


API_CASES = [c for c in CASES if c.error is not None and not any(
    a.startswith("--config=") for a in c.setup(Path(tempfile.gettempdir()), "x")
    if isinstance(a, str))]


def _overrides(args):
  """``--config.a.b=v`` flags as ``tiny.config`` keyword overrides."""
  import ast
  out = {}
  for a in args:
    key, _, value = a[len("--config."):].partition("=")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      if value in ("nan", "inf"):
        value = float(value)
    out[key.replace(".", "__")] = value
  return out


@pytest.mark.parametrize("case", API_CASES, ids=lambda c: c.id)
def test_api_row_raises_specific_type(case, tmp_path, finished_copy):
  npz, finished = finished_copy
  overrides = _overrides(case.setup(tmp_path, npz))
  dataset = overrides.pop("dataset", f"npz:{npz}")
  workdir = case.workdir(tmp_path) if case.workdir else tmp_path / "work"
  if case.id == "workdir-other-config":
    workdir = finished
  before = tiny.tree_snapshot(workdir)
  cfg = tiny.config(npz, **overrides)
  cfg.dataset = dataset
  with pytest.raises(case.error, match=None) as info:
    pipeline.run(cfg, workdir)
  assert case.match in str(info.value)
  assert tiny.tree_snapshot(workdir) == before


def _world_readable(path: Path) -> bool:
  """Whether any user can reach and read ``path`` (every parent traversable)."""
  path = Path(path).resolve()
  if not path.stat().st_mode & 0o004:
    return False
  return all(p.stat().st_mode & 0o001 for p in path.parents)


@pytest.mark.skipif(not hasattr(os, "seteuid"), reason="needs POSIX user ids")
def test_unwritable_workdir_is_found_by_a_real_write(capsys):
  """As root ``os.access`` says every directory is writable; a real write does not lie."""
  if os.geteuid() == 0 and not _world_readable(tiny.CONFIG):
    pytest.skip("the checkout is not readable by 'nobody', whom this test runs the CLI as")
  import encodings.cp437  # noqa: F401  np.load's zip reader needs it; 'nobody' may not read the stdlib
  root = Path(tempfile.mkdtemp(prefix="jaxunlearn-ro-"))
  try:
    root.chmod(0o755)
    npz = tiny.write_npz(root / "tiny.npz")
    npz.chmod(0o644)
    parent = root / "locked"
    parent.mkdir(mode=0o555)
    parent.chmod(0o555)
    workdir = parent / "work"
    as_root = os.geteuid() == 0
    if as_root:
      os.seteuid(65534)  # nobody: permission bits now apply to this process
    try:
      assert os.access(parent, os.W_OK) == as_root  # access() checks the real uid
      code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)])
    finally:
      if as_root:
        os.seteuid(0)
    line = _check_one_line(code, capsys.readouterr().err)
    assert "not writable" in line and str(workdir) in line
    assert not workdir.exists()
  finally:
    (root / "locked").chmod(0o755)
    shutil.rmtree(root)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in
                                  ("unknown-override", "index-out-of-range",
                                   "workdir-parent-is-file")], ids=lambda c: c.id)
def test_real_cli_row(case, tmp_path):
  npz, _, _ = tiny.finished_run()
  extra = case.setup(tmp_path, npz)
  workdir = case.workdir(tmp_path) if case.workdir else tmp_path / "work"
  before = tiny.tree_snapshot(workdir)
  proc = tiny.run_cli(npz, workdir, *extra)
  line = _check_one_line(proc.returncode, proc.stderr)
  assert case.match in line, line
  assert tiny.tree_snapshot(workdir) == before


def test_model_that_does_not_fit_the_data_is_refused_before_any_write(tmp_path):
  npz, _, _ = tiny.finished_run()
  cfg = tiny.config(npz, model="lenet5")
  cfg.model_kwargs = type(cfg.model_kwargs)()
  with pytest.raises(DataError, match="lenet5.*cannot take inputs of shape"):
    pipeline.run(cfg, tmp_path / "work")
  assert not (tmp_path / "work").exists()


def test_cli_usage_errors(capsys):
  assert cli.main(["jaxunlearn", "train"]) == 2
  _check_one_line(2, capsys.readouterr().err)
  assert cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}"]) == 2
  assert "--workdir is required" in _check_one_line(2, capsys.readouterr().err)


# Fuzzing through the API: only the documented exception type, or a valid result.

_INDEX_TOKENS = st.one_of(
    st.integers(-5, N + 5).map(str), st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(["", "1.5", "abc", "0x10", "1e3", "-", ",", "٣", "nan"]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_INDEX_TOKENS, max_size=12),
       seps=st.sampled_from([" ", ",", "\n", ", ", "\t"]))
def test_fuzz_index_file(tmp_path, tokens, seps):
  path = tmp_path / "fuzz.txt"
  path.write_text(seps.join(tokens))
  try:
    idx = splits.read_index_file(str(path), N)
  except SplitError:
    return
  values = [int(t) for t in path.read_text().replace(",", " ").split()]
  assert idx.dtype == np.int64
  np.testing.assert_array_equal(idx, sorted(values))
  assert len(set(values)) == len(values) and all(0 <= v < N for v in values)


_INDEX_ARRAYS = st.one_of(
    hnp.arrays(st.sampled_from([np.int8, np.int64, np.uint64, np.float32, np.float64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6)),
    st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.text(max_size=2),
                       st.lists(st.integers(0, 5), max_size=2)), max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(idx=_INDEX_ARRAYS, n=st.integers(1, 50))
def test_fuzz_validate_indices(idx, n):
  try:
    out = splits.validate_indices(idx, n, "idx")
  except SplitError:
    return
  assert out.dtype == np.int64 and out.ndim == 1 and out.size > 0
  assert np.all((out >= 0) & (out < n)) and np.all(np.diff(out) > 0)
  flat = np.asarray(idx).ravel()
  assert out.size == flat.size
  np.testing.assert_array_equal(out, np.sort(flat.astype(np.float64)).astype(np.int64))


_ARRAY_DTYPES = st.sampled_from([np.uint8, np.int32, np.int64, np.float32, np.float64,
                                 np.bool_, np.complex64])


def _arrays(max_dims=5):
  return hnp.arrays(_ARRAY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0,
                                                     max_side=4),
                    elements=None)


@settings(max_examples=150, deadline=None)
@given(x_train=_arrays(), y_train=_arrays(2), x_test=_arrays(), y_test=_arrays(2),
       num_classes=st.one_of(st.none(), st.integers(-2, 6)))
def test_fuzz_from_arrays(x_train, y_train, x_test, y_test, num_classes):
  try:
    ds = data.from_arrays(x_train, y_train, x_test, y_test, num_classes=num_classes)
  except DataError:
    return
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.x_train.ndim in (2, 4) and ds.x_train.shape[1:] == ds.x_test.shape[1:]
  assert ds.x_train.shape[0] == ds.y_train.shape[0] and ds.x_test.shape[0] == ds.y_test.shape[0]
  assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
  for y in (ds.y_train, ds.y_test):
    assert y.ndim == 1 and y.size and y.min() >= 0 and y.max() < ds.num_classes
  assert ds.num_classes >= 2


@st.composite
def _near_valid_datasets(draw):
  """Consistent shapes, so most draws reach the value checks (NaN, labels, ...)."""
  n_train, n_test = draw(st.integers(1, 5)), draw(st.integers(1, 5))
  example = draw(st.sampled_from([(3,), (2, 2), (2, 2, 1)]))
  x_dtype = draw(st.sampled_from([np.uint8, np.int32, np.float32, np.float64]))
  y_dtype = draw(st.sampled_from([np.int64, np.uint8, np.float64]))
  x = [draw(hnp.arrays(x_dtype, (n, *example))) for n in (n_train, n_test)]
  labels = {np.int64: st.integers(-1, 4), np.uint8: st.integers(0, 4),
            np.float64: st.floats(-1, 4.5) | st.sampled_from([np.nan, np.inf, 2.0])}[y_dtype]
  y = [draw(hnp.arrays(y_dtype, (n,), elements=labels)) for n in (n_train, n_test)]
  return x[0], y[0], x[1], y[1]


@settings(max_examples=150, deadline=None)
@given(arrays=_near_valid_datasets(), num_classes=st.one_of(st.none(), st.integers(1, 6)))
def test_fuzz_from_arrays_values(arrays, num_classes):
  x_train, y_train, x_test, y_test = arrays
  try:
    ds = data.from_arrays(x_train, y_train, x_test, y_test, num_classes=num_classes)
  except DataError:
    with np.errstate(over="ignore", invalid="ignore"):
      xs_finite = all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in (x_train, x_test))
    ys = np.concatenate([y_train, y_test]).astype(np.float64)
    ys_ok = np.all(np.isfinite(ys)) and np.all(ys == np.round(ys)) and ys.min() >= 0
    k = num_classes if num_classes is not None else (int(ys.max()) + 1 if ys_ok else 0)
    # The documented rules: non-uint8 images lie in [0, 1]; inferred classes all occur in train.
    def scaled_ok(x):
      x = np.asarray(x)
      if x.ndim < 3 or x.dtype == np.uint8:
        return True
      with np.errstate(over="ignore", invalid="ignore"):
        f = x.astype(np.float32)
      return bool(np.all(np.isfinite(f))) and f.min() >= 0 and f.max() <= 1
    classes_ok = num_classes is not None or (ys_ok and set(range(k)) <= set(
        np.asarray(y_train, np.float64).astype(np.int64).tolist()))
    assert not (xs_finite and ys_ok and k >= 2 and ys.max() < k and classes_ok
                and scaled_ok(x_train) and scaled_ok(x_test)), "valid arrays refused"
    return
  assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
  np.testing.assert_array_equal(ds.y_train, y_train)
  assert ds.y_train.max() < ds.num_classes and ds.y_test.max() < ds.num_classes
  if np.asarray(x_train).dtype == np.uint8:
    np.testing.assert_allclose(ds.x_train, np.asarray(x_train).reshape(ds.x_train.shape) / 255.0,
                               rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(st.floats(), st.integers(-3, 300), st.text(max_size=1)),
                              max_size=3), max_size=4))
def test_fuzz_from_arrays_ragged_python_lists(rows):
  try:
    data.from_arrays(rows, [0] * len(rows), rows, [1] * len(rows))
  except DataError:
    pass


def test_every_error_is_a_value_error_subclass():
  # Callers that predate the specific types catch ValueError; keep that working.
  for error in (ConfigError, DataError, SplitError, WorkdirError):
    assert issubclass(error, JaxUnlearnError) and issubclass(error, ValueError)
