"""Cinder's own chiscsi helper, CxtAdm (cinder 29.0.0), against the emulator: a second client.

CxtAdm (cinder/volume/targets/cxt.py) was written against the real product,
so where it works here the emulator agrees with a real client, and where it
fails it fails the way chiscsi's source says it would on a real host:

- it lists everything with ``-c target=ALL`` and takes the tid from the first
  line containing the IQN (a substring: volume-1 matches volume-10);
- it never retries ``iscsictl``, so another iscsictl holding the lock fails
  the export at once;
- it trusts ``-s``'s exit status, so a busy target (sessions that would not
  close) counts as removed: its file is deleted, the target stays (offline);
- past the 128 KiB cut of the name list the listing ends with a truncated
  name and exit 255, so every create fails on its first call and every
  remove is skipped.

Runs only where ``cinder`` imports (the venv of scripts/cinder-venv.sh);
tests/lab/emulators/test_chiscsi_cxtadm.py runs it from the main suite.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cinder import exception
from cinder import utils as cinder_utils
from cinder.volume.targets import cxt
from oslo_concurrency import processutils

from iscsi_helper.lab.emulators.chiscsi import live, reset, sessions
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.rig import free_port

from ..chiscsi_support import can_make_loop_devices, seed_file_targets

PREFIX = "iqn.2010-10.org.openstack:"


class FakeConfiguration:
    """What CxtAdm reads of a backend's configuration (see cinder's targets_fixture)."""

    def __init__(self, root: Path, port: int) -> None:
        self.values = {
            "volumes_dir": str(root / "volumes"),
            "chiscsi_conf": str(root / "chiscsi.conf"),
            "target_prefix": PREFIX,
            "target_protocol": "iscsi",
        }
        self.target_prefix = PREFIX
        self.target_ip_address = "127.0.0.1"
        self.target_secondary_ip_addresses: list[str] = []
        self.target_port = port

    def safe_get(self, name: str) -> Any:
        return self.values.get(name)

    def append_config_values(self, *args: Any) -> None:
        pass


class NoChapInDatabase:
    """The volume has no provider_auth yet: CxtAdm generates a user and a 16-character secret."""

    def volume_get(self, context: Any, volume_id: str) -> dict[str, Any]:
        raise exception.NotFound()


@pytest.fixture
def cinder_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[cxt.CxtAdm, Path]]:
    bin_dir = install_shims(tmp_path / "bin")
    state = tmp_path / "state"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CHISCSI_EMULATOR_STATE", str(state))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "0")
    monkeypatch.delenv("CHISCSI_EMULATOR_PIDFILE", raising=False)

    # Cinder runs iscsictl through its root helper; the commands are Cinder's own.
    def execute(*cmd: str, **kwargs: Any) -> tuple[str, str]:
        kwargs.pop("run_as_root", None)
        kwargs.pop("root_helper", None)
        return processutils.execute(*cmd, **kwargs)

    monkeypatch.setattr(cinder_utils, "execute", execute)
    target = cxt.CxtAdm(root_helper="", configuration=FakeConfiguration(tmp_path, free_port()))
    target.db = NoChapInDatabase()
    yield target, state
    reset(state)


def volume(name: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "provider_location": None, "provider_auth": None}


def regular_file(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    with open(path, "wb") as handle:
        handle.truncate(4 << 20)
    return str(path)


@pytest.fixture
def block_device(tmp_path: Path) -> Iterator[str]:
    if not can_make_loop_devices():
        pytest.skip("needs root and losetup for a block device (CxtAdm writes no LUN class: BLK)")
    backing = regular_file(tmp_path, "lv.img")
    made = subprocess.run(
        ["losetup", "--find", "--show", backing], capture_output=True, text=True, timeout=30
    )
    if made.returncode != 0:
        pytest.skip(f"losetup failed: {made.stderr.strip()}")
    device = made.stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=30)


def test_create_and_remove_on_a_block_device_work(
    cinder_host: tuple[cxt.CxtAdm, Path], block_device: str
) -> None:
    target, state = cinder_host
    vol = volume("volume-" + str(uuid.uuid4()))
    data = target.create_export(None, vol, block_device)
    iqn = PREFIX + vol["name"]
    portal, tid_iqn, lun = data["location"].split(" ")
    assert (portal, tid_iqn, lun) == (f"127.0.0.1:{target.configuration.target_port},1", iqn, "0")
    method, user, secret = data["auth"].split(" ")
    assert method == "CHAP" and len(secret) == 16  # within chiscsi's 12..16
    view = live.live_target(state, iqn)
    assert view is not None and view.tid == 1 and view.initiator_credentials == ((user, secret),)
    assert view.luns[0].lun_class == "BLK" and view.auth_method == "CHAP"
    vol["provider_location"] = data["location"]
    target.remove_export(None, vol)
    assert live.live_target(state, iqn) is None
    assert not (Path(target.volumes_dir) / vol["name"]).exists()


def test_create_on_a_regular_file_fails_as_blk(cinder_host: tuple[cxt.CxtAdm, Path], tmp_path: Path) -> None:
    """CxtAdm writes no class, so chiscsi uses BLK, which refuses a regular file (lu_blk.c 91-104)."""
    target, state = cinder_host
    vol = volume("volume-file")
    with pytest.raises(exception.ISCSITargetCreateFailed):
        target.create_export(None, vol, regular_file(tmp_path, "disk"))
    assert live.targets(state) == []
    assert not (Path(target.volumes_dir) / vol["name"]).exists()  # CxtAdm removed its file


def test_another_iscsictl_holding_the_lock_fails_the_create_at_once(
    cinder_host: tuple[cxt.CxtAdm, Path], tmp_path: Path
) -> None:
    target, state = cinder_host
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "iscsictl.pid", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        with pytest.raises(processutils.ProcessExecutionError) as failed:
            target.create_export(None, volume("volume-locked"), regular_file(tmp_path, "disk"))
    finally:
        os.close(fd)
    assert failed.value.exit_code == 3
    assert "unable to obtain exclusive lock" in failed.value.stderr
    assert not (Path(target.volumes_dir) / "volume-locked").exists()


def test_substring_match_gives_volume_1_the_tid_of_volume_10(
    cinder_host: tuple[cxt.CxtAdm, Path], block_device: str, tmp_path: Path
) -> None:
    target, state = cinder_host
    first = target.create_export(None, volume("volume-10"), block_device)
    assert first["location"].split(" ")[0].endswith(",1")
    # volume-1 needs a block device of its own: a second loop device over another file

    backing = regular_file(tmp_path, "lv2.img")
    made = subprocess.run(
        ["losetup", "--find", "--show", backing], capture_output=True, text=True, timeout=30
    )
    if made.returncode != 0:
        pytest.skip(f"losetup failed: {made.stderr.strip()}")
    try:
        second = target.create_export(None, volume("volume-1"), made.stdout.strip())
        live_tid = live.live_target(state, PREFIX + "volume-1").tid  # type: ignore[union-attr]
        assert live_tid == 3
        assert second["location"].split(" ")[0].endswith(",1")  # CxtAdm reports volume-10's tid
    finally:
        subprocess.run(["losetup", "--detach", made.stdout.strip()], capture_output=True, timeout=30)


def test_busy_target_is_reported_removed(cinder_host: tuple[cxt.CxtAdm, Path], block_device: str) -> None:
    """-s exits 0 with "busy."; CxtAdm deletes its file and returns, the target stays offline."""
    target, state = cinder_host
    vol = volume("volume-busy")
    data = target.create_export(None, vol, block_device)
    vol["provider_location"] = data["location"]
    iqn = PREFIX + vol["name"]
    sessions.declare_stuck(state, iqn, ["iqn.1993-08.org.debian:01:compute1"])
    target.remove_export(None, vol)  # no error
    assert not (Path(target.volumes_dir) / vol["name"]).exists()
    [node] = live.targets(state)
    assert node.name == iqn and node.offline


def _seed(state: Path, count: int, port: int, tmp_path: Path) -> list[str]:
    names = [f"{PREFIX}volume-{i:08d}-0000-4000-8000-{i:012d}" for i in range(count)]
    seed_file_targets(state, names, port, f"{tmp_path}/lv")
    return names


def test_past_the_listing_cut_create_fails_and_remove_is_skipped(
    cinder_host: tuple[cxt.CxtAdm, Path], tmp_path: Path
) -> None:
    target, state = cinder_host
    names = _seed(state, 1900, target.configuration.target_port, tmp_path)
    with pytest.raises(processutils.ProcessExecutionError) as failed:
        target.create_export(None, volume("volume-new"), regular_file(tmp_path, "disk"))
    assert failed.value.exit_code == 255 and "NOT found." in failed.value.stdout
    # remove of a target past the cut: CxtAdm's show_target lists ALL, fails, and skips
    last = names[-1]
    Path(target.volumes_dir).mkdir(parents=True, exist_ok=True)
    (Path(target.volumes_dir) / last[len(PREFIX) :]).write_text("target:\n")
    vol = {"id": "x", "name": last[len(PREFIX) :], "provider_location": f"127.0.0.1:3260,1 {last} 0"}
    target.remove_export(None, vol)
    assert live.live_target(state, last) is not None  # still exported
