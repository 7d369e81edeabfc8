"""The emulators' one door to a real data path: the embedded wire target (``iscsi_helper.lab.wire``).

The kernel modules the emulators stand in for serve what their admin tools
configure. An emulator can do the same, when its ``*_EMULATOR_WIRE=1`` is
set, by handing a target to the wire daemon of its state directory. How a
product's target maps onto a ``WireTarget`` is the emulator's own business
(its ``serving`` module builds the plain-data spec); starting, publishing,
withdrawing and stopping are the same for both, and live here.

The wire package is imported lazily, on the first call that needs it, so an
emulator (and its admin-interface tests) works on a tree where the wire
package is absent or broken, and a change of the wire API touches this file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from iscsi_helper.lab.wire.control import WireService


class WireUnavailable(ImportError):
    """The wire package cannot be imported; ``str()`` says why."""


def enabled(env_name: str) -> bool:
    """Whether ``$env_name`` asks for the data path (only ``1`` does)."""
    return os.environ.get(env_name, "") == "1"


def service(run_dir: Path) -> WireService:
    """A client of the wire daemon running in ``run_dir`` (started on first use)."""
    try:
        from iscsi_helper.lab.wire.control import WireService
    except ImportError as exc:
        raise WireUnavailable(str(exc)) from None
    return WireService(run_dir)


def publish(run_dir: Path, spec: dict[str, Any]) -> None:
    """Serve (or serve again, reconfigured) the target ``spec`` describes.

    ``spec`` holds ``WireTarget``'s keyword arguments, with ``luns`` as a list
    of ``WireLun`` keyword arguments. Every portal must be bound: both products
    serve a target on all its portals, so one another program holds (which
    would send initiators to that program's target) fails the admin command.
    """
    try:
        from iscsi_helper.lab.wire.model import WireLun, WireTarget
    except ImportError as exc:
        raise WireUnavailable(str(exc)) from None
    target = WireTarget(**{**spec, "luns": [WireLun(**lun) for lun in spec["luns"]]})
    service(run_dir).publish(target, every_portal=True)


def withdraw(run_dir: Path, iqn: str, keep: list[str] | None = None) -> None:
    """Stop serving ``iqn``, closing its sessions except those of the initiators in ``keep``."""
    service(run_dir).withdraw(iqn, keep)


def sessions(run_dir: Path, iqn: str) -> dict[str, list[str]]:
    """Initiators with sessions on ``iqn``: ``served`` (published) and ``lingering`` (withdrawn, kept)."""
    return dict(service(run_dir).sessions(iqn))


def stop(run_dir: Path) -> None:
    """Stop the wire daemon of ``run_dir`` and everything it serves."""
    service(run_dir).stop()
