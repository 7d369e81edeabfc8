"""The device -> volume index: one read answers, another volume's claim is kept, writes are atomic."""

from __future__ import annotations

import os
import stat

from iscsi_helper.deviceindex import DeviceIndex


def test_claim_owner_release(tmp_path):
    index = DeviceIndex(tmp_path / "devices")
    assert index.owner("/dev/vg/a") is None
    assert index.claim("/dev/vg/a", "volume-1") is True
    assert index.claim("/dev/vg/a", "volume-1") is False, "an existing claim is not rewritten"
    assert index.owner("/dev/vg/a") == "volume-1" and index.owner("/dev/vg/ab") is None
    index.release("/dev/vg/a", "volume-2")
    assert index.owner("/dev/vg/a") == "volume-1", "only the owner releases"
    index.release("/dev/vg/a", "volume-1")
    assert index.owner("/dev/vg/a") is None and os.listdir(tmp_path / "devices") == []


def test_entries_are_private_whole_files_even_for_paths_longer_than_a_file_name(tmp_path):
    index = DeviceIndex(tmp_path / "devices")
    long_path = "/srv/" + "/".join(["d" * 200] * 5)
    index.claim(long_path, "volume-9")
    (entry,) = (tmp_path / "devices").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert entry.read_text() == f"volume-9\n{long_path}\n"
    assert index.owner(long_path) == "volume-9"


def test_an_entry_that_is_not_ours_for_this_path_is_no_claim(tmp_path):
    index = DeviceIndex(tmp_path / "devices")
    index.claim("/dev/a", "volume-1")
    (entry,) = (tmp_path / "devices").iterdir()
    entry.write_text("volume-1\n/dev/other\n")  # as if the hash collided, or the file was edited
    assert index.owner("/dev/a") is None
    entry.write_text("")
    assert index.owner("/dev/a") is None
