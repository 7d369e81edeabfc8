"""The emulators' persisted state: what both keep on disk between short-lived admin runs.

An emulated admin tool (``ietadm``, ``iscsictl``) runs as one process per
command, while the state it changes belongs to a kernel module that lives on.
Both emulators therefore keep that state in a directory and need the same
three things from it, which live here once:

* :func:`flocked`: one command changes the state at a time, across processes
  (``flock``, released when the descriptor closes, so a killed command never
  leaves it held);
* :func:`write_atomic`: a reader, or a command killed half-way, sees the old
  file or the new, never half of one (temp file in the same directory, then
  rename); ``durable`` adds an fsync for an emulator whose model wants it;
* :class:`CounterFile`: named integer counters (creation order, ids) in one
  JSON file, read once per lock and written whole on every change.

What each emulator stores, and in which layout, stays in its own ``state``
module: that is where the fidelity to the product lives. The product has its
own file helpers (``iscsi_helper.fileutil``); the lab does not use them, so an
emulator never shares a mechanism with the adapter it is there to test.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

FILE_MODE = 0o600  # state files may hold CHAP secrets
DIR_MODE = 0o700
TEMP_PREFIX = ".tmp-"  # readers of a state directory skip names starting with "."


class CorruptState(ValueError):
    """A state file exists but does not hold what was written there."""


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def read_or_none(path: Path) -> str | None:
    """The file's text, or None when it does not exist (absence is a state, not an error)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_atomic(path: Path, data: str, *, mode: int = FILE_MODE, durable: bool = False) -> None:
    """Replace ``path`` whole: readers see the old file or the new, never half of one."""
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name[:40] + ".", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def flocked(path: Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created 0600) for the block; shared when not ``exclusive``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class CounterFile:
    """Named integer counters in one JSON file; change them only under the state's lock.

    The values are read once and kept until :meth:`forget`, which the owner
    calls whenever it takes the lock: another process may have moved them
    while the lock was not held.
    """

    def __init__(self, path: Path, defaults: Mapping[str, int], *, durable: bool = False) -> None:
        self.path = path
        self.defaults = dict(defaults)
        self.durable = durable
        self._values: dict[str, int] | None = None

    def forget(self) -> None:
        self._values = None

    def read(self) -> dict[str, int]:
        """The counters (the defaults while the file does not exist); raises :class:`CorruptState`."""
        if self._values is None:
            text = read_or_none(self.path)
            if not text:
                self._values = dict(self.defaults)
            else:
                try:
                    loaded = json.loads(text)
                    self._values = {str(k): int(v) for k, v in dict(loaded).items()}
                except (ValueError, TypeError):
                    raise CorruptState(f"corrupt {self.path}") from None
        return self._values

    def get(self, name: str) -> int:
        return self.read().get(name, self.defaults.get(name, 0))

    def set(self, name: str, value: int) -> None:
        values = self.read()
        values[name] = value
        write_atomic(self.path, json.dumps(values) + "\n", durable=self.durable)

    def increment(self, name: str) -> int:
        """Add one to ``name`` and return the new value."""
        value = self.get(name) + 1
        self.set(name, value)
        return value

    def remove(self) -> None:
        """Back to the defaults (a reboot of the emulated kernel)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._values = None
