"""The README's first command, as a fresh user runs it.

The demo stops the emulator's data path on the way out (``emulator.reset``),
which also forgets every live target: a check after it could never see a
target left behind. So the demo runs in a child process whose ``reset`` first
writes down every target the emulator still holds, and whose
``remove_export`` writes down what was live just before the export is
removed (proving the same inspection does see a live target).
"""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

DEMO = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from iscsi_helper import cli
    from iscsi_helper.lab.emulators import chiscsi as emulator
    from iscsi_helper.lab.emulators.chiscsi import live
    from iscsi_helper.targets.chiscsi import ChiscsiHelper

    workdir, seen_path = Path(sys.argv[1]), Path(sys.argv[2])
    seen = {}

    def live_targets():
        return sorted(t.name for t in live.targets(workdir / "chiscsi-state"))

    real_remove = ChiscsiHelper.remove_export
    def remove_export(self, context, volume):
        seen["before_remove"] = live_targets()
        return real_remove(self, context, volume)

    real_reset = emulator.reset
    def reset(state_dir):
        seen["at_exit"] = live_targets()
        seen_path.write_text(json.dumps(seen))
        real_reset(state_dir)

    ChiscsiHelper.remove_export = remove_export
    emulator.reset = reset
    sys.exit(cli.main(["demo", "--workdir", str(workdir)]))
""")


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("iscsi-inq", "qemu-io")),
    reason="needs libiscsi-bin and qemu-utils (scripts/setup.sh installs them)",
)
def test_demo_runs_the_whole_story_and_hides_the_secret(tmp_path):
    seen_path = tmp_path / "seen.json"
    done = subprocess.run(
        [sys.executable, "-c", DEMO, str(tmp_path / "demo"), str(seen_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "READ CAPACITY(16): 67108864 bytes (64 MiB)" in out
    assert "read back matches: yes; backing file holds the pattern: yes" in out
    assert "Authentication failure" in out and "Authorization failure" in out
    assert out.rstrip().endswith("all worked")
    seen = json.loads(seen_path.read_text())
    assert len(seen["before_remove"]) == 1 and seen["before_remove"][0].startswith(
        "iqn.2010-10.org.openstack:volume-"
    ), seen
    assert seen["at_exit"] == [], f"live targets left behind: {seen['at_exit']}"
    secret_lines = [line for line in out.splitlines() if "auth_password" in line or "provider_auth" in line]
    assert secret_lines and all(line.rstrip().endswith("***") for line in secret_lines)


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("iscsi-inq", "qemu-io")),
    reason="needs libiscsi-bin and qemu-utils (scripts/setup.sh installs them)",
)
def test_demo_with_json_tells_the_story_as_one_document(tmp_path):
    from tests.support.cli import Cli

    done = Cli([]).run("--json", "demo", "--workdir", str(tmp_path / "demo"), timeout=300)
    story = json.loads(done.stdout)
    assert story["ok"] is True
    assert story["lines"][-1].endswith("all worked")
    assert any("READ CAPACITY(16): 67108864 bytes" in line for line in story["lines"])
