"""How an IET target is served on the data path (``IET_EMULATOR_WIRE=1``).

Real IET serves a target from the moment it has a LUN; the emulator can do
the same through the lab's wire target, by way of the emulators' shared
door to it (``lab.emulators.serving``). This module maps IET's model onto it.

Mapping of an IET target onto a WireTarget:

* served while it has LUN 0; the wire model numbers LUNs by list position,
  so the contiguous run 0, 1, 2... is published and a gap ends it;
* ``IncomingUser`` accounts make CHAP required (``auth_method="CHAP"``),
  and an ``OutgoingUser`` adds mutual CHAP;
* portals come from ``IET_EMULATOR_PORTALS`` (``host:port`` items, IPv6 in
  brackets). ietd listens on every address of the host; the default here
  is loopback only (``127.0.0.1:3260``), because a test host should not
  expose volumes by accident: set ``0.0.0.0:3260`` for IET's behaviour.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from iscsi_helper.lab.emulators import serving as wire
from iscsi_helper.lab.emulators.iet.errors import IetError
from iscsi_helper.lab.emulators.iet.model import TargetRecord

WIRE_ENV = "IET_EMULATOR_WIRE"
PORTALS_ENV = "IET_EMULATOR_PORTALS"
DEFAULT_PORTALS = "127.0.0.1:3260"


def enabled() -> bool:
    return wire.enabled(WIRE_ENV)


def run_dir(state_root: Path) -> Path:
    return state_root / "wire"


def parse_portals(text: str) -> list[tuple[str, int]]:
    """``127.0.0.1:3260,[::1]:3260`` -> [("127.0.0.1", 3260), ("::1", 3260)]."""
    portals: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError(f"portal {item!r}: expected [ipv6]:port")
            port_text = rest[1:]
        else:
            host, sep, port_text = item.rpartition(":")
            if not sep or ":" in host:
                raise ValueError(f"portal {item!r}: expected host:port (bracket IPv6 hosts)")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"portal {item!r}: bad port")
        portals.append((host, int(port_text)))
    if not portals:
        raise ValueError(f"{PORTALS_ENV} names no portal")
    return portals


def served_luns(record: TargetRecord) -> list[dict[str, Any]]:
    """The LUNs the wire target can carry: 0, 1, 2... up to the first gap."""
    by_number = {lun["lun"]: lun for lun in record["luns"]}
    result = []
    number = 0
    while number in by_number:
        lun = by_number[number]
        result.append(
            {
                "path": lun["path"],
                "read_only": lun["iomode"] == "ro",
                "serial": lun["scsi_sn"],
                "device_id": lun["scsi_id"],
                "wwn": None,
                "block_size": lun["blocksize"],
            }
        )
        number += 1
    return result


def wire_target_args(record: TargetRecord, portals: list[tuple[str, int]]) -> dict[str, Any]:
    """Keyword arguments for ``WireTarget`` (plain data, testable without the wire package)."""
    incoming = [(user, secret) for user, secret in record["incoming"]]
    outgoing = record["outgoing"][0] if record["outgoing"] else None
    return {
        "iqn": record["name"],
        "portals": portals,
        "auth_method": "CHAP" if incoming else "None",
        "chap_policy": "Mutual" if incoming and outgoing else "Oneway",
        "initiator_credentials": incoming,
        "target_credential": (outgoing[0], outgoing[1]) if outgoing else None,
        "acl": [],
    }


def on_change(state_root: Path, before: TargetRecord | None, after: TargetRecord | None) -> None:
    """Publish or withdraw one target whose state changes (no-op unless enabled).

    Called before a new or changed target is saved, so a data path that
    cannot serve it (a portal held by another program) fails the command
    with nothing changed; after a target is deleted, to stop serving it.
    """
    if not enabled():
        return
    was_served = before is not None and bool(served_luns(before))
    luns = served_luns(after) if after is not None else []
    if not luns and not was_served:
        return
    try:
        if luns and after is not None:
            portals = parse_portals(os.environ.get(PORTALS_ENV, DEFAULT_PORTALS))
            # ietd serves every target on its portals: one another program holds would
            # send initiators to that program's target, so it fails the command.
            wire.publish(run_dir(state_root), {"luns": luns, **wire_target_args(after, portals)})
        elif before is not None:
            wire.withdraw(run_dir(state_root), before["name"])
    except wire.WireUnavailable as exc:
        raise IetError(errno.EIO, f"{WIRE_ENV}=1 but the wire target is unavailable: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- the wire daemon's failure must reach the ietadm caller
        raise IetError(errno.EIO, f"the data path failed: {exc}") from None


def stop(state_root: Path) -> None:
    """Stop the wire daemon of a state directory (test teardown; real IET has no such call)."""
    wire.stop(run_dir(state_root))
