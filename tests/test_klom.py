"""KLOM (jaxunlearn/audits/klom.py): a hand-worked case, the binning edge cases, the floor row,
and the probes that give it retain and held-out points."""

import math

import numpy as np
import pytest

from jaxunlearn import audits, auditor, populations
from jaxunlearn.audits import klom
from jaxunlearn.errors import ConfigError


def col(*values):
  """One example's sample as a ``[N, 1]`` phi matrix."""
  return np.asarray(values, np.float64)[:, None]


def test_hand_worked_case():
  # Unlearned phi 0, 1, 2, 3; oracle phi 0, 0, 1, 4. Joint range [0, 4], 20 bins of 0.2:
  # 0 -> bin 0, 1 -> bin 5, 2 -> bin 10, 3 -> bin 15, 4 (the top edge) -> bin 19, the last.
  #   p: bins 0, 5, 10, 15 each 1/4.   q: bin 0 2/4, bin 5 1/4, bin 19 1/4.
  # KL(p || max(q, 1e-5)) = 1/4 ln(0.25 / 0.5) + 1/4 ln(0.25 / 0.25)
  #                       + 1/4 ln(0.25 / 1e-5) + 1/4 ln(0.25 / 1e-5)
  #                       = -0.25 ln 2 + 0.5 ln 25000 = -0.173287 + 5.063315 = 4.890028
  u, r = col(0, 1, 2, 3), col(0, 0, 1, 4)
  p, q = klom.bin_frequencies(u, r)
  want_p, want_q = np.zeros(20), np.zeros(20)
  want_p[[0, 5, 10, 15]] = 0.25
  want_q[[0, 5, 19]] = [0.5, 0.25, 0.25]
  np.testing.assert_allclose(p[0], want_p)
  np.testing.assert_allclose(q[0], want_q)
  got = klom.klom_per_example(u, r)
  assert got.shape == (1,)
  assert got[0] == pytest.approx(-0.25 * math.log(2) + 0.5 * math.log(25000), abs=1e-12)
  assert got[0] == pytest.approx(4.890028, abs=1e-6)


def test_top_edge_goes_into_the_last_bin_and_is_counted():
  # The authors' np.digitize drops the joint maximum; here every sample counts.
  p, q = klom.bin_frequencies(col(0.0, 10.0), col(5.0, 10.0))
  assert p[0, 19] == 0.5 and q[0, 19] == 0.5
  assert p.sum() == 1.0 and q.sum() == 1.0
  assert q[0, 10] == 0.5            # 5.0 is the lower edge of bin 10 of [0, 10]


def test_identical_samples_score_zero():
  # Zero joint range: widened to [lo, lo + 1], everything in the first bin, KL 0.
  p, q = klom.bin_frequencies(col(3, 3, 3), col(3, 3))
  assert p[0, 0] == 1.0 and q[0, 0] == 1.0
  assert klom.klom_per_example(col(3, 3, 3), col(3, 3))[0] == 0.0
  # The same multiset in any order: KL 0 too.
  assert klom.klom_per_example(col(1, 2, 5), col(5, 1, 2))[0] == pytest.approx(0.0, abs=1e-15)


def test_disjoint_constant_samples_reach_the_cap():
  # Each side constant, but different: the first and the last bin; q floored at 1e-5.
  got = klom.klom_per_example(col(0, 0), col(1, 1))[0]
  assert got == pytest.approx(math.log(1e5))


def test_clipping_happens_before_the_range():
  # -500 clips to -100: the two samples are then the same, and the bins span [-100, 100].
  assert klom.klom_per_example(col(-500, 100), col(-100, 100))[0] == 0.0
  # Far beyond the clip on both sides: both become 100, a zero range, KL 0.
  assert klom.klom_per_example(col(1e4), col(200))[0] == 0.0
  # 150 clips to 100 and shares the top bin with 100 (range [-100, 100]).
  p, q = klom.bin_frequencies(col(150, -100), col(100, -100))
  np.testing.assert_array_equal(p, q)


def test_only_the_oracle_side_is_floored():
  # Unlearned mass where the oracle has none is charged ln(p / 1e-5); oracle mass where the
  # unlearned side has none costs nothing (p = 0 terms vanish), so KL is not symmetric.
  a, b = col(0, 0, 0, 4), col(0, 0, 0, 0)
  # p = (3/4 in bin 0, 1/4 in bin 19), q = (1 in bin 0):
  want = 0.75 * math.log(0.75) + 0.25 * math.log(0.25 / 1e-5)
  assert klom.klom_per_example(a, b)[0] == pytest.approx(want)
  # p = (1 in bin 0), q = (3/4, 1/4): ln(1 / 0.75).
  assert klom.klom_per_example(b, a)[0] == pytest.approx(math.log(4 / 3))


