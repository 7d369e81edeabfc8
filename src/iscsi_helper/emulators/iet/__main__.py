"""``python -m iscsi_helper.emulators.iet``: ietadm, or the emulator-only session injector."""

from __future__ import annotations

import sys

from iscsi_helper.emulators.iet import cli, inject


def run(argv: list[str]) -> int:
    if argv[:1] == ["--inject-session"] or "--inject-session" in argv:
        return inject.main(argv)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
