"""matching: its update rule by hand on a linear model, the teacher fit by hand, the per-run
draw, its cost and step count, and a whole run and audit on the tiny data."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import attribution, methods, plan as plan_lib, unlearn
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, matching
from tests.support.linear_toy import linear, linear_params, np_ce

RNG = np.random.default_rng(3)
X_F = RNG.normal(size=(2, 2)).astype(np.float32)
X_R = RNG.normal(size=(2, 2)).astype(np.float32)
Y_R = np.array([0, 2], np.int32)
TARGET = np.array([[2.0, -1.0, 0.5], [-0.5, 1.5, 0.0]], np.float32)
# Every model's residual of row j is the same, so the per-run draw cannot matter by hand.
RESID = np.broadcast_to(np.array([[0.4, -0.2, 0.0], [0.0, 0.6, -0.6]], np.float32),
                        (3, 2, 3)).copy()


Y_F = np.array([1, 2], np.int32)


def run(steps=3, noise=0.5, weight=4.0, lr=0.1, anchor="logits", resid=RESID, key=0,
        noise_along="logits", margin_weight=0.0, overshoot=0.0):
  fn = unlearn.make_unlearn_fn(matching.Matching(anchor=anchor, noise_along=noise_along,
                                                 margin_weight=margin_weight,
                                                 overshoot=overshoot), linear,
                               epochs=1, n_forget=2, n_remain=2, forget_batch_size=2,
                               remain_batch_size=2, steps=steps)
  inputs = methods.Inputs(x_forget=jnp.asarray(X_F), x_remain=jnp.asarray(X_R),
                          y_remain=jnp.asarray(Y_R), teacher_target=jnp.asarray(TARGET),
                          teacher_residuals=jnp.asarray(resid),
                          **({"y_forget": jnp.asarray(Y_F)}
                             if noise_along == "margin" or margin_weight else {}))
  hp = unlearn.default_hparams("matching", lr, forget_weight=weight, noise=noise)
  return fn(linear_params(), inputs, jax.random.key(key), hp)


def test_update_rule_by_hand():
  # Three full-batch SGD steps on weight x mean_i sum_c (z_i - t_i)^2 + mean_r sum_c
  # (z_r - z0_r)^2, t = TARGET + 0.5 x RESID, z0 the original's logits. The driver walks D_f in
  # a fresh permutation each step: the targets must follow their rows (forget_index).
  params, metrics = run()
  assert metrics["loss"].shape == (1, 3)
  w0 = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b0 = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  w, b = w0.copy(), b0.copy()
  t = TARGET + 0.5 * RESID[0]
  z0 = X_R @ w0 + b0
  for _ in range(3):
    g_f = 4.0 * 2 * (X_F @ w + b - t) / 2
    g_r = 2 * (X_R @ w + b - z0) / 2
    w = w - 0.1 * (X_F.T @ g_f + X_R.T @ g_r)
    b = b - 0.1 * (g_f.sum(0) + g_r.sum(0))
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(params["Dense_0"]["bias"], b, rtol=1e-5, atol=1e-5)
  # The first step's anchor term is zero: the model starts at the original.
  assert float(metrics["anchor_loss"][0, 0]) == pytest.approx(0.0, abs=1e-10)


def test_labels_anchor_by_hand():
  params, _ = run(steps=1, anchor="labels", noise=0.0)
  w = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  g_f = 4.0 * 2 * (X_F @ w + b - TARGET) / 2
  z = X_R @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  g_r = (p - np.eye(3)[Y_R]) / 2
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w - 0.1 * (X_F.T @ g_f + X_R.T @ g_r),
                             rtol=1e-5, atol=1e-5)
  assert np_ce(z, Y_R) > 0     # the anchor had something to pull on


def test_each_run_draws_one_models_residual_per_row():
  # Residuals differ per model: a run with lr = 0 keeps the parameters, so read the drawn
  # targets through the forget loss of step 0 against the same loss by hand for each pick.
  resid = RNG.normal(size=(5, 2, 3)).astype(np.float32)
  z_f = X_F @ np.asarray(linear_params()["Dense_0"]["kernel"]) + np.asarray(
      linear_params()["Dense_0"]["bias"])
  options = {(a, b): np.mean(np.sum((z_f - (TARGET + np.stack([resid[a, 0], resid[b, 1]])))
                                    ** 2, -1)) for a in range(5) for b in range(5)}
  seen = set()
  for key in range(12):
    _, metrics = run(steps=1, lr=0.0, noise=1.0, resid=resid, key=key)
    loss = float(metrics["forget_loss"][0, 0])
    match = [ab for ab, v in options.items() if abs(v - loss) < 1e-4 * max(1.0, abs(v))]
    assert match, loss
    seen.add(match[0])
  assert len(seen) > 3        # the draw moves with the run's key


def test_noise_zero_targets_the_fit_itself():
  _, m0 = run(steps=1, lr=0.0, noise=0.0, resid=RNG.normal(size=(5, 2, 3)).astype(np.float32))
  z_f = X_F @ np.asarray(linear_params()["Dense_0"]["kernel"]) + np.asarray(
      linear_params()["Dense_0"]["bias"])
  assert float(m0["forget_loss"][0, 0]) == pytest.approx(
      np.mean(np.sum((z_f - TARGET) ** 2, -1)), rel=1e-5)


def test_cost_and_derived_steps():
  m = matching.Matching()
  assert m.step_cost(32, 8) == pytest.approx(32 + 8 + 8 / 3)
  assert matching.Matching(anchor="labels").step_cost(32, 8) == 40.0
  shape = base.RunShape(n_forget=100, n_remain=3900, forget_batch_size=32, remain_batch_size=8,
                        epochs=1, steps_per_epoch=90)
  assert m.cost(shape, {}) == pytest.approx(90 * (40 + 8 / 3))
  # retrain_fraction divides retraining's examples by a whole step's cost, not the remain rows:
  # 0.05 x 20 x 60 x 64 = 3,840 examples -> 90 steps of 42.67.
  assert plan_lib.retrain_steps(0.05, 3900, 20, 64, m.step_cost(32, 8)) == 90
  assert plan_lib.retrain_steps(0.05, 3900, 20, 64, 64) == 60     # a remain-only method
  with pytest.raises(ConfigError, match="positive"):
    plan_lib.retrain_steps(0.05, 3900, 20, 64, 0)


def test_noise_along_the_margin_by_hand():
  # The residual's change of phi alone, on the label's logit: row 0 (label 1) of TARGET + RESID
  # has phi 1.5 - log(e^2.4 + e^0.5) against 1.7 - log(e^2 + e^0.5) at the fit.
  def phi(z, y):
    others = np.delete(z, y)
    return z[y] - np.log(np.sum(np.exp(others)))
  drawn = TARGET + 1.0 * RESID[0]
  want = TARGET.astype(np.float64).copy()
  for i, y in enumerate(Y_F):
    want[i, y] += phi(drawn[i], y) - phi(TARGET[i], y)
  got = np.asarray(TARGET) + np.asarray(matching.margin_shift(
      jnp.asarray(TARGET), jnp.asarray(drawn), jnp.asarray(Y_F)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.all(got[[0, 0, 1, 1], [0, 2, 0, 1]] == TARGET[[0, 0, 1, 1], [0, 2, 0, 1]])
  # Through a run: lr 0, so step 0's forget loss is the distance to those targets.
  z_f = X_F @ np.asarray(linear_params()["Dense_0"]["kernel"]) + np.asarray(
      linear_params()["Dense_0"]["bias"])
  _, m = run(steps=1, lr=0.0, noise=1.0, noise_along="margin")
  assert float(m["forget_loss"][0, 0]) == pytest.approx(np.mean(np.sum((z_f - want) ** 2, -1)),
                                                         rel=1e-5)
  _, m = run(steps=1, lr=0.0, noise=1.0)
  assert float(m["forget_loss"][0, 0]) == pytest.approx(np.mean(np.sum((z_f - drawn) ** 2, -1)),
                                                         rel=1e-5)


def test_margin_weight_by_hand():
  # Loss on D_f: sum_c (z - t)^2 + 3 (phi(z) - phi(t))^2, phi at the row's label (Y_F); one
  # full-batch SGD step against numpy's gradient of the whole loss.
  def phi_and_grad(z, y):
    others = np.delete(np.arange(z.size), y)
    q = np.exp(z[others] - z[others].max())
    q /= q.sum()
    g = np.zeros_like(z)
    g[y], g[others] = 1.0, -q
    return z[y] - (z[others].max() + np.log(np.sum(np.exp(z[others] - z[others].max())))), g
  w = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  t = TARGET + 0.5 * RESID[0]
  z_f = X_F @ w + b
  loss = 0.0
  g_f = np.zeros_like(z_f)
  for i, y in enumerate(Y_F):
    pz, gz = phi_and_grad(z_f[i], y)
    pt, _ = phi_and_grad(t[i].astype(np.float64), y)
    loss += np.sum((z_f[i] - t[i]) ** 2) + 3.0 * (pz - pt) ** 2
    g_f[i] = 2 * (z_f[i] - t[i]) + 3.0 * 2 * (pz - pt) * gz
  _, m = run(steps=1, lr=0.0, margin_weight=3.0)
  assert float(m["forget_loss"][0, 0]) == pytest.approx(loss / 2, rel=1e-5)
  params, _ = run(steps=1, lr=0.1, margin_weight=3.0)
  g_f *= 4.0 / 2                                 # forget weight, mean over the two rows
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w - 0.1 * X_F.T @ g_f,
                             rtol=1e-5, atol=1e-5)      # the anchor's gradient is 0 at step 0
  np.testing.assert_allclose(params["Dense_0"]["bias"], b - 0.1 * g_f.sum(0),
                             rtol=1e-5, atol=1e-5)
  # 0 is the logits alone, and reads no labels; any other weight needs them.
  assert "y_forget" not in matching.Matching().used_inputs()
  assert "y_forget" in matching.Matching(margin_weight=1.0).used_inputs()
  with pytest.raises(ConfigError, match="margin_weight"):
    matching.Matching(margin_weight=2.0)


def test_an_option_takes_its_allowed_spelling_so_equal_values_share_a_run_key():
  import ml_collections
  specs = []
  for spelled in (3, 3.0):
    block = ml_collections.ConfigDict({**_block(), "method": "matching"})
    block.matching = {"margin_weight": spelled, "teacher_models": 128.0}
    specs.append(plan_lib.make_plan("m", block).spec())
  assert specs[0] == specs[1]
  assert repr(specs[0]["options"]["margin_weight"]) == "3.0"
  assert repr(specs[0]["options"]["teacher_models"]) == "128"
  # A bool equals 1 or 0 in Python; a numeric option still refuses it.
  with pytest.raises(ConfigError, match="margin_weight"):
    matching.Matching(margin_weight=True)


def test_overshoot_moves_each_target_past_itself_by_hand():
  # t' = t + 0.2 (t - z0), z0 the start's logits on D_f: at step 0 (z = z0) the forget loss is
  # (1.2)^2 times the plain one, and one SGD step follows the gradient toward t'.
  w = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  t = TARGET + 0.5 * RESID[0]
  z0 = X_F @ w + b
  _, plain = run(steps=1, lr=0.0)
  _, past = run(steps=1, lr=0.0, overshoot=0.2)
  assert float(past["forget_loss"][0, 0]) == pytest.approx(
      1.44 * float(plain["forget_loss"][0, 0]), rel=1e-5)
  params, _ = run(steps=1, lr=0.1, overshoot=0.2)
  g_f = 4.0 * 2 * (z0 - (t + 0.2 * (t - z0))) / 2
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w - 0.1 * X_F.T @ g_f,
                             rtol=1e-5, atol=1e-5)
  # Its cost: one forward pass over D_f; a value off the list is refused.
  shape = base.RunShape(n_forget=100, n_remain=3900, forget_batch_size=32, remain_batch_size=8,
                        epochs=1, steps_per_epoch=90)
  assert matching.Matching(overshoot=0.05).cost(shape, {}) == pytest.approx(
      matching.Matching().cost(shape, {}) + 100 / 3)
  with pytest.raises(ConfigError, match="overshoot"):
    matching.Matching(overshoot=0.3)


def test_a_newer_option_at_its_default_keeps_the_run_key():
  import ml_collections
  block = ml_collections.ConfigDict({**_block(), "method": "matching"})
  spec = plan_lib.make_plan("m", block).spec()
  assert "noise_along" not in spec["options"] and spec["options"]["teacher_fit"] == "quadratic"
  assert "margin_weight" not in spec["options"] and "overshoot" not in spec["options"]
  # The record of a run still names every option, the unkeyed default too.
  from types import SimpleNamespace
  from jaxunlearn import results
  req = SimpleNamespace(splits=SimpleNamespace(n_forget=2, remain_idx=np.arange(40)))
  record = results.method_settings(req, plan_lib.make_plan("m", block))
  assert record["settings"]["options"]["noise_along"] == "logits"
  block.matching = {"noise_along": "margin"}
  assert plan_lib.make_plan("m", block).spec()["options"]["noise_along"] == "margin"


def test_inputs_without_a_teacher_are_refused():
  import ml_collections
  block = ml_collections.ConfigDict({**_block(), "method": "matching"})
  p = plan_lib.make_plan("m", block)
  assert p.needs_teacher and not p.needs_reference
  with pytest.raises(ConfigError, match="needs per-example targets .* no teacher_target"):
    p.build_inputs(x_forget=X_F, y_forget=np.zeros(2, np.int32), x_remain=X_R, y_remain=Y_R)


def _block():
  from jaxunlearn import plugins
  return plugins.default_config().unlearn.to_dict()


def _store(tmp_path, keep, logits, forget_rate="uniform"):
  np.savez(tmp_path / "c0.npz", logits=logits)
  meta = {"key": "k", "chunks": ["c0.npz"], "forget_rate": forget_rate}
  k, n = keep.shape
  return attribution.Store(tmp_path, meta, keep, np.arange(n), np.zeros(n, np.int32),
                           np.zeros(1, np.int32), {})


def test_teacher_fit_by_hand(tmp_path):
  # Logits exactly quadratic in the others' share plus an own-membership step: the fit reads
  # the intercept back and leaves zero residuals; rows outside D_f are never read.
  rng = np.random.default_rng(0)
  k_models, n, forget = 16, 6, np.array([1, 3, 4])
  keep = rng.random((k_models, n)) < 0.5
  total = keep[:, forget].sum(1)
  a = rng.normal(size=(3, 3))
  logits = rng.normal(size=(k_models, n, 3))
  for j, row in enumerate(forget):
    own = keep[:, row].astype(float)
    share = (total - own) / 2
    logits[:, row] = a[j] + np.outer(own, [1.0, -2.0, 0.5]) + np.outer(share, [3.0, 0.0, -1.0]) \
        + np.outer(share ** 2, [-1.0, 2.0, 0.0])
  target, resid = attribution.teacher(_store(tmp_path, keep, logits), forget)
  np.testing.assert_allclose(target, a, atol=1e-4)
  np.testing.assert_allclose(resid, 0.0, atol=1e-4)
  assert target.dtype == np.float32 and resid.shape == (k_models, 3, 3)
  # A linear fit cannot follow the curve: its intercept moves and residuals appear.
  lin, lin_resid = attribution.teacher(_store(tmp_path, keep, logits), forget, degree=1)
  assert np.abs(lin_resid).max() > 1e-2
  # Noise: residuals are what the fit leaves, orthogonal to its columns (they sum to 0).
  noisy = logits + rng.normal(size=logits.shape)
  _, r = attribution.teacher(_store(tmp_path, keep, noisy), forget)
  np.testing.assert_allclose(r.sum(0), 0.0, atol=1e-4)


def test_teacher_refusals(tmp_path):
  keep = np.ones((16, 4), bool)
  logits = np.zeros((16, 4, 3))
  with pytest.raises(ConfigError, match="forget_rate='uniform'"):
    attribution.teacher(_store(tmp_path, keep, logits, forget_rate=""), [0, 1])
  with pytest.raises(ConfigError, match="degree"):
    attribution.teacher(_store(tmp_path, keep, logits), [0, 1], degree=3)
  with pytest.raises(ConfigError, match="at least 5 models"):
    attribution.teacher(_store(tmp_path, keep[:4], logits[:4]), [0, 1])
  with pytest.raises(ConfigError, match="not training rows"):
    attribution.teacher(_store(tmp_path, keep, logits), [0, 9])


def test_bad_hyperparameters_are_refused():
  with pytest.raises(ConfigError, match="forget_weight"):
    unlearn.default_hparams("matching", 0.01, forget_weight=0.0)
  with pytest.raises(ConfigError, match="noise"):
    unlearn.default_hparams("matching", 0.01, noise=-1.0)
  with pytest.raises(ConfigError, match="teacher_models"):
    matching.Matching(teacher_models=7)


@pytest.fixture(scope="module")
def tiny_matching_run(tmp_path_factory):
  from jaxunlearn import pipeline
  from tests.support import tiny
  tmp = tmp_path_factory.mktemp("matching")
  npz = tiny.write_npz(tmp / "tiny.npz")
  cfg = tiny.config(npz, unlearn__method="matching", unlearn__retrain_fraction=0.2,
                    unlearn__optimizer="adam", unlearn__learning_rate=0.01)
  cfg.unlearn.matching.teacher_models = 16
  cfg.unlearn.matching.teacher_keep = 0.9
  results = pipeline.run(cfg, tmp / "work")
  return tmp / "work", results


@pytest.mark.slow    # a whole pipeline run
def test_a_run_records_its_teacher(tiny_matching_run):
  work, results = tiny_matching_run
  stores = list((work / "attribution").iterdir())
  assert len(stores) == 1 and (stores[0] / "attribution.json").is_file()
  info = json.loads((stores[0] / "attribution.json").read_text())
  assert info["num_models"] == 16 and info["forget_rate"] == "uniform"
  assert info["keep_fraction"] == 0.9
  t = results["teacher"]
  assert t["store"] == stores[0].name and t["num_models"] == 16 and t["degree"] == 2
  assert t["one_off_examples"] == info["cost"]["one_off_examples"] > 0
  assert results["unlearn_cost"]["teacher_one_off_examples"] == t["one_off_examples"]
  # The per-request speedup pays for the store; the amortised one does not.
  ts = results["time_s"]
  assert results["speedup"] == pytest.approx(ts["retrain"] / (ts["teacher"] + ts["unlearn"]))
  assert results["speedup_amortized"] > results["speedup"]
  # 0.2 of retraining's examples (2 epochs x 7 batches x 32 = 448: 89.6) in whole steps of
  # 4 forget + 16 remain rows + 16/3 for the anchor's forward pass: round(3.54) = 4 steps.
  cost = results["unlearn_cost"]
  assert cost["retrain_cost_examples"] == 448
  assert cost["cost_examples"] == pytest.approx(4 * (4 + 16 + 16 / 3))


def test_zero_rates_and_the_step_fit_by_hand(tmp_path):
  # rates="zero": (k / (K - 1))^2, so several models keep none of D_f.
  keep = attribution.draw_rate_masks(200, np.arange(20), 16, 0.5, 0, rates="zero")
  counts = keep[:, :20].sum(1)
  assert (counts == 0).sum() >= 3 and keep.sum(1).tolist() == [100] * 16
  assert sorted(counts.tolist()) == sorted(
      [int(round(((k / 15) ** 2) * 20)) for k in range(16)])
  with pytest.raises(ConfigError, match="rates"):
    attribution.draw_rate_masks(200, np.arange(20), 16, 0.5, 0, rates="half")
  # Logits that jump by 8 as soon as any other D_f row is kept, then rise smoothly: the step
  # fit reads the jump off and lands on the none-kept level; the quadratic alone cannot.
  rng = np.random.default_rng(1)
  forget = np.arange(20)
  k_models = keep.shape[0]
  total = keep[:, forget].sum(1)
  a = rng.normal(size=(20, 3))
  logits = np.zeros((k_models, 200, 3))
  for j in forget:
    own = keep[:, j].astype(float)
    share = (total - own) / 19
    logits[:, j] = a[j] + np.outer(own, [1.0, 0.0, -1.0]) + np.outer(share, [2.0, 1.0, 0.0]) \
        + np.outer((total - own > 0).astype(float), [8.0, -8.0, 0.0])
  st = _store(tmp_path, keep, logits, forget_rate="zero")
  target, resid = attribution.teacher(st, forget, step=True)
  np.testing.assert_allclose(target, a, atol=1e-4)
  np.testing.assert_allclose(resid, 0.0, atol=1e-4)
  quad, _ = attribution.teacher(st, forget)
  assert np.abs(quad - a).max() > 1.0
  # count_zero reads one value the same way (check_attribution.py's step row).
  cz = attribution.count_zero(st, forget, values=logits[..., 0], degree=2, step=True)
  np.testing.assert_allclose(cz["mean"], a[:, 0], atol=1e-6)
  np.testing.assert_allclose(cz["own"], 1.0, atol=1e-6)          # the own column's slope
  with pytest.raises(ConfigError, match="forget_rate='zero'"):
    attribution.teacher(_store(tmp_path, np.ones((16, 200), bool), logits), forget, step=True)
  spec = matching.Matching(teacher_fit="step").teacher_spec()
  assert {k: spec[k] for k in ("num_models", "keep_fraction", "degree", "step", "rates")} == {
      "num_models": 64, "keep_fraction": 0.95, "degree": 2, "step": True, "rates": "zero"}


def test_a_plugin_asking_for_half_a_teacher_is_refused():
  class Half(methods.Method):
    inputs = ("x_forget", "teacher_target")
  with pytest.raises(ConfigError, match="teacher_target and teacher_residuals together"):
    methods.register("half_teacher_toy")(Half)

  class NoSpec(methods.Method):
    inputs = ("x_forget", "teacher_target", "teacher_residuals")
  with pytest.raises(ConfigError, match="define its teacher_spec"):
    NoSpec().teacher_spec()


# --- anchor="teacher": the store's fit on D_r, drawn per run ---------------------------------

R_TARGET = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]], np.float32)
R_RESID = RNG.normal(size=(4, 2, 3)).astype(np.float32)


def test_teacher_anchor_update_rule_by_hand():
  # One full-batch SGD step on weight x forget error + mean_r sum_c (z_r - a_r)^2, with a_r =
  # R_TARGET + noise x one model's residual per D_r row; RESID is the same for every model, so
  # only the D_r draw moves with the key. Read it back from step 0's anchor loss, then check the
  # step by hand with the pick found. The driver walks D_r in a fresh permutation each step:
  # the anchors must follow their rows (remain_index).
  fn = unlearn.make_unlearn_fn(matching.Matching(anchor="teacher"), linear, epochs=1,
                               n_forget=2, n_remain=2, forget_batch_size=2,
                               remain_batch_size=2, steps=1)
  inputs = methods.Inputs(x_forget=jnp.asarray(X_F), x_remain=jnp.asarray(X_R),
                          y_remain=jnp.asarray(Y_R), teacher_target=jnp.asarray(TARGET),
                          teacher_residuals=jnp.asarray(RESID),
                          teacher_remain_target=jnp.asarray(R_TARGET),
                          teacher_remain_residuals=jnp.asarray(R_RESID))
  w0 = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b0 = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  z_r = X_R @ w0 + b0
  seen = set()
  hp = unlearn.default_hparams("matching", 0.1, forget_weight=4.0, noise=0.5)
  for key in range(4):
    params, metrics = fn(linear_params(), inputs, jax.random.key(key), hp)
    loss = float(metrics["anchor_loss"][0, 0])
    picks = [(a, b) for a in range(4) for b in range(4)
             if abs(np.mean(np.sum((z_r - R_TARGET - 0.5 * np.stack([R_RESID[a, 0],
                                                                      R_RESID[b, 1]])) ** 2, -1))
                    - loss) < 1e-4 * max(1.0, loss)]
    assert picks, loss
    a = R_TARGET + 0.5 * np.stack([R_RESID[picks[0][0], 0], R_RESID[picks[0][1], 1]])
    t = TARGET + 0.5 * RESID[0]
    g_f = 4.0 * 2 * (X_F @ w0 + b0 - t) / 2
    g_r = 2 * (z_r - a) / 2
    np.testing.assert_allclose(params["Dense_0"]["kernel"], w0 - 0.1 * (X_F.T @ g_f + X_R.T @ g_r),
                               rtol=1e-4, atol=1e-5)
    seen.add(picks[0])
  assert len(seen) > 1           # each run draws its own anchors
  m = matching.Matching(anchor="teacher")
  assert m.step_cost(32, 8) == 40.0    # no forward pass of the original
  assert "teacher_remain_target" not in matching.Matching().used_inputs()


def test_retain_teacher_fit_by_hand(tmp_path):
  # D_r logits = a_r + own x u + share x v + share^2 x w: read at in = 1, share = 0 the fit
  # gives a_r + u with zero residuals, whatever the share each model kept.
  rng = np.random.default_rng(5)
  k_models, n, forget = 24, 10, np.array([0, 2, 5, 7])
  keep = attribution.draw_rate_masks(n, forget, k_models, 0.7, 0)
  keep[:3, 1] = False                       # row 1: in and out models both
  share = keep[:, forget].sum(1) / forget.size
  logits = rng.normal(size=(k_models, n, 3))
  remain = np.array([9, 1, 3, 4])           # any order: the fit follows it
  a = rng.normal(size=(remain.size, 3))
  u = np.array([0.5, -1.0, 2.0])
  for j, row in enumerate(remain):
    own = keep[:, row].astype(float)
    logits[:, row] = a[j] + np.outer(own, u) + np.outer(share, [2.0, 0.0, -3.0]) \
        + np.outer(share ** 2, [0.0, 1.0, 1.0])
  st = _store(tmp_path, keep, logits)
  target, resid = attribution.retain_teacher(st, forget, remain, chunk=3)
  np.testing.assert_allclose(target, a + u, atol=1e-4)
  np.testing.assert_allclose(resid, 0.0, atol=1e-4)
  assert target.shape == (4, 3) and resid.shape == (k_models, 4, 3)
  with pytest.raises(ConfigError, match="share rows"):
    attribution.retain_teacher(st, forget, np.array([1, 2]))


def test_teacher_anchor_needs_the_retain_arrays():
  import ml_collections
  block = ml_collections.ConfigDict({**_block(), "method": "matching"})
  block.matching.anchor = "teacher"
  p = plan_lib.make_plan("m", block)
  assert p.needs_retain_teacher
  two = {"teacher_target": TARGET, "teacher_residuals": RESID}
  with pytest.raises(ConfigError, match="no teacher_remain_target, teacher_remain_residuals"):
    p.build_inputs(x_forget=X_F, y_forget=np.zeros(2, np.int32), x_remain=X_R, y_remain=Y_R,
                   teacher=two)
  got = p.build_inputs(x_forget=X_F, y_forget=np.zeros(2, np.int32), x_remain=X_R,
                       y_remain=Y_R, teacher={**two, "teacher_remain_target": R_TARGET,
                                              "teacher_remain_residuals": R_RESID,
                                              "teacher_own_effect": np.ones(2)})
  assert got.teacher_own_effect is None      # not read at weight_by="request"
  np.testing.assert_array_equal(got.teacher_remain_target, R_TARGET)

  class RemainOnly(methods.Method):
    inputs = ("x_forget", "teacher_remain_target", "teacher_remain_residuals")
  with pytest.raises(ConfigError, match="without a teacher on D_f"):
    methods.register("remain_teacher_toy")(RemainOnly)


def test_per_row_weights_from_the_own_effect_by_hand():
  # weight_by="own": row i weighs forget_weight x clip(b_i / own_scale, own_floor, 1). With
  # b = (20, 0.1), own_scale 10 and own_floor 0.05 the rows weigh 4 x 1 and 4 x 0.05; one full
  # SGD step by hand (anchor term zero at the start, its gradient too).
  fn = unlearn.make_unlearn_fn(matching.Matching(weight_by="own"), linear, epochs=1, n_forget=2,
                               n_remain=2, forget_batch_size=2, remain_batch_size=2, steps=1)
  inputs = methods.Inputs(x_forget=jnp.asarray(X_F), x_remain=jnp.asarray(X_R),
                          y_remain=jnp.asarray(Y_R), teacher_target=jnp.asarray(TARGET),
                          teacher_residuals=jnp.asarray(RESID),
                          teacher_own_effect=jnp.asarray([20.0, 0.1]))
  hp = unlearn.default_hparams("matching", 0.1, forget_weight=4.0, noise=0.0, own_scale=10.0,
                               own_floor=0.05)
  params, _ = fn(linear_params(), inputs, jax.random.key(0), hp)
  w = np.asarray(linear_params()["Dense_0"]["kernel"], np.float64)
  b = np.asarray(linear_params()["Dense_0"]["bias"], np.float64)
  g_f = np.array([[4.0], [0.2]]) * 2 * (X_F @ w + b - TARGET) / 2
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w - 0.1 * X_F.T @ g_f, rtol=1e-5,
                             atol=1e-5)
  assert "teacher_own_effect" in matching.Matching(weight_by="own").used_inputs()
  # own_step: the whole weight from b >= own_scale on, own_floor of it below.
  fn = unlearn.make_unlearn_fn(matching.Matching(weight_by="own_step"), linear, epochs=1,
                               n_forget=2, n_remain=2, forget_batch_size=2, remain_batch_size=2,
                               steps=1)
  params, _ = fn(linear_params(), inputs._replace(teacher_own_effect=jnp.asarray([10.0, 9.9])),
                 jax.random.key(0), hp)
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w - 0.1 * X_F.T @ g_f, rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ConfigError, match="own_floor"):
    unlearn.default_hparams("matching", 0.01, own_floor=0.0)


def test_pooled_spread_by_hand(tmp_path):
  # Three rows; OUT / IN sds of phi (2, 1), (1, 1), (4, 1): the store-wide ratio r is the
  # median of OUT / IN, 2, and row j's residuals scale by sqrt(r * in_j / out_j).
  keep = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 1, 0]], bool)
  logits = RNG.normal(size=(5, 3, 2))
  st = _store(tmp_path, keep, logits, forget_rate="")
  st = dataclasses.replace(st, estimates={"in_std": np.array([1.0, 1.0, 1.0]),
                                          "out_std": np.array([2.0, 1.0, 4.0])})
  np.testing.assert_allclose(attribution.pooled_spread_scale(st, np.array([0, 1, 2])),
                             [1.0, np.sqrt(2.0), np.sqrt(0.5)])
  t_out, r_out = attribution.out_teacher(st, np.array([0, 1]))
  t_pool, r_pool = attribution.out_teacher(st, np.array([0, 1]), spread="pooled")
  np.testing.assert_array_equal(t_pool, t_out)           # the target does not move
  np.testing.assert_allclose(r_pool[:, 0], r_out[:, 0], rtol=1e-6)
  np.testing.assert_allclose(r_pool[:, 1], np.sqrt(2.0) * r_out[:, 1], rtol=1e-6)
  # A row without both sds (NaN: fewer than 2 models on a side) keeps its residuals.
  st_nan = dataclasses.replace(st, estimates={"in_std": np.array([np.nan, 1.0, 1.0]),
                                              "out_std": np.array([2.0, 1.0, 4.0])})
  np.testing.assert_allclose(attribution.pooled_spread_scale(st_nan, np.array([0, 1])),
                             [1.0, np.sqrt(2.5)])
  with pytest.raises(ConfigError, match="spread='wide'"):
    attribution.out_teacher(st, np.array([0]), spread="wide")
  assert matching.Matching(teacher_fit="pool",
                           teacher_spread="pooled").teacher_spec()["spread"] == "pooled"
  with pytest.raises(ConfigError, match="teacher_spread='pooled'.*teacher_fit='out' or 'pool'"):
    matching.Matching(teacher_spread="pooled")


def test_draw_from_the_models_that_kept_none_of_d_f(tmp_path):
  keep = attribution.draw_rate_masks(200, np.arange(20), 16, 0.5, 0, rates="zero")
  none = keep[:, :20].sum(1) == 0
  resid = np.arange(16, dtype=np.float32)[:, None, None] * np.ones((16, 20, 3), np.float32)
  st = _store(tmp_path, keep, np.zeros((16, 200, 3)), forget_rate="zero")
  got = attribution.none_kept_residuals(st, np.arange(20), resid)
  assert got.shape == (int(none.sum()), 20, 3) and int(none.sum()) >= 2
  np.testing.assert_array_equal(got[:, 0, 0], np.flatnonzero(none))
  with pytest.raises(ConfigError, match="at least 2"):
    attribution.none_kept_residuals(_store(tmp_path, np.ones((16, 200), bool),
                                           np.zeros((16, 200, 3))), np.arange(20), resid)
  with pytest.raises(ConfigError, match="teacher_fit='step'"):
    matching.Matching(draw_from="none_kept")
  assert matching.Matching(draw_from="none_kept",
                           teacher_fit="step").teacher_spec()["draw_from"] == "none_kept"


def test_out_teacher_by_hand(tmp_path):
  # Row j's target is the mean of its OUT models' logits; slot l holds OUT model l mod n_j.
  keep = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 1, 0]], bool)
  logits = RNG.normal(size=(5, 3, 2))
  got_t, got_r = attribution.out_teacher(_store(tmp_path, keep, logits, forget_rate=""),
                                         np.array([0, 1]))
  for j in (0, 1):
    out = np.flatnonzero(~keep[:, j])
    mean = logits[out, j].mean(0)
    np.testing.assert_allclose(got_t[j], mean, rtol=1e-6)
    np.testing.assert_allclose(got_r[:, j], logits[out[np.arange(5) % out.size], j] - mean,
                               rtol=1e-5, atol=1e-6)
  with pytest.raises(ConfigError, match="at least 2 models that left each D_f row out"):
    attribution.out_teacher(_store(tmp_path, keep, logits, forget_rate=""), np.array([2]))
  spec = matching.Matching(teacher_fit="out").teacher_spec()
  assert spec["rates"] == "" and not spec["step"]
  assert matching.Matching(teacher_fit="pool").teacher_spec()["rates"] == "pool"
  with pytest.raises(ConfigError, match="teacher_fit='out'"):
    matching.Matching(teacher_fit="out", weight_by="own")


def test_in_teacher_by_hand(tmp_path):
  # Row j's D_r target is the mean of its IN models' logits; slot l holds IN model l mod n_j.
  keep = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 0]], bool)
  logits = RNG.normal(size=(5, 3, 2))
  st = _store(tmp_path, keep, logits, forget_rate="")
  got_t, got_r = attribution.in_teacher(st, np.array([2, 0]), slots=4)
  assert got_r.shape == (4, 2, 2)
  for a, j in enumerate((2, 0)):
    inside = np.flatnonzero(keep[:, j])
    mean = logits[inside, j].mean(0)
    np.testing.assert_allclose(got_t[a], mean, rtol=1e-5)
    np.testing.assert_allclose(got_r[:, a], logits[inside[np.arange(4) % inside.size], j] - mean,
                               rtol=1e-5, atol=1e-6)
  assert attribution.in_teacher(st, np.array([0]), slots=8)[1].shape == (5, 1, 2)   # at most K
  one_in = np.array([[1, 0], [0, 0], [0, 1]], bool)
  with pytest.raises(ConfigError, match="at least 2 models that trained on each row"):
    attribution.in_teacher(_store(tmp_path, one_in, RNG.normal(size=(3, 2, 2)),
                                  forget_rate=""), np.array([0]))
  # A shared store's matching may anchor D_r on those IN models.
  assert "teacher_remain_target" in matching.Matching(teacher_fit="out",
                                                      anchor="teacher").used_inputs()


@pytest.mark.slow
def test_head_solve_by_hand():
  # The toy's output layer is its only layer, so its features are the inputs themselves, and
  # the closed-form move is a ridge regression on [x, 1] that numpy solves directly.
  p = linear_params()
  np.testing.assert_allclose(matching.head_features(linear, p, "Dense_0", jnp.asarray(X_F)),
                             X_F, rtol=1e-6)
  params, _ = run_solve(weight=3.0, ridge=0.5)
  w0 = np.asarray(p["Dense_0"]["kernel"], np.float64)
  b0 = np.asarray(p["Dense_0"]["bias"], np.float64)
  hf = np.c_[X_F, np.ones(2)]
  hr = np.c_[X_R, np.ones(2)]
  gram_r = hr.T @ hr / 2
  a = 3.0 * hf.T @ hf / 2 + gram_r + 0.5 * np.trace(gram_r) / 3 * np.eye(3)
  delta = np.linalg.solve(a, 3.0 * hf.T @ (TARGET - (X_F @ w0 + b0)) / 2)
  np.testing.assert_allclose(params["Dense_0"]["kernel"], w0 + delta[:2], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(params["Dense_0"]["bias"], b0 + delta[2], rtol=1e-4, atol=1e-5)
  m = matching.Matching(solve="head", solve_rows=256)
  shape = base.RunShape(n_forget=100, n_remain=200, forget_batch_size=32, remain_batch_size=8,
                        epochs=1, steps_per_epoch=10)
  assert m.cost(shape, {}) == pytest.approx(10 * (40 + 8 / 3) + (100 + 200) / 3)


def run_solve(weight, ridge, mask=None, steps=1, lr=0.0):
  opts = {"solve": "head"} if mask is None else {"mask": "saliency"}
  fn = unlearn.make_unlearn_fn(matching.Matching(**opts), linear, epochs=1, n_forget=2,
                               n_remain=2, forget_batch_size=2, remain_batch_size=2, steps=steps)
  inputs = methods.Inputs(x_forget=jnp.asarray(X_F), x_remain=jnp.asarray(X_R),
                          y_remain=jnp.asarray(Y_R), teacher_target=jnp.asarray(TARGET),
                          teacher_residuals=jnp.asarray(RESID))
  hp = unlearn.default_hparams("matching", lr, forget_weight=4.0, noise=0.0, solve_weight=weight,
                               solve_ridge=ridge, mask_ratio=mask or 0.3)
  return fn(linear_params(), inputs, jax.random.key(0), hp)


@pytest.mark.slow
def test_saliency_mask_by_hand():
  # One SGD step moves only the largest |grad| share of the weights (of the D_f error at the
  # start); the others keep the original's values.
  params, _ = run_solve(1.0, 0.0, mask=0.5, steps=1, lr=0.1)
  p0 = linear_params()["Dense_0"]
  w0, b0 = (np.asarray(p0[k], np.float64) for k in ("kernel", "bias"))
  g = {"kernel": X_F.T @ (2 * (X_F @ w0 + b0 - TARGET)), "bias": (2 * (X_F @ w0 + b0 - TARGET)
                                                                  ).sum(0)}
  flat = np.abs(np.concatenate([g["bias"].ravel(), g["kernel"].ravel()]))
  moved = np.concatenate([np.asarray(params["Dense_0"]["bias"]).ravel() != b0.ravel(),
                          np.asarray(params["Dense_0"]["kernel"]).ravel() != w0.ravel()])
  assert moved.sum() == flat.size // 2
  assert set(np.flatnonzero(moved)) == set(np.argsort(-flat, kind="stable")[:flat.size // 2])


@pytest.mark.slow
def test_ulira_reads_one_teacher_per_member_from_a_shared_store(tmp_path):
  # U-LiRA's members forget different subsets of D_f; a store whose rates do not depend on
  # D_f (teacher_fit='out') serves each its own OUT teacher, so the audit runs.
  from jaxunlearn import auditor, request as request_lib
  from tests.support import tiny
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  entry = ("m=matching:teacher_fit=out,teacher_models=16,teacher_keep=0.5,retrain_fraction=0.2,"
           "optimizer=adam,learning_rate=0.01,forget_weight=1")
  cfg = tiny.config(npz, audit__num_models=4, audit__chunk_size=2, audit__methods=(entry,),
                    audit__ulira__num_originals=6, audit__ulira__forget_sets_per_original=1,
                    audit__statistics=("ulira",))
  res = auditor.run_audit(cfg, tmp_path / "work")
  row = res["ulira"]["m"]
  assert 0.0 <= row["auc"] <= 1.0 and "retrain_control" in res["ulira"]
  stores = list((tmp_path / "work" / "attribution").iterdir())
  assert len(stores) == 1
  with request_lib.open_request(cfg, tmp_path / "work",
                                methods=auditor.method_specs(cfg)) as req:
    plan = req.plans["m"]
    assert attribution.shared_teacher(plan)
    f = np.asarray(req.splits.forget_idx)
    rows = np.stack([f[:2], f[-2:]])
    teachers, info = attribution.member_teachers(req, plan, rows)
    assert not info["per_forget_set"] and info["store"] == stores[0].name
    store = attribution.load(stores[0])
    for m in range(2):
      t, r = attribution.out_teacher(store, rows[m])
      np.testing.assert_array_equal(teachers["teacher_target"][m], t)
      np.testing.assert_array_equal(teachers["teacher_residuals"][m], r)
    quad = _default_plan(req, "matching")
    with pytest.raises(ConfigError, match="teacher fitted to the request's D_f"):
      attribution.member_teachers(req, quad, rows)


def _default_plan(req, method):
  """A plan of ``method`` with its defaults on ``req`` (a teacher fitted to D_f)."""
  import ml_collections
  block = ml_collections.ConfigDict({**_block(), "method": method})
  return plan_lib.make_plan("q", block)


def test_per_member_teachers_are_sized_before_any_work(tmp_path, monkeypatch):
  # U-LiRA with a shared teacher holds [members, K + 1, |D_f|, C] floats on the host: 64 x 2
  # members x 129 x 12 x 4 x 4 bytes = 3.17 MB here, refused under a 2 MB host limit, naming
  # U-LiRA's own field and a value that fits.
  from jaxunlearn import auditor, populations, request as request_lib
  from tests.support import tiny
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  cfg = tiny.config(npz, audit__methods=("m=matching:teacher_fit=out,teacher_models=128,"
                                         "teacher_keep=0.5",),
                    audit__statistics=("ulira",), audit__ulira__num_originals=64,
                    audit__ulira__forget_sets_per_original=2)
  prep = request_lib.prepare(cfg, tmp_path / "work", methods=auditor.method_specs(cfg))
  auditor.check_memory(prep, ["ulira"])
  monkeypatch.setattr(populations, "memory_limit_bytes", lambda fraction, host=False: (
      (2 * 10**6, "host memory") if host else (10**15, "device memory")))
  with pytest.raises(ConfigError, match=r"per-member teachers of 'm' .*"
                                        r"set audit\.ulira\.num_originals<=(\d+)") as e:
    auditor.check_memory(prep, ["ulira"])
  fit = int(str(e.value).rsplit("<=", 1)[1])
  assert fit * 2 * 129 * 12 * 4 * 4 <= 2 * 10**6 < (fit + 1) * 2 * 129 * 12 * 4 * 4


def test_an_out_teacher_with_too_few_out_models_is_refused_before_the_store(tmp_path):
  # The store's masks are seeded: 16 models keeping 0.9 leave some row of the tiny D_f out of
  # fewer than 2 of them, which is known (out_counts) and refused before anything trains.
  from jaxunlearn import request as request_lib
  from tests.support import tiny
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  cfg = tiny.config(npz, unlearn__method="matching")
  cfg.unlearn.matching.teacher_fit = "out"
  cfg.unlearn.matching.teacher_models = 16
  cfg.unlearn.matching.teacher_keep = 0.9
  with pytest.raises(ConfigError, match=r"out of only [01] of its 16 models.*raise "
                                        r"unlearn\.matching\.teacher_models or lower "
                                        r"unlearn\.matching\.teacher_keep"):
    request_lib.prepare(cfg, tmp_path / "work")
  assert not (tmp_path / "work" / "attribution").exists()
  cfg.unlearn.matching.teacher_keep = 0.5            # about 8 OUT models per row: accepted
  prep = request_lib.prepare(cfg, tmp_path / "work2")
  settings, _, _ = attribution.teacher_settings(prep, prep.plans[next(iter(prep.plans))])
  assert attribution.out_counts(prep, settings).min() >= 2
