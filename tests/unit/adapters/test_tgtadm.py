"""The tgtadm adapter: argv per call, refusals by tgtd's own texts, and ``--op show`` parsed."""

from __future__ import annotations

import pytest

from iscsi_helper.adapters.tgtadm import WRITE_CACHE_OFF_MODE_PAGE, Tgtadm, parse_show
from iscsi_helper.exception import (
    AlreadyPresent,
    CommandFailed,
    NoSuchAccount,
    NoSuchAclRule,
    NoSuchTarget,
    ToolOutputError,
)
from iscsi_helper.formats import ChapCredentials

IQN = "iqn.2010-10.org.openstack:volume-1"

# What a real tgtd (1.0.x) printed for one export with a LUN, an incoming
# and an outgoing account and a name ACL, beside another software's target.
SHOW = """\
Target 1: iqn.2010-10.org.openstack:volume-1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Backing store type: null
            Backing store path: None
            Backing store flags:
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 3 MB, Block size: 512
            Online: Yes
            Backing store type: rdwr
            Backing store path: /srv/volume-1.img
            Backing store flags:
    Account information:
        alice
        tgtside (outgoing)
    ACL information:
        iqn.1993-08.org.debian:01:a
Target 7: iqn.2001-04.com.example:other
    System information:
        Driver: iser
    LUN information:
        LUN: 0
            Backing store path: None
    Account information:
    ACL information:
        ALL
"""


def test_parse_show_reads_luns_sizes_accounts_and_acl_per_target():
    shown = parse_show(SHOW)
    assert sorted(shown) == ["iqn.2001-04.com.example:other", IQN]
    ours = shown[IQN]
    assert (ours.tid, ours.luns, ours.sizes) == (1, ((1, "/srv/volume-1.img"),), ((0, 0), (1, 3)))
    assert ours.devices == ("/srv/volume-1.img",) and ours.lun_path(1) == "/srv/volume-1.img"
    assert (ours.accounts, ours.outgoing, ours.acl) == (
        ("alice",),
        ("tgtside",),
        ("iqn.1993-08.org.debian:01:a",),
    )
    other = shown["iqn.2001-04.com.example:other"]
    assert (other.tid, other.luns, other.sizes, other.accounts, other.acl) == (7, (), (), (), ("ALL",))
    assert other.portals is None, "tgtd shows no portals per target"


def test_parse_show_of_no_targets_is_empty_and_garbage_is_refused():
    assert parse_show("") == {}
    with pytest.raises(ToolOutputError, match="unreadable line"):
        parse_show("Target one: not-a-number\n")
    with pytest.raises(ToolOutputError, match="unreadable line"):
        parse_show("    LUN information:\n")


def test_calls_carry_the_control_port_and_lld_and_build_tgtadm_argv(executor):
    tgtadm = Tgtadm(executor, lld="iser", control_port=4321)
    tgtadm.target_new(2, IQN)
    tgtadm.target_delete(2)
    tgtadm.lun_new(2, 1, "/srv/d.img", "direct")
    tgtadm.lun_write_cache_off(2, 1)
    tgtadm.lun_delete(2, 1)
    tgtadm.initiator_bind(2, "ALL", by_name=False)
    tgtadm.initiator_unbind(2, "iqn.1993-08.org.debian:01:a", by_name=True)
    tgtadm.account_delete("alice")
    tgtadm.account_bind(2, "alice", outgoing=True)
    tgtadm.account_unbind(2, "alice", outgoing=False)
    head = ("tgtadm", "-C", "4321", "--lld", "iser")
    assert executor.argvs == [
        head + tail
        for tail in [
            ("--mode", "target", "--op", "new", "--tid", "2", "-T", IQN),
            ("--mode", "target", "--op", "delete", "--force", "--tid", "2"),
            (
                "--mode",
                "logicalunit",
                "--op",
                "new",
                "--tid",
                "2",
                "--lun",
                "1",
                "-b",
                "/srv/d.img",
                "--bsoflags",
                "direct",
            ),
            (
                "--mode",
                "logicalunit",
                "--op",
                "update",
                "--tid",
                "2",
                "--lun",
                "1",
                "--params",
                WRITE_CACHE_OFF_MODE_PAGE,
            ),
            ("--mode", "logicalunit", "--op", "delete", "--tid", "2", "--lun", "1"),
            ("--mode", "target", "--op", "bind", "--tid", "2", "-I", "ALL"),
            ("--mode", "target", "--op", "unbind", "--tid", "2", "-Q", "iqn.1993-08.org.debian:01:a"),
            ("--mode", "account", "--op", "delete", "--user", "alice"),
            ("--mode", "account", "--op", "bind", "--tid", "2", "--user", "alice", "--outgoing"),
            ("--mode", "account", "--op", "unbind", "--tid", "2", "--user", "alice"),
        ]
    ]


def test_without_a_control_port_the_default_tgtd_is_addressed(executor):
    Tgtadm(executor, lld="iscsi", control_port=None).lun_new(1, 1, "/d")
    assert executor.argvs == [
        (
            "tgtadm",
            "--lld",
            "iscsi",
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            "/d",
        )
    ]


def test_the_account_secret_is_declared_for_masking(executor):
    Tgtadm(executor, lld="iscsi", control_port=None).account_new(ChapCredentials("alice", "secretsecret12"))
    assert executor.argvs[0][-4:] == ("--user", "alice", "--password", "secretsecret12")
    assert executor.secrets == [("secretsecret12",)]


@pytest.mark.parametrize(
    "stderr,refusal",
    [  # tgtadm_strerror's texts, exit 22 for each
        ("tgtadm: this target already exists\n", AlreadyPresent),
        ("tgtadm: this account already exists\n", AlreadyPresent),
        ("tgtadm: this access control rule already exists\n", AlreadyPresent),
        ("tgtadm: can't find the target\n", NoSuchTarget),
        ("tgtadm: can't find the account\n", NoSuchAccount),
        ("tgtadm: this access control rule does not exist\n", NoSuchAclRule),
    ],
)
def test_refusals_are_told_apart_by_tgtds_text(executor, stderr, refusal):
    executor.reply(22, stderr=stderr)
    with pytest.raises(refusal) as raised:
        Tgtadm(executor, lld="iscsi", control_port=None).target_delete(1)
    assert raised.value.exit_code == 22


def test_any_other_failure_stays_a_plain_command_failure(executor):
    executor.reply(22, stderr="tgtadm: can't connect to the tgt daemon, Connection refused\n")
    with pytest.raises(CommandFailed) as raised:
        Tgtadm(executor, lld="iscsi", control_port=None).show()
    assert type(raised.value) is CommandFailed


def test_parse_show_counts_the_sessions_of_each_target():
    with_sessions = SHOW.replace(
        "    I_T nexus information:\n",
        (
            "    I_T nexus information:\n"
            "        I_T nexus: 3\n"
            "            Initiator: iqn.1993-08.org.debian:01:a alias: host-a\n"
            "            Connection: 0\n"
            "                IP Address: 192.0.2.5\n"
            "        I_T nexus: 4\n"
            "            Initiator: iqn.1993-08.org.debian:01:b alias: host-b\n"
            "            Connection: 0\n"
            "                IP Address: 192.0.2.6\n"
        ),
        1,
    )
    shown = parse_show(with_sessions)
    assert shown[IQN].sessions == 2
    assert shown["iqn.2001-04.com.example:other"].sessions == 0
    assert parse_show(SHOW)[IQN].sessions == 0
