"""Optional data path: make a started target answer real iSCSI logins.

The admin-tool emulator is enough to test a helper's bookkeeping; proving
that an exported volume is actually reachable (CHAP enforced, right LUN,
right identifiers) needs a target daemon. ``iscsi_helper.lab.wire`` provides one;
this module is the only place the emulator touches it, imported lazily so
the emulator keeps working where the wire package is absent or disabled.

Enabled when ``CHISCSI_EMULATOR_WIRE=1``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iscsi_helper.lab.emulators.chiscsi.confparse import Device, TargetBlock

if TYPE_CHECKING:  # pragma: no cover
    from iscsi_helper.lab.wire.model import WireTarget

WIRE_ENV = "CHISCSI_EMULATOR_WIRE"
VENDOR = "CHELSIO"
PRODUCT = "CHISCSI Target"


class ServingError(Exception):
    """The data path refused or failed; the admin command fails with it."""


def wire_enabled() -> bool:
    return os.environ.get(WIRE_ENV, "0") == "1"


def device_ids(iqn: str, lun: int, device: Device) -> tuple[str, str, str]:
    """SN, ID and WWN for a LUN: configured values win, else stable generated ones.

    Generated values follow the shape of the only real output we have
    (``SN=0N0743000000000`` 15 chars, ``ID=0D074300000000000000000`` 23,
    ``WWN=:W00743000000000`` 16) and are derived from IQN and LUN, so they
    survive restarts and reboots: multipath identifies a LUN by them.
    """
    digest = hashlib.sha256(f"{iqn}\0{lun}".encode()).hexdigest().upper()
    sn = device.sn or "0N" + digest[:13]
    dev_id = device.id or "0D" + digest[:21]
    wwn = device.wwn or ":W0" + digest[:13]
    return sn, dev_id, wwn


def wire_spec(target: TargetBlock) -> dict[str, Any]:
    """The WireTarget as plain data; pure, so it is testable without the wire package."""
    luns = []
    for number, device in enumerate(target.devices):
        sn, dev_id, wwn = device_ids(target.name, number, device)
        luns.append({"path": device.path, "read_only": device.read_only, "serial": sn,
                     "device_id": dev_id, "wwn": wwn, "vendor": VENDOR, "product": PRODUCT})
    portals = [(p.ip, p.port) for group in target.portal_groups for p in group.portals]
    return {
        "iqn": target.name,
        "luns": luns,
        "portals": portals,
        "auth_method": target.auth_method,
        "chap_policy": target.chap_policy,
        "initiator_credentials": [(c.user, c.secret) for c in target.chap_initiators],
        "target_credential": ((target.chap_target.user, target.chap_target.secret)
                              if target.chap_target else None),
        "acl": [acl.iname for acl in target.acls if acl.iname],
        "tpgt": target.portal_groups[0].tag,
    }


def to_wire_target(target: TargetBlock) -> WireTarget:
    from iscsi_helper.lab.wire.model import WireLun, WireTarget

    spec = wire_spec(target)
    spec["luns"] = [WireLun(**lun) for lun in spec["luns"]]
    wire_target = WireTarget(**spec)
    wire_target.validate()
    return wire_target


def _service(state_root: Path) -> Any:
    try:
        from iscsi_helper.lab.wire.control import WireService
    except ImportError as exc:
        raise ServingError(f"{WIRE_ENV}=1 but the wire data path is unavailable: {exc}") from None
    return WireService(state_root / "wire")


def publish(state_root: Path, target: TargetBlock) -> None:
    """Serve (or re-serve after a reload) ``target``; no-op unless enabled."""
    if not wire_enabled():
        return
    try:
        _service(state_root).publish(to_wire_target(target))
    except ServingError:
        raise
    except Exception as exc:  # the daemon's failure becomes the command's failure
        raise ServingError(f"cannot serve {target.name}: {exc}") from exc


def withdraw(state_root: Path, iqn: str) -> None:
    if not wire_enabled():
        return
    try:
        _service(state_root).withdraw(iqn)
    except ServingError:
        raise
    except Exception as exc:
        raise ServingError(f"cannot stop serving {iqn}: {exc}") from exc


def stop_all(state_root: Path) -> None:
    """Reboot: the daemon goes away with everything it served.

    Runs whenever a wire run directory exists, even if serving is now
    disabled, so that a reset never leaves a daemon from an earlier run.
    """
    if not (state_root / "wire").exists() and not wire_enabled():
        return
    try:
        service = _service(state_root)
    except ServingError:
        return  # nothing could have been started without the package
    service.stop()
