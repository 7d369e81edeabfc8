"""What the server and the sessions share: a served target and the registry's interface.

Sessions need a few things from the server (look a target up, register a
session, list targets for SendTargets, the daemon's buffer budget), and the
server creates sessions. Both sides depend on this module instead of on each
other, which keeps the import graph a tree: ``server`` -> ``session`` ->
``login``/``full_feature`` -> ``served``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from iscsi_helper.lab.wire.budget import DaemonBudget
from iscsi_helper.lab.wire.model import WireTarget
from iscsi_helper.lab.wire.scsi import LunBackend

Portal = tuple[str, int]


class SessionHandle(Protocol):
    """The part of a session that its target (and other sessions) may act on."""

    @property
    def nexus(self) -> str:
        """The I_T nexus: initiator port name ``<iqn>,i,0x<isid>``."""

    def close(self) -> None:
        """Drop the connection (withdrawal, reinstatement, cold reset)."""

    def abort_tasks(self, lun: int | None) -> None:
        """Abort this session's commands on ``lun`` (all LUNs if None) without answering them."""


def initiator_of(conn: SessionHandle) -> str:
    """The initiator name of a session, from its nexus ``<iqn>,i,0x<isid>``."""
    return conn.nexus.rpartition(",i,0x")[0]


@dataclass(eq=False)
class ServedTarget:
    target: WireTarget
    luns: list[LunBackend]
    connections: set[SessionHandle] = field(default_factory=set)
    withdrawn: bool = False

    def close(self, keep: Collection[str] = ()) -> None:
        """Drop sessions (but those of initiators in ``keep``); the LUN descriptors close
        once the last session has ended.

        Closing a descriptor while a session still has I/O in a worker thread
        could let a newly opened file reuse the number and receive that I/O.
        """
        self.withdrawn = True
        for conn in list(self.connections):
            if initiator_of(conn) not in keep:
                conn.close()
        self.release_if_idle()

    def release_if_idle(self) -> None:
        if self.withdrawn and not self.connections and self.luns:
            for lun in self.luns:
                lun.close()
            self.luns = []


class TargetRegistry(Protocol):
    """What a session asks of the server that accepted its connection."""

    budget: DaemonBudget

    def lookup(self, iqn: str, portal: Portal) -> ServedTarget | None: ...

    def session_started(
        self, conn: SessionHandle, initiator: str, isid: bytes, served: ServedTarget
    ) -> None: ...

    def connection_closed(self, conn: SessionHandle, served: ServedTarget | None) -> None: ...

    def send_targets(
        self,
        portal: Portal,
        local: Portal,
        initiator: str,
        discovery: bool,
        own_target: str | None,
        value: str,
    ) -> list[tuple[str, str]]: ...
