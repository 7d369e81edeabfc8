"""``python -m iscsi_helper.lab.emulators.iet``: ietadm, or an emulator-only entry point.

``--inject-session`` fakes a logged-in initiator; ``--start-ietd`` loads
ietd.conf as ietd does at boot. Neither is ietadm syntax.
"""

from __future__ import annotations

import sys

from iscsi_helper.lab.emulators.iet import boot, cli, inject


def run(argv: list[str]) -> int:
    if argv[:1] == ["--inject-session"] or "--inject-session" in argv:
        return inject.main(argv)
    if "--start-ietd" in argv:
        return boot.main(argv)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
