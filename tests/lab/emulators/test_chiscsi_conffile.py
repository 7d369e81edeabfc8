"""How iscsictl reads the ``-f`` file (private/ulib/iscsictl_cmd.c 473-700), and Chelsio's sample file.

The sample is src/chiscsi/example/chiscsi.conf of the product: its key lines
are reproduced verbatim below, its comments in our own words but in the same
places and shapes (tab-indented, after a space and a tab, inside blocks).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi import conffile

from .chiscsi_support import Host, iqn

SAMPLE = """#
# example configuration with one target
#\x20


# driver settings
global:
# a comment at the start of a line
\t# and one after a tab
        iscsi_auth_order=CHAP

\t# discovery sessions
\tDISC_AuthMethod=None

\t# policy
\tDISC_Auth_CHAP_Policy=Oneway

\t# Auth_CHAP_ChallengeLength=16
\t# ids and secrets in double quotes,
\t# separated by :
\tDISC_Auth_CHAP_Initiator="initiator_id1":"initiator_sec1"
\t# for mutual CHAP
\tDISC_Auth_CHAP_Target="target_id1":"target_secret1"

# another commented-out setting
#       iscsi_target_vendor_id=Chelsio


# one target block
target:
\tTargetName=iqn.2004-05.com.chelsio.target
\tTargetAlias=chiscsit1
\tMaxRecvDataSegmentLength=8192
\tHeaderDigest=None,CRC32C
\tDataDigest=None,CRC32C
\tImmediateData=Yes
\tInitialR2T=Yes
\tMaxOutstandingR2T=1
\tMaxConnections=4
\t
\t# devices: one LUN per line,
\t# \tin order
 \t#\tthis comment line starts with a space
\t
\t# lun 0
\tTargetDevice=/dev/sdb,SYNC
\t
\t# lun 1
\tTargetDevice=ramdisk1,MEM
\t
\t# lun 2
\tTargetDevice=ramdisk2,MEM,NULLRW,size=16MB
\t
\t# portals
\tPortalGroup=1@192.168.1.1:3260
\tPortalGroup=2@192.168.1.2:3260

\t#
\t#ACL_Enable=Yes
\t#ACL=iname=iqn.2004-08.com.chelsio.test1
\t#ACL=dip=192.0.2.50;lun=ALL:R

