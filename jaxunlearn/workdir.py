"""The work directory: its lock, its secret and the one original it holds.

* **Lock.** A run holds an exclusive ``fcntl`` lock on ``WORKDIR/.lock``
  (which names the holder's pid) from its first write to its end. A second
  run on the same work directory refuses at once, naming the holder, or
  waits for it (``wait=True``). The lock goes with the process, so a killed
  run leaves no stale lock behind.
* **Secret.** ``WORKDIR/secret.key`` holds 32 random bytes (mode 600) that key
  every hash of a forget set (:func:`jaxunlearn.splits.index_hash`), so a
  ``forget_hash`` in shared results cannot be reversed by hashing guessed
  index lists without the work directory. See ``docs/guarantees.md``.
* **One original.** ``run.json`` records what the original model depends on;
  a config that would train a different original is refused.
* **Writes.** Every file of a run is written whole or not at all
  (:func:`atomic_write`, :func:`save_figure`); a write that fails (a full
  disk, a quota, permissions) raises :class:`~jaxunlearn.errors.WriteError`,
  one line naming the path and, for a full disk, the space needed and free
  (:func:`write_error`). The folders a run writes into are tried before any
  work (:func:`check`).

Internal to the library: :func:`jaxunlearn.request.open_request` takes the lock and
claims the directory, so this module declares no public names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import shutil
import secrets
import tempfile
import time
from pathlib import Path
from typing import Callable

from jaxunlearn.errors import WorkdirError, WriteError

__all__ = []

# Folders of a work directory that runs write into; each one present is tried before any work.
WRITTEN_FOLDERS = ("checkpoints", "phi")
# errno values that mean "no room": a full disk, or the user's quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

LOCK_NAME = ".lock"
SECRET_NAME = "secret.key"
SECRET_BYTES = 32


class Lock:
  """An exclusive lock on a work directory; use as a context manager."""

  def __init__(self, workdir: Path, *, wait: bool = False,
               on_wait: Callable[[str], None] | None = None):
    self.path = Path(workdir) / LOCK_NAME
    self.wait = wait
    self.on_wait = on_wait    # wait=True: called with the holder's pid before waiting
    self._fd = None

  def __enter__(self) -> "Lock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      if not self.wait:
        os.close(fd)
        raise WorkdirError(
            f"work directory {self.path.parent} is in use by another jaxunlearn run "
            f"(pid {holder}); wait for it to finish, rerun with --wait, or use another "
            "--workdir") from None
      if self.on_wait is not None:
        self.on_wait(holder)
      fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _read_holder(fd: int) -> str:
  for _ in range(20):     # the holder writes its pid right after it locks
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if text:
      return text
    time.sleep(0.05)
  return "unknown"


def read_secret(workdir: Path) -> bytes | None:
  """The work directory's secret, or None if it has none yet."""
  path = Path(workdir) / SECRET_NAME
  if not path.exists():
    return None
  data = path.read_bytes()
  if len(data) != SECRET_BYTES:
    raise WorkdirError(f"{path} is damaged ({len(data)} bytes, expected {SECRET_BYTES}); "
                       "restore it from a backup or use a new --workdir (hashes of earlier "
                       "forget sets cannot be matched without it)")
  return data


def new_secret() -> bytes:
  return secrets.token_bytes(SECRET_BYTES)


def write_secret(workdir: Path, secret: bytes) -> None:
  """Writes the secret once (mode 600); an existing one is never replaced."""
  path = Path(workdir) / SECRET_NAME
  if path.exists():
    return
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  with os.fdopen(fd, "wb") as f:
    f.write(secret)
    f.flush()
    os.fsync(f.fileno())


def check(workdir: Path, fingerprint: dict, ignore: tuple = (), *,
          num_classes: int | None = None,
          classes_of: Callable[[str], int | None] | None = None) -> bool:
  """Raises WorkdirError if ``workdir`` is unusable or holds another config's original.

  Keys in ``ignore`` are not compared (a forget hash before the secret is known).
  ``num_classes`` is this request's number of classes and ``classes_of(data_hash)`` the one under
  which its arrays hash to ``data_hash`` (None: none does), so that a change of ``num_classes``
  alone is named as such, not as other data.

  Returns:
    True if ``run.json`` predates data hashes (it has no ``data_hash``): the
    caller records the hash on this first use.
  """
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"work directory {workdir} is a file; pass a directory")
  probe = workdir if workdir.exists() else next(p for p in workdir.parents if p.exists())
  if not probe.is_dir():
    raise WorkdirError(f"work directory {workdir} cannot be created: {probe} is a file; "
                       "choose another --workdir")
  problem = write_problem(probe)
  if problem:
    raise WorkdirError(f"work directory {workdir} is not writable ({probe} refuses new files: "
                       f"{problem}); fix its permissions or free space, or choose another "
                       "--workdir")
  for name in WRITTEN_FOLDERS:
    folder = workdir / name
    if folder.exists() and not folder.is_dir():
      raise WorkdirError(f"{folder} is a file, where runs keep their {name}; move it away or "
                         "choose another --workdir")
    problem = write_problem(folder) if folder.is_dir() else None
    if problem:
      raise WorkdirError(f"{folder} is not writable ({problem}), and runs save their {name} "
                         f"there; fix its permissions (e.g. chmod -R u+w {folder}) or free "
                         "space, or choose another --workdir")
  run_file = workdir / "run.json"
  if run_file.exists():
    try:
      saved = json.loads(run_file.read_text())["original"]
    except (ValueError, KeyError):
      raise WorkdirError(f"{run_file} is unreadable; delete it or use a new --workdir") from None
    fingerprint = json.loads(json.dumps(fingerprint))
    legacy = "data_hash" not in saved and "data_hash" in fingerprint
    if legacy:
      # Made before data hashes: the dataset was named with its path (npz:PATH).
      ignore = (*ignore, "data_hash")
      saved = {**saved, "dataset": str(saved.get("dataset", "")).partition(":")[0]}
    diff = sorted(k for k in set(saved) | set(fingerprint)
                  if k not in ignore and saved.get(k) != fingerprint.get(k))
    if diff == ["data_hash"]:
      before = classes_of(saved["data_hash"]) if classes_of is not None else None
      if before is not None:
        raise WorkdirError(
            f"work directory {workdir} holds a run with num_classes={before}, and this request "
            f"has num_classes={num_classes} on the same data; set "
            f"--config.num_classes={before} or use a new --workdir")
      raise WorkdirError(
          f"work directory {workdir} was made with other data: the dataset "
          f"{fingerprint.get('dataset')!r} now hashes to {fingerprint['data_hash']}, its "
          f"models were trained on data hashing to {saved['data_hash']}; restore that data or "
          "use a new --workdir")
    if diff:
      raise WorkdirError(
          f"work directory {workdir} holds a run of a different config (differs in: "
          f"{', '.join(diff)}); use a new --workdir")
    return legacy
  return False


