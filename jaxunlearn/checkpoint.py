"""Crash-safe, tamper-evident checkpoints of one pipeline stage.

Each finished stage ("original", "retrain", "reference", "unlearned", ...) is
saved under its own directory, e.g. ``WORKDIR/checkpoints/<stage>/``, with an
Orbax ``CheckpointManager`` holding a single step (step 0) made of two items:

* ``state``: the model pytree, written with ``ocp.args.StandardSave`` (so
  sharded ``jax.Array`` leaves are handled by Orbax, on every process);
* ``metadata``: a JSON dict, written with ``ocp.args.JsonSave``.

On disk (Orbax 0.12.8)::

  <stage>/
    0/                          # renamed from 0.orbax-checkpoint-tmp on commit
      _CHECKPOINT_METADATA
      commit_success.txt
      metadata/{metadata,commit_success.txt}
      state/{_METADATA,_sharding,manifest.ocdbt,array_metadatas/,
             ocdbt.process_0/,d/,commit_success.txt}
    COMPLETE.json               # our marker, written last

Orbax already renames its temporary directory only once every file is written,
but a finished step directory is not enough for us: a process killed between
the rename and the caller's next line, a power loss that leaves unsynced data
files empty, or a hand-edited file would all go unnoticed. So the very last step
of :func:`save` atomically writes ``COMPLETE.json``, which lists the size and
sha256 of every file of the checkpoint. A stage is finished iff that marker is
present (:func:`exists`), and :func:`restore` recomputes every checksum before
it lets Orbax read a single byte.

A finished stage is never overwritten unless the caller passes
``overwrite=True``, and never at all if it was saved with ``protected=True``
(the original model must never be lost). An unfinished directory (a save that
was killed) is cleaned up by the next :func:`save`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxunlearn import workdir as workdir_lib
from jaxunlearn.errors import CheckpointError, WriteError

__all__ = ["save", "restore", "verify", "exists", "metadata", "MARKER_NAME"]

MARKER_NAME = 'COMPLETE.json'
# The marker is first written under this prefix, then renamed, so a reader
# never sees a half-written marker.
_MARKER_TMP_PREFIX = MARKER_NAME + '.tmp'
_MARKER_FORMAT = 1
# One stage holds exactly one model, so one fixed step number is enough.
_STEP = 0
_STATE_ITEM = 'state'
_METADATA_ITEM = 'metadata'
_ITEM_NAMES = (_STATE_ITEM, _METADATA_ITEM)
# Orbax 0.12.8 writes a step to "<step>.orbax-checkpoint-tmp" and renames it
# on commit; the suffix is matched by prefix because older and newer releases
# append a timestamp.
_ORBAX_TMP_SUFFIX = '.orbax-checkpoint-tmp'
_HASH_CHUNK_BYTES = 1 << 20
# About how many files a save writes (Orbax's metadata, manifests, commit markers, ours).
_ORBAX_FILES = 16


def save(
    directory: str | os.PathLike[str],
    state: Any,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    protected: bool = False,
) -> None:
  """Saves ``state`` and ``metadata`` as the finished checkpoint ``directory``.

  The function returns only once every file is on disk and the completion
  marker is written; if the process dies earlier, :func:`exists` stays False
  and the next call to :func:`save` cleans the partial directory up.

  Args:
    directory: the stage directory, e.g. ``WORKDIR/checkpoints/original``.
    state: a non-empty pytree of ``jax.Array`` / numpy arrays or scalars (e.g.
      ``{'params': ..., 'batch_stats': ...}``); sharded arrays are supported.
    metadata: a JSON-serialisable dict stored next to the arrays; ``None``
      stores ``{}``.
    overwrite: replace a finished checkpoint that already exists in
      ``directory``. Refused if that checkpoint was saved with ``protected``.
    protected: mark the checkpoint so that no later ``save`` may replace it.

  Raises:
    CheckpointError: ``directory`` already holds a finished checkpoint and
      ``overwrite`` is False, or it is protected, or it holds files that are
      not a checkpoint, or ``state`` / ``metadata`` cannot be saved.
    WriteError: the disk is full (or over quota, or refuses the write); the
      message names the path and the space needed. The unfinished directory
      is removed: no marker is written, so it never counts as finished.
  """
  path = _abs_path(directory)
  metadata = _check_metadata(metadata)
  _check_state(state)
  if path.exists() and not path.is_dir():
    raise CheckpointError(
        f'checkpoint path {path} is a file, not a directory; remove it or'
        ' choose another checkpoint directory'
    )

  # Every process runs the (read-only) checks so that all of them raise alike
  # instead of some waiting forever at the barrier; deleting is done by one
  # process only, and the others wait so that nobody writes into a directory
  # that is being removed.
  replace = _check_replaceable(path, overwrite=overwrite)
  if replace and jax.process_index() == 0:
    _remove_unfinished_or_replaced(path)
  _sync_processes('jaxunlearn_checkpoint_prepare')

  try:
    saved = _orbax_save(path, state, metadata)
  except CheckpointError:
    raise
  except Exception as e:  # Orbax raises many types; report them uniformly.
    raise _save_error(path, e, state, metadata) from e
  if not saved or not (path / str(_STEP)).is_dir():
    raise CheckpointError(
        f'Orbax did not write checkpoint {path}; delete {path} and save again'
    )

  # Orbax writes the array files from every process, but the marker is a
  # single file describing the whole checkpoint, so only process 0 writes it
  # (after Orbax's own cross-process commit, which wait_until_finished has
  # awaited). The barrier makes exists() True everywhere on return.
  if jax.process_index() == 0:
    try:
      _write_marker(
          path,
          {
              'format': _MARKER_FORMAT,
              'step': _STEP,
              'protected': bool(protected),
              'files': _checksum_tree(path),
          },
      )
    except WriteError:
      # No marker: the stage is unfinished. Its files go now, freeing their space.
      _remove_quietly(path)
      raise
  _sync_processes('jaxunlearn_checkpoint_marker')


def _orbax_save(path: Path, state: Any, metadata: dict[str, Any]) -> bool:
  """Orbax writes step 0 of ``path`` and waits for its commit; returns Orbax's ``saved``.

  Orbax logs a failure of its background threads (a full disk, say) before it
  raises it here; :func:`save` reports the error itself in one line, so those
  log records are dropped.
  """
  options = ocp.CheckpointManagerOptions(create=True, max_to_keep=1)
  with _quiet_orbax_errors(), _join_orbax_threads(), ocp.CheckpointManager(
      path, options=options, item_names=_ITEM_NAMES
  ) as manager:
    saved = manager.save(
        _STEP,
        args=ocp.args.Composite(**{
            _STATE_ITEM: ocp.args.StandardSave(state),
            _METADATA_ITEM: ocp.args.JsonSave(metadata),
        }),
    )
    # The save is asynchronous; the marker must only describe files that
    # Orbax has committed (renamed out of its tmp directory).
    manager.wait_until_finished()
  return saved


class _DropOrbaxErrors(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= logging.ERROR and 'orbax' in record.pathname)


@contextlib.contextmanager
def _join_orbax_threads(timeout_s: float = 30.0):
  """On a failure, waits for the operation threads Orbax started (its ``_SignalingThread``s):
  a failed save raises while some of them still write, and its unfinished directory must not
  be removed while files keep landing in it."""
  before = set(threading.enumerate())
  try:
    yield
  except BaseException:
    deadline = time.monotonic() + timeout_s
    for t in set(threading.enumerate()) - before:
      if type(t).__name__ == '_SignalingThread' and t is not threading.current_thread():
        t.join(max(0.0, deadline - time.monotonic()))
    raise


def _drop_closed_loop(previous):
  """An unraisable hook that drops the ``Event loop is closed`` of a TensorStore callback that
  comes after a failed save closed Orbax's event loop, and passes on everything else."""
  def hook(unraisable):
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == 'Event loop is closed':
      return
    previous(unraisable)
  hook.drops_closed_loop = True
  return hook


