"""Errors of the emulated ietadm, carried as errno values.

Real ietadm returns ietd's negative errno from ``main``, so the shell sees
``256 - errno`` (EINVAL -> 234, EEXIST -> 239). Keeping the errno itself in
the exception lets every layer speak the same language as the real tool and
lets ``cli.main`` do the one conversion to an exit status.
"""

from __future__ import annotations

import errno as _errno

#: Exit status of ``usage(-1)`` in real ietadm (``exit(-1)``): bad option
#: syntax, stray positional arguments, or the daemon being unreachable.
USAGE_EXIT = 255


class IetError(Exception):
    """A failure with the errno that real ietd/the IET kernel module would return."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err
        self.message = message

    @property
    def exit_status(self) -> int:
        """The status a shell sees: ietadm returns ``-errno`` from main()."""
        return (-self.errno) & 0xFF


class IetadmUsageError(Exception):
    """Command-line syntax ietadm's getopt would reject with ``usage(-1)``."""


class EmulatorConfigError(Exception):
    """The emulator itself is not set up (no state directory): like ietd not running."""


def einval(message: str) -> IetError:
    return IetError(_errno.EINVAL, message)


def enoent(message: str) -> IetError:
    return IetError(_errno.ENOENT, message)


def eexist(message: str) -> IetError:
    return IetError(_errno.EEXIST, message)


def ebusy(message: str) -> IetError:
    return IetError(_errno.EBUSY, message)
