"""The emulators' shared state store, without any emulator or tool.

Both emulators rely on it for one thing each product's kernel gives for free:
many short-lived admin processes that see one consistent state. These tests
check that promise directly: a counter moved by concurrent processes loses no
step, a reader never meets half a file, and a failed write leaves the old one.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators import store

PROCESSES = 4
STEPS = 50


def _count_up(root: str, steps: int) -> None:
    """One emulated admin command per step: take the lock, move the counter, let go."""
    counters = store.CounterFile(Path(root) / "counter.json", {"seq": 0})
    for _ in range(steps):
        with store.flocked(Path(root) / "lock"):
            counters.forget()  # another process may have moved it while the lock was free
            counters.increment("seq")


def test_counter_starts_at_its_default_and_counts_up(tmp_path: Path) -> None:
    counters = store.CounterFile(tmp_path / "counter.json", {"next_id": 1, "other": 0})
    assert counters.get("next_id") == 1
    assert not (tmp_path / "counter.json").exists()  # reading writes nothing
    assert counters.increment("next_id") == 2
    assert counters.increment("other") == 1
    assert counters.get("never_set") == 0
    fresh = store.CounterFile(tmp_path / "counter.json", {"next_id": 1})
    assert (fresh.get("next_id"), fresh.get("other")) == (2, 1)


def test_counter_is_cached_until_forgotten(tmp_path: Path) -> None:
    """Read once per lock: a change by another process shows after forget(), the next lock."""
    mine = store.CounterFile(tmp_path / "counter.json", {"seq": 0})
    theirs = store.CounterFile(tmp_path / "counter.json", {"seq": 0})
    assert mine.get("seq") == 0
    theirs.increment("seq")
    assert mine.get("seq") == 0
    mine.forget()
    assert mine.get("seq") == 1


def test_counter_remove_goes_back_to_the_defaults(tmp_path: Path) -> None:
    counters = store.CounterFile(tmp_path / "counter.json", {"next_id": 1})
    counters.set("next_id", 40)
    counters.remove()
    assert not (tmp_path / "counter.json").exists()
    assert counters.get("next_id") == 1
    counters.remove()  # nothing to remove is not an error


def test_corrupt_counter_file_is_named_not_reset(tmp_path: Path) -> None:
    (tmp_path / "counter.json").write_text("{not json", encoding="utf-8")
    counters = store.CounterFile(tmp_path / "counter.json", {"next_id": 1})
    with pytest.raises(store.CorruptState, match="counter.json"):
        counters.get("next_id")
    with pytest.raises(ValueError):  # what an emulator that knows no better catches
        counters.increment("next_id")
    assert (tmp_path / "counter.json").read_text(encoding="utf-8") == "{not json"


def test_concurrent_processes_lose_no_count(tmp_path: Path) -> None:
    """The flock serialises processes: every increment of every process is kept."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_count_up, args=(str(tmp_path), STEPS)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert store.CounterFile(tmp_path / "counter.json", {}).get("seq") == PROCESSES * STEPS


def _can_take(lock: Path, exclusive: bool) -> bool:
    """Whether another open file description gets the lock now (no waiting)."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_flock_excludes_writers_and_shares_readers(tmp_path: Path) -> None:
    """flock is per open file: a second open, as another process makes, meets the holder's lock."""
    lock = tmp_path / "lock"
    with store.flocked(lock, exclusive=False):
        assert _can_take(lock, exclusive=False)
        assert not _can_take(lock, exclusive=True)
    with store.flocked(lock):
        assert not _can_take(lock, exclusive=False)
        assert not _can_take(lock, exclusive=True)
    assert _can_take(lock, exclusive=True)  # released on leaving the block
    assert stat.S_IMODE(lock.stat().st_mode) == store.FILE_MODE


def test_flock_is_released_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.flocked(tmp_path / "lock"):
        raise RuntimeError("command failed")
    assert _can_take(tmp_path / "lock", exclusive=True)


def test_write_atomic_replaces_whole_with_the_mode_asked(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    store.write_atomic(path, "old")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.write_atomic(path, "new", mode=0o644, durable=True)
    assert path.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["record.json"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record.json"
    store.write_atomic(path, "old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(store.os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        store.write_atomic(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["record.json"]


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    """While one thread rewrites a large file, every read is one whole version."""
    path = tmp_path / "record.json"
    versions = ["a" * 200_000, "b" * 300_000]
    store.write_atomic(path, versions[0])
    done = threading.Event()

    def rewrite() -> None:
        for round_ in range(100):
            store.write_atomic(path, versions[round_ % 2])
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    while not done.is_set():
        assert store.read_or_none(path) in versions
    writer.join()
    assert store.read_or_none(path) in versions
    assert store.read_or_none(tmp_path / "absent") is None


def test_temp_files_start_with_a_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulators list their record directories and skip dot names: an in-flight write is not a record."""
    names: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        names.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", spy)
    store.write_atomic(tmp_path / "7.json", "{}")
    assert len(names) == 1 and names[0].startswith(store.TEMP_PREFIX + "7.json.")
    assert names[0].startswith(".")


def test_private_directories(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    store.make_private_dir(directory)
    store.make_private_dir(directory)  # again: already there is fine
    assert stat.S_IMODE(directory.stat().st_mode) == store.DIR_MODE
