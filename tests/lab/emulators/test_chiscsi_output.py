"""What ``iscsictl -c`` prints, byte for byte, and where the ``ALL`` listing is cut.

Layouts: private/klib/common/iscsi_node.c 875-950 and
private/klib/target/config_api.c 14-134 (kernel side), private/ulib/
iscsictl_cmd.c 1036-1134 (user side: each reply printed with one more newline).
The cut: iscsi_node.c 124-150 with the 128 KiB buffer of
user/common/iscsictl_private.h 8.
"""

from __future__ import annotations

from pathlib import Path

from .chiscsi_support import Host, iqn, seed_file_targets

IDS = "PROD=CHISCSI Target,SN=0N0743000000000,ID=0D074300000000000000000,WWN=:W00743000000000"


def summary(name: str, tid: int, port: int, disk: Path) -> str:
    return (
        f"\nTARGET: {name}, id={tid}, login_ip=0\n\tPortalGroup=1@127.0.0.1:{port},timeout=0\n"
        f"\tTargetDevice={disk},FILE,{IDS}\n\n"
    )


def test_all_listing_is_the_summary_layout(host: Host) -> None:
    assert host.start(1).code == 0
    assert host.start(2).code == 0
    res = host.run("-c", "target=ALL")
    assert res.code == 0 and res.err == ""
    assert res.out == (
        summary(iqn(1), 1, host.port, host.disk("disk-1"))
        + summary(iqn(2), 3, host.port, host.disk("disk-2"))
    )


def test_empty_listing_prints_nothing(host: Host) -> None:
    assert host.run("-c", "target=ALL") == host.run("-c", "target=ALL")
    res = host.run("-c", "target=ALL")
    assert (res.code, res.out, res.err) == (0, "", "")


def test_named_target_is_the_detailed_layout_without_id(host: Host) -> None:
    chap = '\tAuthMethod=CHAP\n\tAuth_CHAP_Initiator="user1":"secretsecret1"\n'
    assert host.start(1, extra=chap).code == 0
    res = host.run("-c", f"target={iqn(1)}")
    disk = host.disk("disk-1")
    assert res.code == 0 and res.err == ""
    assert res.out == (
        f"\ntarget:\n\tTargetName={iqn(1)}\n\tErrorRecoveryLevel=0\n\tInitialR2T=Yes\n\tImmediateData=Yes\n"
        "\tDataPDUInOrder=Yes\n\tDataSequenceInOrder=Yes\n\tMaxConnections=1\n\tMaxOutstandingR2T=1\n"
        "\tFirstBurstLength=65536\n\tMaxBurstLength=262144\n\tDefaultTime2Wait=2\n\tDefaultTime2Retain=20\n"
        "\tHeaderDigest=None\n\tDataDigest=None\n\tMaxRecvDataSegmentLength=8192\n\tAuthMethod=CHAP\n"
        "\tAuth_CHAP_Policy=Oneway\n\tAuth_CHAP_ChallengeLength=16\n\tACL_Enable=No\n\tRegisteriSNS=Yes\n"
        "\tShadowMode=No\n\tTargetSessionMaxCmd=128\n"
        '\tAuth_CHAP_Initiator="user1":"********"\n'
        f"\tPortalGroup=1@127.0.0.1:{host.port},timeout=0\n\tTargetDevice={disk},FILE,{IDS}\n\n"
    )
    assert "TARGET:" not in res.out and "id=" not in res.out
    assert "secretsecret1" not in res.out


def test_acl_and_target_secret_lines_in_the_detailed_layout(host: Host) -> None:
    extra = (
        "\tACL_Enable=Yes\n\tACL=iname=iqn.1993-08.org.debian:01:a,iqn.1993-08.org.debian:01:b;lun=ALL:R\n"
        '\tAuth_CHAP_Policy=Mutual\n\tAuth_CHAP_Target="tgt":"targetsecret99"\n'
        '\tAuth_CHAP_Initiator="ini":"initsecret123"\n'
    )
    assert host.start(1, extra=extra).code == 0
    out = host.run("-c", f"target={iqn(1)}").out
    assert (
        "\tTargetSessionMaxCmd=128\n"
        "\tACL=iname=iqn.1993-08.org.debian:01:a,iqn.1993-08.org.debian:01:b;lun=ALL:R\n"
        '\tAuth_CHAP_Target="tgt":"********"\n\tAuth_CHAP_Initiator="ini":"********"\n'
        "\tPortalGroup="
    ) in out


