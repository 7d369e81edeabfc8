"""Crash-safe, private file writes: a reader sees the old file or the new one, never half.

Target configuration files are trusted by a kernel target and hold CHAP
secrets, so every write goes to a temp file in the same directory (same
file system, so the rename is atomic), is fsynced, renamed over the old
name, and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TEMP_PREFIX = ".tmp-"
#: A temp file written on another host (shared state directory) is only
#: presumed abandoned after this long: its writer's liveness cannot be seen.
FOREIGN_TEMP_AGE = 3600.0
_NAME_PART = 96  # of the target file's name kept in a temp name (the whole must fit NAME_MAX)
_HOST_PART = 48


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` if missing, every new level 0700, and return it.

    ``Path.mkdir(parents=True)`` would give the parents it creates the
    umask's mode, so missing levels are made one by one, outermost first.
    """
    if path.is_dir():
        return path
    missing = []
    level = path
    while not level.exists():
        missing.append(level)
        if level.parent == level:
            break
        level = level.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            pass
    if not path.is_dir():
        raise NotADirectoryError(path)
    return path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode`` from its first byte.

    ``durable=False`` skips the fsyncs: the rename is still atomic, but a
    crash may lose the write (or leave the file empty). Only for files that
    are hints checked against durable state, where the fsyncs would be
    wasted time.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent
    try:
        fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path.name), dir=directory)
    except FileNotFoundError:  # first write into this directory: only then pay the mkdir
        ensure_private_dir(directory)
        fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path.name), dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp already gives 0600; fchmod makes the mode explicit
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def _host() -> str:
    return socket.gethostname().replace(".", "_")[:_HOST_PART] or "localhost"


def _temp_prefix(name: str) -> str:
    """``.tmp-<name>.<host>.<pid>.``: who wrote it, so a sweep can tell a dead writer's leftovers."""
    return f"{TEMP_PREFIX}{name[:_NAME_PART]}.{_host()}.{os.getpid()}."


def temp_name_prefix(name: str) -> str:
    """The prefix of this process's temp files for file ``name`` (for writers other than ours)."""
    return _temp_prefix(name)


def _writer_gone(name: str, age: float) -> bool:
    """Whether the process that wrote temp file ``name`` can no longer rename it."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return age > FOREIGN_TEMP_AGE  # a layout we did not write: only by age
    host, pid = parts[1], int(parts[2])
    if host != _host():
        return age > FOREIGN_TEMP_AGE
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def sweep_temp_files(
    directory: Path,
    *,
    recursive: bool = False,
    of_file: str | None = None,
    remove: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Remove temp files left by writers that died between writing and renaming.

    A reader never takes them for records (``is_temp_file``), but they hold
    secrets and would pile up. One still being written by a live process on
    this host is left alone; one from another host only once it is old.
    ``of_file`` limits the sweep to temp files of that one file (a
    directory shared with other software, such as ietd.conf's); ``remove``
    replaces the in-process unlink (a root-owned directory's files are
    removed through the root helper).
    """
    wanted = f"{TEMP_PREFIX}{of_file[:_NAME_PART]}." if of_file else TEMP_PREFIX
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    walker = os.walk(directory) if recursive else [(str(directory), [], os.listdir(directory))]
    now = time.time()
    for root, _dirs, files in walker:
        for name in files:
            if not name.startswith(wanted):
                continue
            path = Path(root) / name
            try:
                age = now - path.lstat().st_mtime
            except FileNotFoundError:
                continue
            if _writer_gone(name, age) and (remove or remove_file)(path):
                removed.append(path)
    return removed


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> bool:
    """Unlink ``path`` durably; False if it was already gone (removal is idempotent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def put_back(path: Path, text: str | None, mode: int = 0o600) -> None:
    """Return a file to what a reader saw before a change: ``text``, or no file when None (rollback)."""
    if text is None:
        remove_file(path)
    else:
        atomic_write(path, text, mode=mode)


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def is_temp_file(name: str) -> bool:
    """Leftovers of an interrupted write; never a record of an export."""
    return name.startswith(TEMP_PREFIX)
