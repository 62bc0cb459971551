"""The attribution store: masks, stored logits, resume, keys, memory refusal, estimates.

The quick tests use the tiny request (nothing trained) or hand-made stores. One
store of K = 4 tiny MLPs (2 chunks of 2) is built once for the module for the
slow ones, which read it, kill and resume a copy of it, or run the command.
"""

import json

import jax
import numpy as np
import pytest

from jaxunlearn import attribution, populations as pops, request as request_lib, stages
from jaxunlearn import train as train_lib
from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.errors import ConfigError
from tests.support import tiny

K, CHUNK = 4, 2


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """``(prep, settings)``: the tiny request (validated, nothing trained) and K = 4 settings."""
  base = tmp_path_factory.mktemp("attribution")
  npz = tiny.write_npz(base / "tiny.npz")
  prep = request_lib.prepare(tiny.config(npz), base / "work")
  return prep, attribution.Settings(num_models=K, chunk_size=CHUNK, root=str(base / "stores"))


@pytest.fixture(scope="module")
def setup(prepared):
  """``(prep, settings, store)``: the tiny request and its built store."""
  prep, settings = prepared
  return prep, settings, attribution.build(prep, settings, progress=False)


def test_masks_have_the_keep_fraction_and_counts_add_to_k():
  keep = attribution.draw_masks(240, K, 0.5, seed=0)
  np.testing.assert_array_equal(keep.sum(1), 120)
  est = attribution.estimates(np.random.default_rng(0).normal(size=keep.shape), keep)
  np.testing.assert_array_equal(est["in_count"], keep.sum(0))
  np.testing.assert_array_equal(est["in_count"] + est["out_count"], K)
  # Over many models each example's IN share is about p; the masks follow the seed alone.
  wide = attribution.draw_masks(200, 400, 0.3, seed=1)
  assert abs(wide.mean() - 0.3) < 1e-9
  assert np.abs(wide.mean(0) - 0.3).max() < 0.12
  np.testing.assert_array_equal(wide, attribution.draw_masks(200, 400, 0.3, seed=1))
  assert (wide != attribution.draw_masks(200, 400, 0.3, seed=2)).any()


