"""Each experiment runs end to end at a tiny size and writes its table and plot."""

import json

import numpy as np
import pytest

from jaxunlearn import data

# A small MLP instead of the configs' LeNet-5: the experiments' tables do not depend on
# the model, and it compiles in a fraction of the time on CPU.
TINY = ["train.epochs=1", "reference.epochs=1", "unlearn.epochs=1", "train.batch_size=50",
        "forget.size=10", "reference.size=100", "eval.batch_size=250", "eval.evaluators=()",
        "model=mlp", "model_kwargs.hidden=(16,)"]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
  """600 real MNIST training images and 200 test images."""
  d = data.load("mnist5k")
  path = tmp_path_factory.mktemp("data") / "tiny.npz"
  np.savez(path, x_train=d.x_train[:600], y_train=d.y_train[:600],
           x_test=d.x_test[:200], y_test=d.y_test[:200])
  return path


@pytest.fixture(scope="module")
def out(tmp_path_factory):
  """One output folder for all experiments, so they share the trained stages."""
  return tmp_path_factory.mktemp("experiments")


def args(out, tiny_npz, *extra):
  sets = [f"dataset=npz:{tiny_npz}", *TINY]
  return ["--out", str(out), "--seeds", "0", *sum((["--set", s] for s in sets), []), *extra]