def test_many_examples_at_once_match_one_at_a_time():
  rng = np.random.default_rng(0)
  u, r = rng.normal(size=(16, 7)) * 3, rng.normal(1.0, 2.0, size=(12, 7))
  all_at_once = klom.klom_per_example(u, r)
  one_by_one = [klom.klom_per_example(u[:, [i]], r[:, [i]])[0] for i in range(7)]
  np.testing.assert_allclose(all_at_once, one_by_one)
  assert np.all(all_at_once >= 0) and np.all(all_at_once <= math.log(1e5) + 1e-12)


def _reference(u, r, bin_count=20, eps=1e-5):
  """EasyDUB's binned_kl_divergence (easydub/eval.py) with np.histogram's bins, which count a
  value on the top edge in the last bin where np.digitize drops it."""
  u, r = np.clip(u, -100, 100), np.clip(r, -100, 100)
  start, end = min(u.min(), r.min()), max(u.max(), r.max())
  if start >= end:
    end = start + 1.0
  edges = np.linspace(start, end, bin_count + 1)
  p = np.histogram(u, edges)[0] / u.size
  q = np.histogram(r, edges)[0] / r.size
  q_safe = np.where(p > 0, np.maximum(q, eps), q)
  mask = p > 0
  return float(np.sum(p[mask] * np.log(p[mask] / q_safe[mask])))


def test_matches_the_authors_formula_with_histogram_bins():
  rng = np.random.default_rng(5)
  u = np.concatenate([rng.normal(0, 1, (24, 6)), rng.normal(3, 0.2, (24, 2))], 1)
  r = rng.normal(0.5, 2, (20, 8))
  u[:20, 7], u[20:, 7] = r[:, 7] * 300, 500.0     # clipped on both sides
  got = klom.klom_per_example(u, r)
  np.testing.assert_allclose(got, [_reference(u[:, i], r[:, i]) for i in range(8)], atol=1e-12)


def test_bad_input():
  with pytest.raises(ConfigError, match="unlearned_phi"):
    klom.klom_per_example(np.zeros(3), np.zeros((3, 1)))
  with pytest.raises(ConfigError, match="non-finite"):
    klom.klom_per_example(col(0, np.nan), col(0, 1))
  with pytest.raises(ConfigError, match="examples"):
    klom.klom_per_example(np.zeros((2, 3)), np.zeros((2, 4)))


class FakeAudit(audits.Audit):
  """Populations given as records; no model is trained."""

  def __init__(self, records, labels=("m",), protocols=("single", "per_seed")):
    self.records, self.labels, self.protocols = records, labels, protocols
    self.remain_rows = self.train_rows = np.arange(4)

  def train_population(self, name, rows, **kw):
    return self.records[name]

  def unlearn_population(self, name, label, **kw):
    return self.records[label]

  def per_seed_population(self, label):
    return self.records[f"{label}_per_seed"]

  def population(self, name):
    return self.records[name]


def _record(rng, shift, n=(5, 3, 4)):
  return {"phi": rng.normal(shift, 1.0, (32, n[0])),
          "phi_remain": rng.normal(shift, 1.0, (32, n[1])),
          "phi_heldout": rng.normal(shift, 1.0, (32, n[2]))}


def test_section_has_the_floor_beside_every_row():
  rng = np.random.default_rng(1)
  records = {"retrain": _record(rng, 0.0), "oracle": _record(rng, 0.0),
             "none": _record(rng, 5.0), "m": _record(rng, 3.0), "m_per_seed": _record(rng, 0.5)}
  section = klom.Klom().run(FakeAudit(records))
  assert set(section) == {"single", "per_seed"}
  assert list(section["single"]) == ["oracle", "none", "m"]
  floor = {s: klom.summarize(klom.klom_per_example(records["oracle"][k], records["retrain"][k]))
           for s, k in klom.SPLITS}
  for protocol, rows in section.items():
    for name, entry in rows.items():
      assert set(entry) == {"forget", "remain", "heldout"}
      for split, _ in klom.SPLITS:
        e = entry[split]
        assert e["floor_p95"] == pytest.approx(floor[split]["p95"])
        assert e["p95_over_floor"] == pytest.approx(e["p95"] / floor[split]["p95"])
    assert rows["oracle"]["forget"]["p95_over_floor"] == pytest.approx(1.0)
  # Shifted populations score above the floor; the per-seed one, less shifted, below `m`.
  single, per_seed = section["single"], section["per_seed"]
  assert single["none"]["forget"]["p95"] > single["m"]["forget"]["p95"] > \
      single["oracle"]["forget"]["p95"]
  assert per_seed["m"]["forget"]["median"] < single["m"]["forget"]["median"]
  want = klom.summarize(klom.klom_per_example(records["m"]["phi"], records["retrain"]["phi"]))
  assert single["m"]["forget"]["p95"] == pytest.approx(want["p95"])
  assert single["m"]["forget"]["n_points"] == 5 and single["m"]["remain"]["n_points"] == 3
  text = klom.Klom().report(section)
  assert "| oracle |" in text and "forget P95" in text and "heldout x floor" in text
  assert "KLOM P95 D_f (single): oracle=" in klom.Klom().summary(section)


