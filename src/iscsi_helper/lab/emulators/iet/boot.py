"""Emulator-only: what ietd does when it starts, load ``ietd.conf`` into the empty kernel target.

On a real node a reboot does not lose the exports of ``ietd.conf``: the
init script starts ietd, which reads the file and creates every target,
account and LUN through the kernel module, numbering the targets itself in
file order. Helpers must cope with that numbering (it is not the tids they
chose), and a restore that finds everything live should cost nothing. This
entry point lets tests and the benchmark reboot the emulator that way::

    python -m iscsi_helper.lab.emulators.iet --start-ietd --config=/etc/iet/ietd.conf

It is not ietadm syntax. The file is read as ietd reads it: ``Target
<name>`` opens a block; inside one, ``IncomingUser``/``OutgoingUser <user>
<secret>``, ``Lun <n> Path=...,Type=...`` and ``<Key> <Value>`` target or
session keys; before the first block, ``IncomingUser``/``OutgoingUser`` are
discovery accounts. Keywords are case-blind; lines whose first word starts
with ``#`` are comments. A line it cannot parse refuses the whole file
before anything is loaded; a target, account or LUN the kernel refuses (a
missing backing file, say) is reported with its line and skipped, as ietd
logs it and carries on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from iscsi_helper.lab.emulators.iet.cli import Ietadm, parse_args
from iscsi_helper.lab.emulators.iet.errors import EmulatorConfigError, IetError
from iscsi_helper.lab.emulators.iet.model import TargetRecord
from iscsi_helper.lab.emulators.iet.state import State

PROGRAM = "ietd"
_ACCOUNT_KEYS = {"incominguser": "IncomingUser", "outgoinguser": "OutgoingUser"}
#: Global keys ietd knows besides discovery accounts; the emulator has no iSNS, so they are read and ignored.
_IGNORED_GLOBAL_KEYS = frozenset({"isnsserver", "isnsaccesscontrol"})


class ConfigSyntaxError(Exception):
    """A line of ietd.conf ietd could not parse: nothing was loaded."""


@dataclass
class Command:
    line: int
    argv: list[str]
    opens_target: bool = False


@dataclass
class BootReport:
    targets: int = 0
    #: (line, reason) of each refused target, account or LUN
    refused: list[tuple[int, str]] = field(default_factory=list)


def parse_config(text: str, path: str = "ietd.conf") -> list[list[Command]]:
    """The ietadm commands ietd would issue, grouped per Target block (the first group is global)."""
    groups: list[list[Command]] = [[]]
    tid = 0
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].lower()
        where = f"{path}:{number}"
        if keyword == "target":
            if len(words) != 2:
                raise ConfigSyntaxError(f"{where}: 'Target' takes one name")
            tid += 1
            groups.append(
                [
                    Command(
                        number,
                        ["--op", "new", f"--tid={tid}", "--params", f"Name={words[1]}"],
                        opens_target=True,
                    )
                ]
            )
            continue
        if keyword in _ACCOUNT_KEYS:
            if len(words) != 3:
                raise ConfigSyntaxError(f"{where}: '{words[0]}' takes a user and a secret")
            tid_option = [f"--tid={tid}"] if tid else []
            groups[-1].append(
                Command(
                    number,
                    [
                        "--op",
                        "new",
                        *tid_option,
                        "--user",
                        f"--params={_ACCOUNT_KEYS[keyword]}={words[1]},Password={words[2]}",
                    ],
                )
            )
            continue
        if not tid:
            if keyword in _IGNORED_GLOBAL_KEYS:
                continue
            raise ConfigSyntaxError(f"{where}: {words[0]!r} outside a Target block")
        if keyword == "lun":
            if len(words) != 3 or not words[1].isdigit():
                raise ConfigSyntaxError(f"{where}: 'Lun' takes a number and Path=...[,Type=...]")
            groups[-1].append(
                Command(number, ["--op", "new", f"--tid={tid}", f"--lun={words[1]}", "--params", words[2]])
            )
            continue
        if len(words) != 2:
            raise ConfigSyntaxError(f"{where}: {words[0]!r} takes one value")
        groups[-1].append(
            Command(number, ["--op", "update", f"--tid={tid}", f"--params={words[0]}={words[1]}"])
        )
    return groups


class _BootState(State):
    """The state, with the proc files written once at the end instead of after every command."""

    def update_proc(self, tid: int, record: TargetRecord | None, *, new: bool = False) -> None:
        pass

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        yield


def start_ietd(state: State, conf_path: Path) -> BootReport:
    """Load ``conf_path`` into ``state``, which must hold no target (ietd starts once per boot)."""
    try:
        text = conf_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""  # ietd starts with no targets when the file is absent
    groups = parse_config(text, str(conf_path))
    live = state.tids()
    if live:
        raise EmulatorConfigError(
            f"ietd is already running ({len(live)} targets live); stop it first (ietadm --op delete)"
        )
    booting = _BootState(state.root, state.proc_dir)
    handler = Ietadm(booting, lambda _text: None)
    report = BootReport()
    try:
        for group in groups:
            for command in group:
                try:
                    handler.run(parse_args(command.argv))
                except IetError as err:
                    report.refused.append((command.line, err.message))
                    if command.opens_target:
                        break  # the rest of the block has no target to go to
                else:
                    report.targets += command.opens_target
    finally:
        state.rebuild_proc()
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iscsi_helper.lab.emulators.iet --start-ietd",
        description="Emulator-only: start ietd, loading ietd.conf.",
    )
    parser.add_argument("--start-ietd", action="store_true", required=True)
    parser.add_argument("--config", required=True, type=Path, help="ietd.conf to load")
    args = parser.parse_args(argv)
    try:
        report = start_ietd(State.from_env(), args.config)
    except (EmulatorConfigError, ConfigSyntaxError) as exc:
        sys.stderr.write(f"{PROGRAM}: {exc}\n")
        return 1
    for line, reason in report.refused:
        sys.stderr.write(f"{PROGRAM}: {args.config}:{line}: {reason}\n")
    sys.stdout.write(f"{PROGRAM}: {report.targets} targets loaded from {args.config}\n")
    return 1 if report.refused else 0
