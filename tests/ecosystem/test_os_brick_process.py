"""Runs tests/ecosystem/os_brick/ in a pytest process of its own, from the main suite.

os-brick imports eventlet, and eventlet registers a fork hook that warns
("Using fork() is a bad idea") every time the process that imported it forks
for a child with a pre-exec function, as oslo.concurrency does for every tool
a helper runs. In the main test process that was thousands of warnings in
unrelated tests. In its own process, eventlet's warnings are filtered in the
one module that brings it in; this test checks that they are, and that every
os-brick test ran and passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import OS_BRICK_PROCESS

REPO = Path(__file__).resolve().parents[2]


def test_os_brick_reads_our_connection_properties_in_its_own_process():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ecosystem/os_brick"],
        cwd=REPO,
        env={**os.environ, OS_BRICK_PROCESS: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in summary and "skipped" not in summary, summary
    assert "warning" not in summary, done.stdout[-6000:]
