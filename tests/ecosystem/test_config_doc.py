"""docs/configuration.md is what tools/gen_config_doc.py generates from options.list_opts()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iscsi_helper import options

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_configuration_doc_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_config_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_every_option_is_documented_with_its_default_and_a_reader():
    text = (REPO / "docs" / "configuration.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    for _group, opts in options.list_opts():
        for opt in opts:
            assert opt.name in rows, f"{opt.name} is missing from docs/configuration.md"
            assert "(not read)" not in rows[opt.name], f"{opt.name}: no code reads it"
    assert "| `target_port` | port | `3260` | `iscsi_port` |" in text
    # chiscsi's helper reads it for iscsictl -x; every iSCSI helper, to refuse it as a device.
    assert (
        "| `chiscsi_conf` | str | `/etc/chelsio-iscsi/chiscsi.conf` |  | chiscsi helper, every iSCSI helper |"
    ) in text
