"""Interruption, resume, corruption, determinism and non-finite losses, end to end.

Every test runs the real pipeline on the tiny config (tests/support/tiny_config.py);
the interruption test SIGKILLs real ``jaxunlearn run`` subprocesses.
"""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunlearn import request, checkpoint, cli, pipeline, splits as splits_lib
from jaxunlearn.errors import NonFiniteError
from tests.support import tiny

KILLPOINT_DIR = tiny.KILLPOINT_DIR


def _run_until_paused(npz, workdir, point, scratch) -> str:
  """Starts ``jaxunlearn run``, waits for the pause ``point``, SIGKILLs it; returns its output."""
  flag = scratch / f"paused-{point.replace(':', '-')}"
  log = scratch / f"log-{point.replace(':', '-')}.txt"
  env = tiny.subprocess_env(JAXUNLEARN_TEST_PAUSE=point, JAXUNLEARN_TEST_PAUSE_FILE=str(flag))
  env["PYTHONPATH"] = os.pathsep.join([str(KILLPOINT_DIR), env["PYTHONPATH"]])
  with open(log, "w") as out:
    proc = subprocess.Popen(tiny.cli_command() + tiny.cli_args(npz, workdir), env=env,
                            stdout=out, stderr=subprocess.STDOUT, cwd=tiny.REPO_ROOT)
  try:
    tiny.wait_for_pause(proc, flag, what=f"jaxunlearn run (pause point {point})",
                        output=log.read_text)
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait(timeout=30)
  assert proc.returncode == -signal.SIGKILL
  return log.read_text()


def _finished(workdir) -> dict:
  """``{model name: dir}`` of the stages whose checkpoint is finished."""
  return {name: d for name, d in tiny.stage_dirs(workdir).items() if checkpoint.exists(d)}


def _assert_all_finished_usable(workdir):
  for d in _finished(workdir).values():
    state, meta = checkpoint.restore(d)  # verifies every checksum
    assert jax.tree.leaves(state["params"]) and meta["stage"] == d.name


