"""Tests of jaxunlearn.checkpoint: round trips, overwrite policy, corruption."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import checkpoint
from jaxunlearn.errors import CheckpointError

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _state():
  return {
      'params': {
          'dense': {
              'kernel': jnp.arange(48, dtype=jnp.float32).reshape(6, 8) / 7.0,
              'bias': jnp.linspace(-1.0, 1.0, 8, dtype=jnp.float32),
          },
          # Big enough that TensorStore writes it to a data file rather than
          # inlining it in the manifest.
          'embed': np.random.default_rng(0).normal(size=(64, 32)).astype(
              np.float32
          ),
      },
      'batch_stats': {'count': jnp.arange(5, dtype=jnp.int32)},
  }


_METADATA = {'stage': 'original', 'epochs': 3, 'lr': 0.1, 'tags': ['a', 'b']}


def _data_files(directory):
  """Saved array data files, largest first (the ones worth tampering with)."""
  state_dir = Path(directory) / '0' / 'state'
  files = [
      p for p in state_dir.rglob('*') if p.is_file() and p.parent.name == 'd'
  ]
  assert files, f'no data files under {state_dir}'
  return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


@pytest.fixture
def saved(tmp_path):
  directory = tmp_path / 'checkpoints' / 'original'
  checkpoint.save(directory, _state(), _METADATA)
  return directory


def test_round_trip_without_target(saved):
  state, meta = checkpoint.restore(saved)
  chex.assert_trees_all_equal(state, _state())
  chex.assert_trees_all_equal_dtypes(state, _state())
  assert meta == _METADATA


def test_round_trip_with_concrete_and_abstract_target(saved):
  concrete = jax.tree.map(jnp.zeros_like, _state())
  state, meta = checkpoint.restore(saved, target=concrete)
  chex.assert_trees_all_close(state, _state())
  chex.assert_trees_all_equal_structs(state, concrete)
  assert meta == _METADATA

  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state()
  )
  state, _ = checkpoint.restore(saved, target=abstract)
  chex.assert_trees_all_equal(state, _state())
  chex.assert_trees_all_equal_dtypes(state, _state())


def test_relative_path_and_metadata_read(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  checkpoint.save('rel/stage', {'w': jnp.ones(3)})
  assert checkpoint.exists(tmp_path / 'rel' / 'stage')
  assert checkpoint.metadata('rel/stage') == {}


def test_sharded_array_round_trip(tmp_path):
  devices = np.array(jax.devices())
  mesh = jax.sharding.Mesh(devices, ('data',))
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('data')
  )
  x = jax.device_put(jnp.arange(8 * len(devices), dtype=jnp.float32), sharding)
  checkpoint.save(tmp_path / 's', {'x': x})
  target = {'x': jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)}
  state, _ = checkpoint.restore(tmp_path / 's', target=target)
  chex.assert_trees_all_equal(state, {'x': x})
  assert state['x'].sharding == sharding


def test_exists_and_metadata(tmp_path):
  directory = tmp_path / 'stage'
  assert not checkpoint.exists(directory)
  checkpoint.save(directory, _state(), _METADATA)
  assert checkpoint.exists(directory)
  assert checkpoint.metadata(directory) == _METADATA
  (directory / checkpoint.MARKER_NAME).unlink()
  assert not checkpoint.exists(directory)
  with pytest.raises(CheckpointError, match='no finished checkpoint'):
    checkpoint.restore(directory)
  with pytest.raises(CheckpointError, match='no finished checkpoint'):
    checkpoint.metadata(directory)


def test_no_silent_overwrite(saved):
  with pytest.raises(CheckpointError, match='overwrite=True'):
    checkpoint.save(saved, {'w': jnp.zeros(2)})
  # The refused save must leave the original intact.
  state, _ = checkpoint.restore(saved)
  chex.assert_trees_all_equal(state, _state())

  checkpoint.save(saved, {'w': jnp.zeros(2)}, {'v': 2}, overwrite=True)
  state, meta = checkpoint.restore(saved)
  chex.assert_trees_all_equal(state, {'w': jnp.zeros(2)})
  assert meta == {'v': 2}


def test_protected_is_never_overwritten(tmp_path):
  directory = tmp_path / 'original'
  checkpoint.save(directory, _state(), protected=True)
  for overwrite in (False, True):
    with pytest.raises(CheckpointError, match='protected'):
      checkpoint.save(directory, {'w': jnp.zeros(2)}, overwrite=overwrite)
  state, _ = checkpoint.restore(directory)
  chex.assert_trees_all_equal(state, _state())


def test_refuses_to_delete_foreign_directory(tmp_path):
  (tmp_path / 'notes.txt').write_text('keep me')
  with pytest.raises(CheckpointError, match='not part of a checkpoint'):
    checkpoint.save(tmp_path, {'w': jnp.ones(2)})
  assert (tmp_path / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize(
    'bad, match',
    [
        ({'a': object()}, 'JSON'),
        ({'a': float('nan')}, 'JSON'),
        ([1, 2], 'must be a dict'),
    ],
)
def test_bad_metadata(tmp_path, bad, match):
  with pytest.raises(CheckpointError, match=match):
    checkpoint.save(tmp_path / 's', {'w': jnp.ones(2)}, bad)
  assert not (tmp_path / 's').exists()


def test_bad_state(tmp_path):
  with pytest.raises(CheckpointError, match='empty pytree'):
    checkpoint.save(tmp_path / 's', {})
  with pytest.raises(CheckpointError, match='leaf of type str'):
    checkpoint.save(tmp_path / 's', {'name': 'resnet'})


def test_target_mismatch_is_checkpoint_error(saved):
  wrong = {'w': jnp.zeros(3)}
  with pytest.raises(CheckpointError, match='cannot restore') as info:
    checkpoint.restore(saved, target=wrong)
  assert '\n' not in str(info.value)


def _flip_byte(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    'tamper, word',
    [
        (_flip_byte, 'changed'),
        (_truncate, 'changed'),
        (Path.unlink, 'missing'),
    ],
)
def test_tampered_data_is_detected(saved, tamper, word):
  target = _data_files(saved)[0]
  tamper(target)
  with pytest.raises(CheckpointError, match='corrupted') as info:
    checkpoint.restore(saved)
  message = str(info.value)
  assert word in message
  assert target.relative_to(saved).as_posix() in message
  assert f'delete {saved}' in message
  # A damaged stage is still "finished" and must not be silently replaced.
  assert checkpoint.exists(saved)


def test_tampered_metadata_and_added_file(saved):
  (saved / '0' / 'state' / 'extra').write_bytes(b'x')
  with pytest.raises(CheckpointError, match='extra was added'):
    checkpoint.restore(saved)
  (saved / '0' / 'state' / 'extra').unlink()
  _flip_byte(saved / '0' / 'metadata' / 'metadata')
  with pytest.raises(CheckpointError, match='corrupted.*metadata changed'):
    checkpoint.metadata(saved)
  (saved / checkpoint.MARKER_NAME).write_text('{not json')
  with pytest.raises(CheckpointError, match='corrupted'):
    checkpoint.restore(saved)


def test_failure_before_marker_leaves_unfinished(tmp_path, monkeypatch):
  directory = tmp_path / 'stage'

  def boom(*args, **kwargs):
    raise RuntimeError('simulated crash')

  monkeypatch.setattr(checkpoint, '_write_marker', boom)
  with pytest.raises(RuntimeError, match='simulated crash'):
    checkpoint.save(directory, _state())
  assert (directory / '0').is_dir()  # Orbax itself had finished.
  assert not checkpoint.exists(directory)
  monkeypatch.undo()

  checkpoint.save(directory, _state(), _METADATA)
  state, meta = checkpoint.restore(directory)
  chex.assert_trees_all_equal(state, _state())
  assert meta == _METADATA


# The child blocks at a hook point and reports it; the parent then SIGKILLs it,
# which makes the kill point deterministic instead of timing dependent.
_KILL_CHILD = textwrap.dedent("""
    import os, sys, time
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    import numpy as np
    from jaxunlearn import checkpoint

    def hang(*args, **kwargs):
      print('HOOK', flush=True)
      time.sleep(600)

    if sys.argv[2] == 'orbax_finalize':
      # Before Orbax renames its tmp directory: nothing is committed.
      from orbax.checkpoint._src.path import atomicity
      atomicity.AtomicRenameTemporaryPath.finalize = hang
    else:
      # After Orbax committed, before the marker is written.
      checkpoint._write_marker = hang
    state = {'w': np.ones((1024, 1024), np.float32)}
    checkpoint.save(sys.argv[1], state, {'run': 1})
    print('DONE', flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize('hook', ['orbax_finalize', 'marker'])
def test_sigkill_mid_save(tmp_path, hook):
  directory = tmp_path / 'stage'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = os.pathsep.join(
      [str(_REPO_ROOT)] + [p for p in [env.get('PYTHONPATH')] if p]
  )
  child = subprocess.Popen(
      [sys.executable, '-c', _KILL_CHILD, str(directory), hook],
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
      env=env,
  )
  try:
    line = child.stdout.readline().strip()
    assert line == 'HOOK', f'child did not reach the hook, printed {line!r}'
    os.kill(child.pid, signal.SIGKILL)
  finally:
    child.kill()
    child.wait(timeout=30)
    child.stdout.close()
  assert child.returncode == -signal.SIGKILL

  # Something partial was left behind: Orbax's tmp directory, or its
  # committed step without our marker.
  assert (directory / '0').is_dir() == (hook == 'marker')
  assert not checkpoint.exists(directory)  # ...but it is not "finished".
  with pytest.raises(CheckpointError, match='no finished checkpoint'):
    checkpoint.restore(directory)

  # A fresh save replaces the partial directory without overwrite=True.
  checkpoint.save(directory, {'w': jnp.full((3,), 2.0)}, {'run': 2})
  state, meta = checkpoint.restore(directory)
  chex.assert_trees_all_equal(state, {'w': jnp.full((3,), 2.0)})
  assert meta == {'run': 2}
  assert not list(directory.glob('*.orbax-checkpoint-tmp*'))
