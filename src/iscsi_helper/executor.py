"""The one way iscsi-helper runs a target tool.

Every command goes through :class:`Executor`: the root helper is applied
here (``sudo``, rootwrap, or nothing when already root), a hung tool is
killed after ``target_tool_timeout``, a missing or non-executable tool
becomes one clear error naming the tool and what to install, and every
argv is offered to observers (tests count calls and assert no secret is
ever on a command line).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from oslo_concurrency import processutils

from iscsi_helper import exception, secretmask

LOG = secretmask.get_logger(__name__)

# What to tell an operator when a tool is missing: which product provides it.
INSTALL_HINTS: dict[str, str] = {
    "iscsictl": "install Chelsio's chiscsi target (or put its emulator first on PATH)",
    "ietadm": "install the iSCSI Enterprise Target (iscsitarget) tools",
    "tgtadm": "install the tgt package (Debian/Ubuntu: apt-get install tgt)",
}


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Executor:
    """Runs commands; shared by all helpers of one process.

    ``root_helper`` is a command prefix (split like a shell would); empty
    runs the tool directly. ``observers`` see each argv as it will be
    executed, root helper included.
    """

    root_helper: str = ""
    timeout: float = 60.0
    observers: list[Callable[[tuple[str, ...]], None]] = field(default_factory=list)
    #: (command, PATH) pairs already found executable. A tool that later
    #: vanishes or loses its mode bits still gets the same clear error: the
    #: spawn itself then fails, and that failure is mapped below.
    _found: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False, compare=False)
    _split_helper: tuple[str, tuple[str, ...]] = field(default=("", ()), init=False, repr=False,
                                                       compare=False)

    def run(self, *argv: str, ok_codes: Sequence[int] = (0,), stdin: str | None = None,
            secrets: Sequence[str] = ()) -> CommandResult:
        """Run ``argv``; raise :class:`CommandFailed` unless its exit code is in ``ok_codes``.

        ``stdin`` is the channel for secrets a tool can read that way;
        ``secrets`` names values that must be masked if the tool echoes them.
        """
        command = argv[0]
        self._check_tool(command)
        if self._split_helper[0] != self.root_helper:
            self._split_helper = (self.root_helper, tuple(shlex.split(self.root_helper)))
        full = self._split_helper[1] + tuple(argv)
        for observer in list(self.observers):
            observer(full)
        started: list[subprocess.Popen[bytes]] = []
        finished: list[int] = []
        with secretmask.handling_secrets(secrets):
            try:
                # target_tool_timeout is a float; oslo's stub says int, but processutils
                # hands it to Popen.communicate(), which takes seconds as a float.
                stdout, stderr = processutils.execute(  # type: ignore[call-overload]
                    *full, check_exit_code=False, process_input=stdin,
                    timeout=self.timeout, loglevel=logging.DEBUG,
                    log_errors=processutils.LOG_FINAL_ERROR,
                    on_execute=started.append,
                    on_completion=lambda proc: finished.append(proc.returncode))
            except subprocess.TimeoutExpired:
                for proc in started:
                    proc.kill()
                    proc.wait()
                raise exception.CommandTimedOut(command=command, timeout=self.timeout) from None
            except FileNotFoundError:
                raise self._not_found(command) from None
            except PermissionError:
                raise exception.CommandNotExecutable(
                    command=command, path=shutil.which(command) or command,
                    hint=INSTALL_HINTS.get(command, "check its permissions")) from None
            exit_code = finished[-1] if finished else 0
            result = CommandResult(full, exit_code, stdout, stderr)
            if exit_code not in ok_codes:
                LOG.debug("%s exited %s: stdout=%r stderr=%r", command, exit_code,
                          secretmask.mask(stdout), secretmask.mask(stderr))
                raise exception.CommandFailed(
                    command=" ".join(argv[:2]), exit_code=exit_code,
                    stdout=secretmask.mask(stdout), stderr=secretmask.mask(stderr))
        return result

    def _check_tool(self, command: str) -> None:
        """Fail before running anything when the tool is absent: the error then says so plainly."""
        if os.sep in command:
            if not os.path.exists(command):
                raise self._not_found(command)
            return
        if self.root_helper:
            return  # the root helper resolves the tool with its own PATH
        key = (command, os.environ.get("PATH", ""))
        if key in self._found:
            return
        if shutil.which(command) is not None:
            self._found.add(key)
        else:
            if any(os.path.exists(os.path.join(d, command))
                   for d in os.environ.get("PATH", "").split(os.pathsep) if d):
                raise exception.CommandNotExecutable(
                    command=command, path=shutil.which(command, mode=os.F_OK) or command,
                    hint="make it executable (chmod +x)")
            raise self._not_found(command)

    @staticmethod
    def _not_found(command: str) -> exception.CommandNotFound:
        hint = INSTALL_HINTS.get(command, f"install the package that provides {command}")
        return exception.CommandNotFound(command=command, hint=hint)
