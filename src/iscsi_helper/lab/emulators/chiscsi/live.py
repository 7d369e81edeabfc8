"""Read-only view of the emulated kernel, for tests that check what a target really holds.

Test harnesses must not parse the emulator's files; this is the stable way to
ask "is this target live, with which LUNs, credentials and ACLs". It reads
without taking ``iscsictl``'s lock, so it never makes a concurrent
``iscsictl`` fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iscsi_helper.lab.emulators.chiscsi.kernel.addr import socket_host
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node
from iscsi_helper.lab.emulators.chiscsi.state import KernelState


@dataclass(frozen=True)
class LiveLun:
    path: str
    lun_class: str
    read_only: bool
    serial: str
    device_id: str
    wwn: str
    size: int


@dataclass(frozen=True)
class LiveTarget:
    name: str
    tid: int
    offline: bool
    luns: tuple[LiveLun, ...]
    portals: tuple[tuple[str, int, int], ...]  # (host, port, tag) of started portals
    auth_method: str  # as -c shows it: None, None,CHAP or CHAP
    chap_policy: str
    initiator_credentials: tuple[tuple[str, str], ...]
    target_credential: tuple[str, str] | None
    acl_enabled: bool
    acl_initiators: frozenset[str]  # initiator names an enabled ACL names; empty when disabled


def _view(node: Node) -> LiveTarget:
    chap = node.chap
    return LiveTarget(
        name=node.name,
        tid=node.id,
        offline=node.offline,
        luns=tuple(
            LiveLun(lun.path, lun.lclass, lun.read_only, lun.sn, lun.scsi_id, lun.wwn, lun.size)
            for lun in node.luns
        ),
        portals=tuple((socket_host(p.ip), p.port, p.tag) for p in node.started_portals),
        auth_method=chap.displayed_method,
        chap_policy=chap.policy,
        initiator_credentials=tuple((c.user, c.secret) for c in chap.initiators) if chap.chap_enabled else (),
        target_credential=(
            (chap.targets[0].user, chap.targets[0].secret) if chap.chap_enabled and chap.targets else None
        ),
        acl_enabled=node.acl_enabled,
        acl_initiators=frozenset(n for a in node.acls for n in a.inames) if node.acl_enabled else frozenset(),
    )


def live_target(state_dir: Path | str, name: str) -> LiveTarget | None:
    """The live (not offline) target named exactly ``name``, as ``-c target=<name>`` finds it."""
    node = KernelState(Path(state_dir)).find_by_name(name)
    return None if node is None else _view(node)


def targets(state_dir: Path | str) -> list[LiveTarget]:
    """Every node in the kernel's queue (offline ones included), in queue order."""
    return [_view(node) for node in KernelState(Path(state_dir)).all_nodes()]


def next_tid(state_dir: Path | str) -> int:
    """The id the next node the kernel allocates will get."""
    return KernelState(Path(state_dir)).next_id()