@contextlib.contextmanager
def _quiet_orbax_errors():
  # Orbax logs through absl's logger; a filter there sees every record it logs.
  logger, drop = logging.getLogger('absl'), _DropOrbaxErrors()
  logger.addFilter(drop)
  previous = sys.unraisablehook
  if not getattr(previous, 'drops_closed_loop', False):
    sys.unraisablehook = _drop_closed_loop(previous)
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    logger.removeFilter(drop)
    # After a failure, late callbacks of the aborted writes may still arrive.
    if not failed:
      sys.unraisablehook = previous


def _state_bytes(path: Path, state: Any, metadata: dict[str, Any]) -> int:
  """About the bytes a save of ``state`` takes on ``path``'s disk: the arrays (before Orbax's
  compression), the metadata, and Orbax's small files at one disk block each."""
  arrays = sum(
      int(getattr(leaf, 'nbytes', 8)) for leaf in jax.tree.leaves(state)
  )
  block = 4096
  for p in (path, *path.parents):
    if p.exists():
      with contextlib.suppress(OSError):
        block = os.statvfs(p).f_bsize
      break
  return arrays + len(json.dumps(metadata)) + _ORBAX_FILES * block


def _save_error(
    path: Path, error: BaseException, state: Any, metadata: dict[str, Any]
) -> Exception:
  """The one-line error of a failed Orbax save; the unfinished stage is removed."""
  if jax.process_index() == 0:
    _remove_quietly(path)   # frees what was written before the failure
  if workdir_lib.error_number(error) is not None:
    return workdir_lib.write_error(
        path, error, needed=_state_bytes(path, state, metadata), what='checkpoint'
    )
  return CheckpointError(
      f'cannot save checkpoint {path}: {_one_line(error)}; check that the state'
      ' holds only arrays or numbers'
  )


