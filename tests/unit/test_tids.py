"""The tid counter: a file under a lock, seeded past the live tids, skipping known taken ones."""

from __future__ import annotations

from iscsi_helper import options
from iscsi_helper.tids import TidCounter


def counter(tmp_path) -> TidCounter:
    conf = options.new_config(overrides={"oslo_concurrency.lock_path": str(tmp_path / "locks")})
    return TidCounter(conf, tmp_path / "records" / ".next-tid", "test_tid")


def test_a_fresh_counter_starts_at_one_and_advances(tmp_path):
    tids = counter(tmp_path)
    assert [tids.allocate() for _ in range(3)] == [1, 2, 3]
    assert (tmp_path / "records" / ".next-tid").read_text() == "4\n"


def test_a_fresh_counter_is_seeded_past_every_live_tid_and_only_then(tmp_path):
    tids = counter(tmp_path)
    asked: list[int] = []

    def live() -> list[int]:
        asked.append(1)
        return [4, 9]

    assert tids.allocate(live_tids=live) == 10
    assert tids.allocate(live_tids=live) == 11 and len(asked) == 1
    assert tids.allocate(live_tids=lambda: [40], reseed=True) == 41


def test_known_taken_tids_are_skipped(tmp_path):
    tids = counter(tmp_path)
    assert tids.allocate(skip=({1, 2}, {3})) == 4
    assert tids.allocate(skip=({5},)) == 6


def test_an_unreadable_counter_starts_again(tmp_path):
    tids = counter(tmp_path)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / ".next-tid").write_text("garbage")
    assert tids.allocate() == 1
