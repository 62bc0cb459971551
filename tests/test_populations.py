"""Populations and ``jaxunlearn audit`` on the tiny config: outputs, sharding, kill and resume.

Sizes are tiny (N = 4 models, an 8x8 MLP); the full-size audit
is ``configs/quick_audit.py``.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from jaxunlearn import auditor, plan, transforms
from jaxunlearn.audits import ulira
from jaxunlearn.errors import ConfigError
from tests.support import tiny

KILLPOINT_DIR = tiny.KILLPOINT_DIR
OVERRIDES = tiny.AUDIT_OVERRIDES
CLI_OVERRIDES = ["--config.audit.num_models=4", "--config.audit.chunk_size=2",
                 "--config.audit.methods=('finetune',)", "--config.audit.ulira.num_originals=6",
                 "--config.audit.ulira.forget_sets_per_original=1",
                 "--config.label_flip.enabled=True"]
POPULATIONS = ("retrain", "oracle", "none", "finetune", "finetune_per_seed", "ulira_originals",
               "ulira_retrain_control", "ulira_identity_control", "ulira_finetune")
_finished_audit = tiny.finished_audit


def test_label_flip_never_keeps_the_true_class_and_is_seeded():
  y = np.arange(200) % 4
  forget = np.arange(0, 200, 3)
  a = transforms.label_flip(y, forget, 4, seed=1)
  assert np.all(a[forget] != y[forget]) and np.array_equal(np.delete(a, forget),
                                                           np.delete(y, forget))
  assert np.array_equal(a, transforms.label_flip(y, forget, 4, seed=1))
  assert len(set(((a[forget] - y[forget]) % 4).tolist())) == 3   # every other class is used


def test_parse_spec_overrides_the_unlearn_block():
  cfg = tiny.config("x.npz")
  label, u = plan.parse_spec("paper=lightweight:lam=0.01,epochs=2", cfg.unlearn)
  assert (label, u.method, u.lam, u.epochs, cfg.unlearn.epochs) == ("paper", "lightweight", 0.01,
                                                                     2, 1)
  assert plan.parse_spec("finetune", cfg.unlearn)[0] == "finetune"
  with pytest.raises(ConfigError, match="unknown field"):
    plan.parse_spec("finetune:nope=1", cfg.unlearn)
  with pytest.raises(ConfigError, match="unknown method 'nope'"):
    plan.parse_spec("nope", cfg.unlearn)
  with pytest.raises(ConfigError, match="label"):
    plan.parse_spec("oracle=finetune", cfg.unlearn, reserved=auditor.CONTROLS)


def test_ulira_masks_are_a_valid_game():
  cfg = tiny.config("x.npz", audit__ulira__num_originals=4,
                    audit__ulira__forget_sets_per_original=3)
  m = ulira.game_masks(cfg.audit.ulira, 12, seed=0)
  assert m["keep"].shape == (4, 12) and m["forget"].shape == (12, 12)
  assert np.all(m["keep"].sum(1) == 6) and np.all(m["forget"].sum(1) == 3)
  assert not np.any(m["in_mask"] & m["out_mask"])
  assert np.all(m["forget"] <= m["keep"][m["groups"]])


@pytest.mark.slow
def test_audit_writes_phi_masks_json_markdown_and_plots():
  _, workdir, r = _finished_audit()
  for name in POPULATIONS:
    phi = np.load(workdir / "phi" / f"{name}.npy")
    n_models = 6 if name.startswith("ulira") else 4
    assert phi.shape == (n_models, 12) and np.all(np.isfinite(phi))
    assert (workdir / "phi" / f"{name}.masks.npz").exists()
  saved = json.loads((workdir / "audit.json").read_text())
  assert saved["data_source"].startswith("npz:")   # where the data were read from
  # Every setting the audited method ran with, and its schedule: finetune's epoch is the
  # paper's unit, one pass over the 12 rows of D_f in forget batches of 4 (3 steps), each step
  # on 16 remain rows.
  ft = saved["methods"]["finetune"]
  assert ft["settings"]["remain_batch_size"] == 16 and ft["settings"]["optimizer"]
  assert ft["schedule"] == {"epochs": 1, "steps_per_epoch": 3, "steps": 3,
                            "forget_rows_per_step": 4, "remain_rows_per_step": 16}
  assert set(saved["epsilon"]) == {"single", "per_seed"}
  for protocol in ("single", "per_seed"):
    for pop in ("oracle", "none", "finetune"):
      row = saved["epsilon"][protocol][pop]
      assert {"forgetting_quality", "relative_f", "final_score", "eps_median", "phi_median",
              "spread_ratio"} <= set(row)
    assert saved["epsilon"][protocol]["oracle"]["relative_f"] in (1.0, None)
  # The controls are the same populations in both protocols; the method's runs are not.
  assert saved["epsilon"]["single"]["none"] == saved["epsilon"]["per_seed"]["none"]
  assert saved["epsilon"]["single"]["finetune"] != saved["epsilon"]["per_seed"]["finetune"]
  for pop in ("retrain_control", "identity_control", "finetune"):
    assert {"balanced_acc", "auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "accuracy_at_zero",
            "null_balanced_acc_mean", "null_balanced_acc_q99", "null_auc_q99"} <= set(
        saved["ulira"][pop])
    assert saved["ulira"][pop]["null_permutations"] == 100
  text = (workdir / "audit.md").read_text()
  assert "| oracle |" in text and "**per_seed**" in text and "null mean / q99" in text
  assert (workdir / "audit_eps.png").stat().st_size and (workdir / "audit_phi.png").stat().st_size


def _audit_cli(npz, workdir):
  # Without U-LiRA: the epsilon populations do not depend on it, so their phi
  # must equal the full audit's.
  return tiny.cli_command() + ["audit", f"--config={tiny.CONFIG}", f"--workdir={workdir}",
                               f"--config.dataset=npz:{npz}", *CLI_OVERRIDES,
                               "--config.audit.statistics=('epsilon',)"]


@pytest.mark.slow
def test_sigkill_during_populations_then_rerun_gives_the_same_phi(tmp_path):
  npz, reference, _ = _finished_audit()
  workdir = tmp_path / "work"
  flag = tmp_path / "paused"
  env = tiny.subprocess_env(JAXUNLEARN_TEST_PAUSE="population:oracle",
                            JAXUNLEARN_TEST_PAUSE_FILE=str(flag))
  env["PYTHONPATH"] = os.pathsep.join([str(KILLPOINT_DIR), env["PYTHONPATH"]])
  log = tmp_path / "log.txt"
  with open(log, "w") as out:
    proc = subprocess.Popen(_audit_cli(npz, workdir), env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=tiny.REPO_ROOT)
  try:
    tiny.wait_for_pause(proc, flag, what="jaxunlearn audit", output=log.read_text)
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait(timeout=30)
  assert not (workdir / "audit.json").exists()
  r = auditor.run_audit(tiny.config(npz, **{**OVERRIDES, "audit__statistics": ("epsilon",)}),
                        workdir)
  assert r["populations"]["retrain"]["chunks_reused"] == 2
  assert r["populations"]["oracle"]["chunks_reused"] == 1     # the chunk saved before the kill
  assert r["populations"]["none"]["chunks_reused"] == 0
  assert "ulira" not in r and r["statistics"] == ["epsilon"]
  for name in POPULATIONS[:4]:
    np.testing.assert_allclose(np.load(workdir / "phi" / f"{name}.npy"),
                               np.load(reference / "phi" / f"{name}.npy"), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_eight_devices_give_the_same_phi_as_one():
  env = tiny.subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
  script = tiny.REPO_ROOT / "tests" / "support" / "population_checks.py"
  proc = subprocess.run([sys.executable, str(script)],
                        capture_output=True, text=True, timeout=180, env=env, cwd=tiny.REPO_ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["device_count"] == 8 and out["sharded_devices"] == 8
  assert out["max_abs_diff_train"] < 1e-5 and out["max_abs_diff_unlearn"] < 1e-5


def test_audit_cli_refuses_an_unknown_method_and_writes_nothing(tmp_path, capsys):
  from jaxunlearn import cli
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  workdir = tmp_path / "work"
  code = cli.main(["jaxunlearn", "audit", f"--config={tiny.CONFIG}", f"--workdir={workdir}",
                   f"--config.dataset=npz:{npz}", "--config.audit.methods=('nope',)"])
  assert code == 2 and "unknown method 'nope'" in capsys.readouterr().err
  assert not workdir.exists()
