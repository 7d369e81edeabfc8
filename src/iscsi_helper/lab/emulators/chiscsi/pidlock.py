"""iscsictl's host-wide lock: one iscsictl at a time, the others fail at once.

Source: src/chiscsi/user/cli/iscsictl.c 183-209. After its command line is
parsed and the control device is open, iscsictl opens
``/etc/chelsio-iscsi/iscsictl.pid`` (O_WRONLY|O_CREAT, 0644) and takes
``lockf(F_TLOCK)`` on it. If another process holds it: "ERROR: unable to
obtain exclusive lock, iscsictl already running?" on stderr and the exit
status is the control device's descriptor (the variable holding it is what
``main`` returns), which is 3 in a process started with only 0-2 open; no
retry, no waiting. On success it writes its pid into the file and holds the
lock until it exits.

The emulator's lock file is ``$CHISCSI_EMULATOR_PIDFILE``, by default
``$CHISCSI_EMULATOR_STATE/iscsictl.pid``; POSIX record locks, as ``lockf``
takes, so a test or another program can hold it with ``fcntl.lockf``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

PIDFILE_ENV = "CHISCSI_EMULATOR_PIDFILE"
PRODUCT_PIDFILE = "/etc/chelsio-iscsi/iscsictl.pid"
DEVICE_FD = 3  # the exit status of a lock failure (see above)
LOCK_BUSY_MESSAGE = "ERROR: unable to obtain exclusive lock, iscsictl already running?\n"
CREATE_FAILED_MESSAGE = "ERROR: unable to create iscsictl pid file\n"


class LockFailed(Exception):
    """The lock could not be taken; ``str(exc)`` is what iscsictl prints."""


def pidfile_path(state_root: Path) -> Path:
    value = os.environ.get(PIDFILE_ENV, "")
    return Path(value) if value else Path(state_root) / "iscsictl.pid"


class PidLock:
    """Held for one command; released (and the descriptor closed) by :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError:
            raise LockFailed(CREATE_FAILED_MESSAGE) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockFailed(LOCK_BUSY_MESSAGE) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1
