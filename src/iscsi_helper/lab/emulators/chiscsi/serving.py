"""Optional data path: a started target answers real iSCSI logins.

The kernel module serves what ``iscsictl -S`` starts; the emulator hands the
node to the lab's wire target instead, when ``CHISCSI_EMULATOR_WIRE=1``, by
way of the emulators' shared door to it (``lab.emulators.serving``, which
imports the wire package lazily so the admin emulation works without it).
This module maps a chiscsi node onto it. What the wire model cannot express
is listed in docs/emulators/chiscsi.md (assumptions).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from iscsi_helper.lab.emulators import serving as wire
from iscsi_helper.lab.emulators.chiscsi.kernel.addr import socket_host
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node
from iscsi_helper.lab.emulators.chiscsi.kernel.settings import Settings

WIRE_ENV = "CHISCSI_EMULATOR_WIRE"
# An initiator name no initiator can have (iSCSI names hold no spaces): an
# ACL list holding only it lets nobody in, as ACL_Enable=Yes with no
# matching ACL does (private/klib/target/acl.c 536-593).
NOBODY = "(no initiator: ACL_Enable=Yes without a matching ACL)"
UNCONFIGURED_USER = "(no CHAP credential configured)"


class ServingError(Exception):
    """The data path refused or failed; the admin command fails with it."""


def wire_enabled() -> bool:
    return wire.enabled(WIRE_ENV)


def ramdisk_path(state_root: Path, node: Node, lun_index: int) -> Path:
    return state_root / "ramdisk" / f"{node.id:010d}-{lun_index}.img"


def wire_acl(node: Node) -> tuple[list[str], bool]:
    """Initiator allow-list and whether every admitted initiator is read-only.

    Only ``ACL_Enable=Yes`` makes ACLs count (acl.c 308-336); an entry that
    also constrains source or destination addresses cannot be checked by the
    wire model and admits nobody there.
    """
    if not node.acl_enabled:
        return [], False
    admitting = [a for a in node.acls if a.inames and not a.sips and not a.dips]
    names = sorted({name for a in admitting for name in a.inames})
    read_only = bool(admitting) and not any(a.writable for a in admitting)
    return (names or [NOBODY]), read_only


def wire_spec(node: Node, settings: Settings, state_root: Path) -> dict[str, Any]:
    """The WireTarget as plain data; pure, so it is testable without the wire package."""
    import secrets  # only here: every iscsictl run pays for module imports

    acl_names, acl_read_only = wire_acl(node)
    luns = []
    for index, lun in enumerate(node.luns):
        path = str(ramdisk_path(state_root, node, index)) if lun.lclass == "MEM" else lun.path
        luns.append(
            {
                "path": path,
                "read_only": lun.read_only or acl_read_only,
                "serial": lun.sn,
                "device_id": lun.scsi_id,
                "wwn": lun.wwn,
                "vendor": settings.target_vendor_id,
                "product": lun.prod[:16],
            }
        )
    started = node.started_portals
    chap_config = node.chap
    if chap_config.chap_enabled:
        auth = "CHAP" if chap_config.forced else "None,CHAP"
    else:
        auth = "CHAP" if chap_config.forced else "None"
    initiators = [(c.user, c.secret) for c in chap_config.initiators] if chap_config.chap_enabled else []
    if auth == "CHAP" and not initiators:
        initiators = [(UNCONFIGURED_USER, secrets.token_hex(16))]
    policy = chap_config.policy if chap_config.chap_enabled else "Oneway"
    target_credential = None
    if chap_config.chap_enabled and chap_config.targets:
        target_credential = (chap_config.targets[0].user, chap_config.targets[0].secret)
    elif policy == "Mutual":
        target_credential = (UNCONFIGURED_USER, secrets.token_hex(16))
    tag = started[0].tag if started else 1
    return {
        "iqn": node.name,
        "luns": luns,
        "portals": [(socket_host(p.ip), p.port & 0xFFFF) for p in started],
        "auth_method": auth,
        "chap_policy": policy,
        "initiator_credentials": initiators,
        "target_credential": target_credential,
        "acl": acl_names,
        "tpgt": tag if 0 < tag < 65536 else 1,
    }


def _unavailable(exc: wire.WireUnavailable) -> ServingError:
    return ServingError(f"{WIRE_ENV}=1 but the wire data path is unavailable: {exc}")


def _prepare_ramdisks(state_root: Path, node: Node) -> None:
    for index, lun in enumerate(node.luns):
        if lun.lclass != "MEM":
            continue
        path = ramdisk_path(state_root, node, index)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.truncate(lun.size)


def publish(state_root: Path, node: Node, settings: Settings) -> None:
    """Serve (or re-serve after a reconfigure) ``node``; no-op unless enabled."""
    if not wire_enabled():
        return
    try:
        _prepare_ramdisks(state_root, node)
        # chiscsi started only portals it could bind (kernel.portals.can_listen): one the
        # data path cannot bind now is held by another program, and must fail the start.
        wire.publish(state_root / "wire", wire_spec(node, settings, state_root))
    except wire.WireUnavailable as exc:
        raise _unavailable(exc) from None
    except Exception as exc:  # the daemon's failure becomes the command's failure
        raise ServingError(f"cannot serve {node.name}: {exc}") from exc


def withdraw(state_root: Path, name: str, keep: list[str]) -> None:
    """Close the target's sessions, except the initiators in ``keep``; stop serving it."""
    if not wire_enabled():
        return
    try:
        wire.withdraw(state_root / "wire", name, keep)
    except wire.WireUnavailable as exc:
        raise _unavailable(exc) from None
    except Exception as exc:
        raise ServingError(f"cannot stop serving {name}: {exc}") from exc


def sessions(state_root: Path, name: str) -> dict[str, list[str]]:
    """Initiators with sessions on ``name`` (``served``/``lingering``); empty without the data path."""
    if not wire_enabled() or not (state_root / "wire").exists():
        return {"served": [], "lingering": []}
    try:
        return wire.sessions(state_root / "wire", name)
    except Exception as exc:
        cause = _unavailable(exc) if isinstance(exc, wire.WireUnavailable) else exc
        raise ServingError(f"cannot count the sessions of {name}: {cause}") from exc


def stop_all(state_root: Path) -> None:
    """Reboot: the daemon goes away with everything it served."""
    if not (state_root / "wire").exists() and not wire_enabled():
        return
    with contextlib.suppress(wire.WireUnavailable):
        wire.stop(state_root / "wire")
