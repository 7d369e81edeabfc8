"""Running target tools: clear errors for missing, broken and hanging tools."""

import logging
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


def _watch_spawns(monkeypatch) -> list[subprocess.Popen]:
    """Every process the executor starts, as it starts it."""
    spawned: list[subprocess.Popen] = []
    real_popen = executor_module.subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        spawned.append(proc)
        return proc

    monkeypatch.setattr(executor_module.subprocess, "Popen", popen)
    return spawned


def test_hanging_tool_is_killed(monkeypatch):
    """The child is known from its spawn, not from a pidfile it may not have written yet: the
    test holds however slowly the machine runs (the tool cannot end before the timeout)."""
    spawned = _watch_spawns(monkeypatch)
    with pytest.raises(CommandTimedOut, match="within 0.5 s"):
        Executor(timeout=0.5).run("sleep", "600")
    assert len(spawned) == 1
    assert spawned[0].returncode is not None, "the hung tool was not reaped"
    with pytest.raises(ProcessLookupError):
        os.kill(spawned[0].pid, 0)


def test_failure_keeps_output_and_masks_declared_secrets():
    with pytest.raises(CommandFailed) as info:
        Executor().run("sh", "-c", "echo 'bad secret-secret-9' >&2; exit 3", secrets=["secret-secret-9"])
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


def test_a_tool_that_loses_its_mode_after_a_first_run_is_reported_not_executable(monkeypatch, tmp_path):
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


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie no one reaps yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_a_timed_out_tool_is_killed_with_every_process_it_started(tmp_path, monkeypatch):
    # The tool starts a child that would outlive it (and keep our pipes open). On a
    # machine too loaded for the shell to start its child within the timeout, the
    # run proves nothing, so it is repeated with a longer one.
    spawned = _watch_spawns(monkeypatch)
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    timeout = 0.5
    while True:
        pids.write_text("")
        with pytest.raises(CommandTimedOut):
            Executor(timeout=timeout).run("sh", "-c", script)
        started = [int(p) for p in pids.read_text().split()]
        if len(started) == 2:
            break
        timeout *= 2
    assert all(_gone(pid) for pid in started), "a process of the timed-out tool survived"
    assert _group_members(spawned[-1].pid) == [], "its process group still has members"


def test_a_secret_with_quotes_and_regex_characters_is_masked_whole_in_the_debug_log(caplog):
    secret = "a'b^c$d(e)*f[g]\\h.i|j?k+l{m}n`o\"p"
    caplog.set_level(logging.DEBUG, logger="iscsi_helper")
    Executor().run("echo", f"--params=IncomingUser=u,Password={secret}", secrets=[secret])
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Running" in text and "***" in text
    for size in range(6, len(secret) + 1):  # no fragment of it either
        for start in range(len(secret) - size + 1):
            assert secret[start : start + size] not in text, secret[start : start + size]
