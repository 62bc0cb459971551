"""A tiny end-to-end setup shared by the reliability and privacy tests.

A synthetic 4-class dataset of 8x8 images (written as an ``npz:`` file) and a
one-hidden-layer MLP make a whole ``jaxunlearn run`` take seconds on CPU, so
tests can run the real pipeline and the real command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "tests" / "support" / "tiny_config.py"
# Put on a subprocess's PYTHONPATH to pause it at a chosen point (see its sitecustomize.py).
KILLPOINT_DIR = REPO_ROOT / "tests" / "killpoint"

N_TRAIN = 240
N_TEST = 60
NUM_CLASSES = 4


def make_arrays(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST):
  """Class prototypes plus noise: learnable in a couple of epochs."""
  rng = np.random.default_rng(seed)
  protos = rng.uniform(0.0, 1.0, size=(NUM_CLASSES, 8, 8, 1))

  def draw(n):
    y = np.arange(n) % NUM_CLASSES
    rng.shuffle(y)
    x = protos[y] + rng.normal(0.0, 0.3, size=(n, 8, 8, 1))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)

  x_train, y_train = draw(n_train)
  x_test, y_test = draw(n_test)
  return x_train, y_train, x_test, y_test


def write_npz(path, **overrides) -> Path:
  """Writes the tiny dataset (with any array replaced) and returns the path."""
  arrays = dict(zip(("x_train", "y_train", "x_test", "y_test"), make_arrays()))
  arrays.update(overrides)
  path = Path(path)
  np.savez(path, **arrays)
  return path


def config(npz_path, **overrides):
  """The tiny config as a ConfigDict, ``dataset`` pointing at ``npz_path``.

  ``overrides`` use ``__`` for dots: ``unlearn__lam=0.5``.
  """
  import importlib.util
  spec = importlib.util.spec_from_file_location("tiny_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  cfg.dataset = f"npz:{npz_path}"
  for key, value in overrides.items():
    node = cfg
    *parents, leaf = key.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def cli_args(npz_path, workdir, *extra) -> list[str]:
  """Arguments of ``jaxunlearn run`` on the tiny config (without the program name)."""
  # --config must come before any --config.* override.
  configs = [a for a in extra if a.startswith("--config=")] or [f"--config={CONFIG}"]
  rest = [a for a in extra if not a.startswith("--config=")]
  return ["run", *configs, f"--workdir={workdir}", f"--config.dataset=npz:{npz_path}", *rest]


def cli_command() -> list[str]:
  """The installed ``jaxunlearn`` program, else ``python -m jaxunlearn.cli``."""
  script = Path(sys.executable).parent / "jaxunlearn"
  if script.is_file():
    return [sys.executable, str(script)]
  return [sys.executable, "-m", "jaxunlearn.cli"]


def subprocess_env(**extra) -> dict:
  """Environment for a CLI subprocess that imports this checkout on CPU."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONUNBUFFERED"] = "1"
  env.update(extra)
  return env


def wait_for_pause(proc: subprocess.Popen, flag, *, what: str, output, timeout: float = 120
                   ) -> None:
  """Waits until ``proc`` writes its pause-point ``flag`` file (tests/killpoint/).

  Fails the test, with ``output()`` (the process's log), if it exits first or is not there
  within ``timeout`` seconds (then it is killed first, so reading its output cannot hang).
  """
  import time
  import pytest
  deadline = time.monotonic() + timeout
  while not Path(flag).exists():
    if proc.poll() is not None:
      pytest.fail(f"{what} exited ({proc.returncode}) before its pause point:\n{output()}")
    if time.monotonic() > deadline:
      proc.kill()
      proc.wait(timeout=30)
      pytest.fail(f"{what} never reached its pause point in {timeout} s:\n{output()}")
    time.sleep(0.02)


def run_cli(npz_path, workdir, *extra, timeout=120, env=None) -> subprocess.CompletedProcess:
  """Runs ``jaxunlearn run`` in a subprocess and returns the finished process."""
  return subprocess.run(cli_command() + cli_args(npz_path, workdir, *extra),
                        capture_output=True, text=True, timeout=timeout,
                        env=env or subprocess_env(), cwd=REPO_ROOT)


def tree_snapshot(root) -> dict:
  """``{relative path: (size, sha256)}`` of every file under ``root`` (None if absent).

  The work dir's lock file is recorded as present only: taking the lock writes the holder's
  process id into it, which is no state of the work dir.
  """
  import hashlib
  root = Path(root)
  if not root.exists():
    return None
  snap = {}
  for p in sorted(root.rglob("*")):
    rel = p.relative_to(root).as_posix()
    if p.is_dir():
      snap[rel + "/"] = None
    elif rel == ".lock":
      snap[rel] = "lock"
    else:
      snap[rel] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
  return snap


