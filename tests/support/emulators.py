"""Putting an emulator where a helper looks for its tool, for one test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from oslo_config import cfg

from iscsi_helper import options
from iscsi_helper.lab.emulators import chiscsi
from iscsi_helper.lab.emulators.shims import install_shims


def use_chiscsi_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ``iscsictl`` emulator first on PATH, its state under ``tmp_path``, no data path; its state dir.

    The data path stays off (no wire target is started) unless a test turns
    it on itself; the caller resets the returned state when it is done.
    """
    bin_dir = install_shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    state = tmp_path / "chiscsi-state"
    monkeypatch.setenv(chiscsi.STATE_ENV, str(state))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
    return state


def chiscsi_config(root: Path, **overrides: object) -> cfg.ConfigOpts:
    """The chiscsi helper's configuration with all its files under ``root`` (a test's tmp_path).

    State, chiscsi.conf and locks live under ``root`` and the portal is loopback,
    so a test touches nothing of the host's; ``overrides`` set any other option.
    """
    return options.new_config(
        overrides={
            "target_helper": "chiscsi",
            "state_path": str(root / "state"),
            "target_ip_address": "127.0.0.1",
            "chiscsi_conf": str(root / "chiscsi.conf"),
            "oslo_concurrency.lock_path": str(root / "locks"),
            **overrides,
        }
    )