@pytest.mark.slow
def test_sigkill_at_every_stage_then_resume_matches_uninterrupted(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  workdir = tmp_path / "work"

  # 1. Killed while training the original: nothing is finished.
  _run_until_paused(npz, workdir, "fit:original", tmp_path)
  assert _finished(workdir) == {}
  assert not (workdir / "results.json").exists()

  # 2. Killed while saving retrain (Orbax files committed, marker not yet
  # written): the original is finished and protected, retrain is not finished.
  _run_until_paused(npz, workdir, "save:retrain", tmp_path)
  assert set(_finished(workdir)) == {"original"}
  retrain_dir = tiny.stage_dirs(workdir)["retrain"]
  assert (retrain_dir / "0").is_dir() and not checkpoint.exists(retrain_dir)
  _assert_all_finished_usable(workdir)
  original = tiny.tree_snapshot(workdir / "checkpoints" / "original")
  assert json.loads((workdir / "checkpoints/original/COMPLETE.json").read_text())["protected"]

  # 3. Killed inside unlearning: three stages finished, the original unchanged.
  _run_until_paused(npz, workdir, "unlearn", tmp_path)
  assert set(_finished(workdir)) == {"original", "retrain", "reference"}
  _assert_all_finished_usable(workdir)
  assert tiny.tree_snapshot(workdir / "checkpoints" / "original") == original

  # 4. Killed between results.json and results.md.
  _run_until_paused(npz, workdir, "results", tmp_path)
  assert set(_finished(workdir)) == {"original", "retrain", "reference", "unlearned"}
  assert (workdir / "results.json").exists() and not (workdir / "results.md").exists()
  _assert_all_finished_usable(workdir)
  assert tiny.tree_snapshot(workdir / "checkpoints" / "original") == original

  # 5. Rerunning the same command finishes, and the figures are those of an
  # uninterrupted run with the same seed.
  done = tiny.run_cli(npz, workdir)
  assert done.returncode == 0, done.stderr
  assert (workdir / "results.md").exists()
  assert tiny.tree_snapshot(workdir / "checkpoints" / "original") == original
  resumed = json.loads((workdir / "results.json").read_text())
  _, _, uninterrupted = tiny.finished_run()
  assert tiny.figures(resumed) == tiny.figures(uninterrupted)
  assert resumed["reference_reused"] is False


def _restored_params(workdir):
  return {name: checkpoint.restore(d)[0] for name, d in _finished(workdir).items()}


@pytest.mark.slow
def test_same_seed_is_bit_identical_on_cpu(tmp_path):
  npz, workdir_a, results_a = tiny.finished_run()
  workdir_b = tmp_path / "work"
  results_b = pipeline.run(tiny.config(npz), workdir_b)
  assert tiny.figures(results_a) == tiny.figures(results_b)
  params_a, params_b = _restored_params(workdir_a), _restored_params(workdir_b)
  assert set(params_a) == set(params_b) == {"original", "retrain", "reference", "unlearned"}
  for name in params_a:
    leaves_a, tree_a = jax.tree.flatten(params_a[name])
    leaves_b, tree_b = jax.tree.flatten(params_b[name])
    assert tree_a == tree_b
    for a, b in zip(leaves_a, leaves_b):
      assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name


def test_different_seeds_give_different_forget_sets(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  forget = {}
  for seed in range(4):
    ctx = request.prepare(tiny.config(npz, seed=seed), tmp_path / f"w{seed}")
    forget[seed] = splits_lib.index_hash(ctx.splits.forget_idx)
    again = request.prepare(tiny.config(npz, seed=seed), tmp_path / f"w{seed}")
    np.testing.assert_array_equal(again.splits.forget_idx, ctx.splits.forget_idx)
  assert len(set(forget.values())) == 4
  assert not any((tmp_path / f"w{seed}").exists() for seed in range(4))


def _data_file(stage_dir) -> Path:
  files = [p for p in (stage_dir / "0" / "state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("stage,damage", [
    ("original", "flip"), ("unlearned", "truncate"), ("reference", "metadata"),
])
def test_damaged_checkpoint_is_refused_with_one_line(tmp_path, capsys, stage, damage):
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  stage_dir = tiny.stage_dirs(workdir)[stage]
  if damage == "flip":
    target = _data_file(stage_dir)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
  elif damage == "truncate":
    target = _data_file(stage_dir)
    target.write_bytes(target.read_bytes()[:-7])
  else:
    target = stage_dir / "0" / "metadata" / "metadata"
    meta = json.loads(target.read_text())
    meta["reference_idx"][0] = (meta["reference_idx"][0] + 1) % 240
    target.write_text(json.dumps(meta))
  (workdir / "results.json").unlink()
  before = tiny.tree_snapshot(workdir)

  assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert "corrupted" in err and stage_dir.name in err and "Traceback" not in err
  # Refused before the claim, never loaded or silently recomputed: nothing changed, and the
  # earlier results.md stays where it was.
  assert tiny.tree_snapshot(workdir) == before


@pytest.mark.slow
def test_damaged_checkpoint_via_real_cli(tmp_path):
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  target = _data_file(tiny.stage_dirs(workdir)["retrain"])
  target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
  proc = tiny.run_cli(npz, workdir)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("jaxunlearn: error: checkpoint"), proc.stderr
  assert "corrupted" in lines[0]


@pytest.mark.slow
def test_nonfinite_unlearning_keeps_finished_stages_and_writes_no_results(tmp_path, capsys):
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  for name in ("results.json", "results.md"):
    (workdir / name).unlink()
  before = tiny.tree_snapshot(workdir)

  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir,
                                                "--config.unlearn.learning_rate=1e30")])
  assert code == 1       # a failure during work (2: a refusal before any)
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert "stage 'unlearn'" in err and "step" in err and "non-finite" in err
  # Finished stages are kept as they were; no unlearned model, no results.
  assert tiny.tree_snapshot(workdir) == before
  assert not (workdir / "results.json").exists()


@pytest.mark.slow
def test_nonfinite_training_names_stage_and_step(tmp_path, capsys):
  # Finite inputs (they pass from_arrays) whose activations overflow float32: the images
  # divided by a tiny declared scale.
  npz = tiny.write_npz(tmp_path / "overflow.npz")
  workdir = tmp_path / "work"
  assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir,
                                                "--config.input_scale=3e-38")]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert "stage 'original'" in err and "step 1" in err
  assert _finished(workdir) == {}
  assert not (workdir / "results.json").exists()
  # And through the API, as the specific error type.
  with pytest.raises(NonFiniteError, match="stage 'original'"):
    pipeline.run(tiny.config(npz, input_scale=3e-38), workdir)
