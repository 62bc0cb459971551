"""The throughput benchmark runs end to end and its PyTorch twins match the flax models."""

import json
import sys

import jax
import numpy as np
import pytest

from benchmarks import throughput
from jaxunlearn import models

TINY = ["--n", "256", "--epochs", "1", "--no_compile_cache"]


def flax_param_count(name: str) -> int:
  shape = (1, 28, 28, 1) if throughput.KIND[name] == "mnist" else (1, 32, 32, 3)
  model = models.get_model(name, 10)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32)))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


@pytest.mark.slow
def test_throughput_writes_positive_times_and_ratio(tmp_path):
  pytest.importorskip("torch")
  r = throughput.main(["--models", "mlp", *TINY, "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "throughput.json").read_text())
  assert saved["rows"] == json.loads(json.dumps(r["rows"]))
  (row,) = saved["rows"]
  assert row["model"] == "mlp" and row["input_shape"] == [28, 28, 1]
  assert row["batch_size"] == 64 and row["images_per_epoch"] == 256
  for k in ("jax_epoch_s", "jax_compile_s", "torch_epoch_s", "jax_images_per_s",
            "torch_images_per_s"):
    assert row[k] > 0, k
  assert len(row["jax_epochs_s"]) == len(row["torch_epochs_s"]) == 1
  assert row["speedup"] == pytest.approx(row["torch_epoch_s"] / row["jax_epoch_s"])
  assert row["jax_images_per_s"] == pytest.approx(256 / row["jax_epoch_s"])
  # Random labels: both sides sit near log(10) after one short epoch.
  assert abs(row["jax_last_loss"] - np.log(10)) < 0.5
  assert abs(row["torch_last_loss"] - np.log(10)) < 0.5
  md = (tmp_path / "throughput.md").read_text()
  assert "| mlp | 28x28x1 | 64 | 256 |" in md and "torch" in saved["versions"]


@pytest.mark.slow
def test_throughput_without_torch_reports_jax_only(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  r = throughput.main(["--models", "mlp", *TINY, "--batch_mnist", "100", "--out", str(tmp_path)])
  assert "PyTorch not installed: JAX only" in capsys.readouterr().out
  (row,) = r["rows"]
  assert row["images_per_epoch"] == 200  # the last partial batch is dropped
  assert row["jax_epoch_s"] > 0 and "torch_epoch_s" not in row and "speedup" not in row
  assert r["torch_device"] is None
  assert "| mlp | 28x28x1 | 100 | 256 |" in (tmp_path / "throughput.md").read_text()


def test_unknown_model_is_rejected_with_the_valid_names(capsys):
  with pytest.raises(SystemExit):
    throughput.parse_args(["--models", "lenet5,resnet50"])
  err = capsys.readouterr().err
  assert "unknown model(s) resnet50" in err and "wide_resnet" in err


@pytest.mark.parametrize("name", sorted(throughput.KIND))
def test_torch_twin_has_the_flax_parameter_count(name):
  pytest.importorskip("torch")
  from benchmarks import torch_models
  assert torch_models.param_count(torch_models.get_model(name, 10)) == flax_param_count(name)
