"""Atomic writes and the sweep of temp files left by writers that died before their rename."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from iscsi_helper import fileutil
from iscsi_helper.fileutil import atomic_write, is_temp_file, sweep_temp_files


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temp(directory: Path, target: str, host: str, pid: int, age: float = 0.0) -> Path:
    path = directory / f"{fileutil.TEMP_PREFIX}{target}.{host}.{pid}.abc123xy"
    path.write_text("CHAP user secret\n")
    if age:
        old = time.time() - age
        os.utime(path, (old, old))
    return path


def test_atomic_write_leaves_only_the_file_with_its_mode(tmp_path):
    target = tmp_path / "records" / "volume-1"
    atomic_write(target, "one\n", mode=0o600)
    atomic_write(target, "two\n", mode=0o600)
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["volume-1"]


def test_a_dead_writers_temp_file_is_swept_and_a_live_ones_is_kept(tmp_path):
    host = fileutil._host()
    dead = _temp(tmp_path, "volume-1", host, _dead_pid())
    # Alive until told otherwise (its stdin closed), however slow the machine: no timer.
    live_writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        live = _temp(tmp_path, "volume-2", host, live_writer.pid)
        mine = _temp(tmp_path, "volume-3", host, os.getpid())
        record = tmp_path / "volume-4"
        record.write_text("a record, not a temp file\n")
        assert sweep_temp_files(tmp_path) == [dead]
        assert not dead.exists() and live.exists() and mine.exists() and record.exists()
        assert live_writer.poll() is None, "the live writer must still be running here"
    finally:
        live_writer.kill()
        live_writer.wait()
    assert sweep_temp_files(tmp_path) == [live]  # its writer is gone now


def test_another_hosts_temp_file_is_swept_only_once_old(tmp_path):
    # "fresh" is dated in the future: it stays fresh however long the test takes.
    fresh = _temp(tmp_path, "volume-1", "other_host", 1, age=-fileutil.FOREIGN_TEMP_AGE)
    old = _temp(tmp_path, "volume-2", "other_host", 1, age=fileutil.FOREIGN_TEMP_AGE + 60)
    foreign_layout = tmp_path / f"{fileutil.TEMP_PREFIX}volume-3"
    foreign_layout.write_text("")
    assert sweep_temp_files(tmp_path) == [old]
    assert fresh.exists() and foreign_layout.exists()


def test_the_sweep_walks_below_records_and_can_be_held_to_one_file(tmp_path):
    host, pid = fileutil._host(), _dead_pid()
    nested = tmp_path / ".accounts" / "user"
    nested.mkdir(parents=True)
    deep = _temp(nested, "account", host, pid)
    assert sweep_temp_files(tmp_path) == []  # not recursive unless asked
    assert sweep_temp_files(tmp_path, recursive=True) == [deep]

    ours = _temp(tmp_path, "ietd.conf", host, pid)
    neighbour = _temp(tmp_path, "initiators.allow", host, pid)
    assert sweep_temp_files(tmp_path, of_file="ietd.conf") == [ours]
    assert neighbour.exists()


def test_temp_names_fit_name_max_for_the_longest_volume_name(tmp_path):
    name = "v" * 223  # formats caps volume names at 223 bytes
    atomic_write(tmp_path / name, "x")
    prefix = fileutil._temp_prefix(name)
    assert is_temp_file(prefix) and len(prefix) + 8 <= 255


def test_atomic_write_makes_missing_directories_private(tmp_path):
    # The directory is only created when the first temp file cannot be: it must still be 0700.
    target = tmp_path / "state" / "volumes" / "cxt" / "volume-1"
    atomic_write(target, "one\n")
    assert target.read_text() == "one\n"
    for level in (target.parent, target.parent.parent, target.parent.parent.parent):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level


def test_atomic_write_renames_a_fsynced_file_and_then_fsyncs_the_directory(tmp_path, monkeypatch):
    """The README's "temp file, fsync, rename": the old file is never opened for writing, the
    new bytes are on disk before the rename, and the rename is on disk before returning."""
    target = tmp_path / "volume-1"
    atomic_write(target, "old\n")
    reader = open(target, "rb")  # a reader of the old file, e.g. a target reloading it
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    try:
        atomic_write(target, "new\n")
        assert reader.read() == b"old\n", "the old file was rewritten in place"
    finally:
        reader.close()
    assert target.read_text() == "new\n"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    temp = events[1][1].split(" -> ")[0]
    assert events[0][1] == temp and is_temp_file(os.path.basename(temp))
    assert events[1][1].endswith(f" -> {target}")
    assert events[2][1] == str(tmp_path), "the directory is fsynced after the rename"
