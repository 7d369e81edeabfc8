"""Crash-safe, private file writes: a reader sees the old file or the new one, never half.

Target configuration files are trusted by a kernel target and hold CHAP
secrets, so every write goes to a temp file in the same directory (same
file system, so the rename is atomic), is fsynced, renamed over the old
name, and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700 for new levels) if missing, and return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode`` from its first byte."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent
    ensure_private_dir(directory)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp already gives 0600; fchmod makes the mode explicit
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


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


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def is_temp_file(name: str) -> bool:
    """Leftovers of an interrupted write; never a record of an export."""
    return name.startswith(TEMP_PREFIX)
