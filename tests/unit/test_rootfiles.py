"""A root-owned file replaced through the root helper: the steps, and what a failed step leaves."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from iscsi_helper.exception import CommandFailed
from iscsi_helper.lab.rig import AnsweringExecutor
from iscsi_helper.rootfiles import RootFile


class Scripted(AnsweringExecutor):
    """Runs each step for real, in-process, except the one told to fail; records argv and stdin."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__(root_helper="sudo")
        self.fail = fail
        self.seen: list[tuple[tuple[str, ...], str | None]] = []

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        import subprocess

        self.seen.append((argv, stdin))
        if argv[0] == self.fail:
            return 1, "", "injected"
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True)
        return 0, done.stdout, done.stderr


def test_write_replaces_the_file_atomically_with_mode_0600(tmp_path):
    target = tmp_path / "ietd.conf"
    target.write_text("old\n")
    target.chmod(0o644)
    executor = Scripted()
    RootFile(target, executor).write("Target iqn.x\n\tIncomingUser u s3cr3t-value\n")
    assert target.read_text() == "Target iqn.x\n\tIncomingUser u s3cr3t-value\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ietd.conf"]
    assert [argv[0] for argv, _ in executor.seen] == ["mktemp", "dd", "mv", "sync"]
    assert not any("s3cr3t-value" in " ".join(argv) for argv, _ in executor.seen)


@pytest.mark.parametrize("step", ["dd", "mv"])
def test_a_failed_step_removes_its_temp_file_and_leaves_the_file(tmp_path, step):
    target = tmp_path / "ietd.conf"
    target.write_text("old\n")
    executor = Scripted(fail=step)
    with pytest.raises(CommandFailed):
        RootFile(target, executor).write("new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ietd.conf"]
    assert executor.seen[-1][0][:2] == ("rm", "-f")


def test_read_is_in_process_when_it_may_and_none_without_a_file(tmp_path):
    executor = Scripted()
    assert RootFile(tmp_path / "missing.conf", executor).read() is None
    present = tmp_path / "ietd.conf"
    present.write_text("text\n")
    assert RootFile(present, executor).read() == "text\n"
    assert executor.seen == [], "readable: no root helper needed"


def test_mktemp_answering_another_directory_is_refused(tmp_path):
    class Liar(Scripted):
        def answer(self, argv, **call):
            if argv[0] == "mktemp":
                return 0, "/etc/passwd\n", ""
            return super().answer(argv, **call)

    with pytest.raises(ValueError, match="not a file in"):
        RootFile(tmp_path / "ietd.conf", Liar()).write("x")