def _remove_quietly(path: Path) -> None:
  """Removes an unfinished stage directory, if it can (the next save would anyway)."""
  if (path / MARKER_NAME).exists():
    return   # never a finished stage
  shutil.rmtree(path, ignore_errors=True)


def restore(
    directory: str | os.PathLike[str], target: Any = None
) -> tuple[Any, dict[str, Any]]:
  """Verifies and loads the finished checkpoint in ``directory``.

  Every file is checked against the checksums in the completion marker before
  anything is loaded, so tampered or truncated data is never returned.

  Args:
    directory: the stage directory given to :func:`save`.
    target: optional pytree with the saved structure, whose leaves are arrays
      or ``jax.ShapeDtypeStruct`` (with ``sharding`` for multi-device arrays).
      The result then has the target's structure, dtypes (values are cast) and
      shardings. Without it, arrays come back as saved: ``jax.Array`` leaves as
      ``jax.Array`` with their saved sharding, numpy leaves as numpy.

  Returns:
    ``(state, metadata)``.

  Raises:
    CheckpointError: the checkpoint is missing, unfinished, corrupted, or does
      not match ``target``.
  """
  path = _abs_path(directory)
  marker = _read_marker(path)
  _verify_files(path, marker['files'])
  if target is None:
    state_args = ocp.args.StandardRestore()
  else:
    state_args = ocp.args.StandardRestore(target)
  restored = _orbax_restore(
      path,
      {
          _STATE_ITEM: state_args,
          _METADATA_ITEM: ocp.args.JsonRestore(),
      },
      hint='pass a target with the structure and shapes of the saved state',
  )
  return restored[_STATE_ITEM], restored[_METADATA_ITEM]


def verify(directory: str | os.PathLike[str]) -> None:
  """Checks every file of the finished checkpoint ``directory`` against its marker.

  What :func:`restore` checks before it loads, without loading: a caller can
  refuse a damaged stage before it changes anything.

  Raises:
    CheckpointError: the checkpoint is missing, unfinished or corrupted.
  """
  path = _abs_path(directory)
  _verify_files(path, _read_marker(path)['files'])


def exists(directory: str | os.PathLike[str]) -> bool:
  """Returns whether ``directory`` holds a finished checkpoint.

  This only looks for the completion marker; it does not verify checksums
  (:func:`restore` does).

  Args:
    directory: the stage directory given to :func:`save`.
  """
  return (_abs_path(directory) / MARKER_NAME).is_file()


def metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
  """Returns the metadata dict of a finished checkpoint without its arrays.

  Only the metadata files are checksummed, which keeps this cheap for large
  models.

  Args:
    directory: the stage directory given to :func:`save`.

  Raises:
    CheckpointError: the checkpoint is missing, unfinished or its metadata is
      corrupted.
  """
  path = _abs_path(directory)
  marker = _read_marker(path)
  prefix = f'{_STEP}/{_METADATA_ITEM}/'
  files = {
      name: entry
      for name, entry in marker['files'].items()
      if name.startswith(prefix)
  }
  if not files:
    raise CheckpointError(
        f'checkpoint {path} is corrupted: its marker lists no metadata file;'
        f' delete {path} to recompute that stage'
    )
  _verify_files(path, files, check_extra=False)
  restored = _orbax_restore(
      path,
      {_METADATA_ITEM: ocp.args.JsonRestore()},
      hint=f'delete {path} to recompute that stage',
  )
  return restored[_METADATA_ITEM]


def _abs_path(directory: str | os.PathLike[str]) -> Path:
  # Orbax (epath) requires absolute paths; resolve() is avoided so that a
  # symlinked work directory keeps the name the user gave in messages.
  return Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))


def _one_line(error: BaseException) -> str:
  # Orbax / TensorStore messages span many lines; the CLI prints one line.
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else ''
  if len(text) > 300:
    text = text[:297] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
  if metadata is None:
    return {}
  if not isinstance(metadata, dict):
    raise CheckpointError(
        f'checkpoint metadata must be a dict, got {type(metadata).__name__};'
        ' pass a dict of JSON values'
    )
  try:
    # Checked up front so that a bad value fails before anything is deleted
    # or written, with a message naming the problem.
    json.dumps(metadata, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f'checkpoint metadata is not JSON-serialisable ({e}); convert arrays'
        ' with .tolist() and other objects to str, and avoid NaN/inf'
    ) from e
  return metadata


def _check_state(state: Any) -> None:
  leaves = jax.tree.leaves(state)
  if not leaves:
    raise CheckpointError(
        'checkpoint state is an empty pytree; pass the model variables, e.g.'
        " {'params': params}"
    )
  for leaf in leaves:
    if not hasattr(leaf, 'shape') and not isinstance(leaf, (int, float)):
      raise CheckpointError(
          f'checkpoint state has a leaf of type {type(leaf).__name__}; keep'
          ' only arrays and numbers in the state and put the rest in metadata'
      )


def _is_checkpoint_entry(name: str) -> bool:
  """Whether ``name`` may appear in a stage directory written by this module."""
  return (
      name == str(_STEP)
      or name.startswith(str(_STEP) + _ORBAX_TMP_SUFFIX)
      or name == MARKER_NAME
      or name.startswith(_MARKER_TMP_PREFIX)
  )


def _check_replaceable(path: Path, *, overwrite: bool) -> bool:
  """Returns whether ``path`` must be removed first; raises if refused."""
  if not path.exists():
    return False
  if (path / MARKER_NAME).exists():
    marker = _read_marker(path)
    if marker.get('protected'):
      raise CheckpointError(
          f'checkpoint {path} is protected and is never overwritten; save to'
          ' another directory'
      )
    if not overwrite:
      raise CheckpointError(
          f'checkpoint {path} already exists; pass overwrite=True to replace'
          ' it or delete the directory'
      )
  # The directory is about to be deleted recursively: make sure it is one of
  # ours and not, say, the work directory passed by mistake.
  foreign = sorted(
      p.name for p in path.iterdir() if not _is_checkpoint_entry(p.name)
  )
  if foreign:
    raise CheckpointError(
        f'checkpoint directory {path} holds files that are not part of a'
        f' checkpoint ({", ".join(foreign[:3])}); choose an empty or new'
        ' directory'
    )
  return True


def _remove_unfinished_or_replaced(path: Path) -> None:
  """Deletes a stage directory that :func:`_check_replaceable` allowed."""
  # The marker goes first: if we are killed while deleting, what is left is
  # an unfinished directory that the next save cleans up, never a "finished"
  # checkpoint with missing files.
  marker_path = path / MARKER_NAME
  if marker_path.exists():
    marker_path.unlink()
    _fsync_dir(path)
  try:
    shutil.rmtree(path)
  except OSError as e:
    raise CheckpointError(
        f'cannot remove old checkpoint {path}: {e}; delete it by hand'
    ) from e


