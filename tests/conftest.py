"""Fixtures shared by every test directory, and the CI rule on skips (tests/expected_skips.py)."""

from __future__ import annotations

import os

import pytest

from tests import expected_skips
from tests.support.devices import make_device


@pytest.fixture
def device(tmp_path):
    """A 4 MiB file-backed volume."""
    return make_device(tmp_path, "disk0", 4 << 20)


# Property tests draw new examples on every run by default; CI must judge the
# same code the same way twice, so under CI the examples are derandomized
# (fixed per test) and no per-example deadline applies on a loaded machine.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # hypothesis is a test extra; its tests skip without it
    pass


# ------------------------------------------------------------------ skips


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


_UNEXPECTED_COLLECT_SKIPS: list[str] = []
_CI_MESSAGE = (
    "a skip not listed in tests/expected_skips.py under CI (.ci/run installs every tool "
    "the suite needs; a missing one must fail the run, not hide its tests)"
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI, a skipped test that is not an expected skip fails instead."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and under_ci()) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not expected_skips.is_expected(report.nodeid, reason):
        report.outcome = "failed"
        report.longrepr = f"{_CI_MESSAGE}: {report.nodeid}: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    """Under CI, a module skipped whole at collection fails the run (reported at the end)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and under_ci():
        reason = _skip_reason(report)
        if not expected_skips.is_expected(report.nodeid, reason):
            _UNEXPECTED_COLLECT_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _UNEXPECTED_COLLECT_SKIPS and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _UNEXPECTED_COLLECT_SKIPS:
        terminalreporter.section("modules skipped at collection under CI", red=True)
        terminalreporter.write_line(_CI_MESSAGE + ":")
        for line in _UNEXPECTED_COLLECT_SKIPS:
            terminalreporter.write_line(f"  {line}")
