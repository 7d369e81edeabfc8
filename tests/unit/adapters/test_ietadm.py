"""The ietadm adapter: the argv of each call, and each exit code as its exception type."""

from __future__ import annotations

import pytest

from iscsi_helper.adapters.ietadm import INCOMING, OUTGOING, Ietadm, parse_account
from iscsi_helper.exception import (
    AlreadyPresent,
    CommandFailed,
    NameInUse,
    NotPresent,
    TargetHasSessions,
    TidInUse,
)
from iscsi_helper.formats import ChapCredentials

IQN = "iqn.2010-10.org.openstack:volume-1"
CREDS = ChapCredentials("user-1", "secret-secret-1")


def test_each_call_builds_the_argv_ietadm_documents(executor):
    ietadm = Ietadm(executor)
    ietadm.target_new(3, IQN)
    ietadm.target_delete(3)
    ietadm.lun_new(3, 0, "/srv/disk.img", "fileio")
    ietadm.lun_delete(3, 0)
    ietadm.account_new(3, OUTGOING, CREDS)
    ietadm.account_delete(3, INCOMING, "user-1")
    ietadm.connection_close(3, 281474976710656, 0)
    assert executor.argvs == [
        ("ietadm", "--op", "new", "--tid=3", "--params", f"Name={IQN}"),
        ("ietadm", "--op", "delete", "--tid=3"),
        ("ietadm", "--op", "new", "--tid=3", "--lun=0", "--params", "Path=/srv/disk.img,Type=fileio"),
        ("ietadm", "--op", "delete", "--tid=3", "--lun=0"),
        (
            "ietadm",
            "--op",
            "new",
            "--tid=3",
            "--user",
            "--params=OutgoingUser=user-1,Password=secret-secret-1",
        ),
        ("ietadm", "--op", "delete", "--tid=3", "--user", "--params=IncomingUser=user-1"),
        ("ietadm", "--op", "delete", "--tid=3", "--sid=281474976710656", "--cid=0"),
    ]


def test_only_the_account_creation_carries_a_secret_and_declares_it(executor):
    Ietadm(executor).account_new(1, INCOMING, CREDS)
    Ietadm(executor).lun_delete(1, 0)
    assert executor.secrets == [("secret-secret-1",), ()]


@pytest.mark.parametrize(
    "call,code,refusal",
    [
        (lambda a: a.target_new(1, IQN), 234, NameInUse),
        (lambda a: a.target_new(1, IQN), 239, TidInUse),
        (lambda a: a.target_delete(1), 254, NotPresent),
        (lambda a: a.target_delete(1), 240, TargetHasSessions),
        (lambda a: a.lun_new(1, 0, "/d", "fileio"), 239, AlreadyPresent),
        (lambda a: a.lun_delete(1, 0), 254, NotPresent),
        (lambda a: a.account_delete(1, INCOMING, "u"), 254, NotPresent),
        (lambda a: a.connection_close(1, 2, 0), 254, NotPresent),
    ],
)
def test_documented_exit_codes_become_their_refusal_types(executor, call, code, refusal):
    executor.reply(code, stderr="ietadm said no")
    with pytest.raises(refusal) as raised:
        call(Ietadm(executor))
    assert raised.value.exit_code == code and "ietadm said no" in str(raised.value)


@pytest.mark.parametrize(
    "call,code",
    [
        (lambda a: a.target_new(1, IQN), 254),  # not a refusal this call expects
        (lambda a: a.lun_new(1, 0, "/d", "blockio"), 241),  # ENOTBLK: a file given as blockio
        (lambda a: a.target_delete(1), 255),
    ],
)
def test_other_exit_codes_stay_plain_failures(executor, call, code):
    executor.reply(code)
    with pytest.raises(CommandFailed) as raised:
        call(Ietadm(executor))
    assert type(raised.value) is CommandFailed and raised.value.exit_code == code


def test_account_matches_tells_ours_another_secret_and_absent_apart(executor):
    ietadm = Ietadm(executor)
    executor.reply(0, "IncomingUser user-1 secret-secret-1\n")
    assert ietadm.account_matches(5, INCOMING, CREDS) is True
    executor.reply(0, "IncomingUser user-1 another-secret-2\n")
    assert ietadm.account_matches(5, INCOMING, CREDS) is False
    executor.reply(254)
    assert ietadm.account_matches(5, INCOMING, CREDS) is None
    assert executor.argvs[0] == (
        "ietadm",
        "--op",
        "show",
        "--tid=5",
        "--user",
        "--params=IncomingUser=user-1",
    )
    assert executor.secrets[0] == ("secret-secret-1",), "a secret on stdout is masked if logged"


@pytest.mark.parametrize(
    "text,parsed",
    [
        ("IncomingUser u s3cret-s3cret\n", ("IncomingUser", "u", "s3cret-s3cret")),
        ("OutgoingUser u s\n", ("OutgoingUser", "u", "s")),
        ("", None),
        ("IncomingUser u\n", None),
        ("IncomingUser u s extra\n", None),
    ],
)
def test_parse_account(text, parsed):
    assert parse_account(text) == parsed
