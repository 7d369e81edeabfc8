"""The chiscsi emulator with the real data path: what -S starts, an initiator can use.

Needs ``iscsi_helper.lab.wire.control`` and libiscsi's command-line tools; skipped
otherwise. Uses the shim exactly as a helper would, then libiscsi (a real,
independent initiator) to check login, CHAP enforcement, the LUN, its serial
number, ACL-free access after a reload, and withdrawal on ``-s``/reset.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("iscsi_helper.lab.wire.control")
if not shutil.which("iscsi-inq") or not shutil.which("iscsi-readcapacity16"):
    pytest.skip("libiscsi tools (iscsi-inq, iscsi-readcapacity16) not installed", allow_module_level=True)

from iscsi_helper.lab.emulators.chiscsi import reset  # noqa: E402
from iscsi_helper.lab.emulators.shims import install_shims  # noqa: E402

IQN = "iqn.2010-10.org.openstack:volume-wire1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, str], Path]]:
    bin_dir = install_shims(tmp_path / "bin")
    state = tmp_path / "state"
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")  # also for reset() below: stop our daemon
    env = dict(os.environ, CHISCSI_EMULATOR_STATE=str(state),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield env, state
    reset(state)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)


def test_started_target_is_served_with_chap_and_withdrawn(wired: tuple[dict[str, str], Path],
                                                          tmp_path: Path) -> None:
    env, state = wired
    disk = tmp_path / "disk"
    with open(disk, "wb") as handle:
        handle.truncate(8 << 20)
    port = _free_port()
    conf = tmp_path / "volume-wire1"
    conf.write_text(f"\n    target:\n        TargetName={IQN}\n        TargetDevice={disk},SN=SERIALW1\n"
                    f"        PortalGroup=1@127.0.0.1:{port}\n        AuthMethod=CHAP\n"
                    f'        Auth_CHAP_Policy=Oneway\n        Auth_CHAP_Initiator="user1":"secretsecret1"\n')
    res = _run(env, "iscsictl", "-S", f"target={IQN}", "-f", str(conf), "-x", str(tmp_path / "chiscsi.conf"))
    assert res.returncode == 0, res.stderr
    good = f"iscsi://user1%secretsecret1@127.0.0.1:{port}/{IQN}/0"
    bad = f"iscsi://user1%wrongsecret99@127.0.0.1:{port}/{IQN}/0"

    res = _run(env, "iscsi-inq", "-e", "1", "-c", "128", good)
    assert res.returncode == 0, res.stderr
    assert "Unit Serial Number:[SERIALW1]" in res.stdout
    res = _run(env, "iscsi-readcapacity16", good)
    assert res.returncode == 0 and "Total size:8388608" in res.stdout
    res = _run(env, "iscsi-readcapacity16", bad)
    assert res.returncode != 0 and "Authentication failure" in res.stderr

    # reload with a new secret: the old one stops working, the tid stays
    conf.write_text(conf.read_text().replace("secretsecret1", "secretsecret2"))
    assert _run(env, "iscsictl", "-S", f"target={IQN}", "-f", str(conf)).returncode == 0
    assert ", id=1, " in _run(env, "iscsictl", "-c", f"target={IQN}").stdout
    assert _run(env, "iscsi-readcapacity16", good).returncode != 0
    assert _run(env, "iscsi-readcapacity16", good.replace("secretsecret1", "secretsecret2")).returncode == 0

    assert _run(env, "iscsictl", "-s", f"target={IQN}").returncode == 0
    assert _run(env, "iscsi-readcapacity16", good.replace("secretsecret1", "secretsecret2")).returncode != 0
    assert (state / "wire").exists()
