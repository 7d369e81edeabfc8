"""What the operator's commands rely on, for every helper: unexport's answer, device swaps
under connected initiators, and orphans stopped only when asked.

Checked in the target's own state through the harness, like the rest of
the behaviour suite; the session-based half of "connected" (initiators
logged in) is checked per helper where the emulator can make a session.
"""

from __future__ import annotations

import pytest

from iscsi_helper.exception import ExportInUse
from iscsi_helper.lab.emulators.chiscsi import sessions as chiscsi_sessions
from iscsi_helper.lab.emulators.iet.inject import inject_session
from iscsi_helper.lab.emulators.iet.state import State as IetState

from .harness import load_all
from .test_target_contract import INITIATOR, IQN_PREFIX, make_device, volume

HARNESSES = load_all()


def test_unexport_says_whether_there_was_an_export(h):
    target = h.target()
    dev = make_device(h)
    assert target.unexport(volume(1)) is False
    assert h.live(IQN_PREFIX + "volume-1") is None
    target.create_export(None, volume(1), dev)
    assert target.unexport(volume(1)) is True
    assert h.live(IQN_PREFIX + "volume-1") is None
    assert h.persisted("volume-1", IQN_PREFIX + "volume-1") is None
    assert target.unexport(volume(1)) is False


def test_an_orphan_is_still_withdrawn_by_unexport(h):
    """No record, but a live target (a crash between stop and record removal): unexport stops it."""
    target = h.target()
    target.create_export(None, volume(2), make_device(h))
    h.drop_record("volume-2")
    assert h.live(IQN_PREFIX + "volume-2") is not None
    assert target.unexport(volume(2)) is True
    assert h.live(IQN_PREFIX + "volume-2") is None


def test_a_device_swap_needs_force_once_an_initiator_was_granted_access(h):
    target = h.target()
    if not target.supports_acl:
        pytest.skip(f"{h.name} keeps no initiator ACL")
    first, second = make_device(h, "first"), make_device(h, "second")
    model = target.create_export(None, volume(3), first)
    stored = volume(3, provider_location=model["location"], provider_auth=model["auth"])
    target.initialize_connection(stored, {"initiator": INITIATOR})
    iqn = IQN_PREFIX + "volume-3"
    before = h.snapshot()
    with pytest.raises(ExportInUse, match="access granted to " + INITIATOR):
        target.export(volume(3), second)
    assert h.snapshot() == before, "refused before anything was touched"
    assert h.live(iqn).luns == {target.lun: first}
    target.export(volume(3), second, force=True)
    assert h.live(iqn).luns == {target.lun: second}
    assert h.persisted("volume-3", iqn).device == second


def test_a_device_swap_of_an_unconnected_export_needs_no_force(h):
    target = h.target()
    first, second = make_device(h, "first"), make_device(h, "second")
    target.create_export(None, volume(4), first)
    target.export(volume(4), second)
    assert h.live(IQN_PREFIX + "volume-4").luns == {target.lun: second}


def test_reconcile_fix_stops_orphans_only_when_asked(h):
    target = h.target()
    dev = make_device(h)
    target.create_export(None, volume(5), dev)
    h.drop_record("volume-5")
    drifts = target.reconcile(fix=True)
    assert [(d.volume_name, d.state, d.fixed) for d in drifts] == [("volume-5", "orphan-live", False)]
    assert h.live(IQN_PREFIX + "volume-5") is not None, "left running"
    drifts = target.reconcile(fix=True, stop_orphans=True)
    assert [(d.volume_name, d.state, d.fixed) for d in drifts] == [("volume-5", "orphan-live", True)]
    assert h.live(IQN_PREFIX + "volume-5") is None


# ------------------------------------------------------- sessions, per helper


def test_iet_counts_sessions_from_its_session_file(tmp_path, monkeypatch):
    h = HARNESSES["iet"](tmp_path, monkeypatch, name="iet")
    target = h.target()
    first, second = make_device(h, "first"), make_device(h, "second")
    target.create_export(None, volume(6), first)
    tid = h.live(IQN_PREFIX + "volume-6").tid
    inject_session(IetState(h.emulator_state, h.proc_dir), tid, INITIATOR, "192.0.2.5")
    with pytest.raises(ExportInUse, match=r"1 session\(s\) logged in"):
        target.export(volume(6), second)
    assert h.live(IQN_PREFIX + "volume-6").luns == {0: first}


def test_chiscsi_counts_sessions_with_iscsictl_r(tmp_path, monkeypatch):
    h = HARNESSES["chiscsi"](tmp_path, monkeypatch, name="chiscsi")
    try:
        target = h.target()
        first, second = make_device(h, "first"), make_device(h, "second")
        target.create_export(None, volume(7), first)
        chiscsi_sessions.declare_stuck(
            h.emulator_state, IQN_PREFIX + "volume-7", [INITIATOR, "iqn.1993-08.org.debian:01:b"]
        )
        with pytest.raises(ExportInUse, match=r"2 session\(s\) logged in"):
            target.export(volume(7), second)
        assert any(argv[1:3] == ("-r", f"target={IQN_PREFIX}volume-7") for argv in h.calls)
        assert h.live(IQN_PREFIX + "volume-7").luns == {0: first}
    finally:
        h.teardown()
