"""The work directory: one run at a time, a keyed forget hash, no stale results."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.support import tiny
from jaxunlearn import request, pipeline, splits as splits_lib, workdir as workdir_lib
from jaxunlearn.errors import NonFiniteError, WorkdirError

KILLPOINT_DIR = tiny.KILLPOINT_DIR


@pytest.mark.slow
def test_two_runs_on_one_workdir_second_refuses_naming_the_holder_first_finishes(tmp_path):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  workdir = tmp_path / "work"
  paused, resume = tmp_path / "paused", tmp_path / "resume"
  env = tiny.subprocess_env(JAXUNLEARN_TEST_PAUSE="unlearn", JAXUNLEARN_TEST_PAUSE_FILE=str(paused),
                            JAXUNLEARN_TEST_RESUME_FILE=str(resume))
  env["PYTHONPATH"] = os.pathsep.join([str(KILLPOINT_DIR), env["PYTHONPATH"]])
  log = tmp_path / "first.log"
  with open(log, "w") as out:
    # No evaluators: the lock, not the figures, is under test here.
    first = subprocess.Popen(tiny.cli_command() + tiny.cli_args(
        npz, workdir, "--config.eval.evaluators=()"), env=env,
                             stdout=out, stderr=subprocess.STDOUT, cwd=tiny.REPO_ROOT)
  try:
    # The first run holds the lock, mid-way through its stages.
    tiny.wait_for_pause(first, paused, what="the first jaxunlearn run", output=log.read_text)
    second = tiny.run_cli(npz, workdir, "--config.eval.evaluators=()", timeout=60)
    assert second.returncode == 2
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "in use by another jaxunlearn run" in err and f"pid {first.pid}" in err
    assert "--wait" in err
    resume.write_text("go")
    assert first.wait(timeout=120) == 0, log.read_text()
  finally:
    if first.poll() is None:
      first.kill()
  results = json.loads((workdir / "results.json").read_text())
  assert "unlearned" in results["models"]
  assert len(list((workdir / "checkpoints").glob("original*"))) == 1


@pytest.mark.slow
def test_wait_takes_the_lock_once_the_holder_lets_go(tmp_path):
  tmp_path.mkdir(exist_ok=True)
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import fcntl, os, sys, time\n"
       f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
       "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242\\n')\n"
       "print('locked', flush=True); time.sleep(1.5)\n"],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(WorkdirError, match="pid 4242"):
    with workdir_lib.Lock(tmp_path):
      pass
  t0 = time.monotonic()
  with workdir_lib.Lock(tmp_path, wait=True):
    waited = time.monotonic() - t0
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
  holder.wait(timeout=10)
  assert waited > 0.2          # it did wait for the holder rather than take the lock


@pytest.mark.slow
def test_a_failed_run_puts_the_earlier_results_back(tmp_path):
  npz, finished, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  old = {name: (workdir / name).read_text() for name in ("results.json", "results.md")}
  with pytest.raises(NonFiniteError):
    pipeline.run(tiny.config(npz, unlearn__learning_rate=1e30, unlearn__lam=0.5), workdir)
  # The failure retired nothing: the earlier results are where they were, whole.
  assert {name: (workdir / name).read_text() for name in old} == old
  assert not (workdir / "results.previous.json").exists()


def test_forget_hash_is_keyed_by_a_per_workdir_secret(tmp_path):
  npz, finished, results = tiny.finished_run()
  secret = (finished / "secret.key").read_bytes()
  assert len(secret) == workdir_lib.SECRET_BYTES
  ctx = request.prepare(tiny.config(npz), finished)
  forget = ctx.splits.forget_idx
  assert results["forget_hash"] == splits_lib.index_hash(forget, secret)
  # Without the key the hash cannot be recomputed from a guessed index list.
  assert results["forget_hash"] != splits_lib.index_hash(forget)
  assert splits_lib.index_hash(forget, b"x" * 32) != results["forget_hash"]
  # A damaged key is refused before anything else happens.
  workdir = tmp_path / "work"
  shutil.copytree(finished, workdir)
  (workdir / "secret.key").write_bytes(b"short")
  with pytest.raises(WorkdirError, match="secret.key is damaged"):
    pipeline.run(tiny.config(npz), workdir)
