"""Forget / remain / reference splits, validated.

D_f (forget) is drawn from the training set by fraction, given as an index
file, or taken as whole classes; D_r is the rest; the reference subset D_s is
drawn from D_r only, so the reference model never sees D_f.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os

import numpy as np

from jaxunlearn.errors import SplitError

__all__ = ["Splits", "make_splits", "check_splits", "FORGET_MODES", "forget_by_fraction",
           "forget_by_class", "draw_reference", "draw_holdout", "read_index_file",
           "validate_indices", "index_hash"]

FORGET_MODES = ("random", "indices", "class")


@dataclasses.dataclass(frozen=True)
class Splits:
  forget_idx: np.ndarray      # sorted int64 indices into the training set
  remain_idx: np.ndarray      # sorted complement of forget_idx
  reference_idx: np.ndarray   # sorted subset of remain_idx
  holdout_idx: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))  # never trained on by any model; may be empty

  @property
  def n_forget(self) -> int:
    return int(self.forget_idx.size)

  @property
  def train_idx(self) -> np.ndarray:
    """What the original model trains on: D_f and D_r (everything but the held-out split)."""
    return np.union1d(self.forget_idx, self.remain_idx)


def index_hash(idx, secret: bytes | None = None) -> str:
  """A short stable hash of an index set (order does not matter).

  With ``secret`` (the work directory's key) it is an HMAC-SHA256, which
  cannot be matched against guessed index lists without the key; without it a
  plain SHA-256 (for sets that are not private, e.g. a shadow pool).
  """
  arr = np.sort(np.asarray(idx, np.int64))
  if secret is not None:
    return hmac.new(secret, arr.tobytes(), hashlib.sha256).hexdigest()[:16]
  return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def validate_indices(idx, n: int, what: str) -> np.ndarray:
  """Checks an index list: integers, non-empty, in ``[0, n)``, no duplicates.

  Returns:
    The indices, sorted, as int64.

  Raises:
    SplitError: naming what is wrong (never another exception type).
  """
  try:
    arr = np.asarray(idx)
  except (ValueError, TypeError, OverflowError):
    raise SplitError(f"{what} must be a flat list of integers") from None
  if arr.ndim != 1:
    raise SplitError(f"{what} must be a 1-D list of indices, got shape {arr.shape}")
  if arr.size == 0:
    raise SplitError(f"{what} is empty; give at least one index")
  if arr.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                   for v in arr):
    # Python ints too large for int64 end up in an object array.
    bad = [int(v) for v in arr if not 0 <= v < n]
    if bad:
      raise SplitError(f"{what} has {len(bad)} index(es) outside [0, {n}), e.g. {bad[0]}; "
                       f"the training set has {n} examples")
    arr = arr.astype(np.int64)
  if arr.dtype.kind == "f":
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
      raise SplitError(f"{what} holds non-integer values; give whole numbers")
  elif arr.dtype.kind not in "iu":
    raise SplitError(f"{what} must hold integers, got dtype {arr.dtype}")
  # Range first, in the original dtype: casting huge values to int64 would wrap.
  bad = arr[(arr < 0) | (arr >= n)]
  if bad.size:
    first = int(bad[0]) if arr.dtype.kind in "iu" else float(bad[0])
    raise SplitError(f"{what} has {bad.size} index(es) outside [0, {n}), e.g. {first}; "
                     f"the training set has {n} examples")
  arr = arr.astype(np.int64)
  uniq, counts = np.unique(arr, return_counts=True)
  if uniq.size != arr.size:
    raise SplitError(f"{what} has duplicate indices, e.g. {int(uniq[counts > 1][0])}")
  return uniq


def read_index_file(path: str, n: int, what: str = "forget index file") -> np.ndarray:
  """Reads forget indices from ``.npy`` or a text file (whitespace/comma separated).

  One rule for both: every value must be a whole number (``3`` or ``3.0``). ``what`` names
  the file in errors (e.g. ``"label_flip.index_file"``).
  """
  path = os.path.expanduser(path)   # ~/idx.txt: the home folder's, as a shell reads it
  if os.path.isdir(path):
    raise SplitError(f"{what} {path!r} is a directory; give a .npy file or a text "
                     "file of training indices")
  if not os.path.isfile(path):
    raise SplitError(f"{what} {path!r} does not exist; give a .npy file or a text "
                     "file of training indices")
  if path.endswith(".npy"):
    try:
      arr = np.load(path, allow_pickle=False)
    except Exception as e:  # pylint: disable=broad-except
      # numpy raises ValueError, OSError, EOFError, ... for a damaged file.
      raise SplitError(f"cannot read forget index file {path!r} as .npy "
                       f"({type(e).__name__}: {e}); write it with numpy.save") from None
  else:
    try:
      with open(path, encoding="utf-8") as f:
        tokens = f.read().replace(",", " ").split()
    except (OSError, UnicodeDecodeError) as e:
      raise SplitError(f"cannot read forget index file {path!r} as text ({e}); give one "
                       "integer per line or a .npy file") from None
    try:
      arr = [_whole_number(t) for t in tokens]
    except ValueError as e:
      raise SplitError(f"{what} {path!r} must hold whole numbers only ({e})") from None
  return validate_indices(arr, n, f"{what} {path!r}")


def _whole_number(token: str):
  """``"3"`` or ``"3.0"`` -> 3 (``"3.5"`` stays a float, refused by validate_indices)."""
  try:
    return int(token)
  except ValueError:
    value = float(token)
    return int(value) if value.is_integer() else value


def forget_by_fraction(n: int, fraction: float, rng: np.random.Generator, size: int = 0) -> np.ndarray:
  if size:
    k = int(size)
  else:
    if not 0.0 < fraction < 1.0:
      raise SplitError(f"forget.fraction must be in (0, 1), got {fraction}")
    k = int(round(fraction * n))
  if k < 1:
    raise SplitError(f"the forget set would be empty ({fraction} of {n}); raise forget.fraction or set forget.size")
  if k >= n:
    raise SplitError(f"the forget set ({k}) must be smaller than the training set ({n})")
  return np.sort(rng.choice(n, size=k, replace=False))


def forget_by_class(labels: np.ndarray, classes) -> np.ndarray:
  classes = [int(c) for c in classes]
  if not classes:
    raise SplitError("forget.mode='class' needs forget.classes, e.g. --config.forget.classes='(3,)'")
  idx = np.flatnonzero(np.isin(labels, classes))
  if idx.size == 0:
    raise SplitError(f"no training example has class {classes}")
  if idx.size == labels.size:
    raise SplitError("forgetting these classes would leave no remaining data")
  return idx


def draw_reference(remain_idx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  size = int(size)
  if size < 1:
    raise SplitError(f"reference size must be at least 1, got {size}")
  if size > remain_idx.size:
    raise SplitError(f"reference size {size} is larger than the remain set ({remain_idx.size}); "
                     f"lower reference.size")
  return np.sort(rng.choice(remain_idx, size=size, replace=False))


def draw_holdout(n: int, size: int, seed: int) -> np.ndarray:
  """``size`` training examples that no model trains on, fixed by ``seed`` alone.

  Drawn before any forget set, so every request of a work directory (whatever
  its forget seed) sees the same held-out split and the same original.
  """
  if not size:
    return np.zeros(0, np.int64)
  if size >= n - 1:
    raise SplitError(f"holdout.size keeps {size} of the {n} training examples out of training "
                     f"and leaves {n - size}; lower holdout.size (e.g. 0.05)")
  return np.sort(np.random.default_rng([seed, 0x686F6C64]).choice(n, size=int(size),
                                                                   replace=False))


def make_splits(n: int, labels: np.ndarray, *, seed: int, mode: str = "random",
                fraction: float = 0.01, size: int = 0, index_file: str = "",
                classes=(), reference_size: int, holdout_size: int = 0,
                holdout_seed: int = 0, reference_source: str = "remain") -> Splits:
  """Builds and validates D_f, D_r, D_s and the held-out split for ``n`` training examples.

  Args:
    seed: seeds D_f and D_s.
    holdout_size, holdout_seed: the held-out split (:func:`draw_holdout`);
      D_f, D_r and (with ``reference_source="remain"``) D_s avoid it.
    reference_source: ``"remain"`` (the paper: D_s within D_r) or
      ``"holdout"`` (D_s within the held-out split, which no original and no
      forget request ever touches).
  """
  rng = np.random.default_rng(seed)
  forget_rng, ref_rng = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(2))
  holdout = draw_holdout(n, holdout_size, holdout_seed)
  if mode == "random":
    if holdout.size:
      pool = np.setdiff1d(np.arange(n), holdout)
      k = int(size) if size else int(round(fraction * pool.size))
      if k >= pool.size or pool.size - k < 2:
        raise SplitError(f"holdout.size keeps {holdout.size} of the {n} training examples out of "
                         f"training and leaves {pool.size}, too few for a forget set of {k} and "
                         "data to remain; lower holdout.size (e.g. 0.05)")
      forget = np.sort(pool[forget_by_fraction(pool.size, fraction, forget_rng, size)])
    else:
      forget = forget_by_fraction(n, fraction, forget_rng, size)
  elif mode == "indices":
    if not index_file:
      raise SplitError("forget.mode='indices' needs --config.forget.index_file=PATH")
    forget = read_index_file(index_file, n)
    if forget.size >= n:
      raise SplitError("the forget index file covers the whole training set; nothing would remain")
  elif mode == "class":
    forget = forget_by_class(np.asarray(labels), classes)
    forget = np.setdiff1d(forget, holdout)
  else:
    raise SplitError(f"unknown forget.mode {mode!r}; use one of {FORGET_MODES}")
  if np.intersect1d(forget, holdout).size:
    raise SplitError("the forget set holds held-out examples, which no model trained on; "
                     "leave them out of the index file or lower holdout.size")
  remain = np.setdiff1d(np.setdiff1d(np.arange(n), forget), holdout)
  if remain.size == 0:
    raise SplitError("nothing would remain to train on; lower forget or holdout sizes")
  if reference_source == "holdout":
    if not holdout.size:
      raise SplitError("reference.source='holdout' needs a held-out split: set "
                       "--config.holdout.size (at least reference.size)")
    if reference_size > holdout.size:
      raise SplitError(f"reference size {reference_size} is larger than the held-out split "
                       f"({holdout.size}); raise holdout.size or lower reference.size")
    # Fixed by the held-out split's seed too, so every request shares one D_s.
    reference = draw_reference(holdout, reference_size,
                               np.random.default_rng([holdout_seed, 0x72656673]))
  elif reference_source == "remain":
    reference = draw_reference(remain, reference_size, ref_rng)
  else:
    raise SplitError(f"unknown reference.source {reference_source!r}; use 'remain' or 'holdout'")
  return check_splits(Splits(forget, remain, reference, holdout), n)


def check_splits(s: Splits, n: int) -> Splits:
  """Asserts the invariants: D_f, D_r and the held-out split partition the data; D_s avoids D_f."""
  forget = validate_indices(s.forget_idx, n, "forget indices")
  remain = validate_indices(s.remain_idx, n, "remain indices")
  reference = validate_indices(s.reference_idx, n, "reference indices")
  holdout = (validate_indices(s.holdout_idx, n, "held-out indices") if np.size(s.holdout_idx)
             else np.zeros(0, np.int64))
  parts = (forget, remain, holdout)
  if (sum(p.size for p in parts) != n or np.unique(np.concatenate(parts)).size != n):
    raise SplitError("forget, remain and held-out indices must partition the training set")
  if np.intersect1d(reference, forget).size:
    raise SplitError("the reference subset touches the forget set; the reference model must never see D_f")
  return Splits(forget, remain, reference, holdout)
