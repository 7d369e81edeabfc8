"""The chiscsi configuration parser: accepts what the product documents, rejects the rest.

Each rejection must name file, line and problem, because the point of a
strict emulator is to tell a helper author exactly which write was wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi.confparse import ConfError, parse_file, parse_text

CHELSIO_EXAMPLE = """\
target:
    TargetName=iqn.2006-02.com.chelsio.diskarray.san1
    TargetDevice=/dev/sda
    PortalGroup=1@102.50.50.25:3260
    PortalGroup=2@102.60.60.25:3260
    AuthMethod=CHAP
    Auth_CHAP_Policy=Oneway
    Auth_CHAP_Initiator="remoteuser1":"remoteuser1_secret"
    Auth_CHAP_Initiator="remoteuser2":"remoteuser2_secret"
    Auth_CHAP_Target="targetid1":"target1_secret"
    ACL=iname=iqn.2006-02.com.chelsio.san1
"""

# Cinder's CxtAdm block, byte for byte (leading blank line, deep indent, a
# whitespace-only last line).
CXT_CHAP = (
    "\n"
    "              target:\n"
    "                       TargetName=iqn.2010-10.org.openstack:volume-1\n"
    "                       TargetDevice=/dev/vg/volume-1\n"
    "                       PortalGroup=1@10.9.8.7:3260\n"
    "                       AuthMethod=CHAP\n"
    "                       Auth_CHAP_Policy=Oneway\n"
    '                       Auth_CHAP_Initiator="user1":"secret1"\n'
    "                 \n"
)
CXT_PLAIN = (
    "\n"
    "              target:\n"
    "                       TargetName=iqn.2010-10.org.openstack:volume-1\n"
    "                       TargetDevice=/dev/vg/volume-1\n"
    "                       PortalGroup=1@10.9.8.7:3260\n"
    "                 \n"
)

GOOD = """target:
TargetName=iqn.2010-10.org.openstack:volume-x
TargetDevice=/d/x
PortalGroup=1@10.0.0.1:3260
"""


def test_chelsio_documented_example_is_accepted() -> None:
    conf = parse_text(CHELSIO_EXAMPLE, "chiscsi.conf")
    (target,) = conf.targets
    assert target.name == "iqn.2006-02.com.chelsio.diskarray.san1"
    assert [d.path for d in target.devices] == ["/dev/sda"]
    assert target.devices[0].mode == "FILE"  # documented default
    assert [(g.tag, str(g.portals[0])) for g in target.portal_groups] == [
        (1, "102.50.50.25:3260"), (2, "102.60.60.25:3260")]
    assert target.auth_method == "CHAP" and target.chap_policy == "Oneway"
    assert [(c.user, c.secret) for c in target.chap_initiators] == [
        ("remoteuser1", "remoteuser1_secret"), ("remoteuser2", "remoteuser2_secret")]
    assert target.chap_target is not None and target.chap_target.secret == "target1_secret"
    assert [a.iname for a in target.acls] == ["iqn.2006-02.com.chelsio.san1"]


@pytest.mark.parametrize("text", [CXT_CHAP, CXT_PLAIN], ids=["chap", "no-chap"])
def test_cinder_cxtadm_block_is_accepted_verbatim(text: str) -> None:
    (target,) = parse_text(text, "volume-1").targets
    assert target.name == "iqn.2010-10.org.openstack:volume-1"
    assert target.line == 2
    assert target.devices[0].path == "/dev/vg/volume-1"
    if "CHAP" in text:
        assert target.auth_method == "CHAP"
        assert [(c.user, c.secret) for c in target.chap_initiators] == [("user1", "secret1")]
    else:
        assert target.auth_method == "None,CHAP"  # documented default
        assert target.chap_initiators == ()


def test_secrets_never_in_repr() -> None:
    (target,) = parse_text(CXT_CHAP).targets
    assert "secret1" not in repr(target.chap_initiators)


def test_device_options_ipv6_acl_globals_and_comments() -> None:
    text = """# leading comment
global:
    iscsi_offload_mode=ULP   # trailing comment
target:
    TargetName=iqn.2010-10.org.openstack:volume-2
    TargetDevice=/d/a,BLK,RO,SN=ABCDEFGHIJKLMNOP,ID=123456789012345678901234,WWN=W1
    TargetDevice=/d/b,FILE,SYNC
    TargetDevice=ram0,MEM,size=64MB
    PortalGroup=7@[fd00::1]:3260,10.0.0.1:3261
    Auth_CHAP_Policy=Mutual
    Auth_CHAP_Initiator="u":"s#not-a-comment"
    Auth_CHAP_Target="t":"ts"
    Auth_CHAP_ChallengeLength=32
    ACL=iname=iqn.1994-05.com.redhat:abc;sip=10.0.0.5,[fd00::9];lun=0,2-3:R
    DataPDUInOrder=Yes
    MaxBurstLength=262144