def test_forget_only_when_no_probes_were_recorded():
  rng = np.random.default_rng(2)
  records = {k: {"phi": rng.normal(size=(8, 3))}
             for k in ("retrain", "oracle", "none", "m", "m_per_seed")}
  section = klom.Klom().run(FakeAudit(records, protocols=("single",)))
  assert set(section["single"]["m"]) == {"forget"}


def test_config_block_and_probes():
  import ml_collections
  cfg = ml_collections.ConfigDict({"audit": {"klom": klom.Klom().config().to_dict(),
                                             "epsilon": {"plot_examples": 4}}})
  assert audits.probe_sets(cfg, ["epsilon", "klom"]) == {"remain": ("remain", 256),
                                                         "heldout": ("test", 256)}
  assert audits.probe_sets(cfg, ["epsilon"]) == {}
  cfg.audit.klom.heldout_points = 0
  assert audits.probe_sets(cfg, ["klom"]) == {"remain": ("remain", 256)}
  cfg.audit.klom.remain_points = -1
  with pytest.raises(ConfigError, match="audit.klom.remain_points"):
    klom.Klom().validate(cfg, None)


def test_probe_rows_are_fixed_sorted_and_inside_their_source():
  remain = np.arange(100, 200)
  rows = auditor.probe_rows({"remain": ("remain", 10), "heldout": ("test", 500)}, remain,
                            n_test=50, seed=3)
  source, r = rows["remain"]
  assert source == "remain" and r.size == 10 and np.all(np.isin(r, remain))
  assert np.all(np.diff(r) > 0)
  np.testing.assert_array_equal(rows["heldout"][1], np.arange(50))   # fewer than asked: all
  again = auditor.probe_rows({"remain": ("remain", 10)}, remain, n_test=50, seed=3)
  np.testing.assert_array_equal(again["remain"][1], r)
  other = auditor.probe_rows({"remain": ("remain", 10)}, remain, n_test=50, seed=4)
  assert not np.array_equal(other["remain"][1], r)


def test_stage_names_change_only_with_probes():
  # Computed with the code before probes existed: chunks cached without klom keep their names.
  pop = populations.Population("retrain", 3, member=None, spec={"a": 1})
  assert populations.member_stage(pop, 0, 3) == "pop-retrain-8e44e385fcf6-c000"
  probed = populations.Population("retrain", 3, member=None, spec={"a": 1},
                                  probes=(("remain", 4, "abc"),))
  assert populations.member_stage(probed, 0, 3) != populations.member_stage(pop, 0, 3)


def test_member_record_has_phi_on_the_probes():
  import jax.numpy as jnp
  from jaxunlearn.audits import phi
  w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
  apply_fn = lambda params, x: x @ params   # noqa: E731
  x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 3, 0, 1])
  data = populations.EvalData(x[:2], y[:2], x, y, x, y, probes={"remain": (x[2:5], y[2:5])})
  out = populations.member_record(apply_fn, w, data)
  np.testing.assert_allclose(out["phi_remain"], phi.logit_confidence(x[2:5] @ w, y[2:5]))
  assert "phi_remain" not in populations.member_record(apply_fn, w, data._replace(probes=None))


@pytest.mark.slow
def test_tiny_audit_end_to_end():
  import json
  from tests.support import tiny
  _, workdir, r = tiny.finished_audit()     # the shared tiny audit: N = 4, 5 + 6 probes
  for protocol in ("single", "per_seed"):
    rows = r["klom"][protocol]
    assert list(rows) == ["oracle", "none", "finetune"]
    for entry in rows.values():
      assert entry["remain"]["n_points"] == 5 and entry["heldout"]["n_points"] == 6
      assert entry["forget"]["n_points"] == r["n_forget"]
    assert rows["oracle"]["forget"]["p95_over_floor"] == pytest.approx(1.0)
  saved = json.loads((workdir / "audit.json").read_text())
  assert saved["klom"]["single"]["finetune"]["forget"]["floor_p95"] == \
      r["klom"]["single"]["oracle"]["forget"]["p95"]
  assert "## KLOM" in (workdir / "audit.md").read_text()
  masks = np.load(workdir / "phi" / "finetune.masks.npz")
  assert masks["phi_remain"].shape == (4, 5) and masks["rows_heldout"].shape == (6,)


def test_compare_methods_audit_row_has_klom_and_its_floor():
  from experiments import audit_methods
  entry = lambda p95: {"forget": {"p95": p95, "median": p95 / 2}}  # noqa: E731
  seed_result = {"sections": {"klom": {"single": {"oracle": entry(0.5), "none": entry(9.0),
                                                  "m": entry(1.5)}}},
                 "not_applicable": {}, "runs": {}, "retrain_test_acc": 0.9}
  row = audit_methods.row(seed_result, "m")
  assert row["KLOM P95 D_f (single)"] == 1.5 and row["KLOM P95 D_f floor"] == 0.5
  assert audit_methods.row(seed_result, "oracle")["KLOM P95 D_f (single)"] == 0.5
  without = audit_methods.row({**seed_result, "sections": {}}, "m")
  assert without["KLOM P95 D_f (single)"] is None
