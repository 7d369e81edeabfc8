"""``iscsictl``: the emulated admin tool of Chelsio's chiscsi target.

Helpers run ``iscsictl`` as a subprocess, so this is what they see of the
product: its command syntax, its output layout, its exit status and the few
messages Cinder relies on (``NOT found`` on stdout for ``-c``, ``is not
found`` on stderr for ``-s``). Everything beyond the documented facts is an
assumption listed in ``docs/emulators/chiscsi.md``.
"""

from __future__ import annotations

import getopt
import os
import stat
import sys
from collections.abc import Sequence
from typing import TextIO

from iscsi_helper.lab.emulators.chiscsi import serving
from iscsi_helper.lab.emulators.chiscsi.confparse import (
    GLOBAL_DEFAULTS,
    ConfError,
    ConfFile,
    TargetBlock,
    parse_file,
    validate_global,
)
from iscsi_helper.lab.emulators.chiscsi.state import Record, State, StateError

PROG = "iscsictl"

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # the named target is not live / not in the file
EXIT_USAGE = 2  # bad command line
EXIT_CONFIG = 3  # configuration rejected (parse error, missing device or file, bad -G value)
EXIT_STATE = 4  # the emulator's own environment (CHISCSI_EMULATOR_STATE) is unusable
EXIT_SERVING = 5  # the optional data path failed

USAGE = (f"usage: {PROG} -c target=<ALL|iqn> | -S target=<ALL|iqn> [-f <target file>] "
         f"[-x <chiscsi.conf>] | -s target=<ALL|iqn> | -G <key>[=<value>] | -h")
INDENT = " " * 8
PROD = "CHISCSI Target"


class UsageError(Exception):
    pass


class NotFound(Exception):
    """Not found; the message goes to stderr (``-c`` writes its own to stdout)."""


def _target_arg(option: str, value: str) -> str:
    key, eq, name = value.partition("=")
    if key != "target" or not eq or not name:
        raise UsageError(f"{option} expects target=<ALL|iqn>, got {value!r}")
    return name


# --------------------------------------------------------------------------
# -c
# --------------------------------------------------------------------------


def format_target(tid: int, target: TargetBlock) -> str:
    """One target as ``-c`` prints it: the layout Cinder's unit tests were written against."""
    lines = ["", f"TARGET: {target.name}, id={tid}, login_ip=0"]
    for group in target.portal_groups:
        lines.append(f"{INDENT}PortalGroup={group},timeout=0")
    for number, device in enumerate(target.devices):
        sn, dev_id, wwn = serving.device_ids(target.name, number, device)
        flags = device.mode + (",RO" if device.read_only else "")
        lines.append(f"{INDENT}TargetDevice={device.path},{flags},PROD={PROD},"
                     f"SN={sn},ID={dev_id},WWN={wwn}")
    return "\n".join(lines) + "\n"


def _record_target(record: Record) -> TargetBlock:
    try:
        return record.target()
    except ConfError as exc:
        raise StateError(f"stored record of {record.iqn} no longer parses: {exc}") from None


def cmd_show(state: State, name: str, out: TextIO) -> int:
    with state.locked(shared=True):
        if name == "ALL":
            records = state.all_records()
        else:
            record = state.load(name)
            if record is None:
                out.write(f"target {name} NOT found.\n")
                return EXIT_NOT_FOUND
            records = [record]
        out.write("".join(format_target(r.tid, _record_target(r)) for r in records))
    return EXIT_OK


# --------------------------------------------------------------------------
# -S
# --------------------------------------------------------------------------


def _check_device_paths(target: TargetBlock) -> None:
    """Refuse what the kernel target would fail to open, before anything goes live."""
    for device in target.devices:
        if device.mode == "MEM":
            continue  # a RAM disk's path is only its name
        try:
            st = os.stat(device.path)
        except FileNotFoundError:
            raise ConfError(target.file, device.line,
                            f"TargetDevice: {device.path} does not exist") from None
        except OSError as exc:
            raise ConfError(target.file, device.line,
                            f"TargetDevice: cannot access {device.path}: {exc.strerror}") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ConfError(target.file, device.line,
                            f"TargetDevice: {device.path} is neither a regular file nor a block device")


def _load_confs(target_file: str | None, main_conf: str | None) -> list[ConfFile]:
    confs: list[ConfFile] = []
    if main_conf is not None and os.path.exists(main_conf):
        # A missing main file means "no system-wide settings, no static targets":
        # the real installer always ships one, test hosts usually do not.
        confs.append(parse_file(main_conf))
    if target_file is not None:
        confs.append(parse_file(target_file))
    seen: dict[str, TargetBlock] = {}
    for conf in confs:
        for target in conf.targets:
            if target.name in seen:
                first = seen[target.name]
                raise ConfError(target.file, target.line,
                                f"duplicate TargetName {target.name} (also defined at {first.file}:{first.line})")
            seen[target.name] = target
    return confs


