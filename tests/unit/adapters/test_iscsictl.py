"""The iscsictl adapter without iscsictl: its batching under the name buffer, the argv it
builds, how it reads chiscsi's answers, and its handling of chiscsi's host lock.

Its output parsers are the codec's (tests/unit/codecs/test_iscsictl_output.py).
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
)
from iscsi_helper.exception import CommandFailed, CommandLockBusy, InvalidInput, ToolOutputError
from iscsi_helper.lab.rig import AnsweringExecutor
from tests.support.iscsictl_output import IQN, IQN2, detail_block


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