# forget_hash and the stage names that carry it are keyed with each work dir's own
# secret, so they differ between work dirs by design; everything else must not.
FIGURE_KEYS = ("setting", "dataset", "model", "seed", "n_train", "n_test", "n_forget",
               "n_remain", "n_reference", "models", "unlearn_epochs_run",
               "reference_reused", "config")


def figures(results: dict) -> dict:
  """The parts of ``results.json`` that must not depend on timing, host or data path."""
  import json
  # Through JSON, so an in-process result (tuples) compares with a file (lists).
  results = json.loads(json.dumps(results))
  out = {k: results[k] for k in FIGURE_KEYS if k in results}
  out.pop("dataset", None)
  if "config" in out:
    out["config"] = {k: v for k, v in out["config"].items() if k != "dataset"}
  return out


_TMP_ROOT = None


def scratch_dir(name: str) -> Path:
  """A fresh directory under a per-process temp root removed at exit."""
  global _TMP_ROOT
  if _TMP_ROOT is None:
    import atexit
    import shutil
    import tempfile
    _TMP_ROOT = Path(tempfile.mkdtemp(prefix="jaxunlearn-tests-"))
    atexit.register(shutil.rmtree, _TMP_ROOT, True)
  path = _TMP_ROOT / name
  path.mkdir(parents=True)
  return path


_FINISHED = {}
# A folder the whole test session shares (tests/conftest.py makes it in the controlling
# process; pytest-xdist's workers inherit it): a shared run is made by the first worker that
# asks for it and read by the others.
SHARED_ENV = "JAXUNLEARN_TEST_SHARED"


def shared_dir(name: str, build) -> Path:
  """``build(folder)`` once per test session (once per process without a shared folder).

  The first process to ask builds under a file lock; the others wait for it and reuse the
  folder. A build that failed or was killed is redone (a ``DONE`` file marks a finished one).
  """
  root = os.environ.get(SHARED_ENV)
  if not root or not Path(root).is_dir():
    folder = scratch_dir(name)
    build(folder)
    return folder
  import fcntl
  import shutil
  folder = Path(root) / name
  with open(Path(root) / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (folder / "DONE").exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir(parents=True)
      build(folder)
      (folder / "DONE").write_text("finished\n")
  return folder


def finished_run(seed: int = 0):
  """A finished ``pipeline.run`` of the tiny config, made once per test session.

  Returns ``(npz_path, workdir, results)``, ``results`` as read back from
  ``results.json``. Callers must not modify ``workdir`` (copy it with
  ``shutil.copytree`` first).
  """
  if seed not in _FINISHED:
    import json

    def build(root):
      from jaxunlearn import pipeline
      pipeline.run(config(write_npz(root / "tiny.npz"), seed=seed), root / "work")
    root = shared_dir(f"finished-{seed}", build)
    results = json.loads((root / "work" / "results.json").read_text())
    _FINISHED[seed] = (root / "tiny.npz", root / "work", results)
  return _FINISHED[seed]


# The shared tiny audit: N = 4, every built-in statistic (KLOM with 5 remain and 6
# held-out probe points), U-LiRA on 6 originals, finetune audited, D_f label-flipped.
AUDIT_OVERRIDES = {"audit__num_models": 4, "audit__chunk_size": 2,
                   "audit__methods": ("finetune",), "audit__ulira__num_originals": 6,
                   "audit__ulira__forget_sets_per_original": 1, "label_flip__enabled": True,
                   "audit__statistics": ("epsilon", "ulira", "klom"),
                   "audit__klom__remain_points": 5, "audit__klom__heldout_points": 6}
_AUDITED = {}


def finished_audit():
  """One uninterrupted tiny audit per test session: ``(npz_path, workdir, results)``,
  ``results`` as read back from ``audit.json``.

  Made with :data:`AUDIT_OVERRIDES`; callers must not modify ``workdir``.
  """
  if "run" not in _AUDITED:
    import json

    def build(root):
      from jaxunlearn import auditor
      auditor.run_audit(config(write_npz(root / "tiny.npz"), **AUDIT_OVERRIDES), root / "work")
    root = shared_dir("audit", build)
    results = json.loads((root / "work" / "audit.json").read_text())
    _AUDITED["run"] = (root / "tiny.npz", root / "work", results)
  return _AUDITED["run"]


def stage_dirs(workdir) -> dict:
  """``{model name: checkpoint dir}`` of the model stages in ``workdir/checkpoints``.

  The shadow models' checkpoint (``shadows-*``, a stack of models for the MIA
  evaluator) is not a model stage and is left out.
  """
  root = Path(workdir) / "checkpoints"
  out = {}
  for d in sorted(root.iterdir()) if root.is_dir() else ():
    if not d.name.startswith("shadows-"):
      out[d.name.split("-")[0]] = d
  return out