def can_write(directory: Path) -> bool:
  """Whether a file can be created in ``directory``, by trying it.

  ``os.access`` alone is not enough: it answers for the real user id, so it
  says yes to root (and to a process whose effective user differs) where a
  write would still fail.
  """
  return write_problem(directory) is None


def write_problem(directory: Path) -> str | None:
  """Why no file can be created in ``directory`` (e.g. ``Permission denied``), or None."""
  if not os.access(directory, os.W_OK | os.X_OK):
    return "Permission denied" if os.access(directory, os.F_OK) else "No such directory"
  try:
    with tempfile.TemporaryFile(dir=directory, prefix=".jaxunlearn-probe-"):
      pass
  except OSError as e:
    return e.strerror or type(e).__name__
  return None


def _size(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if abs(n) < 1024 or unit == "GiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n:.1f} GiB"


def free_bytes(path) -> int | None:
  """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
  path = Path(os.path.abspath(path))
  for p in (path, *path.parents):
    if p.exists():
      try:
        return shutil.disk_usage(p).free
      except OSError:
        return None
  return None


def error_number(error: BaseException) -> int | None:
  """The OS error number behind ``error``: an ``OSError``'s, or one named in the message of a
  wrapped error (TensorStore, under Orbax, says ``[os_error_code='28']``), following causes."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    m = re.search(r"os_error_code='?(\d+)", str(error))
    if m:
      return int(m.group(1))
    error = error.__cause__ or error.__context__
  return None


def write_error(path, error: BaseException, needed: int | None = None, *,
                what: str = "") -> WriteError:
  """The one-line :class:`WriteError` of a failed write of ``path``.

  Args:
    path: the file or folder being written.
    error: what the write raised (an ``OSError``, or an error wrapping one).
    needed: the bytes the write needed (its size), if known.
    what: a word naming ``path`` in the message (``"checkpoint"``).
  """
  code = error_number(error)
  free = free_bytes(path)
  path = f"{what} {path}" if what else path
  if code in NO_SPACE:
    what = "over the disk quota" if code == errno.EDQUOT else "no space left on the device"
    need = f"it needs about {_size(needed)}" if needed else "it needs more space"
    have = f", {_size(free)} free there" if free is not None else ""
    short = needed - free if needed and free is not None and needed > free else None
    fix = f"free at least {_size(short)}" if short else "free some space"
    return WriteError(f"cannot write {path}: {what} ({need}{have}); {fix} and rerun (finished "
                      "stages are kept and reused), or use another --workdir")
  reason = (os.strerror(code) if code else
            str(error).splitlines()[0] if str(error) else type(error).__name__)
  return WriteError(f"cannot write {path}: {reason}; check its permissions and free space, "
                    "then rerun (finished stages are kept and reused)")


@contextlib.contextmanager
def writing(path, needed: int | None = None):
  """Turns an ``OSError`` raised inside into :func:`write_error` of ``path``."""
  try:
    yield
  except OSError as e:
    raise write_error(path, e, needed) from e


def atomic_write(path: Path, content, *, fsync: bool = False) -> None:
  """Writes ``content`` to ``path`` so that a reader sees the old file or the whole new one.

  Args:
    path: the file.
    content: text, bytes, or ``write(f)`` writing to a binary file object.
    fsync: flush the data and the rename to disk before returning.

  Raises:
    WriteError: the file cannot be written (a full disk, permissions); the
      earlier file, if any, is left as it was and no temporary file remains.
  """
  path = Path(path)
  tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
  if isinstance(content, str):
    content = content.encode("utf-8")
  needed = len(content) if isinstance(content, (bytes, bytearray)) else None
  try:
    with open(tmp, "wb") as f:
      if isinstance(content, (bytes, bytearray)):
        f.write(content)
      else:
        content(f)
        needed = f.tell()
      if fsync:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    if needed is None:
      with contextlib.suppress(OSError):
        needed = tmp.stat().st_size
    with contextlib.suppress(OSError):
      tmp.unlink()
    raise write_error(path, e, needed) from e


def save_figure(fig, path, **kwargs) -> None:
  """Saves a matplotlib figure as :func:`atomic_write` does: rendered in memory, then written
  whole or not at all (a PNG writer that meets a full disk fails inside the image library)."""
  buf = io.BytesIO()
  fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
  atomic_write(path, buf.getvalue())
