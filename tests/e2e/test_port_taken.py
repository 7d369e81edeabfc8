"""An emulated target whose portal's port another program holds: the export fails, nothing stays.

Before, the wire daemon logged a warning and the emulator answered success:
``export`` said live while initiators reached the other program's target.
Both emulators now ask the data path for every portal (the installed
console script drives them, as an operator would). Then ``lab stop`` ends
the data path's daemon.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from iscsi_helper.lab.emulators import chiscsi as chiscsi_emulator
from iscsi_helper.lab.emulators.iet import serving as iet_serving
from iscsi_helper.lab.rig import free_port, private_args
from iscsi_helper.lab.wire.control import WireService
from tests.support.cli import Cli, one_line


@pytest.fixture
def lab(tmp_path):
    bin_dir = tmp_path / "bin"
    Cli([]).run("lab", "shims", str(bin_dir))
    assert os.access(bin_dir / "iscsictl", os.X_OK) and os.access(bin_dir / "ietadm", os.X_OK)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        chiscsi_emulator.STATE_ENV: str(tmp_path / "chiscsi-state"),
        "CHISCSI_EMULATOR_WIRE": "1",
        "CHISCSI_EMULATOR_PIDFILE": str(tmp_path / "iscsictl.pid"),
        "IET_EMULATOR_STATE": str(tmp_path / "iet-state"),
        "IET_EMULATOR_PROC": str(tmp_path / "proc"),
        "IET_EMULATOR_WIRE": "1",
        "IET_EMULATOR_PORTALS": f"127.0.0.1:{port}",
    }
    (tmp_path / "proc").mkdir()
    yield env, port
    chiscsi_emulator.reset(tmp_path / "chiscsi-state")
    iet_serving.stop(tmp_path / "iet-state")


@pytest.fixture
def held(lab):
    """Another program listening on the portal's port."""
    env, port = lab
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    yield holder
    holder.close()


@pytest.mark.parametrize("helper", ["chiscsi", "iet"])
def test_export_fails_when_the_port_is_held_and_works_once_it_is_free(tmp_path, lab, held, device, helper):
    env, port = lab
    cli = Cli(
        [
            *private_args(tmp_path, helper),
            "--target-port",
            str(port),
            "--chiscsi-conf",
            str(tmp_path / "chiscsi.conf"),
            "--iet-conf",
            str(tmp_path / "ietd.conf"),
            "--iet-proc-dir",
            str(tmp_path / "proc"),
        ],
        env=env,
    )
    line = one_line(cli.run("export", "1", device, expect=1))
    assert f"127.0.0.1:{port}" in line, line
    assert cli.json("list") == [], "no record left"
    assert cli.json("reconcile") == [], "and no target left live"
    held.close()
    out = cli.json("export", "1", device)
    assert out["live"] and out["portals"] == [f"127.0.0.1:{port}"]
    state = tmp_path / ("chiscsi-state" if helper == "chiscsi" else "iet-state") / "wire"
    pid = WireService(state).pid()
    assert pid is not None, "served on the wire"
    stopped = Cli([], env=env).run("lab", "stop", "--json")
    assert json.loads(stopped.stdout)["stopped"][helper] == pid
    assert WireService(state).pid() is None
