"""Target-tool invocations per operation do not depend on how many exports exist.

Counts, never times: a count is exact on any machine, and it is what makes
an operation constant-cost (benchmarks/run.py measures the times). Every
helper with a behaviour harness is covered, on its own target (emulator or
a private tgtd), with 1 and then 200 exports beside the measured one.
Population and the 200-export restore run the emulators in process: the
helper issues the same argv, only the interpreter start per call is saved.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest

from iscsi_helper import registry
from iscsi_helper.lab.rig import InProcessExecutor
from iscsi_helper.targets.iscsi import IscsiHelper
from tests.support import devices

from .harness import HARNESSES, Harness, load_all

load_all()

EXISTING = 200

#: (tool calls per export brought back, calls for one listing) of a restore. A restore
#: that brought any export back lists twice: once to see what is missing, once more
#: to confirm that what the tool called done is live (a tool's exit code is no proof).
#: chiscsi: one ``iscsictl -S`` each between two ``-c target=ALL``, i.e. missing + 2.
#: iet: target, CHAP account and LUN (ietadm has no single "load this" call);
#: the listing is a read of /proc/net/iet/volume, not an ietadm call, and it
#: spares the probe of the recorded tid.
#: tgt: target, LUN, account, bind, ACL per export (tgtadm builds a target
#: step by step) between two ``--op show``, which spare each export's own show.
RESTORE_COST = {"chiscsi": (1, 1), "iet": (3, 0), "tgt": (5, 1)}

#: (create, remove) calls where the README promises exact figures, and the
#: call that would list every target, which neither may make. chiscsi:
#: "create is two iscsictl calls (start, exact lookup), remove is one;
#: neither lists all targets" (README, Guarantees). A lookup turned into a
#: listing keeps the count and grows with N: only the argv shows it.
# chiscsi: create is -S then one named -c; remove is -s then one named -c that proves
# the target gone (a busy target exits 0 and stays: docs/helpers/chiscsi.md).
# iet and tgt as docs/helpers/{iet,tgt}.md count them: each remove ends with one look
# proving the target gone, since no exit code is proof (issue 13).
EXACT_COST = {"chiscsi": (2, 2), "iet": (4, 4), "tgt": (7, 4)}
LISTS_ALL: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "chiscsi": lambda argv: any(a.lower() == "target=all" for a in argv)
}

IN_PROCESS = {
    "chiscsi": "iscsi_helper.lab.emulators.chiscsi.cli",
    "iet": "iscsi_helper.lab.emulators.iet.cli",
}

HELPERS = sorted(name for name in HARNESSES if name in RESTORE_COST)


def fast_target(h: Harness) -> IscsiHelper:
    """The helper on the harness's target, without a process per call where that is possible."""
    if h.name not in IN_PROCESS:
        return h.target()  # type: ignore[return-value]
    main = importlib.import_module(IN_PROCESS[h.name]).main
    return registry.get_helper(h.conf(), InProcessExecutor(main, observers=[h.calls.append]))  # type: ignore[return-value]


def device_of(h: Harness, n: int | str) -> str:
    """One backing file per export: chiscsi puts a device in one target only."""
    path = h.root / f"disk-{n}.img"
    return str(path) if path.exists() else devices.make_device(h.root, f"disk-{n}", 1 << 20)


def _calls_per_operation(h: Harness) -> tuple[int, int]:
    target = h.target()
    h.calls.clear()
    target.create_export(None, {"id": "measured", "name": "volume-measured"}, device_of(h, "m"))
    created = len(h.calls)
    listings = [argv for argv in h.calls if LISTS_ALL.get(h.name, lambda a: False)(argv)]
    h.calls.clear()
    target.remove_export(None, {"id": "measured", "name": "volume-measured"})
    listings += [argv for argv in h.calls if LISTS_ALL.get(h.name, lambda a: False)(argv)]
    assert not listings, f"{h.name}: create/remove listed every target: {listings}"
    return created, len(h.calls)


@pytest.mark.parametrize("h", HELPERS, indirect=True)  # the helpers with figures, not fake
def test_create_and_remove_cost_the_same_with_1_or_200_exports(h):
    populate = fast_target(h)
    populate.create_export(None, {"id": "p0", "name": "volume-p0"}, device_of(h, 0))
    at_one = _calls_per_operation(h)
    for n in range(1, EXISTING):
        populate.create_export(None, {"id": f"p{n}", "name": f"volume-p{n}"}, device_of(h, n))
    at_many = _calls_per_operation(h)
    assert at_many == at_one, f"{h.name}: (create, remove) calls {at_one} at 1, {at_many} at {EXISTING}"
    assert min(at_one) >= 1
    assert at_one == EXACT_COST.get(h.name, at_one), f"{h.name}: (create, remove) calls {at_one}"


@pytest.mark.parametrize("h", HELPERS, indirect=True)
def test_restore_costs_a_fixed_number_of_calls_per_missing_export(h):
    target = fast_target(h)
    for n in range(EXISTING):
        target.create_export(None, {"id": f"p{n}", "name": f"volume-p{n}"}, device_of(h, n))
    per_export, listing = RESTORE_COST[h.name]

    h.reboot()  # every export is missing
    h.calls.clear()
    report = target.restore_exports()
    assert sorted(report.started) == sorted(f"p{n}" for n in range(EXISTING)) and not report.failed
    assert len(h.calls) == per_export * EXISTING + 2 * listing

    h.calls.clear()  # nothing missing: the listing alone, nothing to confirm
    report = target.restore_exports()
    assert len(report.unchanged) == EXISTING
    assert len(h.calls) == listing
