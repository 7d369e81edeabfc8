"""The chiscsi target block without iscsictl: what we write reads back, and what chiscsi would
refuse is refused by name before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.exception import InvalidInput, PersistenceError
from iscsi_helper.formats import ChapCredentials, Portal
from iscsi_helper.model import ExportSpec

IQN = "iqn.2010-10.org.openstack:volume-1"
CHAP = ChapCredentials("initiatoruser", "secret-of-16-chr")
TARGET_CHAP = ChapCredentials("targetuser", "other-secret-16c")
INITIATORS = ("iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b")


def spec(**changes: object) -> ExportSpec:
    values: dict[str, object] = dict(
        volume_id="1",
        volume_name="volume-1",
        iqn=IQN,
        device_path="/dev/vg/volume-1",
        lun=0,
        portals=(Portal("10.0.0.1", 3260), Portal("fd00::1", 3260)),
        chap=CHAP,
        target_chap=None,
        initiators=(),
    )
    values.update(changes)
    return ExportSpec(**values)  # type: ignore[arg-type]


def parse(text: str) -> codec.TargetBlock:
    return codec.parse(text, Path("/v/cxt/volume-1"), "volume-1", "1", 0)


def test_the_block_is_cxtadm_layout_with_class_serial_and_no_acl_gate_without_initiators():
    assert codec.render(spec(), codec.BLK, "0123456789abcdef") == (
        "# Export record written by iscsi-helper; loaded with iscsictl -S.\n"
        "# iscsi-helper volume_id=1\n"
        "target:\n"
        f"\tTargetName={IQN}\n"
        "\tTargetDevice=/dev/vg/volume-1,BLK,SN=0123456789abcdef\n"
        "\tPortalGroup=1@10.0.0.1:3260,[fd00::1]:3260\n"
        "\tAuthMethod=CHAP\n"
        "\tAuth_CHAP_Policy=Oneway\n"
        '\tAuth_CHAP_Initiator="initiatoruser":"secret-of-16-chr"\n'
    )


def test_initiators_are_written_behind_acl_enable_yes():
    text = codec.render(spec(initiators=INITIATORS, target_chap=TARGET_CHAP), codec.FILE, "s")
    assert text.endswith(
        "\tAuth_CHAP_Policy=Mutual\n"
        '\tAuth_CHAP_Initiator="initiatoruser":"secret-of-16-chr"\n'
        '\tAuth_CHAP_Target="targetuser":"other-secret-16c"\n'
        "\tACL_Enable=Yes\n"
        f"\tACL=iname={INITIATORS[0]}\n"
        f"\tACL=iname={INITIATORS[1]}\n"
    )


@pytest.mark.parametrize(
    "changes", [{}, {"initiators": INITIATORS}, {"target_chap": TARGET_CHAP}, {"chap": None}]
)
def test_what_is_written_reads_back_the_same(changes):
    written = spec(**changes)
    block = parse(codec.render(written, codec.FILE, "s"))
    assert block.spec == written
    assert block.device_class == codec.FILE and block.acl_enabled is bool(written.initiators)


def test_a_cxtadm_block_reads_with_chiscsi_s_default_class_and_no_acl():
    block = parse(
        "\n              target:\n"
        f"                       TargetName={IQN}\n"
        "                       TargetDevice=/dev/vg/volume-1\n"
        "                       PortalGroup=1@10.0.0.1:3260\n"
        "                       AuthMethod=CHAP\n"
        "                       Auth_CHAP_Policy=Oneway\n"
        '                       Auth_CHAP_Initiator="u":"cxtsecret-1234"\n'
        "                 "
    )
    assert block.device_class == codec.BLK == codec.DEFAULT_CLASS
    assert not block.acl_enabled and block.spec.chap == ChapCredentials("u", "cxtsecret-1234")


@pytest.mark.parametrize(
    "line,why",
    [
        ("\tACL=sip=10.0.0.9", "ACL other than iname"),
        ("\tACL_Enable=maybe", "ACL_Enable"),
        ("\tShadowMode=Yes", "unexpected"),
        ('\tAuth_CHAP_Initiator="u":"secret#123456"', "'#'"),
        ("\tTargetName=iqn.2010-10.org.openstack:Volume-2", "TargetName"),
    ],
)
def test_a_block_someone_else_edited_is_not_taken_for_ours(line, why):
    text = codec.render(spec(), codec.FILE, "s") + line + "\n"
    with pytest.raises(PersistenceError, match=why):
        parse(text)


@pytest.mark.parametrize(
    "changes,field,rule",
    [
        ({"chap": ChapCredentials("u", "seventeen-chars-x")}, r"CHAP secret \(initiator\)", "12 to 16"),
        ({"chap": ChapCredentials("u", "has#hash-1234")}, r"CHAP secret \(initiator\)", "comment"),
        ({"chap": ChapCredentials("user#1", "secret-of-16-chr")}, r"CHAP username", "comment"),
        ({"target_chap": ChapCredentials("t", "x" * 255)}, r"CHAP secret \(target\)", "12 to 16"),
        ({"target_chap": ChapCredentials("t", CHAP.password)}, r"CHAP secret \(target\)", "same secret"),
        ({"iqn": "eui.02004567A425678D"}, "target IQN", "lower-cases"),
        ({"portals": (Portal("0.0.0.0", 3260),)}, "portal address", "all-zero"),
        ({"portals": (Portal("10.0.0.1", 3260), Portal("::", 3260))}, "portal address", "all-zero"),
    ],
)
def test_values_chiscsi_refuses_are_refused_naming_the_rule(changes, field, rule):
    with pytest.raises(InvalidInput, match=field) as raised:
        codec.check_values(spec(**changes))
    assert rule in str(raised.value)
    assert "secret-of-16-chr" not in str(raised.value) and "has#hash" not in str(raised.value)


def test_values_chiscsi_takes_pass():
    codec.check_values(spec(target_chap=TARGET_CHAP, initiators=INITIATORS))
    codec.check_values(spec(chap=ChapCredentials("u", "x" * 12)))
    codec.check_values(spec(chap=ChapCredentials("u", "x" * 16)))


def test_generated_credentials_always_satisfy_chiscsi():
    for _ in range(200):
        codec.check_values(spec(chap=ChapCredentials.generate(), target_chap=ChapCredentials.generate()))


@pytest.mark.parametrize(
    "iotype,is_block,expected",
    [
        ("fileio", False, codec.FILE),
        ("fileio", True, codec.FILE),
        ("auto", False, codec.FILE),
        ("auto", True, codec.BLK),
        ("blockio", True, codec.BLK),
    ],
)
def test_the_device_class_follows_iscsi_iotype(iotype, is_block, expected):
    assert codec.device_class_for(iotype, is_block, "/d") == expected


def test_blockio_on_a_regular_file_is_refused_rather_than_written_as_blk():
    with pytest.raises(InvalidInput, match="BLK class, which takes block devices only"):
        codec.device_class_for("blockio", False, "/srv/disk.img")


def test_a_line_iscsictl_would_split_is_refused():
    long_path = "/srv/" + "d" * 1010
    with pytest.raises(InvalidInput, match="TargetDevice line"):
        codec.render(spec(device_path=long_path), codec.FILE, "s")
