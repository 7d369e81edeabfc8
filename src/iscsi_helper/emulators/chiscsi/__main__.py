"""``python -m iscsi_helper.emulators.chiscsi`` behaves like ``iscsictl``."""

import sys

from iscsi_helper.emulators.chiscsi.cli import main

sys.exit(main())
