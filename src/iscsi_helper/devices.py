"""The backing device of an export: what may be exported, what kind it is, how big it is.

Every helper writes the device path into some target's configuration
format, so it is checked once here against the syntax of all of them
before anything is touched; and every helper that must choose between
block and file I/O, or notice that a device has grown, asks here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from iscsi_helper.exception import InvalidInput

# Each of these is syntax in some target's format: ',' and '=' separate
# device options (chiscsi, ietd.conf), '"' quotes, '#' starts a comment in
# chiscsi.conf and ietd.conf, '\\' escapes.
_FORBIDDEN = {
    ",": "a comma",
    '"': "a double quote",
    "\n": "a newline",
    "\r": "a carriage return",
    "\x00": "a NUL byte",
    "=": "'='",
    "#": "'#'",
    "\\": "a backslash",
}
#: Kernel views, never storage: a "device" there would export process memory
#: or environment (``/proc/self/environ``) to any initiator.
_KERNEL_VIEWS = ("/proc", "/sys")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def validate_device_path(path: str, own_state: Iterable[str] = ()) -> str:
    """An absolute path to an existing regular file or block device, safe in any target format.

    ``own_state`` names the paths of our own state (record directories,
    ietd.conf, chiscsi.conf, the lock directory): a device that is one of
    them, or lies below one, is refused, as is anything under /proc or
    /sys. Exporting ietd.conf would hand every CHAP secret on the node to
    any initiator. Paths are compared after symlinks are resolved.
    """
    if not isinstance(path, str) or not path:
        raise InvalidInput(field="device path", value=repr(path), reason="must be a non-empty path")
    for char, name in _FORBIDDEN.items():
        if char in path:
            raise InvalidInput(field="device path", value=repr(path)[:80], reason=f"must not contain {name}")
    if any(c.isspace() for c in path):
        raise InvalidInput(field="device path", value=repr(path)[:80], reason="must not contain whitespace")
    if not path.isascii() or not path.isprintable():
        # Target configuration files are read as bytes or ASCII (chiscsi refuses others).
        raise InvalidInput(field="device path", value=repr(path)[:80], reason="must be printable ASCII")
    if not os.path.isabs(path):
        raise InvalidInput(field="device path", value=repr(path), reason="must be absolute")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InvalidInput(field="device path", value=repr(path), reason="does not exist") from None
    except OSError as err:
        raise InvalidInput(field="device path", value=repr(path), reason=err.strerror) from None
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise InvalidInput(
            field="device path", value=repr(path), reason="is neither a regular file nor a block device"
        )
    real = os.path.realpath(path)
    for root in _KERNEL_VIEWS:
        if _within(real, root):
            raise InvalidInput(
                field="device path", value=repr(path), reason=f"is under {root}, a kernel view, not storage"
            )
    for own in own_state:
        if own and _within(real, os.path.realpath(own)):
            raise InvalidInput(
                field="device path",
                value=repr(path),
                reason=f"is iscsi-helper's own state ({own}), not a volume",
            )
    return path


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def iotype(configured: str, path: str) -> str:
    """``blockio`` or ``fileio`` as Cinder's ``iscsi_iotype`` asks (``auto``: by what ``path`` is)."""
    if configured == "auto":
        return "blockio" if is_block_device(path) else "fileio"
    return configured


def device_size(path: str) -> int | None:
    """Bytes behind ``path`` now (None if it cannot be opened).

    Targets read a backing store's size once, when its LUN is added, so a
    grown device is noticed by comparing this with what was recorded or
    what the target reports. Seeking to the end works for block devices,
    whose ``st_size`` is 0, as well as for files.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        return None
    finally:
        os.close(fd)
