"""The one behaviour suite every target helper passes, unchanged.

"The current test for IET should work just fine for chiscsi" (the seed):
each test here runs once per registered helper, through the public API,
and checks the result in the target's own state via the harness.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from iscsi_helper import registry
from iscsi_helper.exception import ExportNotFound, InvalidConnector, InvalidInput
from iscsi_helper.formats import ProviderLocation, parse_provider_auth

from .harness import PersistedView, load_all, make_device

HARNESSES = load_all()

IQN_PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1993-08.org.debian:01:behaviour"


def volume(n: int | str, **extra):
    return {"id": str(n), "name": f"volume-{n}", **extra}


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
    # Without provider_auth (the CLI, a caller that lost it) the recorded credentials stay.
    assert h.target().create_export(None, volume(1), dev) == first
    assert h.live(IQN_PREFIX + "volume-1").chap == tuple(first["auth"].split()[1:])
    chosen = "CHAP operator1 chosen-secret-12"  # 16: chiscsi takes 12 to 16
    third = h.target().create_export(None, volume(2, provider_auth=chosen), make_device(h, "d2"))
    assert third["auth"] == chosen
    assert h.live(IQN_PREFIX + "volume-2").chap == ("operator1", "chosen-secret-12")


def test_mutual_chap_gives_the_target_its_own_secret_and_keeps_it(h):
    """iscsi_mutual_chap: the target holds a second account, answered with its own secret."""
    target = h.target(iscsi_mutual_chap=True)
    dev = make_device(h)
    created = target.create_export(None, volume(1), dev)
    record = target.get_export(volume(1)).spec
    assert record.target_chap is not None, "mutual CHAP asked for, none recorded"
    mutual = (record.target_chap.username, record.target_chap.password)
    assert mutual[1] != parse_provider_auth(created["auth"]).password
    live = h.live(IQN_PREFIX + "volume-1")
    assert live.chap == tuple(created["auth"].split()[1:])
    assert live.mutual == mutual, "the target does not answer with the recorded mutual secret"
    iqn = IQN_PREFIX + "volume-1"
    assert h.persisted("volume-1", iqn) == PersistedView(iqn, dev, live.chap, mutual), (
        "the persisted configuration (what comes back at boot) lacks the mutual account"
    )
    again = target.create_export(None, volume(1, provider_auth=created["auth"]), dev)
    assert again == created and target.get_export(volume(1)).spec.target_chap == record.target_chap
    h.reboot()
    assert h.target(iscsi_mutual_chap=True).restore_exports().ok
    assert h.live(IQN_PREFIX + "volume-1") == live


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


def _tid_of(result: dict[str, str]) -> int:
    return ProviderLocation.parse(result["location"]).tid


def test_volume_1_and_volume_10_are_independent(h):
    """Exact names, in the live target and in the helper's own persisted configuration.

    A prefix or substring match would take volume-10 for volume-1: removing
    volume-1 must leave volume-10's live target *and* its persisted block
    (IET keeps every export in one ietd.conf), and each create must report
    the id of its own target, not its neighbour's.
    """
    target = h.target()
    d1, d10 = make_device(h, "d1"), make_device(h, "d10")
    iqn1, iqn10 = IQN_PREFIX + "volume-1", IQN_PREFIX + "volume-10"
    a1 = target.create_export(None, volume(1), d1)
    a10 = target.create_export(None, volume(10), d10)
    if h.location_tid_is_target_id:  # chiscsi's number is the portal group tag
        assert _tid_of(a1) == h.live(iqn1).tid and _tid_of(a10) == h.live(iqn10).tid
    kept10 = h.persisted("volume-10", iqn10)
    assert kept10 == PersistedView(iqn10, d10, tuple(a10["auth"].split()[1:]))
    target.remove_export(None, volume(1))
    assert h.live(iqn1) is None and h.persisted("volume-1", iqn1) is None
    live10 = h.live(iqn10)
    assert live10 is not None and live10.luns[target.lun] == d10
    assert h.persisted("volume-10", iqn10) == kept10, "removing volume-1 touched volume-10's config"
    assert target.get_export(volume(10)).spec.chap == parse_provider_auth(a10["auth"])
    again1 = target.create_export(None, volume(1), d1)
    assert h.live(iqn1).tid != h.live(iqn10).tid
    if h.location_tid_is_target_id:
        assert _tid_of(again1) == h.live(iqn1).tid
    assert h.persisted("volume-10", iqn10) == kept10, "creating volume-1 touched volume-10's config"
    kept1 = h.persisted("volume-1", iqn1)
    assert kept1 == PersistedView(iqn1, d1, tuple(again1["auth"].split()[1:]))
    target.remove_export(None, volume(10))
    assert h.live(iqn10) is None and h.persisted("volume-10", iqn10) is None
    assert h.live(iqn1) is not None and h.persisted("volume-1", iqn1) == kept1
    assert target.get_export(volume(1)).provider_location == again1["location"]
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
    """In place, ensure_export looks (its lookup) and changes nothing: no file rewritten, no
    further tool call (beyond a check the harness documents for its tool)."""
    target = h.target()
    dev = make_device(h)
    created = target.create_export(None, volume(1), dev)
    stored = volume(1, provider_auth=created["auth"], provider_location=created["location"])
    h.reboot()
    target.ensure_export(None, stored, dev)
    live = h.live(IQN_PREFIX + "volume-1")
    assert live.chap == tuple(created["auth"].split()[1:])
    before = h.identities()
    start = len(h.results)
    target.ensure_export(None, stored, dev)
    ensured = h.results[start:]
    assert h.identities() == before, "an in-place ensure rewrote a file"
    start = len(h.results)
    assert target._lookup(IQN_PREFIX + "volume-1", target._read_record("volume-1")) is not None
    lookup = h.results[start:]
    extra = list(ensured)
    for call in lookup:
        assert call in extra, f"the ensure skipped its lookup {call}?"
        extra.remove(call)
    undocumented = [call for call in extra if not h.in_place_check(*call)]
    assert not undocumented, f"an in-place ensure ran the tool beyond its lookup: {undocumented}"
    assert h.live(IQN_PREFIX + "volume-1") == live


def test_ensure_exports_in_place_makes_no_tool_call_beyond_its_one_listing(h):
    """The bulk path (service start) costs one listing when nothing is missing, whatever N."""
    target = h.target()
    devs = {n: make_device(h, f"d{n}") for n in range(3)}
    auths = {n: target.create_export(None, volume(n), devs[n])["auth"] for n in devs}
    wanted = [(volume(n, provider_auth=auths[n]), devs[n]) for n in devs]
    start = len(h.results)
    target._list_live()
    listing = h.results[start:]
    before = h.identities()
    start = len(h.results)
    report = target.ensure_exports(None, wanted)
    assert sorted(report.unchanged) == ["0", "1", "2"] and not report.started and report.ok
    assert h.results[start:] == listing, "an in-place bulk ensure ran the tool beyond its listing"
    assert h.identities() == before, "an in-place bulk ensure rewrote a file"


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


def _relative_existing(h) -> str:
    """A relative path to a real file: only "must be absolute" can refuse it."""
    h.monkeypatch.chdir(h.root)
    make_device(h, "relative")
    return "relative.img"


# (field, the one rule that refuses it, the call's input). Each input breaks
# exactly one rule (a comma in a path that exists, a relative path that
# exists...), and the error must name that rule: with the rule removed, the
# input is accepted or refused for another reason, and the test fails.
REJECTED = [
    ("device path", "does not exist", lambda h: (volume(1), str(h.root / "missing.img"))),
    ("device path", "neither a regular file nor a block device", lambda h: (volume(1), str(h.root))),
    ("device path", "must not contain a comma", lambda h: (volume(1), make_device(h, "disk,RO"))),
    ("device path", "must be absolute", lambda h: (volume(1), _relative_existing(h))),
    (
        "volume name",
        "must start with a lower-case letter or digit",
        lambda h: ({"id": "1", "name": "../volume-1"}, make_device(h)),
    ),
    (
        "volume name",
        "must start with a lower-case letter or digit",
        lambda h: ({"id": "1", "name": "volume-1\nTargetName=x"}, make_device(h)),
    ),
    (
        "volume name",
        "must start with a lower-case letter or digit",
        lambda h: ({"id": "1", "name": 'volume-"1'}, make_device(h)),
    ),
    ("target IQN", "longer than 223 bytes", lambda h: ({"id": "1", "name": "v" * 220}, make_device(h))),
    (
        "provider_auth",
        "expected 'CHAP <username> <secret>'",
        lambda h: (volume(1, provider_auth="CHAP only-user"), make_device(h)),
    ),
    (
        "CHAP secret",
        "shorter than 12 characters",
        lambda h: (volume(1, provider_auth="CHAP user tiny-secret"), make_device(h)),
    ),
]


@pytest.mark.parametrize(
    "field,reason,case", REJECTED, ids=[f"{f}-{i}" for i, (f, _r, _c) in enumerate(REJECTED)]
)
def test_rejected_input_changes_nothing(h, field, reason, case):
    target = h.target()
    kept = target.create_export(None, volume(5), make_device(h, "kept"))
    vol, dev = case(h)
    before, calls_before = h.snapshot(), len(h.calls)
    with pytest.raises(InvalidInput, match=f"{re.escape(field)}.*{re.escape(reason)}"):
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


def test_initiator_names_are_compared_as_rfc_3722_folds_them(h):
    """An upper-case initiator name (Windows lets an operator type one) is one initiator with
    its lower-case spelling: accepted, stored once in the normalized (folded) form a
    conforming initiator sends, and removed by either spelling (docs/initiator-names.md)."""
    target = h.target()
    loc = target.create_export(None, volume(1), make_device(h))
    vol = volume(1, provider_location=loc["location"], provider_auth=loc["auth"])
    upper, folded = "iqn.1991-05.com.microsoft:WIN-HOST", "iqn.1991-05.com.microsoft:win-host"
    assert target.validate_connector({"initiator": upper})
    target.initialize_connection(vol, {"initiator": upper})
    if not target.supports_acl:
        return  # accepted is all there is to it: no ACL holds initiator names
    assert h.live(IQN_PREFIX + "volume-1").initiators == {folded}
    calls = len(h.calls)
    target.initialize_connection(vol, {"initiator": folded})  # the same initiator: no change
    assert h.calls[calls:] == [] and h.live(IQN_PREFIX + "volume-1").initiators == {folded}
    target.terminate_connection(vol, {"initiator": "IQN.1991-05.COM.MICROSOFT:Win-Host"})
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
        device = f"{sys.argv[4]}/volume-{n}.img"  # one device per target, as chiscsi requires
        with open(device, "wb") as handle:
            handle.truncate(1 << 20)
        out[str(n)] = target.create_export(None, {"id": str(n), "name": f"volume-{n}"}, device)
    print(json.dumps(out))
""")


def test_two_processes_exporting_twenty_volumes_each_end_with_all_forty(h):
    config = h.config_file()
    dev = h.root / "devices"
    dev.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config), str(lo), str(lo + 20), str(dev)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=h.env(),
            text=True,
        )
        for lo in (0, 20)
    ]
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
    if h.location_tid_is_target_id:
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
    assert states == {"volume-1": "missing-live", "volume-2": "missing-live", "volume-3": "orphan-live"}
    fixed = target.reconcile(fix=True, stop_orphans=True)  # the orphan too, as asked
    assert all(d.fixed for d in fixed)
    assert {d.volume_name: d.state for d in target.reconcile()} == {"volume-1": "ok", "volume-2": "ok"}
    assert h.live(IQN_PREFIX + "volume-3") is None
    assert h.live("iqn.2001-04.com.example:volume-9") is not None, "foreign target untouched"