@pytest.mark.slow
def test_a_built_store_has_its_masks_counts_and_cost(setup):
  prep, _, store = setup
  n = store.rows.size
  np.testing.assert_array_equal(store.rows, prep.splits.train_idx)
  np.testing.assert_array_equal(store.keep, attribution.draw_masks(n, K, 0.5, seed=0))
  est = store.estimates
  np.testing.assert_array_equal(est["in_count"] + est["out_count"], K)
  meta = json.loads((store.path / attribution.META).read_text())
  n_keep = int(store.keep[0].sum())
  b = min(int(prep.cfg.train.batch_size), n_keep)
  assert meta["cost"]["one_off_examples"] == K * prep.cfg.train.epochs * (n_keep // b) * b
  assert meta["num_models"] == K and meta["keep_fraction"] == 0.5
  assert len(meta["chunks"]) == K // CHUNK
  assert not list(store.path.glob("*.tmp-*"))


@pytest.mark.slow
def test_stored_logits_are_a_members_own_and_estimates_follow(setup):
  prep, settings, store = setup
  cfg = prep.cfg
  keep0 = store.keep[0]
  n_keep = int(keep0.sum())
  train = train_lib.make_train_fn(
      prep.model, train_lib.optimizer_for_rows(cfg.train, n_keep, cfg.train.epochs),
      prep.data.input_shape, epochs=int(cfg.train.epochs),
      batch_size=min(int(cfg.train.batch_size), n_keep))
  key = jax.random.fold_in(stages.stage_key(settings.seed, attribution.NAME), 0)
  rows = store.rows[keep0]
  state, _ = jax.jit(train)(key, prep.x_train[rows], prep.y_train[rows])
  apply_fn = train_lib.eval_apply_fn(prep.model, state.batch_stats)
  direct = np.asarray(apply_fn(state.params, prep.x_train[store.rows]))
  logits = store.logits()
  assert logits.shape == (K, store.rows.size, prep.data.num_classes)
  np.testing.assert_allclose(logits[0], direct, atol=1e-4)
  np.testing.assert_allclose(store.logits(heldout=True)[0],
                             np.asarray(apply_fn(state.params, prep.data.x_test)), atol=1e-4)
  phi = store.phi()
  np.testing.assert_allclose(phi, phi_lib.logit_confidence_numpy(logits, store.labels),
                             atol=1e-4)
  j = int(np.argmax(store.keep.sum(0) == 2))    # a point with 2 IN and 2 OUT models
  assert store.keep[:, j].sum() == 2
  np.testing.assert_allclose(store.estimates["in_mean"][j], phi[store.keep[:, j], j].mean())
  np.testing.assert_allclose(store.estimates["out_std"][j],
                             phi[~store.keep[:, j], j].std(ddof=1))
  np.testing.assert_allclose(store.estimates["heldout_mean"], store.phi(heldout=True).mean(0),
                             rtol=1e-6)


@pytest.mark.slow
def test_a_killed_build_resumes_from_its_finished_chunks(setup, tmp_path, monkeypatch):
  prep, settings, store = setup
  settings = attribution.Settings(num_models=K, chunk_size=CHUNK, root=str(tmp_path))

  def killed(pop, chunk, stage):
    raise KeyboardInterrupt("killed after chunk 0")
  monkeypatch.setattr(pops, "pause_point_after_chunk", killed)
  with pytest.raises(KeyboardInterrupt):
    attribution.build(prep, settings, progress=False)
  folder = tmp_path / store.path.name
  assert [p.name for p in folder.glob("*.npz")] == [store.meta["chunks"][0]]
  assert not (folder / attribution.META).exists()

  built = []
  monkeypatch.setattr(pops, "pause_point_after_chunk", lambda pop, c, stage: built.append(c))
  resumed = attribution.build(prep, settings, progress=False)
  assert built == [1] and resumed.meta["chunks_reused"] == 1
  np.testing.assert_array_equal(resumed.logits(), store.logits())

  # A finished store is loaded: nothing trains.
  def refuse(*args, **kwargs):
    raise AssertionError("a finished store was rebuilt")
  monkeypatch.setattr(pops, "run_population", refuse)
  again = attribution.build(prep, settings, progress=False)
  np.testing.assert_array_equal(again.estimates["in_mean"], resumed.estimates["in_mean"])


@pytest.mark.slow
def test_a_second_builder_waits_for_the_first_and_loads_its_store(setup, tmp_path, monkeypatch,
                                                                  capsys):
  import shutil
  import threading
  import time
  from jaxunlearn import workdir as workdir_lib
  prep, settings, store = setup
  settings = attribution.Settings(num_models=K, chunk_size=CHUNK, root=str(tmp_path))
  folder = tmp_path / store.path.name
  shutil.copytree(store.path, folder)
  (folder / attribution.META).rename(tmp_path / "meta")     # unfinished, as while it builds

  def refuse(*args, **kwargs):
    raise AssertionError("the second builder trained")
  monkeypatch.setattr(pops, "run_population", refuse)
  got = {}
  with workdir_lib.Lock(folder):                               # the first builder
    second = threading.Thread(
        target=lambda: got.setdefault("store", attribution.build(prep, settings, progress=False)))
    second.start()
    said, deadline = "", time.monotonic() + 120
    while "waiting for it" not in said and second.is_alive() and time.monotonic() < deadline:
      time.sleep(0.1)
      said += capsys.readouterr().err
    assert f"attribution store {folder} is being built by pid" in said
    assert second.is_alive() and not got                       # it waits while the lock is held
    (tmp_path / "meta").rename(folder / attribution.META)      # the first one finishes
  second.join(120)
  assert not second.is_alive()
  np.testing.assert_array_equal(got["store"].logits(), store.logits())


def test_requests_that_differ_only_in_their_forget_set_share_a_store(prepared, tmp_path):
  prep, settings = prepared
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  keys = [attribution.store_key(
      request_lib.prepare(tiny.config(npz, forget__seed=seed), tmp_path / f"w{seed}"), settings)
      for seed in (1, 2)]
  assert keys[0] == keys[1] == attribution.store_key(prep, settings)
  other = request_lib.prepare(tiny.config(npz, train__epochs=3), tmp_path / "w3")
  assert attribution.store_key(other, settings) != keys[0]
  more = attribution.Settings(num_models=K + 1, chunk_size=CHUNK)
  assert attribution.store_key(prep, more) != keys[0]


def test_refuses_a_store_over_memory_before_training(prepared, tmp_path, monkeypatch):
  prep, _ = prepared

  def refuse(*args, **kwargs):
    raise AssertionError("work started before the refusal")
  monkeypatch.setattr(pops, "run_population", refuse)
  n, m = prep.splits.train_idx.size, prep.data.y_test.shape[0]
  per_model = attribution.memory_bytes(num_models=1, n_train=n, n_heldout=m, num_classes=4)
  # Room for 10 models at memory_fraction 0.5.
  monkeypatch.setattr(pops, "available_host_bytes",
                      lambda: (20 * per_model, "available host memory"))
  settings = attribution.Settings(num_models=64, memory_fraction=0.5, root=str(tmp_path))
  with pytest.raises(ConfigError) as e:
    attribution.build(prep, settings, progress=False)
  line = str(e.value)
  assert "\n" not in line
  assert "num_models (--num-models)=64" in line and "set num_models<=10" in line
  assert not any(tmp_path.iterdir())


def test_refuses_bad_settings(prepared):
  prep = prepared[0]
  for bad, word in ((attribution.Settings(num_models=1), "num_models"),
                    (attribution.Settings(keep_fraction=1.0), "keep_fraction"),
                    (attribution.Settings(chunk_size=-1), "chunk_size")):
    with pytest.raises(ConfigError, match=word):
      attribution.check(prep, bad)


def _hand_store(tmp_path):
  """K = 4 models on n = 2 points, phi by hand (rows 10 and 20 of a dataset)."""
  keep = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)
  phi = np.array([[2.0, 1.0], [4.0, 3.0], [0.0, 5.0], [1.0, 0.0]])
  logits = np.stack([phi, np.zeros_like(phi)], -1)
  np.savez(tmp_path / "c0.npz", phi=phi, logits=logits, heldout_phi=phi, heldout_logits=logits)
  return attribution.Store(tmp_path, {"chunks": ["c0.npz"]}, keep, np.array([10, 20]),
                           np.array([0, 0]), np.array([0, 0]), attribution.estimates(phi, keep))