def check_outputs(out, name, n_rows):
  table = (out / f"{name}.md").read_text()
  assert table.count("\n|") >= n_rows + 1
  assert (out / f"{name}.csv").read_text().count("\n") == n_rows + 1
  assert json.loads((out / f"{name}.json").read_text())["environment"]["jax"]
  assert (out / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_lambda_sweep(out, tiny_npz):
  from experiments import lambda_sweep
  res = lambda_sweep.main(args(out, tiny_npz, "--config", "configs/quick.py",
                               "--lams", "1,0.01"))
  check_outputs(out, "lambda_sweep", 4)
  by_lam = {r["lam"]: r["results"] for r in res["runs"]}
  # Same original for both λ; the unlearned models differ.
  assert by_lam[1.0]["stages"]["original"] == by_lam[0.01]["stages"]["original"]
  assert by_lam[1.0]["stages"]["unlearned"] != by_lam[0.01]["stages"]["unlearned"]


@pytest.mark.slow
def test_reference_size_sweep(out, tiny_npz):
  from experiments import reference_size_sweep
  res = reference_size_sweep.main(args(out, tiny_npz, "--sizes", "50,100"))
  check_outputs(out, "reference_size_sweep", 2)
  assert [r["results"]["n_reference"] for r in res["runs"]] == [50, 100]


@pytest.mark.slow
def test_speedup_table(out, tiny_npz):
  from experiments import speedup_table
  res = speedup_table.main(args(out, tiny_npz, "--configs", "configs/quick.py"))
  check_outputs(out, "speedup_table", 1)
  r = res["runs"][0]["results"]
  assert r["speedup"] > 0


@pytest.mark.slow
def test_distributions(out, tiny_npz):
  from experiments import distributions
  distributions.main(args(out, tiny_npz))
  check_outputs(out, "distributions", 4)
  rows = (out / "distributions.csv").read_text().splitlines()
  retrain = next(r for r in rows if r.startswith("retrain"))
  assert retrain.split(",")[2] == "0.0000"    # KL of the retrained model to itself


# benchmarks/speedup.py --modes runs in tests/test_gpu_check.py, as benchmarks/gpu_check.py
# runs it.


@pytest.mark.slow
def test_quality_phi_plots_every_population_against_retraining(tmp_path):
  from experiments import quality_phi
  from tests.support import tiny
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  sets = [f"dataset=npz:{npz}", "audit.num_models=4", "audit.chunk_size=4",
          "label_flip.enabled=True", "eval.evaluators=()",
          "audit.methods=('finetune','isr=importance_retrain:steps=20,remain_batch_size=4')"]
  out = tmp_path / "out"
  rows = quality_phi.main(["--config", str(tiny.CONFIG), "--methods", "finetune,isr",
                           "--out", str(out), "--seeds", "0",
                           *sum((["--set", s] for s in sets), [])])
  assert set(rows) == {"retrain", "original", "reference", "finetune", "isr"}
  assert rows["retrain"]["abs_z_median"] == pytest.approx(0.0, abs=1e-6)
  assert rows["retrain"]["spread_ratio"] == pytest.approx(1.0)
  assert rows["isr"]["relative_f"] is not None and rows["retrain"]["relative_f"] is None
  phi = np.load(out / "work" / "seed0" / "phi" / "reference.npy")
  assert phi.shape[0] == 4 and np.all(np.isfinite(phi))
  assert (out / "quality_phi.png").stat().st_size > 1000
  assert "| isr |" in (out / "quality_phi.md").read_text()


def test_pareto_labels_overlap_neither_each_other_nor_a_point():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from experiments import audit_methods
  fig, ax = plt.subplots(figsize=(8.5, 5.2))
  ax.set_xscale("log")
  rng = np.random.default_rng(0)      # 16 methods in a tight cluster, as on the memorised set
  points = [(0.1 * (1 + 0.1 * rng.random()), 0.05 * rng.random(), f"method_{i}", "C0")
            for i in range(16)]
  ax.plot([p[0] for p in points], [p[1] for p in points], "o")
  ax.set_xlim(0.01, 1.0)
  ax.set_ylim(-0.05, 1.05)
  audit_methods._place_labels(ax, points)
  fig.canvas.draw()                     # measure what was drawn, not what the function returns
  renderer = fig.canvas.get_renderer()
  labels = [t for t in ax.texts if t.get_text().startswith("method_")]
  assert sorted(t.get_text() for t in labels) == sorted(p[2] for p in points)  # all beside points
  boxes = [matplotlib.text.Text.get_window_extent(t, renderer) for t in labels]
  for i, a in enumerate(boxes):
    assert not any(a.overlaps(b) for b in boxes[i + 1:])
  plt.close(fig)


def test_speedup_side_by_side_takes_its_schedule_from_a_config():
  from benchmarks import speedup
  from jaxunlearn.errors import ConfigError
  args = speedup.parse_args(["--config", "configs/fmnist_mlp.py", "--set", "unlearn.lam=0.5"])
  assert (args.dataset, args.model, args.model_kwargs) == ("fashion_mnist", "mlp",
                                                           {"hidden": (512, 256)})
  assert (args.epochs, args.reference_epochs, args.unlearn_epochs) == (30, 50, 10)
  assert (args.forget_size, args.reference_size, args.lam) == (600, 6000, 0.5)
  with pytest.raises(ConfigError, match="--config"):
    speedup.parse_args(["--set", "unlearn.lam=0.5"])
  with pytest.raises(ConfigError, match="--quick"):
    speedup.parse_args(["--quick", "--config", "configs/fmnist_mlp.py"])
  assert speedup.parse_args(["--modes", "--out", "x"]).config == "configs/quick.py"


def test_check_attribution_scores_an_estimate_in_retrainings_stds():
  from experiments.matching import check_attribution
  # Two retrained models: means 1, 12, 0; stds (ddof 1) sqrt 2, 2 sqrt 2, sqrt 2.
  retrain = np.array([[0.0, 10.0, -1.0], [2.0, 14.0, 1.0]])
  sd = np.sqrt(2.0) * np.array([1.0, 2.0, 1.0])
  est = np.array([1.0, 12.0, 0.0]) + np.array([1.0, 1.0, -1.0]) * sd   # +1, +1, -1 sd off
  c = check_attribution.compare(est, 2 * sd, retrain)
  assert c["n_examples"] == 3 and c["bias_in_retrain_sd"] == pytest.approx(1 / 3)
  assert c["median_abs_error_in_retrain_sd"] == pytest.approx(1.0)
  assert c["share_within_one_sd"] == pytest.approx(1.0) and c["sd_ratio_median"] == pytest.approx(2)
  nan = check_attribution.compare(np.array([np.nan, 12.0, 0.0]), 2 * sd, retrain)
  assert nan["n_examples"] == 2 and nan["n_unscored"] == 1


def test_matching_selection_grids_and_objective():
  import re
  from experiments.matching import selection
  fams = selection.candidates()
  labels = [label for fam in fams.values() for label in fam]
  assert len(labels) == len(set(labels))
  assert all(re.fullmatch(r"[A-Za-z0-9_]+", label) for label in labels)   # audit.methods labels
  base = selection.candidates(widened=False)
  assert {len(f) for f in base.values()} == {9}                            # the same budget
  assert len(fams["matching@0.05"]) == 9 + len(selection.WIDENED["matching@0.05"])
  assert "noise=1," in fams["matching@0.05"]["m0p05_lr0p01_w100_n1"]
  assert fams["matching@0.05"]["m0p05_lr0p01_w100_o1p2"].endswith(",output_temperature=1.2")
  single, per_seed = {"relative_f": 0.4, "test_acc": 0.92}, {"relative_f": 0.6}
  assert selection.objective(single, per_seed, 0.93, 0.02) == pytest.approx(0.5)
  assert selection.objective({**single, "test_acc": 0.90}, per_seed, 0.93, 0.02) is None


def test_matching_report_means_and_stds_over_seeds():
  from experiments.matching import report
  rows = report.rows_from({"chosen": {"matching@0.05": {"entry": "matching:x=1"}}})
  assert rows == {"matching_5": "matching:x=1", **report.SHIPPED}
  one = {"matching_5": "matching:x=1"}

  def run(f, acc, entries=one):
    return {"oracle_f": 0.2, "klom_floor_p95_forget": 3.0, "klom_floor_median_forget": 1.0,
            "retrain_test_acc": 0.94, "rows_entries": entries,
            "rows": {"matching_5": {"relative_f_single": f, "relative_f_per_seed": f + 0.1,
                                    "test_acc_minus_retrain": acc, "cost_fraction": 0.05,
                                    "teacher": {"one_off_retrainings": 61.0}}}}
  record = {"runs": {"flip0": run(0.4, -0.01), "flip1": run(0.6, -0.03),
                     "flip2": run(0.9, 0.0, {"other": "entry"})}}   # another selection's run
  s = report.summarise(record, one, ["flip"], [0, 1, 2])["flip"]
  assert s["seeds"] == 2
  assert s["matching_5"]["relative_f_single"] == pytest.approx([0.5, np.std([0.4, 0.6], ddof=1)])
  assert s["matching_5"]["test_acc_minus_retrain"][0] == pytest.approx(-0.02)
  assert s["matching_5"]["teacher_one_off_retrainings"] == 61.0
  md = report.markdown({"flip": s}, one, ["flip"], [0, 1, 2], 32)
  assert "| matching_5 | 0.050 + store 61x | 0.50 ± 0.14 |" in md


def test_matching_report_refuses_bad_flags_in_one_line():
  from experiments.matching import report
  for argv, words in ((["--forget", "flips"], "unknown set"),
                      (["--extra", "no_entry"], "LABEL=ENTRY")):
    with pytest.raises(SystemExit, match=words):
      report.main(argv)


def test_baseline_selection_grids_widening_and_merge(tmp_path):
  import re
  from experiments.matching import select_baselines as sb
  from jaxunlearn import plan, plugins
  grids = sb.round_one()
  assert set(grids) == set(sb.METHODS) and {len(g) for g in grids.values()} == {9}
  labels = [lab for g in grids.values() for lab, _ in g.values()]
  assert len(labels) == len(set(labels))
  assert all(re.fullmatch(r"[A-Za-z0-9_]+", lab) for lab in labels)
  # Every entry is one the audit accepts, at the shipped settings but the scaled knob.
  cfg = plugins.default_config()
  for g in grids.values():
    for lab, e in g.values():
      _, block = plan.parse_spec(f"{lab}={e}", cfg.unlearn)
      assert block.output_temperature in sb.TEMPERATURES
  _, salun = grids["salun"][(0.03, 1.2)]
  assert "learning_rate=0.03," in salun and "mask_ratio=0.3" in salun
  assert any(k[0] == 300.0 for k in grids["ssd"])                       # ssd scales alpha
  # Widening: past each edge the choice sits on, crossed with the other axis at the choice.
  pts = {(k, t) for k in (1.0, 3.0, 9.0) for t in (1.0, 1.2, 1.5)}
  assert sb.widen(pts, (3.0, 1.2)) == []
  assert sb.widen(pts, (9.0, 1.2)) == [(27.0, 1.0), (27.0, 1.2), (27.0, 1.5)]
  assert set(sb.widen(pts, (1.0, 1.5))) == {(1 / 3, 1.0), (1 / 3, 1.2), (1 / 3, 1.5),
                                            (1.0, 2.0), (3.0, 2.0), (9.0, 2.0)}
  assert sb.edges(pts | {(1.0, 2.0)}, (1.0, 2.0)) == ["knob low", "temperature high"]
  assert sb.widen(pts | {(3.0, 2.0)}, (3.0, 2.0)) == [(3.0, 3.0)]       # up the ladder
  assert sb.widen(pts | {(3.0, 2.0), (3.0, 3.0)}, (3.0, 3.0)) == []     # 3.0 is the last T
  # No feasible setting: the most accurate one, which widening moves past.
  g = {(k, t): (f"m{k}{t}", "") for k, t in pts}
  scores = {lab: {"objective": None, "test_acc": 0.5} for lab, _ in g.values()}
  scores["m9.01.5"]["test_acc"] = 0.8
  assert sb.pick(g, scores) == ((9.0, 1.5), False)
  scores["m3.01.2"] = {"objective": 0.4}
  assert sb.pick(g, scores) == ((3.0, 1.2), True)
  # merge: one select.json from per-method ones, edges recomputed from the rows.
  for m, best in (("salun", (3.0, 1.2)), ("msg", (9.0, 1.5))):
    rows = [{"family": m, "label": f"{m}{k}{t}", "knob_value": k, "temperature": t}
            for k, t in pts]
    part = {"seed": 100, "rows": rows, "wall_s": [1.0], "none_feasible": [],
            "chosen": {m: {"label": f"{m}{best[0]}{best[1]}", "entry": "x"}}}
    (tmp_path / m).mkdir()
    (tmp_path / m / "select.json").write_text(json.dumps(part))
    (tmp_path / m / "select.md").write_text("\n".join(["h"] * 6 + [f"| {m} |"]) + "\n")
  out = sb.merge(tmp_path, ["salun", "msg"])
  assert out["chosen"]["salun"]["at_edge"] == []
  assert out["chosen"]["msg"]["at_edge"] == ["knob high", "temperature high"]
  assert len(out["rows"]) == 18 and json.loads((tmp_path / "select.json").read_text()) == out
  assert (tmp_path / "select.md").read_text().count("|") == 4


def test_selection_scores_floors_and_table_from_an_audit_result():
  from experiments.matching import selection
  res = {"epsilon": {"single": {"oracle": {"test_acc": 0.94, "forgetting_quality": 0.2},
                                "m": {"relative_f": 0.4, "test_acc": 0.93},
                                "bad": {"relative_f": 0.9, "test_acc": 0.90}},
                     "per_seed": {"m": {"relative_f": 0.6}, "bad": {"relative_f": 0.9}}},
         "klom": {"single": {"oracle": {"forget": {"p95": 3.0}}, "m": {"forget": {"p95": 4.5}}}},
         "methods": {"m": {"schedule": {"steps": 7}}, "bad": {"schedule": {"steps": 7}}}}
  fl = selection.floors(res)
  assert fl == {"retrain_test_acc": 0.94, "oracle_f": 0.2, "klom_floor_p95_forget": 3.0}
  m = selection.score(res, "m", 0.94, 0.02)
  assert m["objective"] == pytest.approx(0.5) and m["steps"] == 7 and m["klom_p95_forget"] == 4.5
  bad = selection.score(res, "bad", 0.94, 0.02)
  assert bad["objective"] is None and bad["klom_p95_forget"] is None      # 4 points below
  rows = [{"family": "f", "label": "m", "round": 2, **m}, {"family": "f", "label": "bad", **bad}]
  lines = selection.table(rows[:1], {"f": {"label": "m"}}, first="method", with_round=True)
  assert lines[0].startswith("| method | setting | round |") and lines[1].count("---") == 8
  assert lines[2] == "| f | m **chosen** | 2 | 0.400 | 0.600 | 0.9300 | 4.50 | 0.500 |"
  assert selection.table(rows[1:], {})[2] == "| f | bad | 0.900 | 0.900 | 0.9000 |  | (acc) |"
  with pytest.raises(SystemExit, match="--redo"):
    from experiments.matching import select_baselines
    select_baselines.main(["--methods", "salun", "--redo", "msg"])


def test_teacher_error_pieces_by_hand():
  from experiments.matching import teacher_error as te
  # phi: z_y - logsumexp of the other logits.
  np.testing.assert_allclose(te.phi_of(np.array([[2.0, 0.0, 0.0]]), np.array([0])),
                             [2.0 - np.log(2.0)])
  # The fit rms^2 = b^2 + s^2 / m reads b and s^2 back.
  curve = {m: float(np.sqrt(0.25 + 1.5 / m)) for m in (4, 8, 13)}
  got = te.split(curve)
  assert abs(got["structural_rms"] - 0.5) < 1e-9 and abs(got["sampling_var"] - 1.5) < 1e-9
  assert te.split({4: 1.0}) is None
  # Two classes, label 0: phi is the first logit. Every OUT model gives row j exactly
  # 1 + j + 0.5 sd_j above retraining's mean, so every m scores 0.5.
  rng = np.random.default_rng(0)
  retrain = rng.normal(size=(8, 3)) * np.array([1.0, 2.0, 0.5]) + np.array([0.0, 1.0, 2.0])
  k_models = 12
  out = np.zeros((k_models, 3), bool)
  out[:6] = True
  logits = np.zeros((k_models, 3, 2))
  logits[..., 0] = retrain.mean(0) + 0.5 * retrain.std(0, ddof=1)
  res = te.sampling_curve(logits, out, np.zeros(3, np.int64), retrain, rng, draws=2)
  assert res["rows"] == 3 and set(res["curve"]) == {4, 6}
  np.testing.assert_allclose(list(res["curve"].values()), 0.5)
  # share_readout: logits exactly linear in the share of the other D_f rows kept.
  keep_f = rng.random((40, 3)) < 0.5
  share = np.stack([(keep_f.sum(1) - keep_f[:, j]) / 2 for j in range(3)], 1)
  logits = np.zeros((40, 3, 2))
  logits[..., 0] = retrain.mean(0) + 2.0 * share * retrain.std(0, ddof=1)
  got = te.share_readout(logits, keep_f, np.zeros(3, np.int64), retrain, shares=(0.0, 0.5))
  np.testing.assert_allclose([got[0.0], got[0.5]], [0.0, 1.0], atol=1e-9)



def test_teacher_error_counterfactual_by_hand(tmp_path):
  from experiments.matching import teacher_error as te
  from jaxunlearn.errors import ConfigError
  # Runs that are the oracle population shifted by 3 stds per row: far from retraining as run,
  # and the oracle itself (relative F exactly 1) once each row's mean is moved back.
  rng = np.random.default_rng(2)
  retrain, oracle = rng.normal(size=(32, 20)), rng.normal(size=(32, 20))
  np.save(tmp_path / "shifted.npy", oracle + 3.0)
  got = te.counterfactual(tmp_path, ["shifted"], retrain, oracle)["shifted"]
  assert got["as_run"] < 0.5
  assert got["mean_fixed"] == pytest.approx(1.0) and got["mean_and_sd_fixed"] == pytest.approx(1.0)
  with pytest.raises(ConfigError, match="holds no nope.npy"):
    te.counterfactual(tmp_path, ["nope"], retrain, oracle)


def test_teacher_error_run_errors_by_hand():
  from experiments.matching import teacher_error as te
  from jaxunlearn.audits import epsilon
  rng = np.random.default_rng(3)
  retrain, oracle = rng.normal(size=(32, 20)), rng.normal(size=(32, 20))
  oracle_f = epsilon.forgetting_quality(epsilon.per_example_epsilon(oracle, retrain), 32)
  sd = retrain.std(0, ddof=1)
  runs = retrain + 2.0 * sd              # retraining itself, every row 2 of its stds too high
  got = te.run_errors(runs, retrain, oracle, retrain.mean(0), oracle_f)
  assert got["bias"] == pytest.approx(2.0) and got["rms_vs_retrain"] == pytest.approx(2.0)
  assert got["rms_vs_teacher"] == pytest.approx(2.0) and got["sd_ratio_median"] == pytest.approx(1)
  back = te.relative_f(retrain, retrain, oracle_f)       # the runs moved back onto retraining
  assert got["bias_removed"] == pytest.approx(back)
  assert got["mean_to_teacher"] == pytest.approx(back)
  assert te.relative_f(runs, retrain, oracle_f) < 0.5 * back


def test_teacher_error_influence_refusals():
  """--influence refuses a negative damping and a store or request without a fixed pool, in one
  line each and before reading any checkpoint."""
  from types import SimpleNamespace
  from experiments.matching import teacher_error as te
  from jaxunlearn.errors import ConfigError
  prep = SimpleNamespace(y_train=np.zeros(8, np.int64), transforms=(), cfg=None)
  store = SimpleNamespace(meta={"forget_rate": ""})
  with pytest.raises(ConfigError, match=r"--influence -0.1: the damping must be >= 0"):
    te.influence_shift(None, prep, store, None, None, None, -0.1)
  with pytest.raises(ConfigError, match=r"reads a pool store \(forget_rate='pool'\)"):
    te.influence_shift(None, prep, store, None, None, None, 0.1)


def test_head_influence_matches_leaving_a_row_out_of_a_softmax_regression():
  """The output layer's influence predicts the change of phi when a row leaves training: on a
  softmax regression (its Gauss-Newton matrix is its Hessian) with the damping as its L2 term,
  against refitting without the row."""
  from scipy import optimize
  from experiments.matching import teacher_error as te
  rng = np.random.default_rng(0)
  n, d, c = 120, 2, 3
  feats = rng.normal(size=(n, d))
  labels = rng.integers(0, c, n)
  h = np.concatenate([feats, np.ones((n, 1))], 1)

  def fit(rows, lam):
    def loss(w):
      z = h[rows] @ w.reshape(d + 1, c)
      lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
      return np.mean(lse - z[np.arange(rows.size), labels[rows]]) + 0.5 * lam * w @ w
    return optimize.minimize(loss, np.zeros((d + 1) * c), method="BFGS",
                             options={"gtol": 1e-12}).x.reshape(d + 1, c)

  def mean_diag(w):                 # of the Gauss-Newton matrix at w, as the influence reads it
    z = h @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.mean((h ** 2).T @ (p * (1 - p)) / n)

  # The influence's damping is relative to that mean diagonal at the fit, so the L2 that makes
  # it the exact first-order answer is found by iterating fit and diagonal.
  damping, lam = 0.05, 0.0
  for _ in range(4):
    w = fit(np.arange(n), lam)
    lam = damping * mean_diag(w)
  w = fit(np.arange(n), lam)
  z = h @ w
  f_rows, pool = np.array([0, 1, 2]), np.array([5, 6, 7, 8])
  u = te.head_ggn_influence(feats, z, f_rows, labels[f_rows], pool, labels[pool], damping)
  assert u.shape == (3, 4)
  actual = np.empty_like(u)
  for b, j in enumerate(pool):
    z_j = h @ fit(np.setdiff1d(np.arange(n), [j]), lam * n / (n - 1))
    actual[:, b] = te.phi_of(z_j[f_rows], labels[f_rows]) - te.phi_of(z[f_rows], labels[f_rows])
  np.testing.assert_allclose(u, actual, rtol=0.15, atol=0.1 * np.abs(actual).max())
  assert np.corrcoef(u.ravel(), actual.ravel())[0, 1] > 0.95


def test_pool_group_slope_read_at_retraining_by_hand():
  from experiments.matching import teacher_variants as tv
  # Six pool rows in two flip pairs; a row's phi (its first logit, label 0 of two classes) is
  # c_i + 0.7 x (kept rows of its own pair). The fit reads the slope back and each D_f row's
  # phi where retraining is: the other D_f rows gone, the rest of the pool kept.
  rng = np.random.default_rng(1)
  k_models, pool, forget = 64, np.arange(6), np.array([0, 3, 4])
  true = np.array([1, 1, 1, 2, 2, 2])
  keep = rng.random((k_models, 6)) < 0.6
  c = np.arange(6, dtype=float)
  same = (true[:, None] == true[None]) & ~np.eye(6, dtype=bool)
  logits = np.zeros((k_models, 6, 2))
  logits[..., 0] = c + 0.7 * keep.astype(float) @ same.T
  est, beta = tv.pool_groups(logits, keep, np.zeros(6, np.int64), true, pool, forget,
                             np.ones((6, 4)), "pair")
  np.testing.assert_allclose(beta, [0.7], atol=1e-9)
  in_retrain = ~np.isin(pool, forget)
  np.testing.assert_allclose(est, c[forget] + 0.7 * (same[forget].astype(float) @ in_retrain),
                             atol=1e-9)


def test_fmnist_audit_config_and_teacher_error_on_a_fashion_mnist_work_dir(tmp_path):
  from experiments.matching import fmnist_audit, teacher_error
  from jaxunlearn.errors import ConfigError
  cfg = fmnist_audit.make_config("random", 3)
  assert cfg.seed == 3 and not cfg.label_flip.enabled
  assert fmnist_audit.default_workdir("flip", 0) == "runs/fm_audit"
  assert fmnist_audit.default_workdir("flip_pool", 2) == "runs/fm_audit_flip_pool_seed2"
  with pytest.raises(ConfigError, match="unknown Fashion-MNIST forget set 'backdoor'"):
    fmnist_audit.make_config("backdoor", 0)
  # teacher_error reads a Fashion-MNIST audit's work dir, and names the command that makes one.
  with pytest.raises(ConfigError, match="run fmnist_audit.py --forget flip_pool --seed 100"):
    teacher_error.main(["--setting", "fmnist", "--forget", "flip_pool", "--seed", "100",
                        "--store", str(tmp_path), "--root", str(tmp_path / "none")])
  with pytest.raises(ConfigError, match="unknown --forget 'backdoor'"):
    teacher_error.main(["--setting", "fmnist", "--forget", "backdoor", "--store", str(tmp_path)])
  # teacher_variants reads the same work dirs, with the same refusals.
  from experiments.matching import teacher_variants
  with pytest.raises(ConfigError, match="holds no retrain.npy; run fmnist_audit.py --forget "
                                        "flip_pool --seed 100"):
    teacher_variants.main(["--setting", "fmnist", "--forget", "flip_pool", "--seed", "100",
                           "--store", str(tmp_path), "--root", str(tmp_path / "none")])
  with pytest.raises(ConfigError, match="unknown --forget 'backdoor'"):
    teacher_variants.main(["--setting", "fmnist", "--forget", "backdoor", "--store",
                           str(tmp_path)])
  # U-LiRA with a shared store at 60,000 images: the same refusal, before any work.
  from experiments.matching import ulira_shared
  with pytest.raises(ConfigError, match="unknown --forget 'backdoor'"):
    ulira_shared.main(["--setting", "fmnist", "--forget", "backdoor", "--entry", "m=matching",
                       "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out")])
  assert not (tmp_path / "root").exists() and not (tmp_path / "out").exists()


