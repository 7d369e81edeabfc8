"""What the command line needs besides its commands: exit codes, one-line errors, logging.

Kept apart from :mod:`iscsi_helper.cli` so the command table stays a list
of small functions. Everything here answers one promise: whatever goes
wrong, the operator reads one line naming the path, package or option and
the fix, and a script reads an exit code (and, with ``--json``, an error
object) it can rely on; a traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pwd
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from iscsi_helper import secretmask
from iscsi_helper.exception import ExportNotFound, IscsiHelperError, Refused

#: The exit-code contract (README, "Command line"; the CLI docstring).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `ls | head -1`'s ls

#: Errors raised before anything was touched: the input or configuration must change.
REFUSED: tuple[type[IscsiHelperError], ...] = (Refused,)

#: Python packages an optional feature needs -> how to get them.
INSTALL_FIXES: dict[str, str] = {
    "tooz": "pip install 'iscsi-helper[coordination]' (needed by coordination_url)",
    "redis": "pip install 'iscsi-helper[coordination]' (tooz's redis:// driver)",
    "cinder": "pip install 'iscsi-helper[cinder]'",
    "tqdm": "pip install tqdm",
}

PROG = "iscsi-helper"


class CliUsageError(Exception):
    """The command line itself is wrong (unknown flag, missing argument): exit 2, one line."""


@dataclass(frozen=True)
class Failure:
    """How one error ends the command: its line, its exit code, and its JSON object."""

    message: str
    exit_code: int
    kind: str
    state_left: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.kind,
                "message": self.message,
                "exit_code": self.exit_code,
                "state_left": self.state_left,
            }
        }


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def os_error_line(err: OSError) -> str:
    """One line for an OS error: what, which path, and the way out."""
    path = err.filename if err.filename is not None else "(no path)"
    if err.filename2 is not None:
        path = f"{path} -> {err.filename2}"
    if isinstance(err, PermissionError):
        return (
            f"permission denied on {path} for user {_user()}: run as root or as the owner "
            f"of {path}, or change its owner or mode (docs/cinder.md, 'Who owns what')"
        )
    if err.errno == errno.ENOSPC:
        return f"no space left on the file system of {path}: free some space, then retry"
    if err.errno == errno.EROFS:
        return f"{path} is on a read-only file system: point the option naming it elsewhere"
    if err.errno == errno.ENOENT:
        return f"no such file or directory: {path}"
    return f"{err.strerror or err}: {path}"


def describe(err: BaseException) -> Failure:
    """The failure an exception ends the command with (anything at all: never a traceback)."""
    if isinstance(err, CliUsageError):
        return Failure(str(err), EXIT_USAGE, "usage")
    if isinstance(err, IscsiHelperError):
        if isinstance(err, ExportNotFound):
            code = EXIT_NOT_FOUND
        elif isinstance(err, REFUSED):
            code = EXIT_USAGE
        else:
            code = EXIT_FAILED
        return Failure(str(err), code, type(err).__name__, getattr(err, "state_left", None))
    if isinstance(err, ModuleNotFoundError):
        package = (err.name or "?").split(".")[0]
        fix = INSTALL_FIXES.get(package, f"pip install {package}")
        return Failure(
            f"the Python package {package} is not installed: {fix}", EXIT_FAILED, "MissingDependency"
        )
    if isinstance(err, OSError):
        return Failure(os_error_line(err), EXIT_FAILED, type(err).__name__)
    return Failure(
        f"unexpected {type(err).__name__}: {secretmask.mask(str(err))} "
        "(run again with --debug for the traceback, and please report it)",
        EXIT_FAILED,
        type(err).__name__,
    )


def report(
    failure: Failure, *, as_json: bool, stderr: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Print ``failure``: its line on stderr, and with ``as_json`` its object on stdout."""
    err = stderr or sys.stderr
    print(f"{PROG}: error: {failure.message}", file=err)
    if as_json:
        print(json.dumps(failure.as_json(), indent=2, sort_keys=True), file=stdout or sys.stdout)
    return failure.exit_code


# ------------------------------------------------------------------ logging

#: Libraries whose debug lines are their own bookkeeping, not ours: loading
#: entry points (stevedore) and each lock's acquire/release (lockutils).
QUIET_LOGGERS = {"stevedore": logging.WARNING, "oslo_concurrency.lockutils": logging.INFO}
_TIMESTAMPED = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s: %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"


class _PlainFormatter(logging.Formatter):
    """``iscsi-helper: warning: ...``: the terminal's default, like the error line.

    A record of level ERROR is context, not the verdict: it reads ``logged
    error:``, so the one line that starts ``iscsi-helper: error:`` stays the
    command's own (scripts and people look for that one).
    """

    def format(self, record: logging.LogRecord) -> str:
        level = "logged error" if record.levelno >= logging.ERROR else record.levelname.lower()
        return f"{PROG}: {level}: {record.getMessage()}"


def setup_logging(*, debug: bool, verbose: int, log_file: str | None) -> None:
    """stderr: warnings, ``-v`` info, ``-vv``/``--debug`` debug (timestamped); the log file:
    info, or debug with ``--debug``/``-vv``, always timestamped. Secrets are masked in both."""
    level = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose else logging.WARNING
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(
        logging.Formatter(_TIMESTAMPED, _DATE) if level < logging.WARNING else _PlainFormatter()
    )
    handlers: list[logging.Handler] = [console]
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(min(level, logging.INFO))
        to_file.setFormatter(logging.Formatter(_TIMESTAMPED, _DATE))
        handlers.append(to_file)
    for handler in handlers:
        handler.addFilter(secretmask.SecretMaskingFilter())
    logging.basicConfig(level=min(h.level for h in handlers), handlers=handlers, force=True)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet if level > logging.DEBUG or verbose < 3 else level)
