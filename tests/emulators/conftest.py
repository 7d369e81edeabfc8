"""Fixtures shared by the emulator tests."""

from __future__ import annotations

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


# The chiscsi emulator's fixtures (host, loop_device) live with its test helpers.
from .chiscsi_support import host, loop_device  # noqa: E402,F401
