"""The README's first command, as a fresh user runs it."""

import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(not all(shutil.which(t) for t in ("iscsi-inq", "qemu-io")),
                    reason="needs libiscsi-bin and qemu-utils (scripts/setup.sh installs them)")
def test_demo_runs_the_whole_story_and_hides_the_secret(tmp_path):
    done = subprocess.run([sys.executable, "-m", "iscsi_helper", "demo", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "READ CAPACITY(16): 67108864 bytes (64 MiB)" in out
    assert "read back matches: yes; backing file holds the pattern: yes" in out
    assert "Authentication failure" in out and "Authorization failure" in out
    assert out.rstrip().endswith("all worked")
    record = next((tmp_path / "chiscsi-state").glob("**/*"), None)
    assert record is None or not record.name.endswith(".json"), "no live target left behind"
    secret_lines = [l for l in out.splitlines() if "auth_password" in l or "provider_auth" in l]
    assert secret_lines and all(l.rstrip().endswith("***") for l in secret_lines)
