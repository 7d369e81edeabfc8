"""Fixtures of the reliability suite: one harness per registered helper, as the behaviour suite has."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.behaviour.harness import Harness, load_all

from . import figures

HARNESSES = load_all()
IQN_PREFIX = "iqn.2010-10.org.openstack:"


def volume(n: int | str, **extra: Any) -> dict[str, Any]:
    return {"id": str(n), "name": f"volume-{n}", **extra}


def make_device(h: Harness, name: str = "disk", size: int = 1 << 20) -> str:
    path = h.root / f"{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


@pytest.fixture(params=sorted(HARNESSES))
def h(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[Harness]:
    harness = HARNESSES[request.param](tmp_path, monkeypatch, name=request.param)
    yield harness
    teardown = getattr(harness, "teardown", None)
    if teardown:
        teardown()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """cli.main() replaces the root handlers (basicConfig force=True) with one bound to this
    test's captured stderr; put the originals back so no later test logs to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if figures.FIGURES:
        terminalreporter.section("reliability figures")
        terminalreporter.write_line(figures.render())
        figures.write_report()