def test_memorisation_and_effects_by_hand(tmp_path):
  store = _hand_store(tmp_path)
  est = store.estimates
  # Point 0: IN models 0, 1 (phi 2, 4), OUT models 2, 3 (0, 1). Point 1: IN 1, 2 (3, 5),
  # OUT 0, 3 (1, 0).
  np.testing.assert_allclose(est["in_mean"], [3.0, 4.0])
  np.testing.assert_allclose(est["out_mean"], [0.5, 0.5])
  np.testing.assert_allclose(est["in_std"], [np.sqrt(2), np.sqrt(2)])
  np.testing.assert_allclose(est["out_std"], [np.sqrt(0.5), np.sqrt(0.5)])
  np.testing.assert_allclose(attribution.memorisation(store), [2.5, 3.5])
  # Forgetting row 10 (point 0): on point 0 its own OUT - IN = -2.5; on point 1 the mean over
  # models without point 0 (5, 0) minus with it (1, 3): 2.5 - 2 = 0.5.
  np.testing.assert_allclose(attribution.effect_of(store, [10]), [-2.5, 0.5])
  # Both rows: the sum of the one-at-a-time effects. On point 0, row 20's: OUT models 0, 3
  # (2, 1) minus IN models 1, 2 (4, 0) = -0.5, so -3; on point 1: 0.5 - 3.5 = -3.
  np.testing.assert_allclose(attribution.effect_of(store, [10, 20], [10, 20]), [-3.0, -3.0])
  effect, se = attribution.effect_of(store, [10], [20], with_error=True)
  # Weights c = (-1/2, -1/2, 1/2, 1/2): sqrt(sum c^2) = 1, times point 1's sd over models.
  np.testing.assert_allclose(se, [np.std([1.0, 3.0, 5.0, 0.0], ddof=1)])
  np.testing.assert_allclose(attribution.effect_of(store, [10], on="logits")[:, 0], [-2.5, 0.5])


def test_effects_read_the_store_chunk_by_chunk(tmp_path, monkeypatch):
  whole = _hand_store(tmp_path)
  folder = tmp_path / "two"
  folder.mkdir()
  with np.load(tmp_path / "c0.npz") as f:
    arrays = dict(f)
  for i, models in enumerate((slice(0, 1), slice(1, 4))):      # chunks of 1 and 3 models
    np.savez(folder / f"c{i}.npz", **{k: v[models] for k, v in arrays.items()})
  split = attribution.Store(folder, {"chunks": ["c0.npz", "c1.npz"]}, whole.keep, whole.rows,
                            whole.labels, whole.heldout_labels, whole.estimates)
  expected = [attribution.effect_of(whole, [10]),
              attribution.effect_of(whole, [10], [20], with_error=True),
              attribution.effect_of(whole, [10, 20], [1], heldout=True, on="logits")]

  def whole_arrays(self, name):
    raise AssertionError("effect_of loaded every model at once")
  monkeypatch.setattr(attribution.Store, "_chunks", whole_arrays)
  np.testing.assert_allclose(attribution.effect_of(split, [10]), expected[0])
  np.testing.assert_allclose(attribution.effect_of(split, [10], [20], with_error=True),
                             expected[1])
  np.testing.assert_allclose(
      attribution.effect_of(split, [10, 20], [1], heldout=True, on="logits"), expected[2])
  with pytest.raises(ConfigError, match=r"held-out points must lie in \[0, 2\)"):
    attribution.effect_of(split, [10], [2], heldout=True)


