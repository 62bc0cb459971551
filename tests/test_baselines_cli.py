"""Every method through the command line on the tiny config, sharing one original."""

import json

import numpy as np
import pytest

from jaxunlearn import cli, methods
from tests.support import tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  return tiny.write_npz(root / "tiny.npz"), root / "work"


def run(npz, workdir, *extra):
  return cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, "--config.holdout.size=0.05",
                                                  "--config.eval.evaluators=()", *extra)])


def test_methods_lists_every_method_with_one_line(capsys):
  assert cli.main(["jaxunlearn", "methods"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  for name in methods.names():
    line = next(x for x in lines if x.split()[0] == name)
    assert len(line.split()) > 2, line


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.names())
def test_every_method_runs_from_the_cli(setup, name, capsys):
  npz, workdir = setup
  if name == "ct":      # the tiny model is an MLP: nothing to transpose
    assert run(npz, workdir, f"--config.unlearn.method={name}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has none" in err[0] and "lenet5" in err[0], err
    return
  # matching's default store (64 models on 0.95 of the rows) cannot leave the tiny D_f out.
  extra = ("--config.unlearn.matching.teacher_keep=0.8",
           "--config.unlearn.matching.teacher_models=16") if name == "matching" else ()
  assert run(npz, workdir, f"--config.unlearn.method={name}", *extra) == 0
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == name
  assert 0.0 <= results["models"]["unlearned"]["acc_test"] <= 1.0
  assert results["stages"]["original"] == "original"


@pytest.mark.slow
def test_ct_runs_from_the_cli_on_a_conv_model(tmp_path):
  x_train, y_train, x_test, y_test = tiny.make_arrays()
  pad = ((0, 0), (2, 2), (2, 2), (0, 0))          # 8x8 -> 12x12, the smallest LeNet-5 takes
  npz = tiny.write_npz(tmp_path / "tiny12.npz", x_train=np.pad(x_train, pad),
                       x_test=np.pad(x_test, pad))
  config = tmp_path / "tiny_lenet.py"         # the tiny config with LeNet-5 for its MLP
  config.write_text(
      "import importlib.util\nimport ml_collections\n\n\ndef get_config():\n"
      f"  spec = importlib.util.spec_from_file_location('tiny_config', {str(tiny.CONFIG)!r})\n"
      "  module = importlib.util.module_from_spec(spec)\n  spec.loader.exec_module(module)\n"
      "  c = module.get_config()\n  c.model = 'lenet5'\n"
      "  c.model_kwargs = ml_collections.ConfigDict()\n  return c\n")
  assert run(npz, tmp_path / "work", f"--config={config}", "--config.unlearn.method=ct",
             "--config.retrain.enabled=False") == 0
  results = json.loads((tmp_path / "work" / "results.json").read_text())
  assert results["method"] == "ct" and results["model"] == "lenet5"
  assert 0.0 <= results["models"]["unlearned"]["acc_test"] <= 1.0


def test_scrub_r_without_holdout_says_how_to_fix(tmp_path, capsys):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, tmp_path / "w",
                                                  "--config.unlearn.method=scrub_r")])
  assert code == 2
  assert "holdout.size" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["salun", "scrub_r", "lightweight"])
def test_quick_methods_config_per_method(name):
  from configs import quick_methods
  from jaxunlearn import plugins
  cfg = plugins.check_config(quick_methods.get_config(name))
  assert cfg.unlearn.method == name and cfg.holdout.size > 0
