"""Fixtures shared by the emulator tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh IET emulator state directory, named by the environment as ietadm finds it.

    Proc files stay under it and the data path is off, whatever the caller's environment says.
    """
    state = tmp_path / "state"
    monkeypatch.setenv("IET_EMULATOR_STATE", str(state))
    monkeypatch.delenv("IET_EMULATOR_PROC", raising=False)
    monkeypatch.delenv("IET_EMULATOR_WIRE", raising=False)
    return state


# cxtadm/ runs Cinder's CxtAdm against the chiscsi emulator: only inside the
# Cinder venv (test_chiscsi_cxtadm.py runs it there from the main suite).
collect_ignore_glob: list[str] = []
if importlib.util.find_spec("cinder") is None:
    collect_ignore_glob.append("cxtadm/*")

# The chiscsi emulator's fixtures (host, loop_device) live with its test helpers.
from .chiscsi_support import host, loop_device  # noqa: E402,F401
