"""The one rollback mechanism: inverse steps run newest first, a failing one does not stop the rest."""

from __future__ import annotations

import logging

import pytest

from iscsi_helper.exception import CommandFailed
from iscsi_helper.rollback import Rollback


def test_steps_run_newest_first_when_the_block_raises_and_the_error_goes_on():
    done: list[str] = []
    with pytest.raises(KeyError), Rollback("the export of 1") as rollback:
        rollback.push("a", lambda: done.append("undo a"))
        rollback.push("b", lambda: done.append("undo b"))
        raise KeyError("step c failed")
    assert done == ["undo b", "undo a"]


def test_nothing_runs_when_the_block_succeeds():
    done: list[str] = []
    with Rollback("the export of 1") as rollback:
        rollback.push("a", lambda: done.append("undo a"))
    assert done == []


def test_a_failing_step_is_logged_and_older_steps_still_run(caplog):
    done: list[str] = []

    def broken() -> None:
        raise CommandFailed(command="tgtadm --lld", exit_code=22, stdout="", stderr="gone")

    with pytest.raises(RuntimeError), Rollback("the export of 7") as rollback:
        rollback.push("a", lambda: done.append("undo a"))
        rollback.push("the LUN", broken)
        raise RuntimeError("late step")
    assert done == ["undo a"]
    assert any(
        "Could not roll back the export of 7 (the LUN)" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )
