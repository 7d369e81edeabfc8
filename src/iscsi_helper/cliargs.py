"""The command line's arguments: the global options, each command's own, and the parser.

Kept apart from :mod:`iscsi_helper.cli` so the command table stays a list
of small functions. The options of the command line itself (``--json``,
``--debug``, ``-v``, ``--log-file``, the configuration and its overrides)
are accepted before or after the command: :func:`hoist_globals` moves them
in front before argparse sees the line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any, NoReturn, Protocol

from iscsi_helper import __version__
from iscsi_helper.clisupport import CliUsageError

#: Entry-point group through which other packages add commands (the lab adds
#: ``demo`` and ``lab``). Each entry is ``register(command)``: it calls
#: ``command(name, help, ...)`` and sets ``run_extension`` on the parser it
#: gets back. The product never imports those packages by name.
COMMAND_EXTENSIONS = "iscsi_helper.cli_commands"

#: Command-line flags that override the configuration file, by option name.
OVERRIDES = (
    "target_helper",
    "state_path",
    "volumes_dir",
    "target_ip_address",
    "target_port",
    "target_prefix",
    "chiscsi_conf",
    "iet_conf",
    "iet_proc_dir",
    "lock_path",
    "root_helper",
)

#: The options of the command line itself, accepted anywhere on it (see hoist_globals):
#: flag -> whether it takes a value.
GLOBAL_FLAGS: dict[str, bool] = {
    "--json": False,
    "--debug": False,
    "-v": False,
    "--verbose": False,
    "--log-file": True,
    "--config-file": True,
    "--config-dir": True,
    "--backend": True,
    **{"--" + name.replace("_", "-"): True for name in OVERRIDES},
}


class CommandEntry(Protocol):
    """What the parser needs of one command of the table (``cli.Command``)."""

    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def run(self) -> Callable[..., int]: ...
    @property
    def arguments(self) -> Callable[[argparse.ArgumentParser], None]: ...
    @property
    def secrets_flag(self) -> bool: ...


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one line
        raise CliUsageError(f"{message} (see {self.prog} --help)")


# ------------------------------------------------------- each command's own


def volume_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")
    p.add_argument("device", metavar="DEVICE", help="backing block device or file")
    p.add_argument(
        "--force",
        action="store_true",
        help="change the device even while initiators are connected (they see "
        "another disk under the same LUN)",
    )


def ensure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_ids", nargs="*", metavar="VOLUME_ID")
    p.add_argument("--all", action="store_true", help="every persisted export")


def list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--long", action="store_true", help="also show device and portals")


def initiator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")
    p.add_argument("--initiator", required=True, metavar="IQN", help="the initiator's IQN")


def connection_info_args(p: argparse.ArgumentParser) -> None:
    initiator_args(p)
    p.add_argument("--multipath", action="store_true", help="ask for every portal")


def reconcile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fix", action="store_true", help="start missing exports and reload differing ones")
    p.add_argument(
        "--dry-run", action="store_true", help="with --fix: say what would be done, change nothing"
    )
    p.add_argument(
        "--stop-orphans",
        action="store_true",
        help="with --fix: also stop live targets that have no record (their initiators are cut off)",
    )


def no_args(p: argparse.ArgumentParser) -> None:
    """The command takes no arguments of its own."""


# ---------------------------------------------------------------- parsing


def add_globals(p: argparse.ArgumentParser, *, shown_on_command: bool) -> None:
    """The options of the command line itself (:data:`GLOBAL_FLAGS`), for parsing and for help.

    On a command's parser (``shown_on_command``) only the output options
    are added, to show in its help: :func:`hoist_globals` has moved every
    global option in front of the command before parsing, so they are
    parsed by the main parser wherever they were written.
    """
    output = p.add_argument_group("output and logging (before or after the command)")
    # A command's copies must not set anything (SUPPRESS): argparse copies a command's
    # defaults over the main parser's values.
    unset: Any = argparse.SUPPRESS
    output.add_argument(
        "--json",
        action="store_true",
        default=unset if shown_on_command else False,
        help='print JSON for machines (an error too, as {"error": ...})',
    )
    output.add_argument(
        "--debug",
        action="store_true",
        default=unset if shown_on_command else False,
        help="log debug messages (timestamped) to stderr, and tracebacks",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=unset if shown_on_command else 0,
        help="log what is done, timestamped (-vv: debug messages too)",
    )
    output.add_argument(
        "--log-file",
        metavar="PATH",
        default=unset if shown_on_command else None,
        help="also log to PATH (timestamped; debug messages with --debug)",
    )
    if shown_on_command:
        return
    configuration = p.add_argument_group("configuration (before or after the command)")
    configuration.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="PATH",
        help="INI file with Cinder-named options (repeatable), e.g. /etc/cinder/cinder.conf",
    )
    configuration.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also read every *.conf in DIR, after the files (repeatable)",
    )
    configuration.add_argument(
        "--backend",
        metavar="NAME",
        help="the cinder.conf backend section to read the target options of (default: the "
        "only entry of enabled_backends; without enabled_backends: [DEFAULT])",
    )
    for name in OVERRIDES:
        configuration.add_argument(
            "--" + name.replace("_", "-"), dest=name, metavar="VALUE", help=f"override option {name}"
        )


def hoist_globals(argv: Sequence[str]) -> list[str]:
    """``argv`` with every global option (and its value) moved in front of the command.

    So ``iscsi-helper list --debug`` and ``iscsi-helper --debug list`` are
    one command line, at any depth of sub-commands. ``--`` ends the scan;
    ``-vv`` counts as ``-v -v``.
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        flag, has_value, _value = arg.partition("=")
        if arg == "--":
            rest += argv[index:]
            break
        if flag in GLOBAL_FLAGS and GLOBAL_FLAGS[flag]:
            if has_value:
                front.append(arg)
            elif index + 1 < len(argv):
                front += [arg, argv[index + 1]]
                index += 1
            else:
                rest.append(arg)  # argparse says the value is missing
        elif arg in GLOBAL_FLAGS:
            front.append(arg)
        elif len(arg) > 2 and arg.startswith("-v") and set(arg[1:]) == {"v"}:
            front += ["-v"] * (len(arg) - 1)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def build_parser(commands: Iterable[CommandEntry]) -> argparse.ArgumentParser:
    """The parser of ``commands``, and of those other packages add (:data:`COMMAND_EXTENSIONS`)."""
    parser = Parser(
        prog="iscsi-helper",
        description="Export block volumes over iSCSI through a target helper "
        "(chiscsi, IET, tgt, ...), with Cinder's options and formats.",
        epilog="Exit codes: 0 success, 1 failed, 2 bad usage or refused before "
        "anything was touched, 3 no such export, 130 interrupted, 141 "
        "output closed early. With --json, errors are a JSON object on "
        "stdout as well.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_globals(parser, shown_on_command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(
        name: str, help_text: str, *, json_flag: bool = True, secrets_flag: bool = False
    ) -> argparse.ArgumentParser:
        """Add a command; ``json_flag`` is kept for extensions written before --json was global."""
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        add_globals(p, shown_on_command=True)
        if secrets_flag:
            p.add_argument("--show-secrets", action="store_true", help="print CHAP secrets instead of ***")
        return p

    for entry in commands:
        p = command(entry.name, entry.help, secrets_flag=entry.secrets_flag)
        entry.arguments(p)
        p.set_defaults(run_command=entry.run)
    for extension in metadata.entry_points(group=COMMAND_EXTENSIONS):
        extension.load()(command)
    return parser
