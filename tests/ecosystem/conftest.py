"""Ecosystem tests: real Cinder, real os-brick, rootwrap, the packaged tool, the docs.

Cinder is tested in its own virtual environment (scripts/cinder-venv.sh):
``tests/ecosystem/cinder/`` is collected only where ``cinder`` imports, and
``test_cinder_venv.py`` runs it there from the main test run.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("cinder") is None:
    collect_ignore_glob.append("cinder/*")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: builds a virtual environment and installs into it")
