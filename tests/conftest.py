"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import socket

import pytest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def device(tmp_path):
    """A 4 MiB file-backed volume."""
    path = tmp_path / "disk0.img"
    with open(path, "wb") as handle:
        handle.truncate(4 << 20)
    return str(path)


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
