"""Runs tests/lab/emulators/cxtadm/ (Cinder's CxtAdm against the emulator) inside the Cinder venv.

Cinder 29.0.0 lives in its own venv (scripts/cinder-venv.sh); this is how the
main suite proves the emulator against a second, independent client. In CI a
missing venv is a failure, not a skip.
"""

from __future__ import annotations

import os
import subprocess

from tests.support.cinder_venv import REPO, cinder_python


def test_cinders_cxtadm_against_the_emulator() -> None:
    python = cinder_python("tests/lab/emulators/cxtadm")
    # This checkout's code, even if the venv was made by another checkout.
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/lab/emulators/cxtadm"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    summary = lines[-1] if lines else ""
    assert " passed" in summary, summary
    if os.environ.get("CI"):
        assert "skipped" not in summary, done.stdout[-3000:]
