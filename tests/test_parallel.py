"""Tests of jaxunlearn.parallel: sharded training, unlearning, evaluation and shadows.

This process has one CPU device. The 8-device checks run in a subprocess
(tests/support/sharding_checks.py) because XLA_FLAGS must be set before JAX starts;
the multi-process checks start two local processes (tests/support/multiprocess_worker.py)
joined by ``jax.distributed`` on 127.0.0.1 and compare with this process.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.support import scale_problem as sp
from jaxunlearn import cli, config, parallel, train
from jaxunlearn.errors import ConfigError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SUPPORT = TESTS / "support"
TOL = 1e-5


def _env(**extra):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("XLA_FLAGS", "JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS"))}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  env["JAX_PLATFORMS"] = "cpu"
  env.update(extra)
  return env


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
  """The 8-device results; ``eight['reference']``: one-device results (arrays)."""
  ref_path = tmp_path_factory.mktemp("eight_devices") / "reference.npz"
  proc = subprocess.run(
      [sys.executable, str(SUPPORT / "sharding_checks.py"), str(ref_path)], capture_output=True,
      text=True, timeout=300, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result["reference"] = dict(np.load(ref_path))
  return result


@pytest.mark.slow
def test_eight_devices_are_used(eight):
  assert eight["device_count"] == 8


@pytest.mark.slow
def test_auto_driver_is_scan_on_several_cpu_devices(eight):
  assert eight["auto_driver"] == "scan"
  assert eight["auto_driver_one_device"] == "loop"


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["loop", "scan"])
def test_fit_sharded_matches_one_device(eight, driver):
  r = eight[f"fit_{driver}"]
  assert r["diff"] < TOL
  np.testing.assert_allclose(r["loss"], r["loss_single"], rtol=1e-5)
  assert r["loss"][-1] < r["loss"][0]              # it did train
  assert r["devices"] == 8 and r["replicated"] and r["specs"] == ["P()"]


@pytest.mark.slow
def test_train_step_is_data_parallel(eight):
  sharded, single = eight["step_sharded"], eight["step_single"]
  # State, data and outputs replicated over all 8 devices ...
  assert sharded["in_specs"] == ["P()"] and sharded["out_specs"] == ["P()"]
  assert sharded["in_devices"] == 8 and single["in_devices"] == 1
  # ... each device computes 32 / 8 rows, and XLA all-reduces the gradients.
  assert sharded["per_device_rows"]
  assert sharded["all_reduce"] and not single["all_reduce"]


@pytest.mark.slow
def test_unlearn_sharded_matches_one_device(eight):
  r = eight["unlearn"]
  assert r["moved"] > 1e-3                          # the steps did change the weights
  assert r["diff"] < TOL
  assert r["devices"] == 8 and r["replicated"]


@pytest.mark.slow
def test_predict_sharded_pads_uneven_batches(eight):
  r = eight["predict"]
  assert r["shape"] == [37, 4]                      # 37 rows in batches of 16 (12 padded to 16)
  assert r["diff"] < TOL and r["diff_single"] < TOL


@pytest.mark.slow
def test_shadow_models_sharded_over_devices(eight):
  r = eight["shadow_8"]
  assert r["shape"] == [8, 2]
  assert r["diff"] < TOL and r["loss_diff"] < TOL
  assert r["spread"] > 1e-2                         # the shadows are different models
  assert r["devices"] == 8 and not r["replicated"] and r["specs"] == ["P('data',)"]


@pytest.mark.slow
def test_shadow_models_padded_when_uneven(eight):
  r = eight["shadow_5"]
  assert r["shape"] == [5, 2]
  assert r["diff"] < TOL and r["loss_diff"] < TOL
  assert "5 models do not divide over 8 devices" in eight["shadow_no_pad_error"]


@pytest.mark.slow
def test_uneven_training_batch_is_an_error(eight):
  assert eight["batch_error"] == ("batch size 12 does not divide over 8 devices; "
                                  "choose a multiple of 8 (e.g. 8)")


# --- two processes -----------------------------------------------------------


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two_processes(outdir: Path, timeout: float = 240.0) -> list:
  """Runs both workers; returns their exit codes (or why they did not exit)."""
  port = _free_port()
  procs, logs = [], []
  try:
    for pid in range(2):
      log = open(outdir / f"log_{pid}.txt", "w")
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, str(SUPPORT / "multiprocess_worker.py"), str(pid), str(port),
           str(outdir)], stdout=log, stderr=subprocess.STDOUT, env=_env()))
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
      try:
        codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        codes.append(f"timed out after {timeout:.0f} s")
    return codes
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=30)
    for log in logs:
      log.close()


@pytest.fixture(scope="module")
def two(tmp_path_factory):
  outdir = tmp_path_factory.mktemp("two_processes")
  codes = _run_two_processes(outdir)
  if codes != [0, 0] and not any(isinstance(c, str) for c in codes):
    # A port taken between _free_port() and the coordinator's bind: retry once.
    codes = _run_two_processes(outdir)
  logs = "\n".join((outdir / f"log_{i}.txt").read_text()[-2000:] for i in range(2))
  assert codes == [0, 0], logs
  return [dict(np.load(outdir / f"process_{i}.npz")) for i in range(2)]


def _leaves(result: dict, prefix: str):
  keys = sorted((k for k in result if k.startswith(prefix + "_") and k[len(prefix) + 1:].isdigit()),
                key=lambda k: int(k.rsplit("_", 1)[1]))
  return [result[k] for k in keys]


def _assert_leaves_close(got, want):
  assert got and len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, np.asarray(w), atol=TOL, rtol=TOL)


@pytest.mark.slow
def test_two_processes_share_one_mesh(two):
  for r in two:
    assert int(r["device_count"]) == 4 and int(r["local_device_count"]) == 2
    assert int(r["unlearn_devices"]) == 4
    assert not bool(r["unlearn_addressable"])    # the parameters span both processes


@pytest.mark.slow
def test_two_process_unlearning_matches_one_process(two, eight):
  ref = eight["reference"]
  for r in two:
    _assert_leaves_close(_leaves(r, "unlearn"), _leaves(ref, "unlearn"))
    np.testing.assert_allclose(r["unlearn_kl"], ref["unlearn_kl"], rtol=1e-5)


@pytest.mark.slow
def test_two_process_training_and_evaluation_match_one_process(two, eight):
  ref = eight["reference"]
  for r in two:
    _assert_leaves_close(_leaves(r, "fit"), _leaves(ref, "fit"))
    np.testing.assert_allclose(r["predict"], ref["predict"], atol=TOL, rtol=TOL)


@pytest.mark.slow
def test_two_process_shadow_models_match_one_process(two, eight):
  ref = eight["reference"]
  for r in two:
    _assert_leaves_close(_leaves(r, "shadow"), _leaves(ref, "shadow"))


@pytest.mark.slow
def test_two_process_checkpoint_round_trip(two):
  for r in two:
    assert float(r["restore_diff"]) == 0.0
    assert int(r["restore_devices"]) == 4
    assert int(r["restore_meta"]) == 2


# --- in this process (one device) --------------------------------------------


def _parallel_cfg(**kw):
  p = config.base_config().parallel
  for k, v in kw.items():
    p[k] = v
  return p


def test_single_process_by_default():
  assert parallel.distributed_settings(config.base_config(), environ={}) is None
  assert parallel.initialize_distributed(config.base_config(), environ={}) is False


def test_distributed_settings_from_config():
  p = _parallel_cfg(distributed=True, coordinator_address="10.0.0.1:1234", num_processes=4,
                    process_id=3)
  assert parallel.distributed_settings(p, environ={}) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}


def test_distributed_settings_from_environment():
  env = {"JAX_COORDINATOR_ADDRESS": "host0:999", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
  assert parallel.distributed_settings(_parallel_cfg(), environ=env) == {
      "coordinator_address": "host0:999", "num_processes": 2, "process_id": 1}
  # Config fields win over the environment.
  got = parallel.distributed_settings(_parallel_cfg(process_id=0), environ=env)
  assert got["process_id"] == 0


def test_distributed_settings_left_to_cluster_detection():
  assert parallel.distributed_settings(_parallel_cfg(distributed=True), environ={}) == {
      "coordinator_address": None, "num_processes": None, "process_id": None}


@pytest.mark.parametrize("kw, env, message", [
    ({"distributed": True, "num_processes": 2, "process_id": 2}, {}, "process_id 2 is out of range"),
    ({"coordinator_address": "host0"}, {}, "needs a port"),
    ({"distributed": True}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
])
def test_distributed_settings_errors(kw, env, message):
  with pytest.raises(ConfigError, match=message):
    parallel.distributed_settings(_parallel_cfg(**kw), environ=env)


def test_config_rejects_bad_parallel_fields():
  cfg = config.base_config()
  cfg.parallel.process_id = -2
  with pytest.raises(ConfigError, match="parallel.process_id"):
    config.check_schema(cfg)
  cfg = config.base_config()
  cfg.parallel.num_processes = -1
  with pytest.raises(ConfigError, match="parallel.num_processes"):
    config.check_schema(cfg)


def test_cli_reports_bad_parallel_settings_in_one_line(capsys, tmp_path, monkeypatch):
  argv = ["jaxunlearn", "run", "--config", str(ROOT / "configs" / "quick.py"),
          "--workdir", str(tmp_path / "w"), "--config.parallel.distributed=True",
          "--config.parallel.num_processes=2", "--config.parallel.process_id=5"]
  # ml_collections reads --config.* overrides from sys.argv.
  monkeypatch.setattr(sys, "argv", argv)
  code = cli.main(argv)
  err = capsys.readouterr().err
  assert code == 2
  assert err.count("\n") == 1 and "process_id 5 is out of range for 2 processes" in err
  assert not (tmp_path / "w").exists()


def test_one_device_mesh_and_rows():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",) and parallel.num_devices(mesh) == jax.device_count()
  np.testing.assert_array_equal(parallel.local_rows(10, mesh), np.arange(10))
  assert parallel.padded_size(5, mesh) == 5
  with pytest.raises(ConfigError, match="empty device list"):
    parallel.make_mesh([])


def test_replicate_keeps_typed_keys():
  mesh = parallel.make_mesh()
  key = jax.random.key(7)
  placed = parallel.replicate({"k": key}, mesh)["k"]
  assert jax.dtypes.issubdtype(placed.dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(placed), jax.random.key_data(key))


def test_vmap_sharded_argument_errors():
  run = parallel.vmap_sharded(lambda a, b: a * b)
  with pytest.raises(ConfigError, match="in_axes must be 0 or None"):
    parallel.vmap_sharded(lambda a: a, in_axes=(1,))(np.ones((2, 2)))
  with pytest.raises(ConfigError, match="one common leading"):
    run(np.ones(3), np.ones(4))


def test_vmap_sharded_shared_argument():
  run = parallel.vmap_sharded(lambda a, b: a * b, in_axes=(0, None))
  np.testing.assert_allclose(run(np.arange(3.0), np.float32(2.0)), [0.0, 2.0, 4.0])


def test_predict_matches_direct_apply_with_padding():
  x, _ = sp.data()
  apply_fn = train.eval_apply_fn(sp.model(), {})
  params = sp.initial_params()
  got = train.predict(apply_fn, params, x[:37], batch_size=16)
  np.testing.assert_allclose(got, np.asarray(jax.jit(apply_fn)(params, x[:37])), atol=TOL)
  with pytest.raises(ValueError, match="at least one example"):
    train.predict(apply_fn, params, x[:0])
