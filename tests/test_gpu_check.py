"""benchmarks/gpu_check.py --smoke: the accelerator check's own code, at toy sizes on CPU."""

import json

import tests.tiny  # noqa: F401  (puts the repository on sys.path)


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
  modes = [row["mode"] for row in saved["speedup_modes"]["rows"]]
  assert modes[0] == "paper" and saved["speedup_modes"]["rows"][-1]["reference_reused"]
  text = (out / "gpu_check.md").read_text()
  assert "SMOKE" in text and "(projection)" in text and "Speedup table" in text
  assert r["smoke"]

