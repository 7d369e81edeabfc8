"""The one behaviour suite every target helper passes, unchanged.

"The current test for IET should work just fine for chiscsi" (the seed):
each test here runs once per registered helper, through the public API,
and checks the result in the target's own state via the harness.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from iscsi_helper import registry
from iscsi_helper.exception import ExportNotFound, InvalidConnector, InvalidInput
from iscsi_helper.formats import ProviderLocation, parse_provider_auth

from .harness import load_all

HARNESSES = load_all()

IQN_PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1993-08.org.debian:01:behaviour"


def volume(n: int | str, **extra):
    return {"id": str(n), "name": f"volume-{n}", **extra}


@pytest.fixture(params=sorted(HARNESSES))
def h(request, tmp_path, monkeypatch):
    harness = HARNESSES[request.param](tmp_path, monkeypatch, name=request.param)
    yield harness
    teardown = getattr(harness, "teardown", None)
    if teardown:
        teardown()


def make_device(h, name: str = "disk", size: int = 4 << 20) -> str:
    path = h.root / f"{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def test_every_registered_helper_has_a_harness():
    missing = set(registry.canonical_names()) - set(HARNESSES)
    assert not missing, f"helpers without a behaviour-suite harness: {sorted(missing)}"


def test_create_makes_a_live_target_with_iqn_lun_device_and_chap(h):
    target = h.target()
    dev = make_device(h)
    result = target.create_export(None, volume(1), dev)
    location = ProviderLocation.parse(result["location"])
    chap = parse_provider_auth(result["auth"])
    assert location.iqn == IQN_PREFIX + "volume-1"
    assert location.lun == target.lun
    assert [str(p) for p in location.portals] == ["127.0.0.1:3260"]
    live = h.live(location.iqn)
    assert live is not None
    assert live.luns[target.lun] == dev
    assert live.chap == (chap.username, chap.password)


def test_create_is_idempotent_and_reuses_stored_credentials(h):
    target = h.target()
    dev = make_device(h)
    first = target.create_export(None, volume(1), dev)
    again = target.create_export(None, volume(1, provider_auth=first["auth"]), dev)
    assert again == first
    chosen = "CHAP operator1 chosen-secret-123"
    third = h.target().create_export(None, volume(2, provider_auth=chosen), make_device(h, "d2"))
    assert third["auth"] == chosen
    assert h.live(IQN_PREFIX + "volume-2").chap == ("operator1", "chosen-secret-123")


def test_connection_properties_single_several_ipv6_and_multipath(h):
    dev = make_device(h)
    single = h.target()
    loc = single.create_export(None, volume(1), dev)
    vol = volume(1, provider_location=loc["location"], provider_auth=loc["auth"])
    data = single.initialize_connection(vol, {"initiator": INITIATOR})["data"]
    assert data["target_portal"] == "127.0.0.1:3260" and "target_portals" not in data
    assert data["target_iqn"] == IQN_PREFIX + "volume-1"
    assert data["target_lun"] == single.lun and data["auth_method"] == "CHAP"
    multi = single.initialize_connection(vol, {"initiator": INITIATOR, "multipath": True})["data"]
    assert multi["target_portals"] == ["127.0.0.1:3260"]

    several = h.target(target_secondary_ip_addresses=["::1"])
    loc2 = several.create_export(None, volume(2), make_device(h, "d2"))
    assert loc2["location"].startswith("127.0.0.1:3260;[::1]:3260,")
    vol2 = volume(2, provider_location=loc2["location"], provider_auth=loc2["auth"])
    data2 = several.initialize_connection(vol2, {"initiator": INITIATOR})["data"]
    assert data2["target_portals"] == ["127.0.0.1:3260", "[::1]:3260"]
    assert data2["target_iqns"] == [IQN_PREFIX + "volume-2"] * 2
    assert data2["target_luns"] == [several.lun] * 2

    v6 = h.target(target_ip_address="::1")
    loc3 = v6.create_export(None, volume(3), make_device(h, "d3"))
    assert loc3["location"].startswith("[::1]:3260,")


def test_remove_makes_target_gone_and_second_remove_is_quiet(h):
    target = h.target()
    target.create_export(None, volume(1), make_device(h))
    target.remove_export(None, volume(1))
    assert h.live(IQN_PREFIX + "volume-1") is None
    assert target.get_export(volume(1)) is None
    target.remove_export(None, volume(1))
    h.target().remove_export(None, volume(99))


def test_volume_1_and_volume_10_are_independent(h):
    target = h.target()
    d1, d10 = make_device(h, "d1"), make_device(h, "d10")
    a1 = target.create_export(None, volume(1), d1)
    a10 = target.create_export(None, volume(10), d10)
    target.remove_export(None, volume(1))
    assert h.live(IQN_PREFIX + "volume-1") is None
    live10 = h.live(IQN_PREFIX + "volume-10")
    assert live10 is not None and live10.luns[target.lun] == d10
    assert target.get_export(volume(10)).spec.chap == parse_provider_auth(a10["auth"])
    target.create_export(None, volume(1), d1)
    target.remove_export(None, volume(10))
    assert h.live(IQN_PREFIX + "volume-10") is None
    assert h.live(IQN_PREFIX + "volume-1") is not None
    assert a1["auth"] != a10["auth"]


def test_ensure_after_reboot_restores_identical_exports(h):
    target = h.target()
    created = {n: target.create_export(None, volume(n), make_device(h, f"d{n}")) for n in (1, 2, 3)}
    before = {n: h.live(IQN_PREFIX + f"volume-{n}") for n in created}
    h.reboot()
    assert all(h.live(IQN_PREFIX + f"volume-{n}") is None for n in created)
    report = h.target().restore_exports()
    assert sorted(report.started) == ["1", "2", "3"] and report.ok
    for n, result in created.items():
        after = h.live(IQN_PREFIX + f"volume-{n}")
        assert after == before[n]
        assert ProviderLocation.parse(result["location"]).iqn == after.iqn
    again = h.target().restore_exports()
    assert sorted(again.unchanged) == ["1", "2", "3"] and not again.started


def test_ensure_export_preserves_chap_and_is_a_noop_when_in_place(h):
    target = h.target()
    dev = make_device(h)
    created = target.create_export(None, volume(1), dev)
    stored = volume(1, provider_auth=created["auth"], provider_location=created["location"])
    h.reboot()
    target.ensure_export(None, stored, dev)
    live = h.live(IQN_PREFIX + "volume-1")
    assert live.chap == tuple(created["auth"].split()[1:])
    before = h.snapshot()
    target.ensure_export(None, stored, dev)
    assert h.snapshot() == before


def test_ensure_exports_bulk_starts_only_what_is_missing(h):
    target = h.target()
    devs = {n: make_device(h, f"d{n}") for n in range(5)}
    auths = {n: target.create_export(None, volume(n), devs[n])["auth"] for n in devs}
    target.remove_export(None, volume(0))
    h.reboot()
    target.create_export(None, volume(1, provider_auth=auths[1]), devs[1])
    report = target.ensure_exports(None, [(volume(n, provider_auth=auths[n]), devs[n]) for n in devs])
    assert sorted(report.started) == ["0", "2", "3", "4"]
    assert report.unchanged == ["1"] and report.ok
    for n in devs:
        assert h.live(IQN_PREFIX + f"volume-{n}").chap == tuple(auths[n].split()[1:])


def test_restore_does_not_resurrect_an_export_removed_meanwhile(h):
    target = h.target()
    target.create_export(None, volume(1), make_device(h))
    h.reboot()
    target.remove_export(None, volume(1))
    report = target.restore_exports(["volume-1"])
    assert not report.started and h.live(IQN_PREFIX + "volume-1") is None



def test_restore_on_a_stale_listing_neither_fails_nor_duplicates_a_target_made_meanwhile(h):
    """A restore lists once, then takes each volume's lock: another process may have
    started an export in between. Helpers that trust the listing must notice."""
    target = h.target()
    devs = {n: make_device(h, f"d{n}") for n in (1, 2)}
    auths = {n: target.create_export(None, volume(n), devs[n])["auth"] for n in devs}
    h.reboot()
    listing_before = target._list_live()  # what the restore saw: nothing live
    target.create_export(None, volume(1, provider_auth=auths[1]), devs[1])  # the other process
    listings = [listing_before]  # the restore's one listing is stale; later looks are not
    real_list_live = target._list_live
    target._list_live = lambda: dict(listings.pop()) if listings else real_list_live()  # type: ignore[method-assign]
    report = target.restore_exports()
    assert not listings and report.ok, report.failed
    assert sorted(report.started) == ["1", "2"]  # as the stale listing made it look
    assert [d.state for d in target.reconcile()] == ["ok", "ok"]
    for n in devs:
        live = h.live(IQN_PREFIX + f"volume-{n}")
        assert live.chap == tuple(auths[n].split()[1:]) and live.luns[target.lun] == devs[n]

REJECTED = [
    ("device path", lambda h: (volume(1), str(h.root / "missing.img"))),
    ("device path", lambda h: (volume(1), str(h.root))),
    ("device path", lambda h: (volume(1), make_device(h) + ",RO")),
    ("device path", lambda h: (volume(1), "relative.img")),
    ("volume name", lambda h: ({"id": "1", "name": "../volume-1"}, make_device(h))),
    ("volume name", lambda h: ({"id": "1", "name": "volume-1\nTargetName=x"}, make_device(h))),
    ("volume name", lambda h: ({"id": "1", "name": 'volume-"1'}, make_device(h))),
    ("target IQN", lambda h: ({"id": "1", "name": "v" * 220}, make_device(h))),
    ("provider_auth", lambda h: (volume(1, provider_auth="CHAP only-user"), make_device(h))),
    ("CHAP secret", lambda h: (volume(1, provider_auth="CHAP user tiny"), make_device(h))),
]


@pytest.mark.parametrize("field,case", REJECTED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REJECTED)])
def test_rejected_input_changes_nothing(h, field, case):
    target = h.target()
    kept = target.create_export(None, volume(5), make_device(h, "kept"))
    vol, dev = case(h)
    before, calls_before = h.snapshot(), len(h.calls)
    with pytest.raises(InvalidInput, match=field):
        target.create_export(None, vol, dev)
    assert h.snapshot() == before
    assert len(h.calls) == calls_before, "nothing may reach the target tool"
    assert h.live(IQN_PREFIX + "volume-5").chap == tuple(kept["auth"].split()[1:])


def test_bad_connector_is_refused(h):
    target = h.target()
    with pytest.raises(InvalidConnector):
        target.validate_connector({"host": "compute-1"})
    assert target.validate_connector({"initiator": INITIATOR})


def test_initiator_acl_follows_initialize_and_terminate(h):
    target = h.target()
    loc = target.create_export(None, volume(1), make_device(h))
    vol = volume(1, provider_location=loc["location"], provider_auth=loc["auth"])
    target.initialize_connection(vol, {"initiator": INITIATOR})
    live = h.live(IQN_PREFIX + "volume-1")
    if not target.supports_acl:
        pytest.skip(f"{h.name} keeps no initiator ACL")
    assert live.initiators == {INITIATOR}
    target.terminate_connection(vol, {"initiator": INITIATOR})
    assert h.live(IQN_PREFIX + "volume-1").initiators == frozenset()


def test_extend_target_keeps_the_export_and_needs_one(h):
    target = h.target()
    dev = make_device(h)
    target.create_export(None, volume(1), dev)
    before = h.live(IQN_PREFIX + "volume-1")
    with open(dev, "r+b") as handle:
        handle.truncate(8 << 20)
    target.extend_target(volume(1))
    assert h.live(IQN_PREFIX + "volume-1") == before
    with pytest.raises(ExportNotFound):
        target.extend_target(volume(2))


WORKER = textwrap.dedent("""
    import json, sys
    from iscsi_helper import options, registry
    conf = options.new_config([sys.argv[1]])
    target = registry.get_helper(conf)
    out = {}
    for n in range(int(sys.argv[2]), int(sys.argv[3])):
        out[str(n)] = target.create_export(None, {"id": str(n), "name": f"volume-{n}"}, sys.argv[4])
    print(json.dumps(out))
