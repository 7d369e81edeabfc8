"""The wire target against a real initiator (libiscsi's command-line tools, qemu-io).

Every assertion here is about what an initiator observes on the wire: what
discovery lists, what INQUIRY and READ CAPACITY return, which bytes land in
the backing file, which logins are refused with which iSCSI status.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from iscsi_helper.lab.wire.control import WireService
from iscsi_helper.lab.wire.daemon import target_file
from iscsi_helper.lab.wire.model import WireLun
from iscsi_helper.lab.wire.scsi import naa_from_wwn

from .conftest import Targets, make_image, run

needs_qemu_io = pytest.mark.skipif(
    shutil.which("qemu-io") is None, reason="qemu-io (qemu-utils) not installed"
)


def test_discovery_lists_only_targets_on_the_connected_portal(targets: Targets, port: int) -> None:
    both = targets.add("both", portals=[("127.0.0.1", port), ("::1", port)])
    v6only = targets.add("v6only", portals=[("::1", port)])
    out = run("iscsi-ls", f"iscsi://127.0.0.1:{port}/")
    assert out.returncode == 0, out.stderr
    assert f"Target:{both.iqn} Portal:127.0.0.1:{port},1" in out.stdout
    assert f"Target:{both.iqn} Portal:[::1]:{port},1" in out.stdout  # IPv6 bracketed
    assert v6only.iqn not in out.stdout
    out6 = run("iscsi-ls", f"iscsi://[::1]:{port}/")
    assert out6.returncode == 0, out6.stderr
    assert f"Target:{v6only.iqn} Portal:[::1]:{port},1" in out6.stdout


def test_discovery_hides_targets_the_initiator_may_not_use(targets: Targets, port: int) -> None:
    hidden = targets.add("acl", acl=["iqn.2024-01.org.example:allowed"])
    out = run("iscsi-ls", "-i", "iqn.2024-01.org.example:other", f"iscsi://127.0.0.1:{port}/")
    assert hidden.iqn not in out.stdout
    out = run("iscsi-ls", "-i", "iqn.2024-01.org.example:allowed", f"iscsi://127.0.0.1:{port}/")
    assert hidden.iqn in out.stdout


def test_inquiry_reports_identity_and_vpd_pages(targets: Targets, tmp_path: Path) -> None:
    lun = WireLun(
        make_image(tmp_path / "id.img", 4 << 20),
        serial="0N0743000000000",
        device_id="0D0743000000000000000000",
        wwn="5000c50015ea71ab",
        product="CHISCSI Target",
    )
    t = targets.add("inq", luns=[lun])
    url = targets.url(t)
    std = run("iscsi-inq", url)
    assert std.returncode == 0, std.stderr
    assert "Peripheral Device Type:DIRECT_ACCESS" in std.stdout
    assert "Product:CHISCSI Target" in std.stdout
    pages = run("iscsi-inq", "-e", "1", "-c", "0", url).stdout
    for page in ("0x00", "0x80", "0x83", "0xb0"):
        assert f"Page:{page}" in pages
    serial = run("iscsi-inq", "-e", "1", "-c", str(0x80), url).stdout
    assert "Unit Serial Number:[0N0743000000000]" in serial
    devid = run("iscsi-inq", "-e", "1", "-c", str(0x83), url).stdout
    assert "Designator:[ISCSIHLP0D0743000000000000000000]" in devid  # T10 vendor id = vendor + ID=
    assert f"Designator:[{t.iqn}]" in devid
    assert "Designator Type:(3) NAA" in devid
    assert naa_from_wwn("5000c50015ea71ab", "x") == bytes.fromhex("5000c50015ea71ab")
    assert naa_from_wwn("W00743000000000", "x")[0] >> 4 == 3  # free-form WWN: stable locally assigned NAA
    assert naa_from_wwn("W00743000000000", "x") == naa_from_wwn("W00743000000000", "y")


def test_second_lun_and_missing_lun(targets: Targets, tmp_path: Path) -> None:
    luns = [
        WireLun(make_image(tmp_path / "l0.img", 1 << 20)),
        WireLun(make_image(tmp_path / "l1.img", 3 << 20)),
    ]
    t = targets.add("twoluns", luns=luns)
    cap = run("iscsi-readcapacity16", targets.url(t, lun=1))
    assert "Total size:3145728" in cap.stdout, cap.stdout + cap.stderr
    missing = run("iscsi-readcapacity16", targets.url(t, lun=2))
    assert missing.returncode != 0


def test_read_capacity_follows_the_file_size(targets: Targets, tmp_path: Path) -> None:
    path = make_image(tmp_path / "grow.img", 5 << 20)
    t = targets.add("grow", luns=[WireLun(path)])
    first = run("iscsi-readcapacity16", targets.url(t))
    assert first.returncode == 0, first.stderr
    assert f"Total size:{5 << 20}" in first.stdout
    assert f"RETURNED LOGICAL BLOCK ADDRESS:{(5 << 20) // 512 - 1}" in first.stdout
    os.truncate(path, 9 << 20)
    second = run("iscsi-readcapacity16", targets.url(t))
    assert f"Total size:{9 << 20}" in second.stdout


@needs_qemu_io
def test_written_pattern_reads_back_and_lands_in_the_file(targets: Targets, tmp_path: Path) -> None:
    path = make_image(tmp_path / "rw.img", 8 << 20)
    t = targets.add("rw", luns=[WireLun(path)])
    url = targets.url(t)
    # 1 MiB crosses several R2T bursts; 300 KiB at an odd offset exercises immediate + unsolicited data.
    out = run(
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0xab 4096 1M",
        "-c",
        "write -P 0x5c 3000k 300k",
        "-c",
        "read -P 0xab 4096 1M",
        "-c",
        "read -P 0x5c 3000k 300k",
        "-c",
        "read -P 0 0 4096",
        url,
    )
    assert out.returncode == 0, out.stderr
    assert "Pattern verification failed" not in out.stdout + out.stderr
    with open(path, "rb") as f:
        data = f.read()
    assert data[4096 : 4096 + (1 << 20)] == b"\xab" * (1 << 20)
    assert data[3000 * 1024 : 3300 * 1024] == b"\x5c" * (300 * 1024)
    assert data[:4096] == bytes(4096)
    # A wrong expectation must be detected, or the checks above prove nothing.
    bad = run("qemu-io", "-f", "raw", "-c", "read -P 0xac 4096 4096", url)
    assert "Pattern verification failed" in bad.stdout + bad.stderr


@needs_qemu_io
def test_read_only_lun_refuses_writes(targets: Targets, tmp_path: Path) -> None:
    path = make_image(tmp_path / "ro.img", 4 << 20)
    t = targets.add("ro", luns=[WireLun(path, read_only=True)])
    out = run("qemu-io", "-f", "raw", "-c", "write -P 0xee 0 4096", targets.url(t))
    assert "write failed" in (out.stdout + out.stderr).lower() or out.returncode != 0
    with open(path, "rb") as f:
        assert f.read(4096) == bytes(4096)
    # libiscsi's own read-only checks: WP bit in MODE SENSE and DATA PROTECT for every write command.
    cu = run("iscsi-test-cu", "--dataloss", "--test=SCSI.ReadOnly", targets.url(t), timeout=60)
    assert "Logical unit is not write-protected" not in cu.stdout
    assert "FAILED" not in cu.stdout and "tests      1      1      1      0" in cu.stdout, cu.stdout


def test_chap_oneway(targets: Targets) -> None:
    t = targets.add(
        "chap",
        auth_method="CHAP",
        initiator_credentials=[("alice", "alice-secret-1"), ("bob", "bob-secret-22")],
    )
    ok = run("iscsi-inq", targets.url(t, cred="bob%bob-secret-22"))
    assert ok.returncode == 0, ok.stderr
    wrong = run("iscsi-inq", targets.url(t, cred="bob%alice-secret-1"))
    assert wrong.returncode != 0 and "Authentication failure(513)" in wrong.stderr
    none = run("iscsi-inq", targets.url(t))
    assert none.returncode != 0 and "Authentication failure(513)" in none.stderr


def test_none_or_chap_accepts_both(targets: Targets) -> None:
    t = targets.add("either", auth_method="None,CHAP", initiator_credentials=[("carol", "carol-secret-1")])
    assert run("iscsi-inq", targets.url(t)).returncode == 0
    assert run("iscsi-inq", targets.url(t, cred="carol%carol-secret-1")).returncode == 0
    bad = run("iscsi-inq", targets.url(t, cred="carol%nope-nope-nope"))
    assert "Authentication failure(513)" in bad.stderr


def test_mutual_chap(targets: Targets) -> None:
    t = targets.add(
        "mutual",
        auth_method="CHAP",
        chap_policy="Mutual",
        initiator_credentials=[("ini", "ini-secret-123")],
        target_credential=("tgt", "tgt-secret-456"),
    )
    base = targets.url(t, cred="ini%ini-secret-123")
    ok = run("iscsi-inq", base + "?target_user=tgt&target_password=tgt-secret-456")
    assert ok.returncode == 0, ok.stderr
    # The initiator detects a target that does not know the right secret.
    impostor = run("iscsi-inq", base + "?target_user=tgt&target_password=not-the-secret")
    assert impostor.returncode != 0 and "Invalid CHAP_R response from the target" in impostor.stderr
    # Policy Mutual: an initiator that does not challenge the target is refused.
    oneway = run("iscsi-inq", base)
    assert oneway.returncode != 0 and "Authentication failure(513)" in oneway.stderr


def test_acl_refusal_is_an_authorization_failure(targets: Targets) -> None:
    t = targets.add("acl2", acl=["iqn.2024-01.org.example:host-a"])
    ok = run("iscsi-inq", "-i", "iqn.2024-01.org.example:host-a", targets.url(t))
    assert ok.returncode == 0, ok.stderr
    refused = run("iscsi-inq", "-i", "iqn.2024-01.org.example:host-b", targets.url(t))
    assert refused.returncode != 0 and "Authorization failure(514)" in refused.stderr


def test_unknown_target_is_not_found(targets: Targets, port: int) -> None:
    targets.add("present")  # so that the portal listens
    out = run("iscsi-inq", f"iscsi://127.0.0.1:{port}/iqn.2024-01.org.example:nobody/0")
    assert out.returncode != 0 and "Target not found(515)" in out.stderr


def test_ipv6_portal(targets: Targets) -> None:
    t = targets.add("v6", portals=[("::1", targets.port)])
    out = run("iscsi-readcapacity16", targets.url(t, host="::1"))
    assert out.returncode == 0, out.stderr
    assert f"Total size:{8 << 20}" in out.stdout
    # Not served on the IPv4 portal: a target is only reachable where it is published.
    v4 = run("iscsi-inq", targets.url(t))
    assert v4.returncode != 0


def _established(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


@needs_qemu_io
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not installed")
def test_withdraw_drops_sessions_and_refuses_logins(
    service: WireService, targets: Targets, tmp_path: Path
) -> None:
    t = targets.add("gone", portals=[("127.0.0.1", targets.port)])
    keep = targets.add("keep", portals=[("127.0.0.1", targets.port)])
    # An interactive qemu-io holds a session open until its stdin closes.
    proc = subprocess.Popen(
        ["qemu-io", "-f", "raw", targets.url(t)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while _established(targets.port) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _established(targets.port) >= 1
        service.withdraw(t.iqn)
        deadline = time.monotonic() + 10
        while _established(targets.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _established(targets.port) == 0, "session of a withdrawn target survived"
    finally:
        proc.kill()
        proc.wait()
    assert t.iqn not in service.served() and keep.iqn in service.served()
    assert not target_file(service.run_dir, t.iqn).exists()
    out = run("iscsi-inq", targets.url(t))
    assert out.returncode != 0 and "Target not found(515)" in out.stderr
    assert run("iscsi-inq", targets.url(keep)).returncode == 0  # the shared portal still serves the other
    service.withdraw(t.iqn)  # absent: quiet


def test_unbindable_portal_is_skipped(targets: Targets, port: int) -> None:
    t = targets.add("multi", portals=[("192.0.2.77", 3260), ("127.0.0.1", port)])  # TEST-NET-1: not local
    assert run("iscsi-inq", targets.url(t)).returncode == 0
    listing = run("iscsi-ls", f"iscsi://127.0.0.1:{port}/").stdout
    assert f"Target:{t.iqn} Portal:127.0.0.1:{port},1" in listing
    assert "192.0.2.77" not in listing  # only portals that really listen are advertised


def test_secrets_never_reach_the_log_and_target_files_are_private(
    service: WireService, targets: Targets
) -> None:
    secret = "never-log-this-7f3a"
    t = targets.add("secret", auth_method="CHAP", initiator_credentials=[("dave", secret)])
    run("iscsi-inq", targets.url(t, cred=f"dave%{secret}x"))
    run("iscsi-inq", targets.url(t, cred=f"dave%{secret}"))
    log = (service.run_dir / "wire.log").read_text()
    assert "CHAP failed for user 'dave'" in log  # the failure is logged...
    assert secret not in log  # ...without the secret
    mode = stat.S_IMODE(os.stat(target_file(service.run_dir, t.iqn)).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(service.run_dir).st_mode) == 0o700
