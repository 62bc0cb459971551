"""Every method through the command line on the tiny config, sharing one original."""

import json

import pytest

from jaxunlearn import cli, methods
from tests import tiny


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


@pytest.mark.parametrize("name", methods.names())
def test_every_method_runs_from_the_cli(setup, name):
  npz, workdir = setup
  assert run(npz, workdir, f"--config.unlearn.method={name}") == 0
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == name
  assert 0.0 <= results["models"]["unlearned"]["acc_test"] <= 1.0
  assert results["stages"]["original"] == "original"


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
  cfg = plugins.validate(quick_methods.get_config(name))
  assert cfg.unlearn.method == name and cfg.holdout.size > 0