def test_fmnist_audit_summary_by_hand(tmp_path):
  from experiments.matching import fmnist_audit
  for i, (f, acc) in enumerate(((0.5, 0.80), (0.7, 0.84))):
    d = tmp_path / f"w{i}"
    d.mkdir()
    eps = {"oracle": {"relative_f": 1.0, "test_acc": 0.85}, "m": {"relative_f": f,
                                                                  "test_acc": acc}}
    klom = {"oracle": {"forget": {"p95": 2.0}}, "m": {"forget": {"p95": 3.0 + i}}}
    (d / "audit.json").write_text(json.dumps({"epsilon": {"single": eps, "per_seed": eps},
                                              "klom": {"single": klom}}))
  table = fmnist_audit.summarise([tmp_path / "w0", tmp_path / "w1"], ["m"])
  # F 0.6 ± 0.14; KLOM 1.5x and 2.0x the floor: 1.75 ± 0.35; accuracy -5 and -1 points.
  assert "| m | 0.60 ± 0.14 | 0.60 ± 0.14 | 1.75 ± 0.35x | -3.0 ± 2.8 pt |" in table


def test_fmnist_audit_score_by_hand(tmp_path):
  from experiments.matching import fmnist_audit
  from jaxunlearn.errors import ConfigError
  eps_s = {"oracle": {"relative_f": 1.0, "test_acc": 0.85},
           "m_a": {"relative_f": 0.8, "test_acc": 0.84},     # -1 pt: inside 2, outside 0.5
           "m_b": {"relative_f": 0.6, "test_acc": 0.849},    # -0.1 pt: inside both
           "m_c": {"relative_f": 0.9, "test_acc": 0.80},     # -5 pt: outside both
           "rs_a": {"relative_f": 0.5, "test_acc": 0.85}}
  eps_q = {k: dict(v, relative_f=v["relative_f"] - 0.2) for k, v in eps_s.items()}
  klom = {"oracle": {"forget": {"p95": 2.0}}, "m_a": {"forget": {"p95": 3.0}}}
  (tmp_path / "audit.json").write_text(json.dumps(
      {"epsilon": {"single": eps_s, "per_seed": eps_q}, "klom": {"single": klom}}))
  lines = fmnist_audit.score(tmp_path).splitlines()
  row = {ln.split(" | ")[0][2:]: ln for ln in lines if ln.startswith("| m") or
         ln.startswith("| rs")}
  # objective = mean of single and per seed F: m_a 0.7, m_b 0.5; m_c fails both caps.
  assert row["m_a *0.02"] == "| m_a *0.02 | 0.80 | 0.60 | 1.50x | -1.0 pt | 0.700 | (acc) |"
  assert row["m_b *0.005"].endswith("| -0.1 pt | 0.500 | 0.500 |")
  assert row["m_c"].endswith("| (acc) | (acc) |")
  assert "rs_a *0.02 *0.005" in row
  # An oracle F of 0 leaves relative F undefined (None): shown as "-", never chosen.
  for e in (eps_s, eps_q):
    e["m_a"]["relative_f"] = None
  (tmp_path / "audit.json").write_text(json.dumps(
      {"epsilon": {"single": eps_s, "per_seed": eps_q}, "klom": {"single": klom}}))
  lines = fmnist_audit.score(tmp_path).splitlines()
  assert "| m_a | - | - | 1.50x | -1.0 pt | (no F) | (no F) |" in lines
  assert any(ln.startswith("| m_b *0.02 *0.005 |") for ln in lines)
  with pytest.raises(ConfigError, match="no audit.json"):
    fmnist_audit.score(tmp_path / "nowhere")


def test_datamodel_effects_by_hand():
  from experiments.matching import datamodel_look as dl
  # phi exactly 2 + 3 own + sum_j theta_j kept_j: the rows fit reads own and the cross sum back;
  # with equal thetas the count fit does too.
  rng = np.random.default_rng(0)
  keep = rng.random((200, 4)) < 0.5
  theta = np.array([[0.0, 0.5, -0.2, 0.1], [0.3, 0.0, 0.2, 0.2], [0.1, 0.1, 0.0, 0.1],
                    [0.4, 0.4, 0.4, 0.0]])
  phi = 2.0 + 3.0 * keep + keep.astype(float) @ theta.T
  own, cross = dl.effects(phi, keep, "rows")
  np.testing.assert_allclose(own, 3.0, atol=1e-9)
  np.testing.assert_allclose(cross, theta.sum(1), atol=1e-9)
  equal = 0.2 * (1 - np.eye(4))
  own, cross = dl.effects(2.0 + 3.0 * keep + keep.astype(float) @ equal.T, keep, "count")
  np.testing.assert_allclose(own, 3.0, atol=1e-9)
  np.testing.assert_allclose(cross, 0.6, atol=1e-9)