"""
    conf = parse_text(text, "f")
    assert conf.globals == {"iscsi_offload_mode": "ULP"}
    (t,) = conf.targets
    a, b, ram = t.devices
    assert (a.mode, a.read_only, a.sn, a.id, a.wwn) == ("BLK", True, "ABCDEFGHIJKLMNOP",
                                                        "123456789012345678901234", "W1")
    assert (b.mode, b.sync) == ("FILE", True)
    assert (ram.mode, ram.size_mb) == ("MEM", 64)
    assert [str(p) for p in t.portal_groups[0].portals] == ["[fd00::1]:3260", "10.0.0.1:3261"]
    assert t.chap_initiators[0].secret == "s#not-a-comment"
    acl = t.acls[0]
    assert (acl.sip, acl.luns, acl.read_only) == (("10.0.0.5", "fd00::9"), (0, 2, 3), True)
    assert t.params == {"DataPDUInOrder": "Yes", "MaxBurstLength": "262144"}
    assert t.chap_challenge_length == 32


def test_two_targets_in_one_file() -> None:
    text = GOOD + GOOD.replace("volume-x", "volume-y")
    assert [t.name for t in parse_text(text).targets] == [
        "iqn.2010-10.org.openstack:volume-x", "iqn.2010-10.org.openstack:volume-y"]


BAD_CASES = [
    # (text, line, message fragment)
    ("TargetName=iqn.2010-10.org.openstack:v\n", 1, "outside a 'global:' or 'target:' block"),
    (GOOD + "Bogus=1\n", 5, "unknown key 'Bogus'"),
    ("target:\nTargetDevice=/d/x\nPortalGroup=1@10.0.0.1:3260\n", 1, "without TargetName"),
    (GOOD + "target:\nTargetName=iqn.2010-10.org.openstack:volume-x\nTargetDevice=/d/y\n"
     "PortalGroup=1@10.0.0.1:3260\n", 5, "duplicate TargetName iqn.2010-10.org.openstack:volume-x"),
    (GOOD + "TargetName=iqn.2010-10.org.openstack:other\n", 5, "TargetName given more than once"),
    (GOOD + "AuthMethod=CHAP\nAuthMethod=None\n", 6, "AuthMethod given more than once"),
    (GOOD + 'Auth_CHAP_Target="a":"b"\nAuth_CHAP_Target="c":"d"\n', 6, "Auth_CHAP_Target given more than once"),
    (GOOD.replace("1@10.0.0.1:3260", "10.0.0.1:3260"), 4, "PortalGroup: expected <tag>@"),
    (GOOD.replace("1@10.0.0.1:3260", "1@10.0.0.1"), 4, "PortalGroup: portal '10.0.0.1' is not"),
    (GOOD.replace("1@10.0.0.1:3260", "1@10.0.0.1:70000"), 4, "port '70000'"),
    (GOOD.replace("1@10.0.0.1:3260", "1@fd00::1:3260"), 4, "PortalGroup: portal"),
    (GOOD.replace("1@10.0.0.1:3260", "1@host.example:3260"), 4, "is not an IP address"),
    (GOOD.replace("1@10.0.0.1:3260", "x@10.0.0.1:3260"), 4, "portal group tag 'x'"),
    (GOOD + "PortalGroup=1@10.0.0.2:3260\n", 5, "tag 1 already defined at line 4"),
    (GOOD + "AuthMethod=CHAP\nAuth_CHAP_Initiator=user:secret\n", 6,
     'Auth_CHAP_Initiator: expected "<id>":"<secret>"'),
    (GOOD + 'AuthMethod=CHAP\nAuth_CHAP_Initiator="user":"se cret"\n', 6, "printable ASCII without spaces"),
    (GOOD + 'Auth_CHAP_Initiator="user":""\n', 5, "empty CHAP secret"),
    (GOOD + 'Auth_CHAP_Initiator="u":"a"\nAuth_CHAP_Initiator="u":"b"\n', 6, "id 'u' given twice"),
    (GOOD + 'Auth_CHAP_Target="a":"b":"c"\n', 5, "Auth_CHAP_Target: expected"),
    (GOOD + "Auth_CHAP_Policy=Twoway\n", 5, "Auth_CHAP_Policy: must be one of Oneway, Mutual"),
    (GOOD + "Auth_CHAP_Policy=Mutual\n", 5, "Mutual needs Auth_CHAP_Target"),
    (GOOD + "AuthMethod=CHAP\n", 5, "AuthMethod=CHAP but no Auth_CHAP_Initiator"),
    (GOOD + "AuthMethod=CHAP,None\n", 5, "AuthMethod: must be one of None, CHAP, None,CHAP"),
    (GOOD + "Auth_CHAP_ChallengeLength=8\n", 5, "must be a number in 16..1024"),
    (GOOD.replace("volume-x", "volume-x=1"), 2, "TargetName: invalid iqn."),
    (GOOD.replace("volume-x", "volume_x"), 2, "TargetName: invalid iqn."),
    (GOOD.replace("volume-x", 'volume-x"'), 2, "unterminated double quote"),
    (GOOD.replace("iqn.2010-10.org.openstack:volume-x", "volume-x"), 2, "must start with iqn. or eui."),
    (GOOD.replace("volume-x", "Volume-X"), 2, "lower-case"),
    (GOOD.replace("/d/x", "d/x"), 3, "is not absolute"),
    (GOOD.replace("/d/x", "/d/x,BLK,FILE"), 3, "exclude each other"),
    (GOOD.replace("/d/x", "/d/x,BLK,SYNC"), 3, "SYNC is only valid in FILE mode"),
    (GOOD.replace("/d/x", "/d/x,SN=12345678901234567"), 3, "SN= needs 1 to 16"),
    (GOOD.replace("/d/x", "/d/x,ID=1234567890123456789012345"), 3, "ID= needs 1 to 24"),
    (GOOD.replace("/d/x", "/d/x,NOPE"), 3, "unknown TargetDevice option 'NOPE'"),
    (GOOD.replace("/d/x", "/d/x,size=5MB"), 3, "size= is only valid with MEM"),
    ("target:\nTargetName=iqn.2010-10.org.openstack:v\nPortalGroup=1@10.0.0.1:3260\n", 1, "has no TargetDevice"),
    ("target:\nTargetName=iqn.2010-10.org.openstack:v\nTargetDevice=/d\n", 1, "has no PortalGroup"),
    (GOOD + "ACL=iname=bad\n", 5, "ACL iname"),
    (GOOD + "ACL=lun=0:X\n", 5, "is not <lun list>:<R|RW>"),
    (GOOD + "ACL=who=me\n", 5, "unknown ACL field 'who'"),
    (GOOD + "ACL=sip=1.2.3\n", 5, "ACL sip '1.2.3' is not an IP address"),
    (GOOD + "DataPDUInOrder=No\n", 5, "DataPDUInOrder: must be one of Yes"),
    (GOOD + "ErrorRecoveryLevel=1\n", 5, "ErrorRecoveryLevel: must be one of 0"),
    (GOOD + "MaxBurstLength=100\n", 5, "must be a number in 512..16777215"),
    (GOOD + "TargetAlias=\n", 5, "empty value for TargetAlias"),
    (GOOD + "just some words\n", 5, "expected 'global:', 'target:' or 'key=value'"),
    (GOOD + 'Auth_CHAP_Initiator="u":"s\n', 5, "unterminated double quote"),
    ("target: extra\n", 1, "expected 'global:', 'target:'"),
    ("global:\niscsi_offload_mode=FAST\n", 2, "iscsi_offload_mode=FAST: must be one of AUTO, TOE, ULP"),
    ("global:\niscsi_offload_mode=TOE\nglobal:\niscsi_offload_mode=ULP\n", 4, "given more than once"),
    ("global:\nTargetName=iqn.2010-10.org.openstack:v\n", 2, "unknown global key 'TargetName'"),
    ("Target:\n", 1, "expected 'global:', 'target:'"),
]


@pytest.mark.parametrize("text,line,fragment", BAD_CASES, ids=[c[2][:40] for c in BAD_CASES])
def test_malformed_input_is_rejected_with_location(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfError) as info:
        parse_text(text, "/etc/x.conf")
    err = info.value
    assert (err.file, err.line) == ("/etc/x.conf", line), str(err)
    assert fragment in err.problem, str(err)
    assert str(err).startswith(f"/etc/x.conf:{line}: ")


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfError, match="no such file"):
        parse_file(tmp_path / "absent")
    bad = tmp_path / "latin1"
    bad.write_bytes(b"target:\nTargetName=iqn.2010-10.org.openstack:v\xe9\n")
    with pytest.raises(ConfError) as info:
        parse_file(bad)
    assert info.value.line == 2 and "UTF-8" in info.value.problem


# Configuration injection (a weakness of Cinder's CxtAdm): whatever a helper
# substitutes into a value, the parser either rejects the block or reads back
# exactly one target with exactly that value, never extra keys or blocks.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(user=st.text(min_size=0, max_size=20), secret=st.text(min_size=0, max_size=20),
       name=st.text(min_size=0, max_size=20))
def test_substituted_values_cannot_inject(user: str, secret: str, name: str) -> None:
    text = ("target:\n"
            f"TargetName=iqn.2010-10.org.openstack:{name}\n"
            "TargetDevice=/d/x\n"
            "PortalGroup=1@10.0.0.1:3260\n"
            "AuthMethod=CHAP\n"
            f'Auth_CHAP_Initiator="{user}":"{secret}"\n')
    try:
        conf = parse_text(text)
    except ConfError:
        return
    (target,) = conf.targets
    assert target.name == f"iqn.2010-10.org.openstack:{name}"
    assert [(c.user, c.secret) for c in target.chap_initiators] == [(user, secret)]
    assert len(target.entries) == 5 and conf.globals == {}
