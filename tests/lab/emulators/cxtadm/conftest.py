"""Loaded only in the Cinder venv's pytest (tests/lab/emulators/test_chiscsi_cxtadm.py starts it).

Eventlet's noise is filtered here.
"""

from __future__ import annotations

import pytest

from tests.support.cinder_venv import filter_eventlet_warnings


def pytest_configure(config: pytest.Config) -> None:
    filter_eventlet_warnings(config)