def test_effects_refuse_rows_it_cannot_estimate(tmp_path):
  store = _hand_store(tmp_path)
  with pytest.raises(ConfigError, match="not training rows"):
    attribution.effect_of(store, [11])
  lonely = attribution.Store(tmp_path, store.meta, np.array([[1, 0], [1, 1], [1, 1], [1, 0]],
                                                             bool),
                             store.rows, store.labels, store.heldout_labels, store.estimates)
  with pytest.raises(ConfigError, match="no IN or no OUT model"):
    attribution.effect_of(lonely, [10])


@pytest.mark.slow
def test_attribute_command_writes_scores(setup, tmp_path):
  from experiments import attribute
  prep, settings, store = setup
  npz = prep.cfg.dataset.partition(":")[2]
  result = attribute.main([
      f"--config={tiny.CONFIG}", f"--workdir={prep.workdir}", f"--out={tmp_path}",
      f"--set=dataset='npz:{npz}'", f"--num-models={K}", f"--chunk-size={CHUNK}",
      f"--root={settings.root}"])
  assert result["key"] == store.path.name and result["num_models"] == K
  lines = (tmp_path / "memorisation.csv").read_text().splitlines()
  assert lines[0] == "index,label,score,in_count,out_count"
  assert len(lines) == 1 + store.rows.size
  first = lines[1].split(",")
  assert int(first[0]) == store.rows[0] and int(first[3]) + int(first[4]) == K
  np.testing.assert_allclose(float(first[2]), attribution.memorisation(store)[0], rtol=1e-5)
  assert json.loads((tmp_path / "attribution.json").read_text())["cost"] == store.meta["cost"]


def test_attribute_command_refuses_over_memory_in_one_line(prepared, tmp_path, capsys,
                                                           monkeypatch):
  from experiments import attribute
  from jaxunlearn import scripts
  prep, _ = prepared

  def refuse(*args, **kwargs):
    raise AssertionError("work started before the refusal")
  monkeypatch.setattr(pops, "run_population", refuse)
  monkeypatch.setattr(pops, "available_host_bytes", lambda: (10**5, "available host memory"))
  npz = prep.cfg.dataset.partition(":")[2]
  argv = [f"--config={tiny.CONFIG}", f"--workdir={tmp_path / 'work'}", f"--out={tmp_path / 'o'}",
          f"--set=dataset='npz:{npz}'", "--num-models=64"]
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: attribute.main(argv))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "num_models (--num-models)=64" in err, err
  assert not (tmp_path / "work" / attribution.NAME).exists() and not (tmp_path / "o").exists()


# --- D_f at a per-model rate, read at "none of D_f" (attribution.count_zero) ----------------


def test_rate_masks_spread_dfs_share_over_the_models_and_keep_one_size():
  forget = np.array([3, 7, 11, 15, 19, 23, 27, 31])
  keep = attribution.draw_rate_masks(40, forget, num_models=8, keep_fraction=0.5, seed=1)
  assert keep.shape == (8, 40) and set(keep.sum(1)) == {20}       # one shape for the vmap
  # Rates (k + 1/2) / 8 of 8 rows: 0.5, 1.5, ... 7.5 rounded half to even -> each model keeps
  # a different count, from almost none of D_f to almost all of it.
  counts = sorted(keep[:, forget].sum(1).tolist())
  assert counts == sorted(int(round((k + 0.5) / 8 * 8)) for k in range(8))
  assert counts[0] == 0 and counts[-1] == 8
  np.testing.assert_array_equal(
      keep, attribution.draw_rate_masks(40, forget, num_models=8, keep_fraction=0.5, seed=1))


