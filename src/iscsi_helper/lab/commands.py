"""Commands the lab adds to ``iscsi-helper`` through the ``iscsi_helper.cli_commands`` entry point.

``demo`` runs the main job; ``lab shims DIR`` puts the emulated admin tools
(``iscsictl``, ``ietadm``) in DIR, for ``PATH``; ``lab stop`` stops the
embedded iSCSI target daemons that serve the emulators' targets. They
replace the Python one-liners the docs used to need. Registration imports
nothing heavy: a command's modules load only when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path

from iscsi_helper.clisupport import CliUsageError

_EMULATORS = {  # name -> (state variable, the state sub-directory its wire daemon runs in)
    "chiscsi": ("CHISCSI_EMULATOR_STATE", "wire"),
    "iet": ("IET_EMULATOR_STATE", "wire"),
}


def _run_demo(args: argparse.Namespace) -> int:
    from iscsi_helper.lab import demo

    workdir = Path(args.workdir) if args.workdir else None
    if not getattr(args, "json", False):
        return demo.run(workdir)
    # --json: the story is one JSON document (its lines, and whether every step worked).
    told = io.StringIO()
    with contextlib.redirect_stdout(told):
        status = demo.run(workdir)
    print(json.dumps({"ok": status == 0, "lines": told.getvalue().splitlines()}, indent=2))
    return status


def _print(args: argparse.Namespace, data: dict[str, object], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text)


def _run_shims(args: argparse.Namespace) -> int:
    from iscsi_helper.lab.emulators.shims import SHIMS, install_shims

    bin_dir = install_shims(Path(args.dir)).absolute()
    _print(
        args,
        {"dir": str(bin_dir), "tools": sorted(SHIMS)},
        f"installed {', '.join(sorted(SHIMS))} in {bin_dir}; put it first on PATH:\n"
        f'  export PATH={shlex.quote(str(bin_dir))}:"$PATH"',
    )
    return 0


def _run_stop(args: argparse.Namespace) -> int:
    from iscsi_helper.lab.wire.control import WireService

    states: dict[str, str] = {}
    for name, (variable, _sub) in _EMULATORS.items():
        given = getattr(args, f"{name}_state") or os.environ.get(variable)
        if given:
            states[name] = given
    if not states:
        raise CliUsageError(
            "lab stop: no emulator state directory: give "
            "--chiscsi-state or --iet-state, or set CHISCSI_EMULATOR_STATE "
            "or IET_EMULATOR_STATE"
        )
    stopped: dict[str, int | None] = {}
    for name, state in states.items():
        service = WireService(Path(state) / _EMULATORS[name][1])
        stopped[name] = service.pid()
        service.stop()
    _print(
        args,
        {"stopped": stopped},
        "\n".join(
            f"{name}: wire daemon {pid} stopped" if pid else f"{name}: no wire daemon was running"
            for name, pid in stopped.items()
        ),
    )
    return 0


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``demo`` and ``lab`` to the command line."""
    parser = command(
        "demo",
        "Run the main job on this machine: export a 64 MiB file through "
        "the chiscsi helper on the embedded emulator, log in with a real "
        "initiator, write and read back, list, remove.",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep everything in DIR (default: a temporary directory, removed afterwards)",
    )
    parser.set_defaults(run_extension=_run_demo)

    lab = command(
        "lab",
        "The lab's tools: emulators of iscsictl and ietadm, and the embedded "
        "iSCSI target that serves their targets (docs/emulators/).",
    )
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    shims = actions.add_parser(
        "shims",
        help="install the emulated iscsictl and ietadm in DIR",
        description="Install executables iscsictl and ietadm, which run "
        "the emulators with this Python, in DIR.",
    )
    shims.add_argument("dir", metavar="DIR")
    shims.set_defaults(run_extension=_run_shims)
    stop = actions.add_parser(
        "stop",
        help="stop the wire daemons serving the emulators' targets",
        description="Stop the embedded iSCSI target daemon of each "
        "emulator state directory (by its pid file); the "
        "emulators' own state is kept.",
    )
    stop.add_argument(
        "--chiscsi-state",
        metavar="DIR",
        help="the chiscsi emulator's state (default: $CHISCSI_EMULATOR_STATE)",
    )
    stop.add_argument(
        "--iet-state", metavar="DIR", help="the IET emulator's state (default: $IET_EMULATOR_STATE)"
    )
    stop.set_defaults(run_extension=_run_stop)
