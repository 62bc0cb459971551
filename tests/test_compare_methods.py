"""experiments/compare_methods.py end to end at a tiny size."""

import csv

import pytest

from tests.support import tiny


@pytest.mark.slow
def test_compare_methods_tiny(tmp_path, monkeypatch):
  from configs import quick_methods
  from experiments import compare_methods
  from jaxunlearn.errors import NonFiniteError
  ga = quick_methods.unlearn_settings("gradient_ascent")["learning_rate"]
  run = compare_methods.run_row

  def run_or_diverge(req, label):       # the 100x control diverges on seed 1
    if req.cfg.seed == 1 and req.plans[label].block.learning_rate == pytest.approx(100 * ga):
      raise NonFiniteError("stage 'unlearn': loss became non-finite")
    return run(req, label)

  monkeypatch.setattr(compare_methods, "run_row", run_or_diverge)
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  sets = [f"dataset=npz:{npz}", "model=mlp", "model_kwargs.hidden=(16,)", "train.epochs=2",
          "train.batch_size=32", "forget.size=12", "forget.fraction=0.05", "reference.size=48",
          "reference.epochs=1", "unlearn.epochs=1", "unlearn.forget_batch_size=4",
          "unlearn.remain_batch_size=16", "eval.batch_size=128", "eval.evaluators=('loss_attack',)"]
  out = tmp_path / "out"
  res = compare_methods.main(["--config", str(tiny.CONFIG), "--methods", "lightweight,scrub_r",
                              "--seeds", "0,1", "--out", str(out), "--control-factors", "10,100",
                              *sum((["--set", s] for s in sets), [])])
  rows = list(csv.reader((out / "compare_methods.csv").open()))
  assert [r[0] for r in rows[1:]] == ["retrain", "original", "lightweight", "scrub_r",
                                      "gradient_ascent_lr10x", "gradient_ascent_lr100x"]
  assert rows[0][:5] == ["method", "test acc", "forget acc", "remain acc", "forget loss"]
  assert "±" in rows[3][1]                                   # mean ± std over 2 seeds
  assert [r[-1] for r in rows] == ["diverged", "0/2", "0/2", "0/2", "0/2", "0/2", "1/2"]
  assert "±" not in rows[6][1]                              # 100x: the other seed's figures
  assert (out / "compare_methods.png").stat().st_size > 1000
  assert "Machine:" in (out / "compare_methods.md").read_text()
  # Methods of a seed share the original and the retrained model.
  by = {(r["seed"], r["label"]): r["results"]["stages"] for r in res["runs"] if "results" in r}
  assert by[(0, "lightweight")]["original"] == by[(0, "scrub_r")]["original"]
  assert by[(0, "lightweight")]["retrain"] == by[(0, "scrub_r")]["retrain"]
  lr = {r["label"]: r["results"]["config"]["unlearn"]["learning_rate"] for r in res["runs"]
        if "results" in r}
  assert lr["gradient_ascent_lr10x"] == pytest.approx(10 * ga)
  assert lr["gradient_ascent_lr100x"] == pytest.approx(100 * ga)
  assert by[(0, "lightweight")]["retrain"] == by[(0, "gradient_ascent_lr100x")]["retrain"]
  scrub_r = [r["results"]["unlearn_summary"] for r in res["runs"] if r["label"] == "scrub_r"]
  assert all(1 <= s["rewind_epoch"] <= 1 for s in scrub_r)   # unlearn.epochs=1


def test_compare_methods_refuses_the_selection_seed(tmp_path):
  from configs import quick_methods
  from experiments import compare_methods
  from jaxunlearn.errors import ConfigError
  with pytest.raises(ConfigError, match="selection seed"):
    compare_methods.main(["--methods", "finetune", "--out", str(tmp_path),
                          "--seeds", f"0,{quick_methods.SELECTION_SEED}"])


@pytest.mark.slow
def test_compare_methods_audit_tiny(tmp_path):
  from experiments import compare_methods
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  sets = [f"dataset=npz:{npz}", "audit.num_models=4", "audit.chunk_size=4",
          "audit.ulira.num_originals=6", "audit.ulira.forget_sets_per_original=1",
          "audit.ulira.null_permutations=20", "label_flip.enabled=True", "eval.evaluators=()"]
  out = tmp_path / "out"
  res = compare_methods.main(["--audit", "--config", str(tiny.CONFIG), "--methods",
                              "finetune,ct", "--seeds", "0", "--out", str(out),
                              *sum((["--set", s] for s in sets), [])])
  rows = list(csv.reader((out / "compare_methods_audit.csv").open()))
  assert rows[0][:3] == ["method", "relative F (single)", "relative F (per seed)"]
  by = {r[0]: r for r in rows[1:]}
  assert set(by) == {"oracle (retrain vs retrain)", "none (no unlearning)", "finetune", "ct"}
  assert by["oracle (retrain vs retrain)"][1:3] == ["1.0000", "1.0000"]
  assert by["ct"][1] == "not applicable"           # the MLP has no conv layers
  assert "convolution" in res["stats"]["ct"]["not_applicable"]
  finetune = res["stats"]["finetune"]
  seed = res["results"][0]
  assert finetune["relative F (single)"][0] is not None
  assert 0.0 <= finetune["U-LiRA AUC"][0] <= 1.0 and finetune["U-LiRA AUC null q99"][0] > 0.5
  assert finetune["s/request"][0] > 0 and finetune["speedup"][0] > 0
  # Cost in examples, from the run's own record: finetune has no reference to pay for.
  cost = seed["runs"]["finetune"]["unlearn_cost"]
  assert finetune["examples/request (x retrain)"][0] == pytest.approx(
      cost["per_request_examples"] / cost["retrain_cost_examples"])
  assert finetune["examples/request (x retrain)"][0] > 0
  assert finetune["reference once (x retrain)"][0] == 0.0
  assert res["stats"]["oracle"]["examples/request (x retrain)"][0] == 1.0
  assert (out / "compare_methods_audit.png").stat().st_size > 1000
  assert {"finetune", "finetune_per_seed", "ulira_finetune"} <= set(seed["populations"])
