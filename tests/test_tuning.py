"""Tuning: search spaces, the grid as one vmapped call, the objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import methods, tuning, unlearn
from jaxunlearn.errors import ConfigError
from tests.support import tiny
from tests.support.linear_toy import apply_fn, inputs_for, toy, toy_fn


@pytest.mark.parametrize("name", methods.names())
def test_every_method_ships_a_small_search_space(name):
  grid = tuning.grid_points(name)
  # A method that trains nothing (SSD) searches its own knobs only.
  assert ("learning_rate" in grid) == getattr(methods.get(name), "uses_learning_rate", True)
  sizes = {len(v) for v in grid.values()}
  assert len(sizes) == 1 and 1 < sizes.pop() <= tuning.MAX_POINTS


def test_oversized_or_unknown_search_space_rejected():
  class Big(methods.Method):
    hparams = {"k": 1.0}
    search_space = {"learning_rate": tuple(range(1, 6)), "k": (1.0, 2.0, 3.0, 4.0)}

  class Unknown(methods.Method):
    search_space = {"learning_rate": (0.1,), "nope": (1.0,)}
  with pytest.raises(ConfigError, match="more than 16"):
    tuning.grid_points(Big)
  with pytest.raises(ConfigError, match="nope"):
    tuning.grid_points(Unknown)


def test_grid_in_one_vmapped_call_equals_separate_runs():
  p, inputs = toy()
  inputs = inputs_for("salun", inputs)
  fn = toy_fn("salun", epochs=2)
  grid = tuning.grid_points("salun")
  hp = unlearn.default_hparams("salun", 0.1)
  key = jax.random.key(4)
  stacked, _ = tuning.run_grid(fn, p, inputs, key, hp, grid)
  one = jax.jit(fn)
  for i in range(len(grid["learning_rate"])):
    point = {**hp, **{k: jnp.float32(v[i]) for k, v in grid.items()}}
    w = np.asarray(one(p, inputs, key, point)[0]["w"])
    np.testing.assert_allclose(np.asarray(stacked["w"][i]), w, rtol=1e-5, atol=1e-6)
  assert not np.allclose(np.asarray(stacked["w"][0]), np.asarray(stacked["w"][-1]))


def test_grid_figures_and_objective_match_numpy():
  p, inputs = toy(n_f=8, n_h=8)
  stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a + 0.3]), p)
  sets = {"remain": (inputs.x_remain, inputs.y_remain),
          "forget": (inputs.x_forget, inputs.y_forget),
          "heldout": (inputs.x_heldout, inputs.y_heldout)}
  figs = tuning.grid_figures(apply_fn, stacked, sets)
  for i, f in enumerate(figs):
    w, b = np.asarray(stacked["w"][i]), np.asarray(stacked["b"][i])
    for part, (x, y) in sets.items():
      acc = np.mean(np.argmax(np.asarray(x) @ w + b, -1) == np.asarray(y))
      assert f[f"acc_{part}"] == pytest.approx(acc)
    assert 0.0 <= f["mia"] <= 1.0
  retrain = {"acc_remain": 0.9, "acc_forget": 0.8, "acc_heldout": 0.7, "mia": 0.5}
  fig = {"acc_remain": 0.8, "acc_forget": 1.0, "acc_heldout": 0.7, "mia": 0.6}
  assert tuning.objective(fig, retrain) == pytest.approx((0.1 + 0.2 + 0.0) / 3 + 0.1)


@pytest.mark.slow
def test_tune_on_the_tiny_pipeline(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  cfg = tiny.config(npz, unlearn__method="gradient_ascent", holdout__size=0.1, seed=7)
  res = tuning.tune(cfg, tmp_path / "work")
  n = len(tuning.grid_points("gradient_ascent")["learning_rate"])
  # Every point at every output temperature: the generic wrapper rescales the grid's results.
  assert len(res["grid"]) == n * len(tuning.TEMPERATURES)
  temps = [r["output_temperature"] for r in res["grid"]]
  assert temps == [t for t in tuning.TEMPERATURES for _ in range(n)]
  best = min(r["objective"] for r in res["grid"])
  assert res["grid"][res["best_index"]]["objective"] == best
  chosen = res["grid"][res["best_index"]]
  assert res["best"] == {"learning_rate": chosen["learning_rate"],
                         "output_temperature": chosen["output_temperature"]}
  # A temperature rescales the logits: accuracies are those of the unscaled point.
  for r in res["grid"][n:]:
    assert r["acc_remain"] == res["grid"][res["grid"].index(r) % n]["acc_remain"]
  assert (tmp_path / "work" / "checkpoints").is_dir()


def test_a_diverged_point_scores_infinity():
  p, inputs = toy(n_f=8, n_h=8)
  stacked = jax.tree.map(lambda a: jnp.stack([a, a * jnp.nan]), p)
  sets = {"remain": (inputs.x_remain, inputs.y_remain),
          "forget": (inputs.x_forget, inputs.y_forget),
          "heldout": (inputs.x_heldout, inputs.y_heldout)}
  figs = tuning.grid_figures(apply_fn, stacked, sets)
  assert np.isnan(figs[1]["mia"]) and np.isfinite(figs[0]["mia"])
  assert tuning.objective(figs[1], figs[0]) == float("inf")
