"""``python -m iscsi_helper.lab.emulators.chiscsi`` behaves like ``iscsictl``."""

import sys

from iscsi_helper.lab.emulators.chiscsi.cli import run

sys.exit(run())
