"""Running target tools: clear errors for missing, broken and hanging tools."""

import os

import pytest

from iscsi_helper.exception import (CommandFailed, CommandNotExecutable, CommandNotFound,
                                    CommandTimedOut)
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


def test_hanging_tool_is_killed(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandTimedOut, match="within 0.5 s"):
        Executor(timeout=0.5).run("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30")
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


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
