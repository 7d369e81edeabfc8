"""Backing files for exports: the one way the tests make a volume's device."""

from __future__ import annotations

from pathlib import Path


def make_device(directory: Path, name: str = "disk", size: int = 4 << 20) -> str:
    """A sparse file ``<directory>/<name>.img`` of ``size`` bytes, as a path string.

    Sparse, so hundreds of exports cost no disk; a file, so no root or loop
    device is needed. Callers that give each export its own file do so
    because chiscsi puts one device in one target only.
    """
    path = directory / f"{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)
