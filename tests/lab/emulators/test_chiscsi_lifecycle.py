"""Start, reconfigure, stop: target ids, messages, busy targets, reboot.

Sources: private/klib/common/iscsi_node.c 18 and 46-81 (one id counter for
every node), 460-522 (add, then the hidden discovery node after the first),
591-802 (reconfigure through a temporary node), 163-246 (remove: offline,
close, wait, busy or removed); private/klib/control/iscsi_control_cmd.c
416-499; private/ulib/iscsictl_cmd.c 895-1010 (what iscsictl prints).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi import live, reset, sessions

from .chiscsi_support import Host, iqn


def tid(host: Host, n: int | str) -> int:
    target = live.live_target(host.state, iqn(n))
    assert target is not None
    return target.tid


def test_first_target_gets_1_the_second_3(host: Host) -> None:
    assert host.start(1).err == f"target {iqn(1)} added.\n"
    assert tid(host, 1) == 1
    assert live.next_tid(host.state) == 3  # the discovery node took 2
    assert host.start(2).code == 0
    assert tid(host, 2) == 3
    assert live.next_tid(host.state) == 4


def test_reconfigure_in_place_keeps_the_id_and_uses_one(host: Host) -> None:
    assert host.start(1).code == 0
    res = host.start(1, extra="\tMaxConnections=2\n")
    assert (res.code, res.err) == (0, f"target {iqn(1)} updated.\n")
    assert tid(host, 1) == 1
    assert "\tMaxConnections=2\n" in host.run("-c", f"target={iqn(1)}").out
    assert host.start(2).code == 0
    assert tid(host, 2) == 4  # 1, discovery 2, the reconfigure's temporary node 3


def test_failure_after_the_node_is_allocated_uses_an_id(host: Host) -> None:
    empty = host.disk("empty", 0)
    assert host.start(1, device=empty).code == 255  # size ZERO: found when attaching
    assert host.start(2, extra="\tFooBar=1\n").code == 255  # unrecognized key: before allocation
    assert host.start(3).code == 0
    assert tid(host, 3) == 2
    assert live.next_tid(host.state) == 4


def test_failed_reconfigure_leaves_the_old_configuration(host: Host) -> None:
    assert host.start(1, extra="\tMaxConnections=2\n").code == 0
    res = host.start(1, extra="\tMaxConnections=0\n")
    assert res.code == 255
    assert res.err == f"MaxConnections ERR: 0 < min 1.\nERROR: Failed to start target {iqn(1)}!\n"
    assert "\tMaxConnections=2\n" in host.run("-c", f"target={iqn(1)}").out


def test_reconfigure_may_not_change_ro(host: Host) -> None:
    disk = host.disk("shared")
    assert host.start(1, device=disk).code == 0
    path = host.block(
        "ro", f"\tTargetName={iqn(1)}\n\tTargetDevice={disk},FILE,RO\n\tPortalGroup=1@127.0.0.1:{host.port}\n"
    )
    res = host.run("-S", f"target={iqn(1)}", "-f", str(path))
    assert res.err == f"{disk} RO change prohibited.\nERROR: Failed to start target {iqn(1)}!\n"


def test_reload_without_names_updates_only_live_targets(host: Host) -> None:
    assert host.start(1).code == 0
    both = host.file("both", host.simple(1).read_text() + host.simple(2).read_text())
    res = host.run("-S", "-f", str(both))
    assert (res.code, res.err) == (0, f"target {iqn(1)} updated.\n{iqn(2)} not started, ignore.\n")
    assert live.live_target(host.state, iqn(2)) is None


def test_stop_removes_and_frees_the_device(host: Host) -> None:
    disk = host.disk("shared")
    assert host.start(1, device=disk).code == 0
    res = host.run("-s", f"target={iqn(1)}")
    assert (res.code, res.out, res.err) == (0, "", f"{iqn(1)} removed.\n")
    assert host.run("-c", "target=ALL").out == ""
    assert host.start(2, device=disk).code == 0  # the device is free again


def test_stop_missing_target(host: Host) -> None:
    res = host.run("-s", f"target={iqn(1)}")
    assert (res.code, res.err) == (255, f"{iqn(1)} is not found.\nERROR: Failed to remove target {iqn(1)}!\n")


def test_busy_stop_exits_0_and_leaves_the_target_offline(host: Host) -> None:
    disk = host.disk("shared")
    assert host.start(1, device=disk).code == 0
    sessions.declare_stuck(host.state, iqn(1), ["iqn.1993-08.org.debian:01:stuck"])
    res = host.run("-s", f"target={iqn(1)}")
    assert (res.code, res.out, res.err) == (0, "", f"{iqn(1)} busy.\n")
    # offline: not found by name, still in the kernel's queue (and so in the name list)
    assert host.run("-c", f"target={iqn(1)}").out == f"target {iqn(1)} NOT found.\n\n"
    assert host.run("-s", f"target={iqn(1)}").code == 255
    listing = host.run("-c", "target=ALL")
    assert (listing.code, listing.out) == (255, f"target {iqn(1)} NOT found.\n\n")
    # its LUNs and portals were released before the wait: the device can be exported again
    assert host.start(2, device=disk).code == 0
    views = live.targets(host.state)
    assert [(v.name, v.offline) for v in views] == [(iqn(1), True), (iqn(2), False)]


def test_start_again_after_busy_makes_a_second_node(host: Host) -> None:
    assert host.start(1).code == 0
    sessions.declare_stuck(host.state, iqn(1), ["iqn.x.y:stuck"])
    assert host.run("-s", f"target={iqn(1)}").err == f"{iqn(1)} busy.\n"
    res = host.start(1)
    assert res.err == f"target {iqn(1)} added.\n"  # the offline node is invisible to the lookup
    assert tid(host, 1) == 3
    # both nodes are in the name list and both names resolve to the live one
    listed = [line for line in host.run("-c", "target=ALL").out.splitlines() if line.startswith("TARGET:")]
    assert listed == [f"TARGET: {iqn(1)}, id=3, login_ip=0"] * 2
    # the stuck sessions stay with the first (offline) node: the new one stops cleanly
    assert host.run("-s", f"target={iqn(1)}").err == f"{iqn(1)} removed.\n"


def test_stop_all_reports_whether_all_went(host: Host) -> None:
    assert host.start(1).code == 0
    assert host.start(2).code == 0
    sessions.declare_stuck(host.state, iqn(2), ["iqn.x.y:stuck"])
    res = host.run("-s", "target=ALL")
    assert (res.code, res.err) == (0, "NOT all targets removed.\n")
    sessions.hook_file(host.state, iqn(2)).unlink()
    res = host.run("-s", "target=ALL")  # the offline node is in the queue and goes now
    assert (res.code, res.err) == (0, "All targets removed.\n")
    assert live.targets(host.state) == []


def test_stop_waits_a_bounded_time_for_sessions(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "0.3")
    assert host.start(1).code == 0
    sessions.declare_stuck(host.state, iqn(1), ["iqn.x.y:stuck"])
    started = time.monotonic()
    assert host.run("-s", f"target={iqn(1)}").err == f"{iqn(1)} busy.\n"
    assert time.monotonic() - started >= 0.3  # it did wait; correctness does not depend on how long


def test_stop_wait_defaults_to_the_sources_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHISCSI_EMULATOR_STOP_WAIT", raising=False)
    assert sessions.stop_wait_seconds() == 30.0
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "2.5")
    assert sessions.stop_wait_seconds() == 2.5


def test_reboot_forgets_targets_and_restarts_ids(host: Host) -> None:
    assert host.start(1).code == 0
    assert host.start(2).code == 0
    reset(host.state)
    assert host.run("-c", "target=ALL").out == ""
    assert host.start(2).code == 0
    assert tid(host, 2) == 1


def test_node_records_are_private(host: Host) -> None:
    assert host.start(1, extra='\tAuth_CHAP_Initiator="u":"secretsecret1"\n').code == 0
    for dirpath, dirnames, filenames in os.walk(host.state):
        for name in filenames:
            if name.endswith(".json"):
                assert os.stat(os.path.join(dirpath, name)).st_mode & 0o077 == 0
        for name in dirnames:
            assert os.stat(os.path.join(dirpath, name)).st_mode & 0o077 == 0


def test_block_device_is_held_exclusively(host: Host, loop_device: Path, tmp_path: Path) -> None:
    """A block device is opened O_EXCL (lu_vfs.c 48-55): another path to it fails with EBUSY."""
    alias = tmp_path / "same-device"
    alias.symlink_to(loop_device)
    assert host.start(1, device=loop_device).code == 0
    res = host.start(2, device=alias)
    assert res.err == f"attach {alias} failed -16.\nERROR: Failed to start target {iqn(2)}!\n"
    nonexcl = host.block(
        "nonexcl",
        f"\tTargetName={iqn(3)}\n\tTargetDevice={alias},FILE,NONEXCL\n"
        f"\tPortalGroup=1@127.0.0.1:{host.port}\n",
    )
    assert host.run("-S", f"target={iqn(3)}", "-f", str(nonexcl)).code == 0  # a shared open is allowed
    assert host.run("-s", f"target={iqn(3)}").code == 0
    assert host.run("-s", f"target={iqn(1)}").code == 0
    assert host.start(2, device=alias).code == 0  # released with the target
