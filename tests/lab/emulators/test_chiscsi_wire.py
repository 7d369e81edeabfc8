"""The emulator with the data path: what -S starts a real initiator can use, and -s with sessions.

Uses libiscsi (its tools, and qemu-io's iSCSI driver, which is libiscsi, to
hold a session open and idle). Sources: CHAP private/klib/security/chap/;
ACLs only with ACL_Enable (private/klib/target/acl.c 308-336, 536-593,
target_chelsio.c 168-202); stop: private/klib/common/iscsi_node.c 163-246.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi import live, serving, sessions

from .chiscsi_support import Host, iqn

pytest.importorskip("iscsi_helper.lab.wire.control")
for _tool in ("iscsi-inq", "iscsi-readcapacity16", "qemu-io"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed", allow_module_level=True)

ALLOWED = "iqn.1993-08.org.debian:01:allowed"
STRANGER = "iqn.1993-08.org.debian:01:stranger"
HOLDER = "iqn.1993-08.org.debian:01:holder"


@pytest.fixture
def wired(host: Host, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "1")
    yield host  # host's teardown resets the state, which stops the daemon


def inq(host: Host, name: str, initiator: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    auth = f"user1%{secret}@" if secret else ""
    return subprocess.run(
        ["iscsi-inq", "-i", initiator, f"iscsi://{auth}127.0.0.1:{host.port}/{name}/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(condition, what: str, limit: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Holder:
    """qemu-io logged in through libiscsi, idle until told to quit: a session that stays."""

    def __init__(self, host: Host, name: str, initiator: str) -> None:
        opts = (
            f"driver=iscsi,transport=tcp,portal=127.0.0.1:{host.port},target={name},lun=0,"
            f"initiator-name={initiator}"
        )
        self.proc = subprocess.Popen(
            ["qemu-io", "--image-opts", opts],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def test_chap_enforced_and_acl_ignored_without_acl_enable(wired: Host) -> None:
    host = wired
    extra = '\tAuthMethod=CHAP\n\tAuth_CHAP_Initiator="user1":"secretsecret1"\n\tACL=iname=' + ALLOWED + "\n"
    assert host.start(1, extra=extra).code == 0
    assert inq(host, iqn(1), STRANGER, "secretsecret1").returncode == 0  # the ACL line does nothing
    bad = inq(host, iqn(1), ALLOWED, "wrongsecret12")
    assert bad.returncode != 0 and "Authentication failure" in bad.stderr


def test_acl_enforced_with_acl_enable(wired: Host) -> None:
    host = wired
    extra = (
        '\tAuthMethod=CHAP\n\tAuth_CHAP_Initiator="user1":"secretsecret1"\n\tACL_Enable=Yes\n'
        f"\tACL=iname={ALLOWED}\n"
    )
    assert host.start(1, extra=extra).code == 0
    assert inq(host, iqn(1), ALLOWED, "secretsecret1").returncode == 0
    assert inq(host, iqn(1), STRANGER, "secretsecret1").returncode != 0


def test_acl_enable_without_acl_lets_nobody_in(wired: Host) -> None:
    host = wired
    assert host.start(1, extra="\tACL_Enable=Yes\n").code == 0
    assert inq(host, iqn(1), ALLOWED).returncode != 0


def test_reconfigure_changes_the_secret_and_keeps_the_id(wired: Host) -> None:
    host = wired
    assert host.start(1, extra='\tAuth_CHAP_Initiator="user1":"secretsecret1"\n').code == 0
    assert (
        host.start(1, extra='\tAuth_CHAP_Initiator="user1":"secretsecret2"\n').err
        == f"target {iqn(1)} updated.\n"
    )
    assert inq(host, iqn(1), ALLOWED, "secretsecret1").returncode != 0
    assert inq(host, iqn(1), ALLOWED, "secretsecret2").returncode == 0
    view = live.live_target(host.state, iqn(1))
    assert view is not None and view.tid == 1


def test_stop_closes_a_logged_in_session_and_removes(wired: Host) -> None:
    host = wired
    assert host.start(1).code == 0
    holder = Holder(host, iqn(1), HOLDER)
    try:
        wait_for(lambda: serving.sessions(host.state, iqn(1))["served"] == [HOLDER], "the login")
        res = host.run("-s", f"target={iqn(1)}")
        assert (res.code, res.err) == (0, f"{iqn(1)} removed.\n")
        assert serving.sessions(host.state, iqn(1)) == {"served": [], "lingering": []}
    finally:
        holder.stop()


def test_stop_with_a_session_that_does_not_close_is_busy(wired: Host) -> None:
    host = wired
    assert host.start(1).code == 0
    holder = Holder(host, iqn(1), HOLDER)
    try:
        wait_for(lambda: serving.sessions(host.state, iqn(1))["served"] == [HOLDER], "the login")
        sessions.declare_stuck(host.state, iqn(1), [HOLDER])
        res = host.run("-s", f"target={iqn(1)}")
        assert (res.code, res.out, res.err) == (0, "", f"{iqn(1)} busy.\n")
        # the libiscsi session is still there, the target is offline: no new login, not found
        assert serving.sessions(host.state, iqn(1))["lingering"] == [HOLDER]
        assert inq(host, iqn(1), ALLOWED).returncode != 0
        assert host.run("-c", f"target={iqn(1)}").code == 255
        [view] = live.targets(host.state)
        assert view.offline
    finally:
        holder.stop()
    wait_for(lambda: not serving.sessions(host.state, iqn(1))["lingering"], "the session to end")
    os.unlink(sessions.hook_file(host.state, iqn(1)))
    assert host.run("-s", "target=ALL").err == "All targets removed.\n"


def test_ramdisk_lun_is_served(wired: Host) -> None:
    host = wired
    body = f"\tTargetName={iqn(1)}\n\tTargetDevice=ram1,MEM,size=2MB\n\tPortalGroup=1@127.0.0.1:{host.port}\n"
    assert host.run("-S", f"target={iqn(1)}", "-f", str(host.block("mem", body))).code == 0
    done = subprocess.run(
        ["iscsi-readcapacity16", f"iscsi://127.0.0.1:{host.port}/{iqn(1)}/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Total size:2097152" in done.stdout


def test_serial_numbers_reach_the_initiator(wired: Host, tmp_path: Path) -> None:
    host = wired
    assert host.start(1).code == 0
    done = subprocess.run(
        ["iscsi-inq", "-e", "1", "-c", "128", f"iscsi://127.0.0.1:{host.port}/{iqn(1)}/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Unit Serial Number:[0N0743000000000]" in done.stdout
