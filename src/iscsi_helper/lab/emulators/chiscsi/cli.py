"""``iscsictl``: the command line of Chelsio's chiscsi target, emulated from its source.

Process start (src/chiscsi/user/cli/iscsictl.c 118-217): no argument prints
the detailed usage and exits 0; an argument is an option only if it is
exactly two characters starting with '-' (user/common/iscsictl_private.h
11), anything else is "Invalid argument"; options and their operands follow
private/ulib/iscsictl_cmd.c 1440-1535 (``-x`` swallows its operand and does
nothing; ``-f`` takes the next argument whatever it is). Then the control
device is opened, the host-wide lock taken (pidlock.py), the command run
(commands.py), and ``main`` returns the command's result: -1 exits 255, a
name missing from the ``-f`` file (-ENODEV) exits 237.

The emulated kernel lives in ``$CHISCSI_EMULATOR_STATE``; without it the
emulator answers as iscsictl does when the chiscsi module is not loaded.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from iscsi_helper.lab.emulators.chiscsi import commands, serving, usage
from iscsi_helper.lab.emulators.chiscsi.commands import Commands, Crash, Invocation
from iscsi_helper.lab.emulators.chiscsi.ioctl import ControlDevice
from iscsi_helper.lab.emulators.chiscsi.pidlock import DEVICE_FD, LockFailed, PidLock, pidfile_path
from iscsi_helper.lab.emulators.chiscsi.state import STATE_ENV, KernelState, StateError

PROG = "iscsictl"
SEGV = -int(signal.SIGSEGV)


class _Done(Exception):
    """Parsing decided the outcome (help, version, or an error)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def is_option(arg: str) -> bool:
    """``IS_CMD_OPTION``."""
    return len(arg) == 2 and arg[0] == "-"


def _grab(args: list[str], idx: int, minimum: int, into: list[str], err: TextIO) -> tuple[int, bool]:
    """``GRAB_ARGS_TO_LIST``: operands up to the next option. Returns (index, ok)."""
    op = args[idx]
    count = 0
    idx += 1
    while idx < len(args):
        if is_option(args[idx]):
            idx -= 1
            break
        into.append(args[idx])
        count += 1
        idx += 1
    if count < minimum:
        err.write(f"{op}: missing operand.\n")
        return idx, False
    return idx, True


_COMMANDS = {
    "c": commands.CONFIG_GET,
    "F": commands.TARGET_FLUSH,
    "g": commands.DRV_GET,
    "G": commands.DRV_SET,
    "s": commands.TARGET_REMOVE,
    "S": commands.TARGET_ADD,
    "W": commands.CONFIG_FILE_WRITE,
    "r": commands.DBGDUMP,
    "D": commands.DROP_SESSION,
}
_GRAB_MIN = {"c": 0, "F": 0, "G": 1, "s": 1, "S": 0, "r": 1}


def _parse_option(args: list[str], idx: int, inv: Invocation, err: TextIO) -> int:
    """``iscsictl_parse_cmd_option``: the index of the next argument; raises _Done on error."""
    option = args[idx][1]
    saved = inv.cmd
    ok = True
    if option == "d":
        inv.debug = True
    elif option == "f":
        idx += 1
        inv.config_file = args[idx] if idx < len(args) else None
    elif option == "k":
        idx, ok = _grab(args, idx, 1, inv.keys, err)
    elif option in _COMMANDS:
        inv.cmd = _COMMANDS[option]
        if option in _GRAB_MIN:
            idx, ok = _grab(args, idx, _GRAB_MIN[option], inv.entities, err)
        elif option == "D":
            idx += 1
            inv.session_handle = args[idx] if idx < len(args) else None
    elif option == "x":
        idx += 1  # "Global default params file ..., currently unimplemented" (iscsictl_cmd.c 1515-1518)
    else:
        err.write(f"ERROR: Unrecognized option -{option}.\n")
        ok = False
    idx += 1
    if ok and saved != commands.UNKNOWN and saved != inv.cmd:
        err.write(f"ERROR: too many command -{option}.\n")
        ok = False
    if not ok:
        raise _Done(-1)
    return idx


def parse_cmdline(args: list[str], prog: str, out: TextIO, err: TextIO) -> Invocation:
    """``iscsictl_parse_cmdline``; raises _Done when the run ends here."""
    inv = Invocation()
    idx = 0
    while idx < len(args):
        arg = args[idx]
        if is_option(arg):
            if arg[1] in "h?":
                out.write(usage.usage(prog, detail=True))
                raise _Done(0)
            if arg[1] == "v":
                out.write(usage.version(prog))
                raise _Done(0)
            idx = _parse_option(args, idx, inv, err)
        elif arg == "?":
            out.write(usage.usage(prog, detail=False))
            raise _Done(0)
        else:
            err.write(f"Invalid argument: {arg}.\n")
            raise _Done(-1)
    return inv


def _open_device(err: TextIO) -> KernelState:
    """``iscsictl_open_device``: no state directory stands for a module that is not loaded."""
    root = os.environ.get(STATE_ENV, "")
    if not root:
        err.write("ERR! Unable to find chiscsi, is module loaded?\n")
        err.write("ERROR: cannot find iscsi device!\n")
        raise _Done(-1)
    state = KernelState(Path(root))
    state.ensure()
    return state


def run_command(argv: Sequence[str], prog: str, out: TextIO, err: TextIO) -> int:
    """One iscsictl run; the C ``main``'s return value (negative for errors)."""
    args = list(argv)
    try:
        if not args:
            out.write(usage.usage(prog, detail=True))
            return 0
        inv = parse_cmdline(args, prog, out, err)
        state = _open_device(err)
        lock = PidLock(pidfile_path(state.root))
        try:
            lock.acquire()
        except LockFailed as exc:
            err.write(str(exc))
            return DEVICE_FD
        try:
            with state.locked():
                return Commands(ControlDevice(state), out, err).execute(inv)
        finally:
            lock.release()
    except _Done as done:
        return done.status


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run iscsictl in-process: the exit status (0..255), or -11 where the real tool segfaults."""
    args = sys.argv[1:] if argv is None else list(argv)
    out, err = sys.stdout, sys.stderr
    try:
        status = run_command(args, prog, out, err) & 0xFF
    except Crash:
        status = SEGV
    except (StateError, serving.ServingError) as exc:
        err.write(f"iscsictl (emulator): {exc}\n")
        status = 255
    out.flush()
    err.flush()
    return status


def run() -> int:
    """Entry point of the ``iscsictl`` executable: exit as the real process would."""
    # The shim is a script, so argv[0] is its path; the product shows the name
    # it was invoked by, which for a PATH lookup is the bare name.
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else PROG
    status = main(prog=prog)
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status
