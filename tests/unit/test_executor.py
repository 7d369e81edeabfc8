"""Running target tools: clear errors for missing, broken and hanging tools."""

import os
import subprocess

import pytest

from iscsi_helper import executor as executor_module
from iscsi_helper.exception import CommandFailed, CommandNotExecutable, CommandNotFound, CommandTimedOut
from iscsi_helper.executor import Executor


def test_missing_tool_names_tool_and_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandNotFound, match="iscsictl not found on PATH; install Chelsio"):
        Executor().run("iscsictl", "-c", "target=ALL")


def test_not_executable_tool(monkeypatch, tmp_path):
    (tmp_path / "iscsictl").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandNotExecutable, match="not executable"):
        Executor().run("iscsictl")


def test_hanging_tool_is_killed(monkeypatch):
    """The child is known from its spawn, not from a pidfile it may not have written yet: the
    test holds however slowly the machine runs (the tool cannot end before the timeout)."""
    spawned: list[subprocess.Popen] = []
    real_execute = executor_module.processutils.execute

    def execute(*cmd, on_execute=None, **kwargs):  # noqa: ANN001, ANN002, ANN003
        def started(proc: subprocess.Popen) -> None:
            spawned.append(proc)
            if on_execute:
                on_execute(proc)
        return real_execute(*cmd, on_execute=started, **kwargs)

    monkeypatch.setattr(executor_module.processutils, "execute", execute)
    with pytest.raises(CommandTimedOut, match="within 0.5 s"):
        Executor(timeout=0.5).run("sleep", "600")
    assert len(spawned) == 1
    assert spawned[0].returncode is not None, "the hung tool was not reaped"
    with pytest.raises(ProcessLookupError):
        os.kill(spawned[0].pid, 0)


def test_failure_keeps_output_and_masks_declared_secrets():
    with pytest.raises(CommandFailed) as info:
        Executor().run("sh", "-c", "echo 'bad secret-secret-9' >&2; exit 3",
                       secrets=["secret-secret-9"])
    assert info.value.exit_code == 3
    assert "secret-secret-9" not in str(info.value) and "***" in info.value.stderr


def test_observers_see_argv_with_root_helper():
    seen = []
    result = Executor(root_helper="env", observers=[seen.append]).run("echo", "hi")
    assert seen == [("env", "echo", "hi")] and result.stdout == "hi\n"


def _tool(directory, name="iscsictl"):
    path = directory / name
    path.write_text("#!/bin/sh\necho ran\n")
    path.chmod(0o755)
    return path


def test_a_tool_that_vanishes_after_a_first_run_is_still_reported_missing(monkeypatch, tmp_path):
    # The executor remembers tools it found; the spawn's own failure must still read clearly.
    tool = _tool(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    executor = Executor()
    assert executor.run("iscsictl").stdout == "ran\n"
    tool.unlink()
    with pytest.raises(CommandNotFound, match="iscsictl not found on PATH"):
        executor.run("iscsictl")


def test_a_tool_that_loses_its_mode_after_a_first_run_is_reported_not_executable(monkeypatch,
                                                                                 tmp_path):
    tool = _tool(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    executor = Executor()
    executor.run("iscsictl")
    tool.chmod(0o644)
    with pytest.raises(CommandNotExecutable, match="iscsictl"):
        executor.run("iscsictl")


def test_a_found_tool_is_looked_up_again_when_path_changes(monkeypatch, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _tool(first)
    executor = Executor()
    monkeypatch.setenv("PATH", str(first))
    executor.run("iscsictl")
    monkeypatch.setenv("PATH", str(second))
    with pytest.raises(CommandNotFound):
        executor.run("iscsictl")


def test_a_changed_root_helper_is_used_from_the_next_call():
    seen = []
    executor = Executor(observers=[seen.append])
    executor.run("true")
    executor.root_helper = "env"
    executor.run("true")
    assert seen == [("true",), ("env", "true")]
