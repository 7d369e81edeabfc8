"""The Cinder venv (scripts/cinder-venv.sh): finding it from the main suite, and quieting it inside.

Cinder 29.0.0 and its ~150 dependencies live in their own venv, one per
checkout; the main suite runs a directory of tests inside it
(tests/ecosystem/cinder, tests/lab/emulators/cxtadm). Both runners find the
venv and decide skip or fail the same way, and both directories' conftests
filter the same eventlet noise, so that is written once here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cinder_venv() -> Path:
    """Where scripts/cinder-venv.sh puts (or was told to put) this checkout's Cinder venv."""
    return Path(os.environ.get("ISCSI_HELPER_CINDER_VENV", REPO / ".venv-cinder"))


def cinder_python(directory: str) -> Path:
    """The venv's python, to run ``directory`` in; skips (fails in CI) without a venv.

    In CI a missing venv is a failure, not a skip: a green run must mean
    Cinder was exercised. Where ``cinder`` imports in this very process,
    ``directory`` is collected directly and the runner has nothing to do.
    """
    python = cinder_venv() / "bin" / "python"
    if not python.exists():
        message = (
            f"no Cinder venv at {python.parent.parent}: run bash scripts/cinder-venv.sh "
            "(scripts/setup.sh runs it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if importlib.util.find_spec("cinder") is not None:
        pytest.skip(f"cinder imports here: {directory}/ is collected directly")
    return python


def filter_eventlet_warnings(config: pytest.Config) -> None:
    """Ignore, in this pytest process only, every warning whose message names eventlet.

    Cinder 29 runs on eventlet: importing it, or oslo.service and
    oslo.privsep under it, raises eventlet's deprecation notices, and every
    later fork of the process (each helper command, run through
    oslo.concurrency) raises eventlet's "Using fork() is a bad idea". They
    come from Cinder's own stack and say nothing about what is tested;
    every other warning stays visible.
    """
    # (?s): eventlet's own notice starts with a newline.
    config.addinivalue_line("filterwarnings", r"ignore:(?s).*eventlet:Warning")
