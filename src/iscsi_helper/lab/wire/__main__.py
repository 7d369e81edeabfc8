"""``python -m iscsi_helper.lab.wire --run-dir DIR``: run the wire target daemon."""

import sys

from iscsi_helper.lab.wire.daemon import main

sys.exit(main())
