"""``python -m iscsi_helper.wire --run-dir DIR``: run the wire target daemon."""

import sys

from iscsi_helper.wire.daemon import main

sys.exit(main())
