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
    ("1 2.5", "integers"),
    ("1 abc", "integers"),
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
