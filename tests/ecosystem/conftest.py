"""Ecosystem tests: real Cinder, real os-brick, rootwrap, the packaged tool, the docs.

Cinder is tested in its own virtual environment (scripts/cinder-venv.sh):
``tests/ecosystem/cinder/`` is collected only where ``cinder`` imports, and
``test_cinder_venv.py`` runs it there from the main test run.

os-brick is tested in a process of its own (it brings eventlet, which warns
on every later fork of the process): ``tests/ecosystem/os_brick/`` is
collected only where ``ISCSI_HELPER_OS_BRICK_PROCESS=1``, as
``test_os_brick_process.py`` sets it for the pytest it starts.
"""

from __future__ import annotations

import importlib.util
import os

#: Set (to "1") in the environment of the pytest that runs tests/ecosystem/os_brick/.
OS_BRICK_PROCESS = "ISCSI_HELPER_OS_BRICK_PROCESS"

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("cinder") is None:
    collect_ignore_glob.append("cinder/*")
if os.environ.get(OS_BRICK_PROCESS) != "1":
    collect_ignore_glob.append("os_brick/*")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: builds a virtual environment and installs into it")
