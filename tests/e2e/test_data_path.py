"""chiscsi end to end: the helper configures the emulated target, a real initiator uses it.

The emulator serves what ``iscsictl -S`` started through the embedded iSCSI
target (iscsi_helper.wire), so what is checked here is the wire: libiscsi
and qemu-io log in with exactly the properties initialize_connection gave.
"""

from __future__ import annotations

import os
import shutil

import pytest

from iscsi_helper import options, registry
from iscsi_helper.emulators import chiscsi as emulator
from iscsi_helper.emulators.shims import install_shims
from iscsi_helper.initiator import Initiator, LoginFailed, paths

from ..conftest import free_port

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("iscsi-inq", "iscsi-readcapacity16", "qemu-io")),
    reason="needs libiscsi-bin and qemu-utils (scripts/setup.sh installs them)")

INITIATOR = "iqn.1993-08.org.debian:01:e2e-compute-1"
INTRUDER = "iqn.1993-08.org.debian:01:e2e-intruder"


@pytest.fixture
def chiscsi(tmp_path, monkeypatch):
    bin_dir = install_shims(tmp_path / "bin")
    state = tmp_path / "chiscsi-state"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv(emulator.STATE_ENV, str(state))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
    port = free_port()
    conf = options.new_config(overrides={
        "target_helper": "chiscsi", "state_path": str(tmp_path / "state"),
        "target_ip_address": "127.0.0.1", "target_secondary_ip_addresses": ["::1"],
        "target_port": port, "chiscsi_conf": str(tmp_path / "chiscsi.conf"),
        "oslo_concurrency.lock_path": str(tmp_path / "locks")})
    yield registry.get_target(conf)
    emulator.reset(state)  # stops the wire daemon by its PID


def test_real_initiator_logs_in_with_chap_reads_and_writes(chiscsi, tmp_path):
    image = tmp_path / "volume-1.img"
    with open(image, "wb") as handle:
        handle.truncate(64 << 20)
    model = chiscsi.create_export(None, {"id": "1", "name": "volume-1"}, str(image))
    volume = {"id": "1", "name": "volume-1", "provider_location": model["location"],
              "provider_auth": model["auth"]}
    info = chiscsi.initialize_connection(volume, {"initiator": INITIATOR, "multipath": True})
    props = info["data"]
    assert props["target_lun"] == 0 and len(props["target_portals"]) == 2
    initiator = Initiator(INITIATOR, props)
    for path in paths(props):  # both portals: IPv4 and IPv6 loopback
        assert "CHISCSI" in initiator.inquiry(path) or initiator.inquiry(path)
        assert initiator.capacity(path) == 64 << 20
    initiator.write_and_read_back(0xA5, offset=1 << 20, length=256 << 10)
    with open(image, "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(256 << 10) == b"\xa5" * (256 << 10)

    wrong = dict(props, auth_password=props["auth_password"][::-1])
    with pytest.raises(LoginFailed, match="Authentication failure"):
        Initiator(INITIATOR, wrong).inquiry()
    with pytest.raises(LoginFailed, match="Authorization failure|not found|failure"):
        Initiator(INTRUDER, props).inquiry()

    chiscsi.remove_export(None, volume)
    with pytest.raises(LoginFailed):
        initiator.inquiry()


def test_export_survives_a_reboot_with_the_same_credentials(chiscsi, tmp_path):
    image = tmp_path / "volume-2.img"
    with open(image, "wb") as handle:
        handle.truncate(8 << 20)
    model = chiscsi.create_export(None, {"id": "2", "name": "volume-2"}, str(image))
    volume = {"id": "2", "name": "volume-2", "provider_location": model["location"],
              "provider_auth": model["auth"]}
    props = chiscsi.initialize_connection(volume, {"initiator": INITIATOR})["data"]
    emulator.reset(tmp_path / "chiscsi-state")
    with pytest.raises(LoginFailed):
        Initiator(INITIATOR, props).inquiry()
    assert chiscsi.restore_exports().started == ["2"]
    Initiator(INITIATOR, props).write_and_read_back(0x3C, length=64 << 10)
