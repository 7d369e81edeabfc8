"""End to end on the emulated targets: the helper configures, a real initiator uses it.

The chiscsi and IET emulators serve what their admin tool started through
the embedded iSCSI target (iscsi_helper.lab.wire), so what is checked here is
the wire: libiscsi and qemu-io log in with exactly the properties
initialize_connection returned. (tgt, a real target, has its own module.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from iscsi_helper import options, registry
from iscsi_helper.lab.emulators import chiscsi as chiscsi_emulator
from iscsi_helper.lab.emulators.iet import serving as iet_serving
from iscsi_helper.lab.emulators.iet.state import PROC_ENV
from iscsi_helper.lab.emulators.iet.state import STATE_ENV as IET_STATE_ENV
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.initiator import Initiator, InitiatorError, paths
from iscsi_helper.lab.rig import free_port
from iscsi_helper.targets.base import TargetHelper

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("iscsi-inq", "iscsi-readcapacity16", "qemu-io")),
    reason="needs libiscsi-bin and qemu-utils (scripts/setup.sh installs them)",
)

INITIATOR = "iqn.1993-08.org.debian:01:e2e-compute-1"
INTRUDER = "iqn.1993-08.org.debian:01:e2e-intruder"


@dataclass
class Served:
    target: TargetHelper
    reboot: Callable[[], None]


@pytest.fixture(params=["chiscsi", "iet"])
def served(request, tmp_path, monkeypatch):
    bin_dir = install_shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    port = free_port()
    common = {
        "target_helper": request.param,
        "state_path": str(tmp_path / "state"),
        "target_ip_address": "127.0.0.1",
        "target_secondary_ip_addresses": ["::1"],
        "target_port": port,
        "oslo_concurrency.lock_path": str(tmp_path / "locks"),
    }
    state = tmp_path / f"{request.param}-state"
    if request.param == "chiscsi":
        monkeypatch.setenv(chiscsi_emulator.STATE_ENV, str(state))
        monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
        conf = options.new_config(overrides={**common, "chiscsi_conf": str(tmp_path / "chiscsi.conf")})

        def reboot() -> None:
            chiscsi_emulator.reset(state)
    else:
        monkeypatch.setenv(IET_STATE_ENV, str(state))
        monkeypatch.setenv(PROC_ENV, str(tmp_path / "proc"))
        monkeypatch.setenv(iet_serving.WIRE_ENV, "1")
        monkeypatch.setenv(iet_serving.PORTALS_ENV, f"127.0.0.1:{port},[::1]:{port}")
        conf = options.new_config(
            overrides={
                **common,
                "iet_conf": str(tmp_path / "ietd.conf"),
                "iet_proc_dir": str(tmp_path / "proc"),
            }
        )

        def reboot() -> None:
            iet_serving.stop(state)
            shutil.rmtree(state)
            shutil.rmtree(tmp_path / "proc", ignore_errors=True)

    yield Served(registry.get_helper(conf), reboot)
    reboot()  # stops the embedded target's daemon by its PID


def image(tmp_path, name: str, size: int) -> str:
    path = tmp_path / f"{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def test_real_initiator_logs_in_with_chap_reads_and_writes(served, tmp_path):
    target = served.target
    disk = image(tmp_path, "volume-1", 64 << 20)
    model = target.create_export(None, {"id": "1", "name": "volume-1"}, disk)
    volume = {
        "id": "1",
        "name": "volume-1",
        "provider_location": model["location"],
        "provider_auth": model["auth"],
    }
    props = target.initialize_connection(volume, {"initiator": INITIATOR, "multipath": True})["data"]
    assert props["target_lun"] == 0 and len(props["target_portals"]) == 2
    initiator = Initiator(INITIATOR, props)
    for path in paths(props):  # both portals: IPv4 and IPv6 loopback
        assert "Vendor" in initiator.inquiry(path)
        assert initiator.capacity(path) == 64 << 20
    initiator.write_and_read_back(0xA5, offset=1 << 20, length=256 << 10)
    with open(disk, "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(256 << 10) == b"\xa5" * (256 << 10)

    wrong = dict(props, auth_password=props["auth_password"][::-1])
    with pytest.raises(InitiatorError, match="Authentication failure"):
        Initiator(INITIATOR, wrong).inquiry()
    if target.supports_acl:
        with pytest.raises(InitiatorError, match="Authorization failure"):
            Initiator(INTRUDER, props).inquiry()

    target.remove_export(None, volume)
    with pytest.raises(InitiatorError):
        initiator.inquiry()


def test_export_survives_a_reboot_with_the_same_credentials(served, tmp_path):
    target = served.target
    model = target.create_export(None, {"id": "2", "name": "volume-2"}, image(tmp_path, "v2", 8 << 20))
    volume = {
        "id": "2",
        "name": "volume-2",
        "provider_location": model["location"],
        "provider_auth": model["auth"],
    }
    props = target.initialize_connection(volume, {"initiator": INITIATOR})["data"]
    Initiator(INITIATOR, props).inquiry()
    served.reboot()
    with pytest.raises(InitiatorError):
        Initiator(INITIATOR, props).inquiry()
    assert target.restore_exports().started == ["2"]
    Initiator(INITIATOR, props).write_and_read_back(0x3C, length=64 << 10)
