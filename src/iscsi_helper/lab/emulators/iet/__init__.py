"""Emulator of IET's admin interface: an ``ietadm`` command and fake ``/proc/net/iet`` files.

IET (kernel module plus ietd) cannot be installed on the project's hosts,
so the IET helper is tested against this stand-in. See
``docs/emulators/iet.md`` for what is emulated and every assumption made.
"""

from __future__ import annotations

from pathlib import Path

from iscsi_helper.lab.emulators.iet.cli import main

__all__ = ["bin_dir", "main"]


def bin_dir() -> Path:
    """Directory holding an executable named ``ietadm``: prepend it to PATH to use the emulator."""
    return Path(__file__).resolve().parent / "bin"
