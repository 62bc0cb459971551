"""benchmarks/gpu_check.py --smoke (the accelerator check at toy sizes on CPU) and profile_unlearn.py."""

import json

import pytest

import tests.support.tiny  # noqa: F401  (puts the repository on sys.path)

pytestmark = pytest.mark.slow   # every test here runs a script or a subprocess


def test_gpu_check_smoke_writes_every_part(tmp_path):
  from benchmarks import gpu_check
  out = tmp_path / "out"
  r = gpu_check.main(["--smoke", "--out", str(out)])
  saved = json.loads((out / "gpu_check.json").read_text())
  assert saved["smoke"] is True and set(saved["targets"]) == set(gpu_check.TARGETS)
  for part in ("resnet_f32", "resnet_bf16", "pop_mlp", "speedup_modes"):
    assert "error" not in saved[part], (part, saved[part].get("error"))
  assert saved["resnet_bf16"]["dtype"] == "bfloat16" and saved["resnet_f32"]["epoch_s"] > 0
  pop = saved["pop_mlp"]
  assert pop["retrain_s_per_model"] > 0 and pop["unlearn_s_per_model"] > 0
  assert pop["projected_s"] == 512 * (pop["retrain_s_per_model"] + pop["unlearn_s_per_model"])
  # benchmarks/speedup.py --modes, as gpu_check runs it: the paper's reference (2 epochs), an
  # equal-epochs one (1, as the original) and a held-out one that the later request reuses.
  rows = {row["mode"]: row for row in saved["speedup_modes"]["rows"]}
  assert list(rows)[0] == "paper"
  assert rows["paper"]["reference_epochs"] == 2 and rows["equal_epochs"]["reference_epochs"] == 1
  later = rows["holdout, later request"]
  assert later["reference_reused"] and not rows["holdout, first request"]["reference_reused"]
  assert later["speedup_reused"] == pytest.approx(later["retrain_s"] / later["unlearn_s"])
  assert later["reference_s"] == 0.0 and rows["paper"]["reference_s"] > 0
  # A reference of another schedule is another model, never the 2-epoch one restored.
  assert rows["equal_epochs"]["reference_stage"] != rows["paper"]["reference_stage"]
  assert "| holdout, later request |" in (out / "speedup_modes" / "speedup_modes.md").read_text()
  text = (out / "gpu_check.md").read_text()
  assert "SMOKE" in text and "(projection)" in text and "Speedup table" in text
  assert r["smoke"]



def test_profile_unlearn_times_every_piece_of_the_driver(tmp_path):
  from benchmarks import profile_unlearn
  from tests.support import tiny
  from jaxunlearn import parallel
  npz = tiny.write_npz(tmp_path / "t.npz")
  jit_before = parallel.jit
  r = profile_unlearn.main(["--model", "mlp", "--dataset", f"npz:{npz}", "--n-forget", "6",
                            "--n-remain", "40", "--forget-batch-size", "4",
                            "--remain-batch-size", "8", "--epochs", "2", "--repeats", "1"])
  pieces = r["pieces"]
  assert set(pieces) == {"start", "rows", "step", "epoch_end", "finished", "finish", "summary"}
  # 6 forget rows in batches of 4: 2 steps an epoch (the last batch wraps around), 2 epochs.
  assert r["steps"] == 4 and pieces["step"]["calls_per_run"] == 4
  assert pieces["rows"]["calls_per_run"] == 2 and pieces["epoch_end"]["calls_per_run"] == 2
  assert pieces["finished"]["calls_per_run"] == 1   # asked after every epoch but the last
  assert sum(p["ms_per_run"] for p in pieces.values()) <= r["run_ms"] * 1.01
  assert r["unlearn_step_ms"] > 0 and r["train_step_ms"] > 0
  assert parallel.jit is jit_before      # the driver's own compilation is put back
