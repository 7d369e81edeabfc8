"""Fixtures of the reliability suite: one harness per registered helper, as the behaviour suite has."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.behaviour.harness import Harness, harness_fixture, load_all
from tests.support import devices

from . import figures

HARNESSES = load_all()
IQN_PREFIX = "iqn.2010-10.org.openstack:"


def volume(n: int | str, **extra: Any) -> dict[str, Any]:
    return {"id": str(n), "name": f"volume-{n}", **extra}


def make_device(h: Harness, name: str = "disk", size: int = 1 << 20) -> str:
    return devices.make_device(h.root, name, size)


def tool_names(h: Harness) -> set[str]:
    """The tools (basenames) the helper runs for a create and a remove: those a broken tool can be."""
    before = len(h.calls)
    target = h.target()
    target.create_export(None, volume(7), make_device(h, "probe"))
    target.remove_export(None, volume(7))
    return {os.path.basename(argv[0]) for argv in h.calls[before:]}


h = harness_fixture()  # the behaviour suite's: one harness per registered helper


@pytest.fixture
def root_logging() -> Iterator[None]:
    """cli.main() replaces the root handlers (basicConfig force=True) with one bound to this
    test's captured stderr; put the originals back so no later test logs to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if figures.FIGURES:
        terminalreporter.section("reliability figures")
        terminalreporter.write_line(figures.render())
        figures.write_report()
