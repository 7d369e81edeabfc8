"""libiscsi's conformance suite (iscsi-test-cu) against the wire target.

The families below all pass (see docs/wire-target.md for the full run, the
skips and the one known failure); running them in CI turns any protocol or
SCSI regression into a failing test.  Each family is asserted to have run
tests, failed none, and not to have been skipped wholesale as unimplemented.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iscsi_helper.lab.wire.model import WireLun

from .conftest import Targets, make_image, run

FAMILIES = [
    "SCSI.Inquiry", "SCSI.ReadCapacity10", "SCSI.ReadCapacity16", "SCSI.TestUnitReady", "SCSI.Mandatory",
    "SCSI.Read6", "SCSI.Read10", "SCSI.Read12", "SCSI.Read16",
    "SCSI.Write10", "SCSI.Write12", "SCSI.Write16",
    "SCSI.WriteVerify10", "SCSI.WriteVerify16", "SCSI.Verify10", "SCSI.Verify16",
    "SCSI.ModeSense6", "SCSI.Unmap", "SCSI.WriteSame10", "SCSI.WriteSame16", "SCSI.CompareAndWrite",
    "SCSI.Prefetch10", "SCSI.Prefetch16", "SCSI.ReportSupportedOpcodes",
    "iSCSI.iSCSIResiduals", "iSCSI.iSCSITMF", "iSCSI.iSCSIcmdsn",
]

# Families whose every test must really run (no "[SKIPPED] ... not implemented").
MUST_NOT_SKIP = {"SCSI.Unmap", "SCSI.Read10", "SCSI.Write10", "SCSI.CompareAndWrite", "SCSI.Inquiry",
                 "SCSI.ReadCapacity16", "iSCSI.iSCSIResiduals", "iSCSI.iSCSITMF"}

SUMMARY = re.compile(r"^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def conformance_urls(service, port: int, module_dir: Path):  # type: ignore[no-untyped-def]
    t = Targets(service, module_dir, port, "conformance")
    scratch = t.add("rw", size=4 << 20, portals=[("127.0.0.1", port), ("::1", port)])
    ro = t.add("ro", luns=[WireLun(make_image(module_dir / "ro.img", 1 << 20), read_only=True)])
    try:
        yield t.url(scratch), t.url(scratch, host="::1"), t.url(ro)
    finally:
        t.cleanup()


def _check(output: str, family: str) -> None:
    match = SUMMARY.search(output)
    assert match, f"{family}: no run summary\n{output[-2000:]}"
    _total, ran, passed, failed = map(int, match.groups())
    assert ran > 0 and failed == 0 and passed == ran, f"{family}: {passed}/{ran} passed\n{output[-4000:]}"
    assert "FAILED" not in output, output[-4000:]
    if family in MUST_NOT_SKIP:
        suite = family.split(".")[1].upper()
        assert f"{suite} is not implemented" not in output.upper().replace("_", "")


@pytest.mark.parametrize("family", FAMILIES)
def test_iscsi_test_cu_family(conformance_urls: tuple[str, str, str], family: str) -> None:
    url, _, _ = conformance_urls
    out = run("iscsi-test-cu", "--dataloss", "-i", "iqn.2024-01.org.example:cu-1", f"--test={family}", url,
              timeout=90)
    _check(out.stdout + out.stderr, family)


def test_iscsi_test_cu_read_only(conformance_urls: tuple[str, str, str]) -> None:
    _, _, ro = conformance_urls
    out = run("iscsi-test-cu", "--dataloss", "--test=SCSI.ReadOnly", ro, timeout=60)
    _check(out.stdout + out.stderr, "SCSI.ReadOnly")
    assert "not write-protected" not in out.stdout


def test_iscsi_test_cu_multipath_over_ipv4_and_ipv6(conformance_urls: tuple[str, str, str]) -> None:
    url, url6, _ = conformance_urls
    out = run("iscsi-test-cu", "--dataloss", "--test=SCSI.MultipathIO", url, url6, timeout=90)
    _check(out.stdout + out.stderr, "SCSI.MultipathIO")
    assert "Multipath unavailable" not in out.stdout
