"""libiscsi's conformance suite (iscsi-test-cu) against the wire target, judged per test.

The whole SCSI family runs once against a 64 MiB LUN published on an IPv4
and an IPv6 portal (so the multipath and two-initiator tests run, the
reservation ones among them), plus the iSCSI families the target supports
and SCSI.ReadOnly on a read-only LUN. Every test must pass, except the ones
listed in :data:`EXPECTED_SKIPS`, each with the reason libiscsi must give
for skipping it. A test that is skipped for any other reason, fails, does
not finish, or disappears from the run fails here: libiscsi counts skipped
tests as passed, so its summary line alone would let a family that is
"not implemented" go green. docs/wire-target.md has the table of the same
run beside tgtd.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iscsi_helper.lab.wire.control import WireService
from iscsi_helper.lab.wire.model import WireLun

from .conftest import Targets, make_image, run
from .cu_results import Outcome, parse

DISK_BYTES = 64 << 20  # the size docs/wire-target.md's comparison with tgtd uses

# Test (or "Suite." for every test of a suite) -> the reason libiscsi must print.
EXPECTED_SKIPS = {
    "CompareAndWrite.InvalidDataOutSize": "LBPPB < 2",
    "WriteSame10.UnmapUnaligned": "LBPPB < 2",
    "WriteSame10.InvalidDataOutSize": "LBPPB < 2",
    "WriteSame16.UnmapUnaligned": "LBPPB < 2",
    "WriteSame16.InvalidDataOutSize": "LBPPB < 2",
    "ExtendedCopy.": "is not implemented",
    "ReceiveCopyResults.": "is not implemented",
    "ReadDefectData10.": "is not implemented",
    "ReadDefectData12.": "is not implemented",
    "WriteAtomic16.": "is not implemented",
    "PreventAllow.": "not removable",
    "StartStopUnit.Simple": "not removable",
    "Sanitize.": "--allow-sanitize flag is not set",
    "ReadOnly.ReadOnlySBC": "not write-protected",  # on the writable LUN; the read-only run below passes it
    # libiscsi asks for "one command" with service-action options on an opcode without
    # service actions and reads the INVALID FIELD IN CDB it gets as "not implemented".
    "ReportSupportedOpcodes.OneCommand": "REPORT_SUPPORTED_OPCODES is not implemented",
}

# Suites that must be present and pass (the families this target implements),
# so that a suite vanishing from the run is noticed too.
REQUIRED_SUITES = [
    "Inquiry",
    "Mandatory",
    "NoMedia",
    "TestUnitReady",
    "ReadCapacity10",
    "ReadCapacity16",
    "Read6",
    "Read10",
    "Read12",
    "Read16",
    "Write10",
    "Write12",
    "Write16",
    "WriteVerify10",
    "WriteVerify12",
    "WriteVerify16",
    "Verify10",
    "Verify12",
    "Verify16",
    "CompareAndWrite",
    "OrWrite",
    "GetLBAStatus",
    "ModeSense6",
    "Unmap",
    "WriteSame10",
    "WriteSame16",
    "Prefetch10",
    "Prefetch16",
    "ReportSupportedOpcodes",
    "MultipathIO",
    "PrinReadKeys",
    "PrinReportCapabilities",
    "PrinServiceactionRange",
    "ProutRegister",
    "ProutReserve",
    "ProutClear",
    "ProutPreempt",
    "Reserve6",
    "iSCSIResiduals",
    "iSCSITMF",
    "iSCSIcmdsn",
]


def expected_skip(test: str) -> str | None:
    if test in EXPECTED_SKIPS:
        return EXPECTED_SKIPS[test]
    return EXPECTED_SKIPS.get(test.split(".")[0] + ".")


@pytest.fixture(scope="module")
def results(service: WireService, port: int, module_dir: Path) -> Iterator[dict[str, Outcome]]:
    t = Targets(service, module_dir, port, "conformance")
    scratch = t.add("rw", size=DISK_BYTES, portals=[("127.0.0.1", port), ("::1", port)])
    try:
        url, url6 = t.url(scratch), t.url(scratch, host="::1")
        outcomes: dict[str, Outcome] = {}
        scsi = run(
            "iscsi-test-cu",
            "--dataloss",
            "-i",
            "iqn.2024-01.org.example:cu-1",
            "--test=SCSI",
            url,
            url6,
            timeout=600,
        )
        outcomes.update(parse(scsi.stdout + scsi.stderr))
        for family in ("iSCSI.iSCSIResiduals", "iSCSI.iSCSITMF", "iSCSI.iSCSIcmdsn"):
            out = run("iscsi-test-cu", "--dataloss", f"--test={family}", url, timeout=120)
            outcomes.update(parse(out.stdout + out.stderr))
        yield outcomes
    finally:
        t.cleanup()


def test_every_required_suite_ran(results: dict[str, Outcome]) -> None:
    suites = {name.split(".")[0] for name in results}
    missing = [s for s in REQUIRED_SUITES if s not in suites]
    assert not missing, f"suites absent from the run: {missing}"


@pytest.mark.parametrize("suite", REQUIRED_SUITES)
def test_suite_passes_every_test_it_should(results: dict[str, Outcome], suite: str) -> None:
    tests = {name: o for name, o in results.items() if name.split(".")[0] == suite}
    assert tests, f"{suite}: no test ran"
    wrong = []
    for name, outcome in sorted(tests.items()):
        reason = expected_skip(name)
        if reason is None and outcome.verdict != "passed":
            wrong.append(f"{name}: {outcome.verdict} {outcome.skip_reasons}\n{outcome.log[-1500:]}")
        elif reason is not None and outcome.verdict == "failed":
            wrong.append(f"{name}: failed\n{outcome.log[-1500:]}")
    assert not wrong, "\n".join(wrong)


def test_expected_skips_skip_for_the_stated_reason(results: dict[str, Outcome]) -> None:
    """A listed skip must still be that skip: once implemented, it must come off the list."""
    wrong = []
    for name, outcome in sorted(results.items()):
        reason = expected_skip(name)
        if reason is None:
            continue
        if outcome.verdict != "skipped" or not any(reason in r for r in outcome.skip_reasons):
            wrong.append(
                f"{name}: {outcome.verdict} {outcome.skip_reasons} (listed as skipped for {reason!r})"
            )
    assert not wrong, "\n".join(wrong)


def test_no_unlisted_test_is_skipped_or_failed(results: dict[str, Outcome]) -> None:
    bad = {
        name: (o.verdict, o.skip_reasons)
        for name, o in results.items()
        if o.verdict != "passed" and expected_skip(name) is None
    }
    assert not bad, bad


def test_read_only_lun(service: WireService, port: int, module_dir: Path) -> None:
    t = Targets(service, module_dir, port, "conformance-ro")
    ro = t.add("ro", luns=[WireLun(make_image(module_dir / "ro.img", 1 << 20), read_only=True)])
    try:
        out = run("iscsi-test-cu", "--dataloss", "--test=SCSI.ReadOnly", t.url(ro), timeout=60)
    finally:
        t.cleanup()
    outcome = parse(out.stdout + out.stderr).get("ReadOnly.ReadOnlySBC")
    assert outcome is not None, out.stdout[-2000:]
    # It runs (no "not write-protected" skip); only UNMAP, not offered on a read-only LUN,
    # is skipped inside it.
    assert outcome.verdict in ("passed", "skipped"), outcome.log
    assert all("UNMAP" in r for r in outcome.skip_reasons), outcome.skip_reasons