""")


def test_two_processes_exporting_twenty_volumes_each_end_with_all_forty(h):
    config = h.config_file()
    dev = make_device(h)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(config), str(lo), str(lo + 20), dev],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=h.env(), text=True)
             for lo in (0, 20)]
    results: dict[str, dict[str, str]] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.update(json.loads(out))
    assert len(results) == 40
    tids = set()
    for n, result in results.items():
        location = ProviderLocation.parse(result["location"])
        live = h.live(location.iqn)
        assert live is not None, f"volume-{n} missing"
        assert live.chap == tuple(result["auth"].split()[1:])
        tids.add(location.tid)
    assert len(tids) == 40, "every target has its own id"
    statuses = h.target().list_exports()
    assert len(statuses) == 40 and all(s.live for s in statuses)


def test_reconcile_reports_and_fixes_missing_and_orphans_but_not_foreign_targets(h):
    target = h.target()
    for n in (1, 2, 3):
        target.create_export(None, volume(n), make_device(h, f"d{n}"))
    assert {d.state for d in target.reconcile()} == {"ok"}
    h.reboot()
    target.create_export(None, volume(3), make_device(h, "d3"))
    h.drop_record("volume-3")
    foreign = h.target(target_prefix="iqn.2001-04.com.example:")
    foreign.create_export(None, volume(9), make_device(h, "d9"))
    h.drop_record("volume-9")  # now only live, and not named with our prefix
    states = {d.volume_name: d.state for d in target.reconcile()}
    assert states == {"volume-1": "missing-live", "volume-2": "missing-live",
                      "volume-3": "orphan-live"}
    fixed = target.reconcile(fix=True)
    assert all(d.fixed for d in fixed)
    assert {d.volume_name: d.state for d in target.reconcile()} == {
        "volume-1": "ok", "volume-2": "ok"}
    assert h.live(IQN_PREFIX + "volume-3") is None
    assert h.live("iqn.2001-04.com.example:volume-9") is not None, "foreign target untouched"