def cmd_start(state: State, name: str, target_file: str | None, main_conf: str | None) -> int:
    if target_file is None and main_conf is None:
        raise UsageError("-S needs -f <target file> and/or -x <chiscsi.conf>")
    confs = _load_confs(target_file, main_conf)
    if name == "ALL":
        targets = [t for conf in confs for t in conf.targets]
    else:
        source = target_file if target_file is not None else main_conf
        found = None
        for conf in confs:
            if conf.path == source:
                found = conf.find(name)
        if found is None:
            raise NotFound(f"target {name} is not found in {source}.")
        targets = [found]
    for target in targets:
        _check_device_paths(target)
    with state.locked():
        for target in targets:
            record = state.load(target.name)
            tid = record.tid if record is not None else state.allocate_tid()
            serving.publish(state.root, target)
            state.save(Record(target.name, tid, target.file, target.line, target.entries))
    return EXIT_OK


# --------------------------------------------------------------------------
# -s
# --------------------------------------------------------------------------


def cmd_stop(state: State, name: str) -> int:
    with state.locked():
        if name == "ALL":
            iqns = [r.iqn for r in state.all_records()]
        else:
            if state.load(name) is None:
                raise NotFound(f"target {name} is not found.")
            iqns = [name]
        for iqn in iqns:
            serving.withdraw(state.root, iqn)  # stop serving before forgetting it
            state.delete(iqn)
    return EXIT_OK


# --------------------------------------------------------------------------
# -G
# --------------------------------------------------------------------------


def cmd_global(state: State, value: str, out: TextIO) -> int:
    key, eq, val = value.partition("=")
    if not eq:
        if key not in GLOBAL_DEFAULTS:
            raise ConfError("-G", None, f"unknown global key {key!r} "
                                        f"(known: {', '.join(sorted(GLOBAL_DEFAULTS))})")
        with state.locked(shared=True):
            current = state.globals().get(key, GLOBAL_DEFAULTS[key])
        out.write(f"{key}={current}\n")
        return EXIT_OK
    try:
        validate_global(key, val)
    except ValueError as exc:
        raise ConfError("-G", None, str(exc)) from None
    with state.locked():
        state.set_global(key, val)
    return EXIT_OK


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------


def _run(argv: Sequence[str], out: TextIO) -> int:
    try:
        opts, rest = getopt.getopt(list(argv), "c:S:s:G:f:x:h")
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}")
    actions = [(o, v) for o, v in opts if o in ("-c", "-S", "-s", "-G", "-h")]
    files = {o: v for o, v in opts if o in ("-f", "-x")}
    if len(files) != sum(1 for o, _ in opts if o in ("-f", "-x")):
        raise UsageError("-f and -x may each be given once")
    if len(actions) != 1:
        raise UsageError("give exactly one of -c, -S, -s, -G, -h")
    action, value = actions[0]
    if files and action != "-S":
        raise UsageError("-f and -x only go with -S")
    if action == "-h":
        out.write(USAGE + "\n")
        return EXIT_OK
    if action == "-G":
        return cmd_global(State.from_env(), value, out)
    name = _target_arg(action, value)
    state = State.from_env()
    if action == "-c":
        return cmd_show(state, name, out)
    if action == "-S":
        return cmd_start(state, name, files.get("-f"), files.get("-x"))
    return cmd_stop(state, name)


def main(argv: list[str] | None = None) -> int:
    """Run one iscsictl command; returns the exit status instead of exiting (testable)."""
    args = sys.argv[1:] if argv is None else argv
    out, err = sys.stdout, sys.stderr
    try:
        code = _run(args, out)
    except UsageError as exc:
        err.write(f"{PROG}: {exc}\n{USAGE}\n")
        code = EXIT_USAGE
    except NotFound as exc:
        err.write(f"{PROG}: {exc}\n")
        code = EXIT_NOT_FOUND
    except ConfError as exc:
        err.write(f"{PROG}: {exc}\n")
        code = EXIT_CONFIG
    except StateError as exc:
        err.write(f"{PROG}: {exc}\n")
        code = EXIT_STATE
    except serving.ServingError as exc:
        err.write(f"{PROG}: {exc}\n")
        code = EXIT_SERVING
    out.flush()
    return code
