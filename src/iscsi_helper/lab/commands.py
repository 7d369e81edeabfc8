"""Commands the lab adds to ``iscsi-helper`` through the ``iscsi_helper.cli_commands`` entry point.

Registration imports nothing heavy: the demo module (emulators, initiator)
is loaded only when its command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def _run_demo(args: argparse.Namespace) -> int:
    from iscsi_helper.lab import demo

    return demo.run(Path(args.workdir) if args.workdir else None)


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the command line."""
    parser = command("demo", "Run the main job on this machine: export a 64 MiB file through "
                             "the chiscsi helper on the embedded emulator, log in with a real "
                             "initiator, write and read back, list, remove.", json_flag=False)
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep everything in DIR (default: a temporary directory, "
                             "removed afterwards)")
    parser.set_defaults(run_extension=_run_demo)