\t# authentication
\tAuthMethod=None
\tAuth_CHAP_Policy=Oneway
\t#Auth_CHAP_ChallengeLength=16
\tAuth_CHAP_Target="target_id1":"target_secret1"
\tAuth_CHAP_Initiator="initiator_id1":"initiator_sec1"
\tAuth_CHAP_Initiator="initiator_id2":"initiator_sec2"
"""
SAMPLE_TARGET = "iqn.2004-05.com.chelsio.target"


def _listens(ip: str) -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def test_sample_as_x_is_ignored(host: Host) -> None:
    sample = host.file("chiscsi.conf", SAMPLE)
    res = host.run("-S", f"target={iqn(1)}", "-f", str(host.simple(1)), "-x", str(sample))
    assert (res.code, res.err) == (0, f"target {iqn(1)} added.\n")


def test_sample_verbatim_is_read_and_fails_only_on_this_hosts_devices_and_addresses(host: Host) -> None:
    if _listens("192.168.1.1") or _listens("192.168.1.2"):
        pytest.skip("this host has the sample's addresses")
    sample = host.file("chiscsi.conf", SAMPLE)
    res = host.run("-S", "target=ALL", "-f", str(sample))
    assert (res.code, res.err) == (
        255,
        "failed to start 192.168.1.1:3260.\nfailed to start 192.168.1.2:3260.\n"
        f"{SAMPLE_TARGET}: No valid portal started!\n"
        f"ERROR: Failed to start target {SAMPLE_TARGET}!\n",
    )
    # its global block was applied first
    shown = host.run("-g").out
    assert '\tDISC_Auth_CHAP_Initiator="initiator_id1":"initiator_sec1"\n' in shown


def test_sample_is_accepted_with_this_hosts_device_and_addresses(host: Host, loop_device: Path) -> None:
    text = (
        SAMPLE.replace("/dev/sdb", str(loop_device))
        .replace("192.168.1.1:3260", f"127.0.0.1:{host.port}")
        .replace("192.168.1.2:3260", f"127.0.0.2:{host.port}")
    )
    sample = host.file("chiscsi.conf", text)
    res = host.run("-S", f"target={SAMPLE_TARGET}", "-f", str(sample))
    assert (res.code, res.err) == (0, f"target {SAMPLE_TARGET} added.\n")
    out = host.run("-c", f"target={SAMPLE_TARGET}").out
    for line in (
        "\tTargetAlias=chiscsit1\n",
        "\tMaxConnections=4\n",
        "\tHeaderDigest=None,CRC32C\n",
        "\tAuthMethod=None\n",
        f"\tPortalGroup=1@127.0.0.1:{host.port},timeout=0\n",
        f"\tTargetDevice={loop_device},BLK,SYNC,PROD=CHISCSI Target,",
        "\tTargetDevice=ramdisk1,MEM,PROD=CHISCSI Target,",
        "\tTargetDevice=ramdisk2,MEM,NULLRW,PROD=CHISCSI Target,",
    ):
        assert line in out
    assert "Auth_CHAP_" not in out  # AuthMethod=None: CHAP is off, its credentials not shown


# ---- the reader ---------------------------------------------------------------


def test_last_hash_starts_the_comment() -> None:
    conf = conffile.parse("target:\n\tTargetName=iqn.a:b # one # two\n", "f")
    assert conf.blocks[0].entries == [("TargetName", "iqn.a:b # one")]


def test_block_names_are_case_blind_and_only_three() -> None:
    conf = conffile.parse("TARGET:\nTargetName=iqn.x:y\nDefault:\nanything=goes\nGLOBAL:\n", "f")
    assert [b.type for b in conf.blocks] == ["target", "default", "global"]
    conf = conffile.parse("initiator:\n", "f")
    assert (conf.error, conf.messages) == (
        True,
        "f, line 1, invalid format.\nERROR: f, no valid block is found.\n",
    )


def test_key_before_any_block_and_line_without_equals() -> None:
    assert conffile.parse("TargetName=x\n", "f").messages == (
        "f, line 1, invalid format.\nERROR: f, no valid block is found.\n"
    )
    conf = conffile.parse("target:\n  TargetName iqn.x\n", "f")
    assert (conf.error, conf.messages) == (True, 'f, line 2: "TargetName iqn.x" invalid format!\n')


def test_value_keeps_spaces_after_equals_key_loses_them_before() -> None:
    conf = conffile.parse("target:\nTargetName   =  iqn.x:y  \n", "f")
    assert conf.blocks[0].entries == [("TargetName", "  iqn.x:y")]
    assert conf.blocks[0].name == "  iqn.x:y"


def test_name_is_lower_cased_duplicates_refused() -> None:
    conf = conffile.parse("target:\nTargetName=IQN.X:Y\n", "f")
    assert conf.blocks[0].name == "iqn.x:y"
    conf = conffile.parse("target:\nTargetName=iqn.x:a\nTargetName=iqn.x:b\n", "f")
    assert (conf.error, conf.messages) == (True, "line 3: duplicate declaration.\n")


def test_nameless_target_block_refused_only_when_another_follows() -> None:
    conf = conffile.parse("target:\nTargetDevice=/x\ntarget:\nTargetName=iqn.x:y\n", "f")
    assert (conf.error, conf.messages) == (True, "f line 3, missing TargetName.\n")
    conf = conffile.parse("target:\nTargetName=iqn.x:y\ntarget:\nTargetDevice=/x\n", "f")
    assert not conf.error and conf.blocks[1].name is None


def test_lines_longer_than_1023_bytes_are_split() -> None:
    long_value = "a" * 1100
    conf = conffile.parse(f"target:\nTargetName=iqn.x:y\nTargetAlias={long_value}\n", "f")
    # the tail of the line is read as a line of its own, and has no '='
    assert conf.error and conf.messages.startswith("f, line 4: ")


def test_empty_file_has_no_block(host: Host) -> None:
    empty = host.file("empty.conf", "# nothing\n\n")
    res = host.run("-S", f"target={iqn(1)}", "-f", str(empty))
    assert (res.code, res.err) == (
        237,
        f"ERROR: {empty}, no valid block is found.\n"
        f"ERROR: target name {iqn(1)} NOT found.\n"
        f"ERROR: Failed to find target {iqn(1)}!\n",
    )
    assert host.run("-S", "target=ALL", "-f", str(empty)).code == 0


def test_sibling_blocks_are_not_validated(host: Host) -> None:
    path = host.file(
        "two",
        host.simple(1).read_text()
        + "target:\n\tTargetName=iqn.2010-10.org.openstack:broken\n\tNoSuchKey=1\n",
    )
    assert host.run("-S", f"target={iqn(1)}", "-f", str(path)).err == f"target {iqn(1)} added.\n"


def test_all_starts_every_target_block_and_reports_the_last(host: Host) -> None:
    path = host.file(
        "two",
        host.simple(1).read_text()
        + "target:\n\tTargetName=iqn.2010-10.org.openstack:broken\n\tNoSuchKey=1\n",
    )
    res = host.run("-S", "target=ALL", "-f", str(path))
    assert res.code == 255
    assert res.err == (
        f"target {iqn(1)} added.\n"
        "unrecognized key NoSuchKey.\nERROR: Failed to start target iqn.2010-10.org.openstack:broken!\n"
    )
    path = host.file("nameless", host.simple(2).read_text() + "target:\n\tTargetDevice=/x\n")
    res = host.run("-S", "target=ALL", "-f", str(path))
    assert res.err.endswith("ERROR: Missing target name\n") and res.code == 255


def test_a_comment_cuts_a_quoted_secret(host: Host) -> None:
    body = '\tAuthMethod=CHAP\n\tAuth_CHAP_Initiator="user":"secret#secret1"\n'
    res = host.start(1, extra=body)
    assert res.err == f"ERR! chap secret missing 2nd double quote.\nERROR: Failed to start target {iqn(1)}!\n"