def test_missing_target_is_not_found_on_stdout_exit_255(host: Host) -> None:
    res = host.run("-c", f"target={iqn(9)}")
    assert (res.code, res.out, res.err) == (255, f"target {iqn(9)} NOT found.\n\n", "")


def test_several_names_print_in_order_and_the_last_decides_the_exit(host: Host) -> None:
    assert host.start(1).code == 0
    res = host.run("-c", f"target={iqn(9)},{iqn(1)}")
    assert res.code == 0
    assert res.out.startswith(f"target {iqn(9)} NOT found.\n\n\ntarget:\n\tTargetName={iqn(1)}\n")
    res = host.run("-c", f"target={iqn(1)}", f"target={iqn(9)}")
    assert res.code == 255 and res.out.endswith(f"target {iqn(9)} NOT found.\n\n")


def test_bare_c_prints_statistics_then_the_listing(host: Host) -> None:
    assert host.start(1).code == 0
    res = host.run("-c")
    assert res.code == 0
    assert res.out == (
        "sess=0 conn=0 sbuf_rx=0 sbuf_tx=0 mem=0 mempg=0 gl=0 \n"
        + summary(iqn(1), 1, host.port, host.disk("disk-1"))
    )


def test_short_last_name_merges_with_the_one_before(host: Host) -> None:
    """The split scans only the first strlen-7 bytes of "target=..." (iscsictl_cmd.c 1105-1121)."""
    assert host.start(1).code == 0
    short = host.block(
        "short",
        f"\tTargetName=all1\n\tTargetDevice={host.disk('s')},FILE\n\tPortalGroup=1@127.0.0.1:{host.port}\n",
    )
    assert host.run("-S", "target=all1", "-f", str(short)).code == 0
    res = host.run("-c", "target=ALL")
    assert (res.code, res.out) == (255, f"target {iqn(1)},all1 NOT found.\n\n")


def test_all_listing_is_cut_at_128_kib_of_names(host: Host) -> None:
    """1,900 Cinder-style IQNs: 1,872 fit in "target=n1,n2,..." below 131,072 bytes."""
    names = [f"{iqn('')}{i:08d}-0000-4000-8000-{i:012d}" for i in range(1900)]
    assert len(names[0]) == 69
    seed_file_targets(host.state, names, host.port, str(host.files / "d"))
    text = "target=" + ",".join(names)
    cut = text[:131071]  # iscsi_node.c 142-147: len = buflen - 1
    assert cut[-1] != ","
    fitting = cut[7:].split(",")
    assert len(fitting) == 1873 and fitting[-1] not in names  # 1,872 names and a truncated one
    res = host.run("-c", "target=ALL")
    listed = [line.split()[1].rstrip(",") for line in res.out.splitlines() if line.startswith("TARGET: ")]
    assert listed == names[:1872]
    assert res.out.endswith(f"target {fitting[-1]} NOT found.\n\n")
    assert res.code == 255 and res.err == ""
    # past the cut the targets are live all the same, and a named query finds them
    assert host.run("-c", f"target={names[1899]}").code == 0


def test_cut_on_a_name_boundary_is_silent(host: Host) -> None:
    """Names sized so that the 131,071st byte is a comma: the last name is dropped whole."""
    # Entry k (name of n characters, then a comma) ends at byte 7 + (k+1)(n+1) - 1, so the
    # byte at 131070 is a comma when (n+1) divides 131064; then the text ends after name k.
    length = 131071 - 7
    n = next(n for n in range(150, 224) if length % (n + 1) == 0)
    count = length // (n + 1) + 5
    names = [("iqn.2010-10.org.example:" + f"{i:06d}" + "x" * n)[:n] for i in range(count)]
    assert len(set(names)) == count
    seed_file_targets(host.state, names, host.port, str(host.files / "d"))
    res = host.run("-c", "target=ALL")
    listed = [line.split()[1].rstrip(",") for line in res.out.splitlines() if line.startswith("TARGET: ")]
    assert listed == names[: length // (n + 1)]
    assert (res.code, res.err) == (0, "")
    assert "NOT found" not in res.out
