"""The quality research harness (experiments/quality) on the current library.

Every module imports (the scripts run only under ``__main__``), and the harness's core
(``Lab``: the work dir's original, retrain / oracle / none populations, a candidate in
both protocols, its cost) runs end to end on the tiny dataset with the shipped method,
``importance_retrain``, as its ``isr`` candidate.
"""

import importlib
import math
from pathlib import Path

import numpy as np
import pytest

from tests.support import tiny

QUALITY = Path(__file__).resolve().parents[1] / "experiments" / "quality"
MODULES = sorted(p.stem for p in QUALITY.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
  importlib.import_module(f"experiments.quality.{name}")


def test_folder_is_a_record():
  """The README names every script (with the figure it regenerates) and the commit the
  figures ran on; the raw logs live in the history, not in the folder."""
  readme = (QUALITY / "README.md").read_text()
  assert "872bac2" in readme
  for name in MODULES:
    assert f"`{name}.py`" in readme, f"experiments/quality/README.md does not name {name}.py"
  assert not list(QUALITY.glob("*.jsonl"))


@pytest.mark.slow
def test_isr_population_on_tiny_data(tmp_path):
  from experiments.quality import evaluate as ev
  from experiments.quality import lab as lab_lib
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  overrides = {"dataset": f"npz:{npz}", "model_kwargs.hidden": (8,), "train.epochs": 1,
               "train.batch_size": 32, "forget.size": 12}
  lab = lab_lib.Lab(0, "flip", holdout=0, n_models=4, workroot=tmp_path / "runs",
                    overrides=overrides)
  try:
    cand = ev.get("isr")
    assert cand.method == "importance_retrain" and cand.kind == "baseline"
    # steps="recipe": retraining's step count on this D_r, 12 rows per step
    n_r = int(lab.s.remain_idx.size)
    steps = n_r // 32
    assert int(lab.unlearn_cfg(cand).steps) == steps
    cost = ev.cost(lab, cand)
    assert cost["examples"] == steps * 12
    assert math.isclose(cost["fraction_of_retrain"], 12 / 32)
    res = lab.evaluate(cand, ("single", "perseed"), log=False, cost=cost)
    for protocol in ("single", "perseed"):
      r = res[protocol]
      assert np.isfinite(r["F"]) and 0.0 <= r["F"] <= 1.0
      assert 0.0 <= r["retain_acc"] <= 1.0 and 0.0 <= r["test_acc"] <= 1.0
    assert "single" in lab_lib.fmt(res)
  finally:
    lab.close()