def test_count_zero_reads_the_fit_at_no_membership_by_hand(tmp_path):
  # 8 models, D_f = rows 10, 20, 30 of the store; phi = 2 + 3 own - 6 share of the others.
  keep = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1],
                   [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]], bool)
  rows = np.array([10, 20, 30])
  share = (keep.sum(1, keepdims=True) - keep) / 2.0
  phi = 2.0 + 3.0 * keep - 6.0 * share
  store = attribution.Store(tmp_path, {"chunks": []}, keep, rows, np.zeros(3, int),
                            np.zeros(1, int), attribution.estimates(phi, keep))
  zero = attribution.count_zero(store, [10, 20, 30], values=phi)
  np.testing.assert_allclose(zero["mean"], [2.0, 2.0, 2.0], atol=1e-12)
  np.testing.assert_allclose(zero["slope_share"], [-6.0] * 3, atol=1e-12)
  np.testing.assert_allclose(zero["std"], [0.0] * 3, atol=1e-12)
  # The OUT mean is not it: OUT models still hold a share of the others (mean phi below 2).
  assert np.all(store.estimates["out_mean"] < 2.0 - 1.0)
  with pytest.raises(ConfigError, match="at least 4 models"):
    attribution.count_zero(attribution.Store(tmp_path, {}, keep[:3], rows, rows, rows, {}),
                           [10, 20], values=phi[:3])


def test_a_rate_store_belongs_to_its_forget_set(prepared, tmp_path):
  prep, settings = prepared
  import dataclasses
  rate = dataclasses.replace(settings, forget_rate="uniform")
  assert attribution.store_key(prep, rate) != attribution.store_key(prep, settings)
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  other = request_lib.prepare(tiny.config(npz, forget__seed=5), tmp_path / "w5")
  assert attribution.store_key(other, rate) != attribution.store_key(prep, rate)
  with pytest.raises(ConfigError, match="forget_rate"):
    attribution.check(prep, dataclasses.replace(settings, forget_rate="gaussian"))


def test_pool_masks_keep_every_other_row_and_part_of_the_pool_by_hand():
  pool = np.arange(10, 50)
  keep = attribution.draw_pool_masks(240, pool, 6, 1 - 10 / 240, seed=0)
  outside = np.setdiff1d(np.arange(240), pool)
  assert keep[:, outside].all() and (keep[:, pool].sum(1) == 30).all()
  assert len({tuple(np.flatnonzero(k)) for k in keep}) == 6      # each model its own draw
  with pytest.raises(ConfigError, match="must lie between"):
    attribution.draw_pool_masks(240, pool, 6, 0.5, seed=0)


def test_a_pool_store_is_shared_by_requests_on_subsets_of_its_pool(prepared, tmp_path):
  prep, settings = prepared
  import dataclasses
  from jaxunlearn import transforms
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  pool = np.arange(0, 240, 6)                       # 40 training rows
  (tmp_path / "pool.txt").write_text("\n".join(map(str, pool)))
  for i, rows in enumerate((pool[:10], pool[-10:], np.r_[pool[:9], 1])):
    (tmp_path / f"f{i}.txt").write_text("\n".join(map(str, rows)))

  def request(i):
    return request_lib.prepare(tiny.config(
        npz, label_flip__enabled=True, label_flip__index_file=str(tmp_path / "pool.txt"),
        label_flip__seed=7, forget__mode="indices",
        forget__index_file=str(tmp_path / f"f{i}.txt")), tmp_path / f"w{i}")
  a, b = request(0), request(1)
  # The pool's labels moved, every other row kept its own, the same for both requests.
  y0 = np.asarray(tiny.make_arrays()[1])
  assert (np.asarray(a.y_train)[pool] != y0[pool]).all()
  np.testing.assert_array_equal(np.delete(np.asarray(a.y_train), pool), np.delete(y0, pool))
  np.testing.assert_array_equal(a.y_train, b.y_train)
  assert not transforms.get("label_flip")().per_forget_set(a.cfg)
  np.testing.assert_array_equal(attribution.pool_rows(a), pool)
  rate = dataclasses.replace(settings, forget_rate="pool", keep_fraction=1 - 10 / 240)
  assert attribution.store_key(a, rate) == attribution.store_key(b, rate)
  assert attribution.store_key(a, rate) != attribution.store_key(a, settings)
  with pytest.raises(ConfigError, match="must lie between|keep_fraction"):
    attribution.check(a, dataclasses.replace(rate, keep_fraction=0.5))
  with pytest.raises(ConfigError, match="label_flip.index_file .* must hold every row of D_f"):
    request(2)
  with pytest.raises(ConfigError, match="no active transform has one"):
    attribution.check(prep, rate)


def test_a_flip_pool_without_the_flip_is_refused(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  (tmp_path / "pool.txt").write_text("1\n2\n")
  with pytest.raises(ConfigError, match="label_flip.index_file is set but label_flip.enabled"):
    request_lib.prepare(tiny.config(npz, label_flip__index_file=str(tmp_path / "pool.txt")),
                        tmp_path / "work")
  assert not (tmp_path / "work").exists()
