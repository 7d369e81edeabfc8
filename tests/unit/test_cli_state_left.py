"""A failure after the first change: exit 1, the state left on the error line and in the JSON."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from iscsi_helper.lab.emulators import chiscsi as chiscsi_emulator
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.rig import private_args
from tests.support.cli import Cli, one_line


@pytest.fixture
def lying_iscsictl(tmp_path):
    """The emulated iscsictl, behind one whose -S says yes and does nothing."""
    real = install_shims(tmp_path / "bin") / "iscsictl"
    liar = tmp_path / "liar" / "iscsictl"
    liar.parent.mkdir()
    liar.write_text(f'#!/bin/sh\n[ "$1" = -S ] && exit 0\nexec {real} "$@"\n')
    liar.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{liar.parent}:{os.environ['PATH']}",
        chiscsi_emulator.STATE_ENV: str(tmp_path / "chiscsi-state"),
        "CHISCSI_EMULATOR_WIRE": "0",
        "CHISCSI_EMULATOR_PIDFILE": str(tmp_path / "iscsictl.pid"),
    }
    yield env
    chiscsi_emulator.reset(tmp_path / "chiscsi-state")


def test_a_create_the_target_never_made_is_exit_1_with_the_state_left(tmp_path, lying_iscsictl, device):
    cli = Cli(
        [
            *private_args(tmp_path, "chiscsi"),
            "--chiscsi-conf",
            str(tmp_path / "chiscsi.conf"),
        ],
        env=lying_iscsictl,
    )
    line = one_line(cli.run("export", "1", device, expect=1))
    assert "state left: " in line, line
    error = json.loads(cli.run("export", "1", device, "--json", expect=1).stdout)["error"]
    assert error["exit_code"] == 1 and error["state_left"], error
    assert error["message"].endswith(error["state_left"]) or error["state_left"] in error["message"]
    assert shutil.which("iscsictl", path=lying_iscsictl["PATH"]).endswith("liar/iscsictl")