def _sync_processes(name: str) -> None:
  if jax.process_count() > 1:
    # Imported lazily: only multi-process runs need the barrier.
    # pylint: disable-next=g-import-not-at-top
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _file_digest(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(_HASH_CHUNK_BYTES):
      digest.update(chunk)
  return digest.hexdigest()


def _list_files(path: Path) -> list[str]:
  """Relative POSIX names of all files under ``path`` except the marker."""
  names = []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in files:
      rel = Path(root, name).relative_to(path).as_posix()
      if rel == MARKER_NAME or rel.startswith(_MARKER_TMP_PREFIX):
        continue
      names.append(rel)
  return sorted(names)


def _checksum_tree(path: Path) -> dict[str, dict[str, Any]]:
  return {
      name: {
          'size': (path / name).stat().st_size,
          'sha256': _file_digest(path / name),
      }
      for name in _list_files(path)
  }


def _write_marker(path: Path, content: dict[str, Any]) -> None:
  """Writes the marker atomically: a reader sees no marker or a whole one."""
  # The temporary name starts with _MARKER_TMP_PREFIX, which readers skip.
  workdir_lib.atomic_write(path / MARKER_NAME, json.dumps(content, indent=1, sort_keys=True),
                           fsync=True)
  # Without this the rename itself may be lost on power failure.
  _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return  # Some platforms cannot open directories; best effort only.
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _corrupted(path: Path, what: str) -> CheckpointError:
  return CheckpointError(
      f'checkpoint {path} is corrupted: {what}; delete {path} to recompute'
      ' that stage'
  )


def _read_marker(path: Path) -> dict[str, Any]:
  marker_path = path / MARKER_NAME
  if not marker_path.is_file():
    raise CheckpointError(
        f'no finished checkpoint in {path} ({MARKER_NAME} missing); run the'
        ' stage that saves it, or delete a partial directory left by a killed'
        ' run'
    )
  try:
    marker = json.loads(marker_path.read_text(encoding='utf-8'))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _corrupted(path, f'{MARKER_NAME} is unreadable ({e})') from e
  files = marker.get('files') if isinstance(marker, dict) else None
  if (
      not isinstance(files, dict)
      or marker.get('format') != _MARKER_FORMAT
      or not all(
          isinstance(e, dict)
          and isinstance(e.get('size'), int)
          and isinstance(e.get('sha256'), str)
          for e in files.values()
      )
  ):
    raise _corrupted(path, f'{MARKER_NAME} has an unexpected layout')
  return marker


def _verify_files(
    path: Path, expected: dict[str, dict[str, Any]], *, check_extra: bool = True
) -> None:
  """Raises unless every expected file has its recorded size and hash."""
  # Sizes first: a missing or truncated file is found without hashing the
  # (possibly large) files before it.
  for name, entry in sorted(expected.items()):
    file_path = path / name
    if not file_path.is_file():
      raise _corrupted(path, f'{name} missing')
    if file_path.stat().st_size != entry['size']:
      raise _corrupted(path, f'{name} changed (size differs)')
  if check_extra:
    # Orbax may read any file in its directories, so a file the marker does
    # not list is as suspicious as a changed one.
    extra = sorted(set(_list_files(path)) - set(expected))
    if extra:
      raise _corrupted(path, f'{extra[0]} was added after the save')
  for name, entry in sorted(expected.items()):
    if _file_digest(path / name) != entry['sha256']:
      raise _corrupted(path, f'{name} changed')


def _orbax_restore(
    path: Path, item_args: dict[str, Any], *, hint: str
) -> Any:
  """Restores step 0 of ``path``, mapping errors to CheckpointError."""
  # create=False and no save keep Orbax from writing anything, so the files
  # whose checksums were just verified stay as they are. (read_only=True would
  # do the same but logs two warnings on every restore in Orbax 0.12.8.)
  options = ocp.CheckpointManagerOptions(create=False)
  try:
    with ocp.CheckpointManager(
        path, options=options, item_names=_ITEM_NAMES
    ) as manager:
      return manager.restore(_STEP, args=ocp.args.Composite(**item_args))
  except Exception as e:  # Orbax raises many types; report them uniformly.
    raise CheckpointError(
        f'cannot restore checkpoint {path}: {_one_line(e)}; {hint}'
    ) from e
