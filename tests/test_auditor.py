"""The auditor's population service on a tiny population: run, key, member, memory check.

One request of the tiny config (an 8x8 MLP, its original trained once) serves
the tests that run a population; the memory checks prepare a request only and
train nothing.
"""

import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import audits, auditor, populations as pops, request
from jaxunlearn.audits import base as audits_base
from jaxunlearn.errors import ConfigError
from tests.support import tiny


@pytest.fixture(scope="module")
def opened():
  """``(req, npz)``: an open request of the tiny config (the lock is held until the end)."""
  root = tiny.scratch_dir("auditor")
  npz = tiny.write_npz(root / "tiny.npz")
  cfg = tiny.config(npz, audit__num_models=2, audit__chunk_size=1,
                    audit__statistics=("epsilon",), audit__methods=("finetune",))
  with request.open_request(cfg, root / "work", methods=auditor.method_specs(cfg)) as req:
    yield req, npz


def _probe(a: auditor.Auditor, name: str = "probe", size: int = 2) -> pops.Population:
  """``size`` models trained for one epoch on D_r, built only from public names."""
  req = a.req
  member = a.member(("test_auditor", repr(req.model), int(a.remain_rows.size)),
                    lambda: pops.train_member(req.model, optax.adam(1e-3),
                                              req.data.input_shape, epochs=1, batch_size=32))
  return pops.Population(
      name=name, size=size, member=member,
      shared=(jnp.asarray(a.remain_rows, jnp.int32), a.x_all, a.y_all, a.data),
      spec={**a.base_spec, "kind": "test_auditor"})


def test_key_is_the_seed_folded_with_the_name(opened):
  req, _ = opened
  a = auditor.Auditor(req)
  for name in ("retrain", "ulira_originals", "x"):
    want = jax.random.fold_in(jax.random.key(a.seed), zlib.crc32(f"audit/{name}".encode()))
    assert np.array_equal(jax.random.key_data(a.key(name)), jax.random.key_data(want))
  # The bits themselves: every population chunk ever saved was trained from them.
  a.seed = 0
  assert jax.random.key_data(a.key("retrain")).tolist() == [359551795, 1033572774]
  a.seed = 3
  assert jax.random.key_data(a.key("ulira_originals")).tolist() == [860663172, 1271120825]


def test_member_is_made_once_per_cache_key(opened):
  req, _ = opened
  a = auditor.Auditor(req)
  made = []

  def make():
    made.append(1)
    return lambda key: key
  key = ("test_auditor_member",)
  first = a.member(key, make)
  assert a.member(key, make) is first and pops.cached_member(key, make) is first
  assert auditor.Auditor(req).member(key, make) is first and made == [1]


def test_run_records_times_saves_and_then_reuses_a_population(opened):
  req, _ = opened
  a = auditor.Auditor(req)
  masks = {"chosen": np.array([True, False])}
  rec = a.run(_probe(a), masks)
  assert set(rec) == set(audits.RECORD.names)
  assert rec["phi"].shape == (2, a.n_audit) and rec["remain_acc"].shape == (2,)
  assert a.population("probe") is rec and a.times["probe"]["chunks_reused"] == 0
  np.testing.assert_array_equal(np.load(req.workdir / "phi" / "probe.npy"), rec["phi"])
  saved = np.load(req.workdir / "phi" / "probe.masks.npz")
  assert list(saved) == ["examples", "remain_acc", "test_acc", "chosen"]
  np.testing.assert_array_equal(saved["test_acc"], rec["test_acc"])
  again = auditor.Auditor(req)
  rec2 = again.run(_probe(again), masks)
  assert again.times["probe"]["chunks_reused"] == 2       # chunk_size 1: one chunk per model
  np.testing.assert_array_equal(rec2["phi"], rec["phi"])


def test_the_record_is_declared_once():
  # Hashed into every population's stage names: this string must never change.
  assert json.dumps(pops.record_schema({})) == (
      '[["phi", "jaxunlearn.audits.phi.logit_confidence"], ["remain_acc", "accuracy"], '
      '["test_acc", "accuracy"]]')
  assert audits.RECORD.reserved == ("phi", "remain_acc", "test_acc", "params", "batch_stats")
  assert [f.name for f in audits.RECORD.base if f.per_example] == ["phi"]


def test_population_names_are_constants():
  assert (audits.RETRAIN, audits.ORACLE, audits.NONE) == auditor.CONTROLS
  assert audits.per_seed("finetune") == "finetune_per_seed"


def _prepared(tmp_path, **overrides):
  tmp_path.mkdir(exist_ok=True)
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  overrides = {"audit__methods": ("finetune",), "audit__ulira__num_originals": 6,
               "audit__ulira__forget_sets_per_original": 1, **overrides}
  cfg = tiny.config(npz, **overrides)
  return request.prepare(cfg, tmp_path / "work", methods=auditor.method_specs(cfg))


def test_statistics_declare_their_population_sizes(tmp_path):
  prep = _prepared(tmp_path, audit__num_models=5, audit__ulira__forget_sets_per_original=3)
  assert audits.get("epsilon")().population_sizes(prep.cfg) == {
      "epsilon": audits.PopulationSize(5, "audit.num_models")}
  assert audits.get("ulira")().population_sizes(prep.cfg) == {
      "ulira": audits.PopulationSize(18, "audit.ulira.num_originals", 3)}
  assert audits.Statistic().population_sizes(prep.cfg) == {
      "audit": audits.PopulationSize(5, "audit.num_models")}


def test_a_huge_population_is_refused_naming_its_field_before_training(tmp_path):
  with pytest.raises(ConfigError, match=r"1000000000 models \(epsilon\).*audit\.num_models"):
    npz = tiny.write_npz(tmp_path / "tiny.npz")
    cfg = tiny.config(npz, audit__num_models=10**9, audit__statistics=("epsilon",),
                      audit__methods=("finetune",))
    request.prepare(cfg, tmp_path / "work", methods=auditor.method_specs(cfg),
                    checks=(auditor.check,))
  assert not (tmp_path / "work").exists()


def test_the_memory_check_reads_only_the_statistics_it_runs(tmp_path, monkeypatch):
  prep = _prepared(tmp_path, audit__num_models=10**9)
  auditor.check_memory(prep, ["ulira"])             # U-LiRA trains no num_models population
  with pytest.raises(ConfigError, match="audit.num_models"):
    auditor.check_memory(prep, ["ulira", "epsilon"])

  class Sized(audits.Statistic):
    def population_sizes(self, cfg):
      return {"sized": audits.PopulationSize(10**9, "audit.sized.models")}
  monkeypatch.setitem(audits_base._REGISTRY._plugins, "sized_for_test", Sized)
  prep = _prepared(tmp_path / "2", audit__num_models=2)
  with pytest.raises(ConfigError) as e:
    auditor.check_memory(prep, ["epsilon", "sized_for_test"])
  line = str(e.value)
  assert "1000000000 models (sized)" in line and "lower audit.sized.models or" in line
  assert "\n" not in line and not (tmp_path / "2" / "work").exists()
