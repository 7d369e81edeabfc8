"""``python3 -m iscsi_helper`` is the ``iscsi-helper`` command (no PATH set-up needed)."""

import sys

from iscsi_helper.cli import main

sys.exit(main())
