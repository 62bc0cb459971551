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

Internal to the library: :func:`jaxunlearn.request.open_request` takes the lock and
claims the directory, so this module declares no public names.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Callable

from jaxunlearn.errors import WorkdirError

__all__ = []

LOCK_NAME = ".lock"
SECRET_NAME = "secret.key"
SECRET_BYTES = 32


class Lock:
  """An exclusive lock on a work directory; use as a context manager."""

  def __init__(self, workdir: Path, *, wait: bool = False):
    self.path = Path(workdir) / LOCK_NAME
    self.wait = wait
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
  if not can_write(probe):
    raise WorkdirError(f"work directory {workdir} is not writable ({probe} refuses new files); "
                       "choose another --workdir")
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
  if not os.access(directory, os.W_OK | os.X_OK):
    return False
  try:
    with tempfile.TemporaryFile(dir=directory, prefix=".jaxunlearn-probe-"):
      pass
  except OSError:
    return False
  return True


def atomic_write(path: Path, content, *, fsync: bool = False) -> None:
  """Writes ``content`` to ``path`` so that a reader sees the old file or the whole new one.

  Args:
    path: the file.
    content: text, bytes, or ``write(f)`` writing to a binary file object.
    fsync: flush the data and the rename to disk before returning.
  """
  path = Path(path)
  tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
  with open(tmp, "wb") as f:
    if isinstance(content, str):
      f.write(content.encode("utf-8"))
    elif isinstance(content, (bytes, bytearray)):
      f.write(content)
    else:
      content(f)
    if fsync:
      f.flush()
      os.fsync(f.fileno())
  os.replace(tmp, path)
