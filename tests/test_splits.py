"""Forget / remain / reference splits and their validation."""

import numpy as np
import pytest

from jaxunlearn import splits
from jaxunlearn.errors import SplitError

LABELS = np.repeat(np.arange(10), 20)  # 200 examples


def make(**kw):
  args = dict(seed=0, reference_size=20)
  args.update(kw)
  return splits.make_splits(LABELS.size, LABELS, **args)


def test_random_split_partitions_and_is_seeded():
  s = make(fraction=0.05)
  assert s.n_forget == 10
  assert np.union1d(s.forget_idx, s.remain_idx).size == LABELS.size
  assert not np.intersect1d(s.forget_idx, s.remain_idx).size
  assert not np.intersect1d(s.reference_idx, s.forget_idx).size
  assert np.isin(s.reference_idx, s.remain_idx).all() and s.reference_idx.size == 20
  np.testing.assert_array_equal(s.forget_idx, make(fraction=0.05).forget_idx)
  assert not np.array_equal(s.forget_idx, make(fraction=0.05, seed=1).forget_idx)


def test_size_overrides_fraction():
  assert make(fraction=0.05, size=7).n_forget == 7


def test_class_mode_forgets_whole_classes():
  s = make(mode="class", classes=(3, 7))
  assert set(LABELS[s.forget_idx]) == {3, 7} and s.n_forget == 40
  assert not set(LABELS[s.reference_idx]) & {3, 7}


def test_index_file_text_and_npy(tmp_path):
  txt = tmp_path / "f.txt"
  txt.write_text("5, 1\n9 3\n")
  np.testing.assert_array_equal(make(mode="indices", index_file=str(txt)).forget_idx, [1, 3, 5, 9])
  npy = tmp_path / "f.npy"
  np.save(npy, np.array([4, 2]))
  np.testing.assert_array_equal(make(mode="indices", index_file=str(npy)).forget_idx, [2, 4])


@pytest.mark.parametrize("content, message", [
    ("1 2 200", "outside"),
    ("1 2 -1", "outside"),
    ("1 2 2", "duplicate"),
    ("", "empty"),
    ("1 2.5", "non-integer"),
    ("1 abc", "whole numbers"),
])
def test_bad_index_files(tmp_path, content, message):
  f = tmp_path / "f.txt"
  f.write_text(content)
  with pytest.raises(SplitError, match=message):
    make(mode="indices", index_file=str(f))


@pytest.mark.parametrize("kw, message", [
    (dict(fraction=0.0), "fraction"),
    (dict(fraction=1.0), "fraction"),
    (dict(fraction=0.001), "empty"),
    (dict(size=200), "smaller"),
    (dict(reference_size=500), "larger than the remain set"),
    (dict(reference_size=0), "at least 1"),
    (dict(mode="class", classes=()), "classes"),
    (dict(mode="class", classes=(42,)), "no training example"),
    (dict(mode="indices"), "index_file"),
    (dict(mode="indices", index_file="/nonexistent/f.txt"), "does not exist"),
    (dict(mode="bogus"), "forget.mode"),
])
def test_bad_split_settings(kw, message):
  with pytest.raises(SplitError, match=message):
    make(**kw)


def test_reference_touching_forget_is_rejected():
  s = make(fraction=0.05)
  bad = splits.Splits(s.forget_idx, s.remain_idx, np.concatenate([s.reference_idx[:-1], s.forget_idx[:1]]))
  with pytest.raises(SplitError, match="touches the forget set"):
    splits.check_splits(bad, LABELS.size)


def test_index_hash_ignores_order():
  assert splits.index_hash([3, 1, 2]) == splits.index_hash([1, 2, 3]) != splits.index_hash([1, 2])


# --- the held-out split --------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(n=st.integers(50, 400), forget_seed=st.integers(0, 5), holdout_frac=st.floats(0.05, 0.4),
       source=st.sampled_from(["remain", "holdout"]), mode=st.sampled_from(["random", "class"]))
def test_holdout_never_trained_on_and_fixed_per_workdir(n, forget_seed, holdout_frac, source,
                                                        mode):
  labels = np.arange(n) % 5
  holdout_size = max(2, int(holdout_frac * n))
  kw = dict(fraction=0.05, classes=(1,), reference_size=2, holdout_size=holdout_size,
            holdout_seed=7, reference_source=source, mode=mode)
  s = splits.make_splits(n, labels, seed=forget_seed, **kw)
  other = splits.make_splits(n, labels, seed=forget_seed + 10, **kw)
  h = s.holdout_idx
  assert h.size == holdout_size
  np.testing.assert_array_equal(h, other.holdout_idx)      # another request, the same split
  assert not np.intersect1d(h, s.train_idx).size           # the original never trains on it
  assert not np.intersect1d(h, s.forget_idx).size and not np.intersect1d(h, s.remain_idx).size
  assert np.all((h >= 0) & (h < n))                        # training-split rows, never test rows
  ref_pool = h if source == "holdout" else s.remain_idx
  assert np.isin(s.reference_idx, ref_pool).all()
  assert not np.intersect1d(s.reference_idx, s.forget_idx).size


def test_reference_from_holdout_needs_a_holdout():
  with pytest.raises(splits.SplitError, match="holdout.size"):
    splits.make_splits(100, np.zeros(100, int), seed=0, fraction=0.1, reference_size=5,
                       reference_source="holdout")


def test_forget_index_file_may_not_hold_heldout_examples(tmp_path):
  h = splits.draw_holdout(100, 10, seed=3)
  path = tmp_path / "f.txt"
  path.write_text(" ".join(map(str, h[:2])))
  with pytest.raises(splits.SplitError, match="held-out"):
    splits.make_splits(100, np.zeros(100, int), seed=0, mode="indices", index_file=str(path),
                       reference_size=5, holdout_size=10, holdout_seed=3)
