"""The iscsictl adapter without iscsictl: its parsers on output laid out as chiscsi's source
prints it, its batching under the name buffer, and its handling of chiscsi's host lock.

Layouts (chiscsi 2.12.0.3, src/chiscsi/): the summary and detail blocks of
private/klib/common/iscsi_node.c ~885-945 and private/klib/target/config_api.c
~119-135, each printed by ``printf("%s\\n", databuf)`` (private/ulib/iscsictl_cmd.c
~1036-1045), so every block starts with a blank line and ends with one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from iscsi_helper.adapters import iscsictl
from iscsi_helper.adapters.iscsictl import (
    LOCK_REFUSAL,
    NAMES_BUFFER_BYTES,
    Iscsictl,
    StartOutcome,
    StopOutcome,
    name_batches,
    parse_details,
    parse_summaries,
)
from iscsi_helper.exception import CommandFailed, CommandLockBusy, InvalidInput, ToolOutputError
from iscsi_helper.formats import Portal
from iscsi_helper.lab.rig import AnsweringExecutor

IQN = "iqn.2010-10.org.openstack:volume-1"
IQN2 = "iqn.2010-10.org.openstack:volume-10"

SESSION_AND_CONN_KEYS = (
    "\tErrorRecoveryLevel=0\n\tInitialR2T=Yes\n\tImmediateData=Yes\n\tDataPDUInOrder=Yes\n"
    "\tDataSequenceInOrder=Yes\n\tMaxConnections=1\n\tMaxOutstandingR2T=1\n"
    "\tFirstBurstLength=65536\n\tMaxBurstLength=262144\n\tDefaultTime2Wait=2\n"
    "\tDefaultTime2Retain=20\n\tHeaderDigest=None\n\tDataDigest=None\n"
    "\tMaxRecvDataSegmentLength=8192\n"
)


def detail_block(iqn: str, *, acl: bool = False, mutual: bool = False) -> str:
    text = (
        f"\ntarget:\n\tTargetName={iqn}\n"
        + SESSION_AND_CONN_KEYS
        + "\tAuthMethod=CHAP\n\tAuth_CHAP_Policy="
        + ("Mutual" if mutual else "Oneway")
        + "\n\tAuth_CHAP_ChallengeLength=16\n"
        + f"\tACL_Enable={'Yes' if acl else 'No'}\n\tRegisteriSNS=No\n\tShadowMode=No\n"
        + "\tTargetSessionMaxCmd=64\n"
    )
    if acl:
        text += "\tACL=iname=iqn.1993-08.org.debian:01:a,iqn.1993-08.org.debian:01:b;lun=ALL:RW\n"
    if mutual:
        text += '\tAuth_CHAP_Target="tgtuser":"********"\n'
    text += (
        '\tAuth_CHAP_Initiator="user1":"********"\n'
        "\tPortalGroup=1@127.0.0.1:3260,[0000:0000:0000:0000:0000:0000:0000:0001]:3260,"
        "timeout=0\n"
        "\tTargetDevice=/srv/disk.img,FILE,PROD=CHISCSI Target,SN=0123456789abcdef,"
        "ID=0D0743000000000000000000,WWN=:W007430000000000\n"
    )
    return text + "\n"


def summary_block(iqn: str, node_id: int) -> str:
    return (
        f"\nTARGET: {iqn}, id={node_id}, login_ip=0\n"
        "\tPortalGroup=1@10.9.8.7:3260,timeout=0\n"
        f"\tTargetDevice=/dev/vg/{iqn[-9:]},BLK,PROD=CHISCSI Target,SN=0N0743000000000\n\n"
    )


def test_detail_output_is_read_exactly():
    shown = parse_details(detail_block(IQN, acl=True, mutual=True))
    detail = shown[IQN]
    assert detail is not None and list(shown) == [IQN]
    assert detail.value("TargetName") == IQN and detail.value("AuthMethod") == "CHAP"
    assert detail.acl_enabled
    assert detail.acl_initiators == {"iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b"}
    assert detail.chap_initiator_users == ("user1",) and detail.chap_target_users == ("tgtuser",)
    assert [g.tag for g in detail.portal_groups] == [1]
    assert detail.portal_groups[0].portals == (Portal("127.0.0.1", 3260), Portal("::1", 3260))
    device = detail.devices[0]
    assert (device.path, device.device_class) == ("/srv/disk.img", "FILE")
    assert "PROD=CHISCSI Target" in device.flags


def test_acl_lines_are_shown_only_when_enabled_and_count_only_then():
    detail = parse_details(detail_block(IQN))[IQN]
    assert detail is not None and not detail.acl_enabled and detail.acl_initiators == frozenset()


def test_a_named_list_answers_each_name_in_order_missing_ones_included():
    out = detail_block(IQN) + f"target {IQN2} NOT found.\n\n" + detail_block("iqn.2010-10.org.x:y")
    shown = parse_details(out)
    assert list(shown) == [IQN, IQN2, "iqn.2010-10.org.x:y"]
    assert shown[IQN2] is None and shown["iqn.2010-10.org.x:y"] is not None


@pytest.mark.parametrize(
    "out",
    [
        "TARGET: iqn.2010-10.org.openstack:volume-1, id=1, login_ip=0\n",  # a summary is not a detail
        "\ttarget:\n",
        "\ntarget:\n\tErrorRecoveryLevel=0\n",  # no TargetName
        "\ntarget:\n\tTargetName=a\nstray line\n",
        "\ntarget:\n\tTargetName=a\n\tAuth_CHAP_Initiator=user:secret\n",
    ],
)
def test_detail_output_that_is_not_chiscsi_layout_is_an_error(out):
    with pytest.raises(ToolOutputError):
        detail = parse_details(out)
        for shown in detail.values():  # CHAP names are read on demand
            assert shown is not None
            _ = shown.chap_initiator_users


def test_summary_listing_gives_ids_portals_devices_and_the_names_byte_count():
    out = summary_block(IQN, 1) + summary_block(IQN2, 3)
    listing = parse_summaries(out)
    assert list(listing.targets) == [IQN, IQN2]
    assert listing.targets[IQN2].node_id == 3
    assert listing.targets[IQN].portal_groups[0].portals == (Portal("10.9.8.7", 3260),)
    assert listing.targets[IQN].devices[0].device_class == "BLK"
    assert listing.names_bytes == len(f"target={IQN},{IQN2}")
    assert not listing.may_be_cut


def test_an_empty_listing_has_no_targets_and_is_not_cut():
    listing = parse_summaries("")
    assert listing.targets == {} and listing.names_bytes == 0 and not listing.may_be_cut


def kernel_names_buffer(names: list[str]) -> str:
    """``iscsi_node_get_target_names`` (private/klib/common/iscsi_node.c ~124-150), in Python."""
    buf = "target="
    for name in names:
        buf += name + ","
        if len(buf) > NAMES_BUFFER_BYTES:
            break
    if len(buf) > NAMES_BUFFER_BYTES:
        buf = buf[: NAMES_BUFFER_BYTES - 1]
    return buf[:-1] if buf.endswith(",") else buf


def listing_output(names: list[str]) -> str:
    """What ``-c target=ALL`` prints for those targets: each name in the buffer looked up."""
    shown = kernel_names_buffer(names)[len("target=") :].split(",")
    whole = set(names)
    return "".join(
        summary_block(n, i) if n in whole else f"target {n} NOT found.\n\n" for i, n in enumerate(shown, 1)
    )


@pytest.mark.parametrize("count,cut", [(1000, False), (2400, False), (2600, True), (5000, True)])
def test_the_cut_is_detected_by_the_byte_count_the_kernel_uses(count, cut):
    names = [f"iqn.2010-10.org.openstack:volume-{n:020d}" for n in range(count)]  # 54 bytes each
    listing = parse_summaries(listing_output(names))
    assert listing.may_be_cut is cut
    if cut:
        assert len(listing.targets) < count
        assert listing.names_bytes in (NAMES_BUFFER_BYTES - 2, NAMES_BUFFER_BYTES - 1)
    else:
        assert len(listing.targets) == count


def test_a_complete_listing_just_under_the_mark_is_not_taken_for_a_cut_one():
    base = "iqn.2010-10.org.openstack:volume-"
    names = [f"{base}{n:020d}" for n in range(2426)]
    filled = len("target=") + sum(len(n) + 1 for n in names) - 1
    names[-1] += "x" * (NAMES_BUFFER_BYTES - 3 - filled)  # the buffer holds exactly 131069 bytes
    listing = parse_summaries(listing_output(names))
    assert listing.names_bytes == NAMES_BUFFER_BYTES - 3
    assert len(listing.targets) == len(names) and not listing.may_be_cut


@pytest.mark.parametrize(
    "out",
    [
        "\tPortalGroup=1@10.9.8.7:3260,timeout=0\n",  # detail line before any target
        "TARGET: iqn.a:b, id=x, login_ip=0\n",
        "TARGET: iqn.a:b id=1 login_ip=0\n",
        "\nTARGET: iqn.a:b, id=1, login_ip=0\n\tSomething=else\n",
        "\nTARGET: iqn.a:b, id=1, login_ip=0\n\tPortalGroup=1@10.9.8:3260,timeout=0\n",
    ],
)
def test_summary_output_that_is_not_chiscsi_layout_is_an_error(out):
    with pytest.raises(ToolOutputError):
        parse_summaries(out)


def test_name_batches_stay_under_the_buffer_and_keep_every_name_once():
    names = [f"iqn.2010-10.org.openstack:volume-{n:06d}" for n in range(6000)]
    batches = list(name_batches(names))
    assert len(batches) == -(-(len("target=") + sum(len(n) + 1 for n in names)) // NAMES_BUFFER_BYTES)
    assert all(len(b) <= NAMES_BUFFER_BYTES - 1 and b.startswith("target=") for b in batches)
    assert [n for b in batches for n in b[len("target=") :].split(",")] == names
    assert list(name_batches(names[:3], budget=len("target=") + 2 * len(names[0]) + 1)) == [
        f"target={names[0]},{names[1]}",
        f"target={names[2]}",
    ]


@pytest.mark.parametrize("bad", ["", "ALL", "iqn.a:b,c"])
def test_names_that_would_change_the_query_are_refused(bad):
    with pytest.raises(InvalidInput):
        list(name_batches([bad]))


# ----------------------------------------------------------- the tool, scripted


class ScriptedExecutor(AnsweringExecutor):
    """Answers each call from a script of (exit code, stdout, stderr), recording the argv."""

    def __init__(self, answers: list[tuple[int, str, str]]) -> None:
        super().__init__()
        self.answers = answers
        self.argvs: list[tuple[str, ...]] = []

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        self.argvs.append(argv)
        code, out, err = self.answers.pop(0)
        assert code in ok_codes, f"the script answers {code}, which the adapter does not accept here"
        return code, out, err


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def tool(
    answers: list[tuple[int, str, str]], timeout: float = 5.0, locks: list[str] | None = None
) -> tuple[Iscsictl, ScriptedExecutor, FakeClock]:
    executor, clock = ScriptedExecutor(answers), FakeClock()

    @contextlib.contextmanager
    def host_lock():
        if locks is not None:
            locks.append("taken")
        yield
        if locks is not None:
            locks.append("released")

    return (
        Iscsictl(
            executor,
            host_lock,
            "/etc/chelsio-iscsi/chiscsi.conf",
            timeout,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        ),
        executor,
        clock,
    )


REFUSED = (3, "", LOCK_REFUSAL + "\n")


def test_a_lock_refusal_is_retried_with_growing_delays_under_one_host_lock():
    locks: list[str] = []
    t, executor, clock = tool([REFUSED] * 4 + [(0, "", f"target {IQN} added.\n")], locks=locks)
    assert t.start(IQN, Path("/v/cxt/volume-1")) is StartOutcome.ADDED
    assert len(executor.argvs) == 5 and len(set(executor.argvs)) == 1
    assert executor.argvs[0] == (
        "iscsictl",
        "-S",
        f"target={IQN}",
        "-f",
        "/v/cxt/volume-1",
        "-x",
        "/etc/chelsio-iscsi/chiscsi.conf",
    )
    assert len(clock.slept) == 4
    assert all(b > a for a, b in zip(clock.slept, clock.slept[1:], strict=False))  # each range doubles
    assert locks == ["taken", "released"], "one hold of the host lock across the retries"


def test_a_refusal_that_outlasts_the_timeout_is_reported_clearly():
    t, executor, clock = tool([REFUSED] * 1000, timeout=3.0)
    with pytest.raises(CommandLockBusy) as raised:
        t.stop(IQN)
    message = str(raised.value)
    assert "iscsictl -s could not run" in message and "chiscsi_lock_retry_timeout" in message
    assert LOCK_REFUSAL in message
    assert clock.now == pytest.approx(3.0) and sum(clock.slept) == pytest.approx(3.0)
    assert max(clock.slept) <= iscsictl.MAX_RETRY_DELAY
    assert 5 < len(executor.argvs) < 100


def test_a_refusal_is_recognised_whatever_the_exit_status():
    # chiscsi exits with the device's fd number on refusal (iscsictl.c ~150-195): not a fixed code.
    t, executor, _ = tool([(0, "", LOCK_REFUSAL + "\n"), (0, "", f"{IQN} removed.\n")])
    assert t.stop(IQN) is StopOutcome.REMOVED and len(executor.argvs) == 2


@pytest.mark.parametrize(
    "stderr,outcome",
    [
        (f"{IQN} removed.\n", StopOutcome.REMOVED),
        (f"{IQN} busy.\n", StopOutcome.BUSY),
        (f"{IQN} is not found.\n", StopOutcome.NOT_FOUND),
    ],
)
def test_stop_says_what_chiscsi_said_even_with_exit_status_0(stderr, outcome):
    t, _, _ = tool([(0, "", stderr)])
    assert t.stop(IQN) is outcome


def test_stop_of_volume_1_is_not_fooled_by_volume_10():
    t, _, _ = tool([(0, "", f"{IQN2} removed.\n")])
    with pytest.raises(CommandFailed):
        t.stop(IQN)


@pytest.mark.parametrize(
    "code,stderr",
    [
        (0, ""),  # success status without chiscsi's statement
        (255, f"ERR! chap secret needs to be 12 ~ 16 characters.\nERROR: Failed to start target {IQN}!\n"),
        (0, f"target {IQN2} added.\n"),
    ],
)
def test_start_is_a_failure_unless_chiscsi_says_added_or_updated(code, stderr):
    t, _, _ = tool([(code, "", stderr)])
    with pytest.raises(CommandFailed) as raised:
        t.start(IQN, Path("/f"))
    if stderr.startswith("ERR!"):
        assert "12 ~ 16" in str(raised.value)


def test_show_batches_names_and_maps_every_answer():
    names = [f"iqn.2010-10.org.openstack:volume-{n:06d}" for n in range(5000)]
    batches = list(name_batches(names))
    answers = []
    for batch in batches:
        asked = batch[len("target=") :].split(",")
        out = "".join(detail_block(n) if i % 2 else f"target {n} NOT found.\n\n" for i, n in enumerate(asked))
        answers.append((255 if len(asked) % 2 else 0, out, ""))  # status of the last name only
    t, executor, _ = tool(answers)
    shown = t.show(names)
    assert len(executor.argvs) == len(batches) == 2
    assert list(shown) == names
    assert sum(d is not None for d in shown.values()) == sum(len(b.split(",")) // 2 for b in batches)


def test_show_without_an_answer_for_a_name_is_an_error():
    t, _, _ = tool([(0, detail_block(IQN), "")])
    with pytest.raises(ToolOutputError, match="no answer"):
        t.show([IQN, IQN2])


def test_a_tool_that_cannot_reach_the_kernel_fails_loudly():
    t, _, _ = tool([(255, "", "ERROR: cannot find iscsi device!\n")] * 2)
    with pytest.raises(CommandFailed, match="cannot find iscsi device"):
        t.list_all()
    with pytest.raises(CommandFailed, match="cannot find iscsi device"):
        t.show([IQN])


def test_session_count_reads_iscsi_node_get_session_output():
    """``-r target=<iqn>``: ``<iqn>: session=N, login_ip=M.`` then a SESS: block per session
    (iscsi_node.c ~817-873); nothing at all without sessions."""
    text = (
        f"{IQN}: session=2, login_ip=0.\n\nSESS: isid=0x023d00000001 tsih=1\n"
        f"\tCONN 0: \n\tip=192.0.2.5\n\nSESS: isid=0x023d00000002 tsih=2\n"
    )
    assert iscsictl.parse_session_count(text, IQN) == 2
    assert iscsictl.parse_session_count("", IQN) == 0
    assert iscsictl.parse_session_count(f"{IQN2}: session=5, login_ip=0.\n", IQN) == 0, (
        "another target's line (volume-10 is not volume-1)"
    )
    with pytest.raises(ToolOutputError):
        iscsictl.parse_session_count(f"{IQN}: session=many, login_ip=0.\n", IQN)
