"""Privacy invariants: the reference model never sees D_f, and nothing of D_f is left behind.

* splits.make_splits and stages.find_reference are property-tested: D_s
  never touches D_f, whatever the sizes, modes and saved references.
* The unlearned checkpoint (files on disk and restored contents) holds no
  forget-set index, image, label or per-example output.
* results.json / results.md hold only counts and a hash of D_f, unless
  ``report.save_forget_indices`` asks for the indices.
"""

import json
import shutil
import types

import jax
import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jaxunlearn import request, checkpoint, pipeline, splits as splits_lib, stages, train as train_lib
from jaxunlearn.errors import SplitError
from tests.support import tiny


# --- D_s never touches D_f ---------------------------------------------------

@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 400), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["random", "class", "indices"]),
       fraction=st.floats(0.001, 0.999), size=st.integers(0, 400),
       reference=st.integers(1, 400), num_classes=st.integers(1, 5), data=st.data())
def test_make_splits_keeps_reference_out_of_forget(tmp_path, n, seed, mode, fraction, size,
                                                    reference, num_classes, data):
  labels = np.random.default_rng(seed).integers(0, num_classes, n)
  kwargs = {}
  if mode == "class":
    kwargs["classes"] = tuple(data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
  elif mode == "indices":
    chosen = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    path = tmp_path / "forget.txt"
    path.write_text("\n".join(map(str, chosen)))
    kwargs["index_file"] = str(path)
  size = size if size < n else 0
  if mode == "random":
    n_forget = size or int(round(fraction * n))
  elif mode == "indices":
    n_forget = len(chosen)
  else:
    n_forget = int(np.isin(labels, kwargs["classes"]).sum())
  feasible = 1 <= n_forget < n and reference <= n - n_forget
  try:
    s = splits_lib.make_splits(n, labels, seed=seed, mode=mode, fraction=fraction,
                               size=size, reference_size=reference, **kwargs)
  except SplitError:
    assert not feasible  # refusing a feasible request is a bug too
    return
  assert feasible
  assert not np.intersect1d(s.reference_idx, s.forget_idx).size
  assert np.all(np.isin(s.reference_idx, s.remain_idx))
  np.testing.assert_array_equal(np.union1d(s.forget_idx, s.remain_idx), np.arange(n))
  assert s.reference_idx.size == reference and s.forget_idx.size >= 1
  if mode == "indices":
    np.testing.assert_array_equal(s.forget_idx, sorted(chosen))
  if mode == "class":
    np.testing.assert_array_equal(s.forget_idx, np.flatnonzero(np.isin(labels, kwargs["classes"])))


N_FIND = 60
# Saved references: (reference_idx, epochs). Two share a size and epochs so the
# search has a choice; one has other epochs and must never be picked.
_SAVED = {
    "a": (list(range(0, 10)), 2),
    "b": (list(range(10, 20)), 2),
    "c": (list(range(20, 30)), 3),
    "d": (list(range(5, 15)), 2),
}


@pytest.fixture(scope="module")
def saved_references(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("find_reference")
  for name, (idx, epochs) in _SAVED.items():
    stage = f"reference-{splits_lib.index_hash(idx)}"
    checkpoint.save(workdir / "checkpoints" / stage, {"params": np.zeros(2, np.float32)},
                    {"stage": stage, "epochs": epochs, "n_examples": len(idx),
                     "reference_idx": idx})
  # A killed save: files but no marker; must be ignored.
  (workdir / "checkpoints" / "reference-unfinished" / "0").mkdir(parents=True)
  return workdir


def _fake_context(workdir, forget, epochs):
  cfg = ml_collections.ConfigDict({"reference": {"epochs": epochs, "source": "remain"}})
  forget = np.asarray(sorted(forget), np.int64)
  remain = np.setdiff1d(np.arange(N_FIND), forget)
  s = splits_lib.Splits(forget, remain, remain[:10])
  return types.SimpleNamespace(workdir=workdir, cfg=cfg, splits=s,
                               cache=stages.StageCache(workdir / "checkpoints"))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forget=st.sets(st.integers(0, N_FIND - 1), min_size=1, max_size=40),
       epochs=st.sampled_from([2, 3]))
def test_find_reference_never_returns_one_that_saw_forget(saved_references, forget, epochs):
  ctx = _fake_context(saved_references, forget, epochs)
  found = stages.find_reference(ctx)
  usable = [idx for idx, e in _SAVED.values() if e == epochs and not set(idx) & forget]
  if found is None:
    assert not usable  # and a usable one is found whenever there is one
    return
  meta = checkpoint.metadata(saved_references / "checkpoints" / found)
  assert not set(meta["reference_idx"]) & forget
  assert meta["epochs"] == epochs


# --- A finished run leaves nothing of D_f behind -------------------------------

@pytest.fixture(scope="module")
def run_and_splits():
  npz, workdir, results = tiny.finished_run()
  ctx = request.prepare(tiny.config(npz), workdir)
  return ctx, workdir, results


def _needles(ctx, workdir):
  """Byte strings whose presence would reveal D_f."""
  s = ctx.splits
  forget = s.forget_idx
  labels = ctx.y_train[forget]
  images = ctx.x_train[forget]
  out = {}
  for name, values in (("indices", forget), ("labels", labels)):
    lst = [int(v) for v in values]
    out[f"{name} json"] = json.dumps(lst).encode()
    out[f"{name} compact"] = json.dumps(lst, separators=(",", ":")).encode()
    for dtype in (np.int32, np.int64):
      out[f"{name} {np.dtype(dtype).name}"] = np.asarray(lst, dtype).tobytes()
  for i, image in enumerate(images):
    out[f"image {i}"] = np.ascontiguousarray(image, np.float32).tobytes()
  # Per-example outputs of every model on D_f (logits and probabilities).
  for name, d in tiny.stage_dirs(workdir).items():
    params = checkpoint.restore(d)[0]["params"]
    apply_fn = train_lib.eval_apply_fn(ctx.model, {})
    logits = train_lib.predict(apply_fn, params, images)
    probs = np.asarray(jax.nn.softmax(logits, -1), np.float32)
    for i in range(len(forget)):
      out[f"{name} logits {i}"] = logits[i].tobytes()
      out[f"{name} probs {i}"] = probs[i].tobytes()
  return out


def _lists(obj):
  if isinstance(obj, dict):
    for v in obj.values():
      yield from _lists(v)
  elif isinstance(obj, (list, tuple)):
    yield obj
    for v in obj:
      yield from _lists(v)


def test_unlearned_checkpoint_holds_nothing_of_forget_set(run_and_splits):
  ctx, workdir, _ = run_and_splits
  needles = _needles(ctx, workdir)
  n_forget = ctx.splits.n_forget
  stage_dir = tiny.stage_dirs(workdir)["unlearned"]
  # The files as stored...
  for path in sorted(p for p in stage_dir.rglob("*") if p.is_file()):
    raw = path.read_bytes()
    for what, needle in needles.items():
      assert needle not in raw, f"{path.relative_to(stage_dir)} holds forget-set {what}"
  # ... and what they decode to (in case a file is compressed).
  state, meta = checkpoint.restore(stage_dir)
  for leaf in jax.tree.leaves(state):
    arr = np.asarray(leaf)
    assert n_forget not in arr.shape, f"a saved array has a forget-sized axis: {arr.shape}"
    for what, needle in needles.items():
      assert needle not in arr.tobytes(), f"a saved array holds forget-set {what}"
  text = json.dumps(meta).encode()
  for what, needle in needles.items():
    assert needle not in text, f"unlearned metadata holds forget-set {what}"
  for lst in _lists(meta):
    assert len(lst) < n_forget, f"unlearned metadata holds a per-example list: {lst[:5]}..."


def test_reference_metadata_holds_only_reference_indices(run_and_splits):
  ctx, workdir, _ = run_and_splits
  meta = checkpoint.metadata(tiny.stage_dirs(workdir)["reference"])
  np.testing.assert_array_equal(meta["reference_idx"], ctx.splits.reference_idx)
  assert not np.intersect1d(meta["reference_idx"], ctx.splits.forget_idx).size
  index_lists = [lst for lst in _lists(meta) if len(lst) >= ctx.splits.n_forget]
  assert index_lists == [meta["reference_idx"]]
  for name in ("original", "retrain"):
    other = checkpoint.metadata(tiny.stage_dirs(workdir)[name])
    assert all(len(lst) < ctx.splits.n_forget for lst in _lists(other)), name


def _assert_no_forget_indices(ctx, results, text):
  forget = ctx.splits.forget_idx
  assert "forget_idx" not in results
  for what in (json.dumps(forget.tolist()), ", ".join(map(str, forget[:3]))):
    assert what not in text
  for lst in _lists(results):
    ints = {v for v in lst if isinstance(v, int) and not isinstance(v, bool)}
    assert len(ints & set(forget.tolist())) < 3, f"results hold forget indices: {lst}"


def test_results_record_counts_and_hash_only(run_and_splits):
  ctx, workdir, results = run_and_splits
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["n_forget"] == ctx.splits.n_forget
  # Keyed with the work dir's secret: not the plain hash anyone could recompute.
  secret = (workdir / "secret.key").read_bytes()
  assert saved["forget_hash"] == splits_lib.index_hash(ctx.splits.forget_idx, secret)
  assert saved["forget_hash"] != splits_lib.index_hash(ctx.splits.forget_idx)
  assert (workdir / "secret.key").stat().st_mode & 0o077 == 0
  _assert_no_forget_indices(ctx, saved, (workdir / "results.json").read_text())
  _assert_no_forget_indices(ctx, results, (workdir / "results.md").read_text())
  run_json = (workdir / "run.json").read_text()
  _assert_no_forget_indices(ctx, json.loads(run_json), run_json)


@pytest.mark.slow
def test_forget_indices_are_saved_only_when_asked(run_and_splits, tmp_path):
  ctx, finished, _ = run_and_splits
  npz, _, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  results = pipeline.run(tiny.config(npz, report__save_forget_indices=True), workdir)
  assert results["forget_idx"] == ctx.splits.forget_idx.tolist()
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["forget_idx"] == ctx.splits.forget_idx.tolist()
