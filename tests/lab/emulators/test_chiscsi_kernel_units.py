"""The emulated kernel's parsers on their own: C number parsing, addresses, identifiers, ACLs, portals."""

from __future__ import annotations

import pytest

from iscsi_helper.lab.emulators.chiscsi.kernel import acl, addr, portals
from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError
from iscsi_helper.lab.emulators.chiscsi.kernel.keys import decode_range, text_to_pairs
from iscsi_helper.lab.emulators.chiscsi.kernel.luns import generate_string, parse_lun


@pytest.mark.parametrize(
    ("text", "base", "expected"),
    [
        ("3260", 10, (3260, 4)),
        ("3260x", 10, (3260, 4)),
        ("", 10, (0, 0)),
        (" 1", 10, (0, 0)),
        ("-1", 10, (0, 0)),
        ("010", 0, (8, 3)),
        ("08", 0, (0, 1)),
        ("0x1f", 0, (31, 4)),
        ("0x", 0, (0, 1)),
        ("0x1f", 16, (31, 4)),
        ("18446744073709551617", 10, (1, 20)),
    ],
)
def test_simple_strtoul_is_linuxs(text: str, base: int, expected: tuple[int, int]) -> None:
    assert simple_strtoul(text, base) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("10.9.8.7", "10.9.8.7"),
        ("010.0.0.1", "8.0.0.1"),
        ("256.1.1.1", "0.1.1.1"),
        ("1.2.3.4;", "1.2.3.4"),
    ],
)
def test_ipv4_parts_are_or_ed_without_range_checks(text: str, shown: str) -> None:
    assert addr.format_ip(addr.string_to_ipv4(text, Ebuf())) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0.0.0", "ERR! 0.0.0.0: all zero IP address.\n"),
        ("1.2.3", "ERR! 1.2.3: invalid IP address format.\n"),
        ("1..2.3", "ERR! 1..2.3: invalid IP address format.\n"),
        ("host.example.com", "ERR! host.example.com: invalid IP address format.\n"),
    ],
)
def test_ipv4_refusals(text: str, message: str) -> None:
    ebuf = Ebuf()
    with pytest.raises(KernelError):
        addr.string_to_ipv4(text, ebuf)
    assert ebuf.text == message


def test_ipv6_printed_in_full_and_scope_refused() -> None:
    assert (
        addr.format_endpoint(addr.string_to_ipv6("[fd00::1]", Ebuf()), 3260)
        == "[fd00:0000:0000:0000:0000:0000:0000:0001]:3260"
    )
    with pytest.raises(KernelError):
        addr.string_to_ipv6("fe80::1%eth0", Ebuf())


def test_generated_identifiers_match_cinders_fixture() -> None:
    """Cinder's CxtAdm test fixture (a real listing) shows these for LUN 0 and no alias."""
    lun = parse_lun("/dev/vg/volume-1", 0, "", Ebuf())
    assert (lun.lclass, lun.sn, lun.scsi_id, lun.wwn) == (
        "BLK",
        "0N0743000000000",
        "0D074300000000000000000",
        ":W00743000000000",
    )
    assert lun.prod == "CHISCSI Target"


def test_generated_identifiers_xor_the_alias() -> None:
    assert generate_string("vol7", None, 22) == "074341030341410303416"
    lun = parse_lun("/x,FILE", 12, "", Ebuf())
    assert (lun.sn, lun.wwn) == ("12N0743000000000", ":W1207430000000")


def test_long_serial_runs_into_the_next_field() -> None:
    """SN= is copied with an unbounded strcpy into scsi_sn[17], which the WWN field follows."""
    lun = parse_lun("/x,FILE,SN=0123456789ABCDEFGHIJ", 0, "", Ebuf())
    assert lun.sn == "0123456789ABCDEFGHIJ"
    assert lun.wwn == "HIJ"  # the WWN field holds the overflow, so no WWN is generated


def test_option_class_is_taken_once() -> None:
    ebuf = Ebuf()
    with pytest.raises(KernelError):
        parse_lun("/x,FILE,BLK", 0, "", ebuf)
    assert ebuf.text == "/x: Unknown options for FILE luns.\n"


def test_number_ranges() -> None:
    assert decode_range("1~65535", Ebuf()) == [1, 65535]
    ebuf = Ebuf()
    with pytest.raises(KernelError):
        decode_range("9~3", ebuf)
    assert ebuf.text == "INVALID Range 3 < 9.\n"


def test_pairs_group_keys_in_first_appearance_order() -> None:
    pairs = text_to_pairs([("B", "1"), ("A", "2"), ("B", "")], Ebuf())
    assert [(p.key, p.values, p.empty) for p in pairs] == [("B", ["1", ""], True), ("A", ["2"], False)]


def test_acl_rw_flags_accumulate_across_entries() -> None:
    """``r`` and ``w`` are never reset between list items (iscsi_config_keys.c 412-500)."""
    ebuf = Ebuf()
    with pytest.raises(KernelError):
        acl.decode_acl("iname=iqn.x.y;lun=ALL:R,ALL:W", ebuf)
    assert ebuf.text.startswith("ERR! ACL, overlapping lun rw")
    assert acl.decode_acl("iname=iqn.x.y;lun=ALL:W", Ebuf()).lun_flag == acl.FLAG_ALLW


def test_portal_display_groups_and_redirect_marker() -> None:
    values = portals.decode_portalgroup("7@10.0.0.1:3260,10.0.0.2,timeout=9", Ebuf())
    assert [(addr.format_endpoint(v.ip, v.port), v.tag, v.timeout) for v in values] == [
        ("10.0.0.1:3260", 7, 9),
        ("10.0.0.2:3260", 7, 9),
    ]
    listed = [portals.TargetPortal(v.ip, v.port, v.tag, v.timeout, True) for v in values]
    assert portals.display(listed) == "\tPortalGroup=7@10.0.0.1:3260,10.0.0.2:3260,timeout=9\n"


def test_bracketed_ipv6_needs_a_port() -> None:
    """Without ':port' the closing bracket is read as the next address (iscsi_keys_common.c 358-371)."""
    ebuf = Ebuf()
    with pytest.raises(KernelError):
        portals.decode_portalgroup("1@[fd00::1]", ebuf)
    assert ebuf.text == "ERR! ]: invalid IP address format.\n"
    unbracketed = portals.decode_portalgroup("1@fd00::1", Ebuf())
    assert unbracketed[0].port == 3260
