"""The one way iscsi-helper runs a target tool.

Every command goes through :class:`Executor`: the root helper is applied
here (``sudo``, rootwrap, or nothing when already root), a hung tool is
killed after ``target_tool_timeout``, a missing or non-executable tool
becomes one clear error naming the tool and what to install, and every
argv is offered to observers (tests count calls and assert no secret is
ever on a command line).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the tool and everything it started (its own process group), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        # Gone already, or a root helper's process we may not signal: at least the child.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


@dataclass
class Executor:
    """Runs commands; shared by all helpers of one process.

    ``root_helper`` is a command prefix (split like a shell would); empty
    runs the tool directly. ``observers`` see each argv as it will be
    executed, root helper included.

    Each tool runs in a process group of its own, so a tool that outlives
    ``timeout`` is killed together with every process it started (a shell
    wrapper's children would otherwise keep running, and keep our pipes
    open). The executor logs each command itself, with every secret the
    call declares (and every secret the operation declared) masked by
    value before the argv is quoted or joined: a masker that works on the
    quoted text misses a secret holding a quote.
    """

    root_helper: str = ""
    timeout: float = 60.0
    observers: list[Callable[[tuple[str, ...]], None]] = field(default_factory=list)
    #: (command, PATH) pairs already found executable. A tool that later
    #: vanishes or loses its mode bits still gets the same clear error: the
    #: spawn itself then fails, and that failure is mapped below.
    _found: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False, compare=False)
    _split_helper: tuple[str, tuple[str, ...]] = field(
        default=("", ()), init=False, repr=False, compare=False
    )

    def run(
        self,
        *argv: str,
        ok_codes: Sequence[int] = (0,),
        stdin: str | None = None,
        secrets: Sequence[str] = (),
    ) -> CommandResult:
        """Run ``argv``; raise :class:`CommandFailed` unless its exit code is in ``ok_codes``.

        ``stdin`` is the channel for secrets a tool can read that way;
        ``secrets`` names values that must be masked if the tool echoes them
        (or if the argv itself must carry them).
        """
        command = argv[0]
        self._check_tool(command)
        if self._split_helper[0] != self.root_helper:
            self._split_helper = (self.root_helper, tuple(shlex.split(self.root_helper)))
        full = self._split_helper[1] + tuple(argv)
        for observer in list(self.observers):
            observer(full)
        with secretmask.handling_secrets(secrets):
            if LOG.isEnabledFor(logging.DEBUG):  # masking every argument costs: only when shown
                LOG.debug("Running %s", " ".join(shlex.quote(secretmask.mask(a)) for a in full))
            stdout, stderr, exit_code = self._spawn(command, full, stdin)
            result = CommandResult(full, exit_code, stdout, stderr)
            if exit_code not in ok_codes:
                LOG.debug(
                    "%s exited %s: stdout=%r stderr=%r",
                    command,
                    exit_code,
                    secretmask.mask(stdout),
                    secretmask.mask(stderr),
                )
                raise exception.CommandFailed(
                    command=" ".join(argv[:2]),
                    exit_code=exit_code,
                    stdout=secretmask.mask(stdout),
                    stderr=secretmask.mask(stderr),
                )
            LOG.debug("%s exited %s", command, exit_code)
        return result

    def _spawn(self, command: str, full: tuple[str, ...], stdin: str | None) -> tuple[str, str, int]:
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise self._not_found(command) from None
        except PermissionError:
            raise exception.CommandNotExecutable(
                command=command,
                path=shutil.which(command) or command,
                hint=INSTALL_HINTS.get(command, "check its permissions"),
            ) from None
        try:
            out, err = proc.communicate(
                None if stdin is None else stdin.encode("utf-8"), timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise exception.CommandTimedOut(command=command, timeout=self.timeout) from None
        except BaseException:  # interrupted (Ctrl-C): take the tool's whole group down too
            _kill_group(proc)
            raise
        return (out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace"), proc.returncode)

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
            if any(
                os.path.exists(os.path.join(d, command))
                for d in os.environ.get("PATH", "").split(os.pathsep)
                if d
            ):
                raise exception.CommandNotExecutable(
                    command=command,
                    path=shutil.which(command, mode=os.F_OK) or command,
                    hint="make it executable (chmod +x)",
                )
            raise self._not_found(command)

    @staticmethod
    def _not_found(command: str) -> exception.CommandNotFound:
        hint = INSTALL_HINTS.get(command, f"install the package that provides {command}")
        return exception.CommandNotFound(command=command, hint=hint)
