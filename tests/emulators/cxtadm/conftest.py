"""Loaded only in the Cinder venv's pytest (tests/emulators/test_chiscsi_cxtadm.py starts it).

Cinder 29 runs on eventlet: importing it, or oslo.service and oslo.privsep
under it, raises eventlet's deprecation notices, and every later fork of the
process (each helper command, run through oslo.concurrency) raises eventlet's
"Using fork() is a bad idea". They come from Cinder's own stack and say
nothing about the adapter, so they are filtered here, for this process only;
every other warning stays visible.
"""

from __future__ import annotations


def pytest_configure(config) -> None:
    # Any warning whose message names eventlet ((?s): eventlet's own notice starts with a newline).
    config.addinivalue_line("filterwarnings", r"ignore:(?s).*eventlet:Warning")
