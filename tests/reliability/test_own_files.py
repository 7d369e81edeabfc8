"""Only our own files are records, and only our own locks are internal (issue 13, point 4).

A copy of a record (``volume-1.bak``, as an operator's ``cp`` leaves it), an
editor's backup (``volume-1~``), a directory and a note in a records
directory must never become exports: ``list`` does not show them, a
restore never starts them (nor fails because of them), ``reconcile``
reports each as ``foreign-file`` and even ``--fix`` leaves every byte of
them alone. And a volume whose name is spelled like an internal lock
(possible with ``volume_name_template = %s``) takes its own lock, not the
internal one: nothing hangs.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from iscsi_helper import registry
from iscsi_helper.executor import Executor

from . import figures
from .conftest import IQN_PREFIX, make_device, volume

STRAYS = ("volume-1.bak", "volume-1~", "notes.txt", "backup")


def _plant_strays(h: Any) -> dict[str, bytes | None]:
    records = h.target().records_dir
    record = records / "volume-1"
    shutil.copy2(record, records / "volume-1.bak")
    shutil.copy2(record, records / "volume-1~")
    (records / "notes.txt").write_text("exported volume-1 on 2026-12-01\n")
    (records / "backup").mkdir()
    return {name: (records / name).read_bytes() if (records / name).is_file() else None for name in STRAYS}


def test_copies_and_strays_in_the_records_directory_are_reported_never_adopted(h):
    target = h.target()
    target.create_export(None, volume(1), make_device(h, "d1"))
    target.create_export(None, volume(2), make_device(h, "d2"))
    planted = _plant_strays(h)

    listed = [s.spec.volume_name for s in target.list_exports()]
    assert listed == ["volume-1", "volume-2"], listed
    report = target.reconcile()
    states = {d.volume_name: d.state for d in report}
    assert states == {"volume-1": "ok", "volume-2": "ok", **{name: "foreign-file" for name in STRAYS}}, report
    assert all(d.error for d in report if d.state == "foreign-file")

    h.reboot()
    restored = h.target().restore_exports()
    assert restored.ok and sorted(restored.started) == ["1", "2"], restored
    assert h.live(IQN_PREFIX + "volume-1.bak") is None
    fixed = h.target().reconcile(fix=True)
    assert {d.volume_name for d in fixed if d.state == "foreign-file"} == set(STRAYS)
    assert not any(d.fixed for d in fixed if d.state == "foreign-file")
    records = target.records_dir
    for name, content in planted.items():
        path = records / name
        assert path.exists(), f"{name} was removed"
        if content is not None:
            assert path.read_bytes() == content, f"{name} was changed"
    for iqn_tail in ("volume-1.bak", "volume-1~"):
        assert h.live(IQN_PREFIX + iqn_tail) is None
    figures.add(f"own files: strays reported, never adopted [{h.name}]", len(STRAYS))


def test_a_volume_spelled_like_an_internal_lock_takes_its_own_lock(h):
    """``%s`` makes any valid id a volume name; with the old flat lock names, IET took
    ``iet-conf`` twice and hung. A short lock_timeout turns a regression into an error."""
    conf = h.conf(volume_name_template="%s", lock_timeout=10)
    target = registry.get_helper(conf, Executor(observers=[h.calls.append]))
    device = make_device(h, "d1")
    names = ("iet-conf", "iet-tid", "tgt-tid", "fake-tid", "internal.iet-conf", "volume.x")
    for name in names:
        target.create_export(
            None, {"id": name, "name": name}, device if h.name != "chiscsi" else make_device(h, name)
        )
        assert h.live(IQN_PREFIX + name) is not None
    for name in names:
        target.remove_export(None, {"id": name, "name": name})
        assert h.live(IQN_PREFIX + name) is None
    lock_files = os.listdir(h.root / "locks")
    assert all(f.startswith(("iscsi-helper-volume.", "iscsi-helper-internal.")) for f in lock_files)
    figures.add(f"own files: volumes named like internal locks [{h.name}]", len(names))
