"""Specs for the codec tests: built in memory, no file or tool behind them."""

from __future__ import annotations

import pytest

from iscsi_helper.formats import ChapCredentials, Portal
from iscsi_helper.model import ExportSpec

IQN = "iqn.2010-10.org.openstack:volume-1"


@pytest.fixture
def spec() -> ExportSpec:
    return ExportSpec(
        "1",
        "volume-1",
        IQN,
        "/srv/volume-1.img",
        0,
        (Portal("192.0.2.10", 3260), Portal("2001:db8::1", 3260)),
        ChapCredentials("user-1", "secret-secret-1"),
    )
