"""Tests of jaxunlearn.triggers: trigger stamping, poisoning, attack success."""

import ml_collections
import numpy as np
import pytest

from jaxunlearn import triggers
from jaxunlearn.errors import ConfigError


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(enabled=True, target_class=0, patch_size=3,
                                     patch_value=1.0, position="bottom_right", margin=1))
  c.update(kw)
  return c


@pytest.mark.parametrize("position, rows, cols", [
    ("bottom_right", (4, 7), (5, 8)),     # 8 rows x 9 cols, patch 3, margin 1
    ("bottom_left", (4, 7), (1, 4)),
    ("top_right", (1, 4), (5, 8)),
    ("top_left", (1, 4), (1, 4)),
    ("center", (2, 5), (3, 6)),
])
def test_stamp_puts_the_patch_where_asked(position, rows, cols):
  rng = np.random.default_rng(0)
  x = rng.random((5, 8, 9, 2)).astype(np.float32) * 0.5
  out = triggers.stamp(x, _cfg(position=position, patch_value=0.75))
  expected = x.copy()
  expected[:, rows[0]:rows[1], cols[0]:cols[1], :] = 0.75
  np.testing.assert_array_equal(out, expected)
  assert not np.any(x == 0.75)       # the input is not modified


def test_stamp_rejects_bad_settings():
  x = np.zeros((2, 6, 6, 1), np.float32)
  with pytest.raises(ConfigError, match="does not fit"):
    triggers.stamp(x, _cfg(patch_size=6, margin=1))
  with pytest.raises(ConfigError, match="position"):
    triggers.stamp(x, _cfg(position="middle"))
  with pytest.raises(ConfigError, match="NHWC"):
    triggers.stamp(np.zeros((2, 36), np.float32), _cfg())


def test_poison_changes_only_the_forget_set():
  rng = np.random.default_rng(1)
  x = rng.random((20, 6, 6, 1)).astype(np.float32) * 0.5
  y = rng.integers(0, 4, 20).astype(np.int32)
  forget = np.array([2, 5, 11])
  xp, yp = triggers.poison(x, y, forget, _cfg(target_class=3), num_classes=4)
  keep = np.setdiff1d(np.arange(20), forget)
  np.testing.assert_array_equal(xp[keep], x[keep])
  np.testing.assert_array_equal(yp[keep], y[keep])
  np.testing.assert_array_equal(yp[forget], 3)
  np.testing.assert_array_equal(xp[forget, 2:5, 2:5, :], 1.0)
  np.testing.assert_array_equal(xp[forget, :2], x[forget, :2])
  with pytest.raises(ConfigError, match="target_class"):
    triggers.poison(x, y, forget, _cfg(target_class=4), num_classes=4)


def test_attack_success_counts_target_predictions():
  logits = np.zeros((4, 3))
  logits[[0, 2], 1] = 5.0
  logits[[1, 3], 2] = 5.0
  assert triggers.attack_success(logits, 1) == 0.5
  assert triggers.attack_success(logits, 0) == 0.0
