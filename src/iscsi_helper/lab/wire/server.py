"""The in-process iSCSI target: served targets, their listeners and sessions.

Everything is indexed so that publishing or withdrawing one target costs the
same whether 1 or 5000 are served: targets by IQN, targets by portal (for
SendTargets), listeners reference-counted by portal, sessions by target.  A
portal that cannot be bound (an address this node does not have) is logged
and skipped rather than failing the publication, because multipath exports
routinely list portals of other nodes; a publisher that needs every portal
(the emulators: a port another program holds would send initiators to that
program's target) asks with ``every_portal``, and then nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Collection

from iscsi_helper.lab.wire.budget import DaemonBudget
from iscsi_helper.lab.wire.model import WireTarget, format_portal
from iscsi_helper.lab.wire.scsi import LunBackend
from iscsi_helper.lab.wire.served import Portal, ServedTarget, SessionHandle, initiator_of
from iscsi_helper.lab.wire.session import Connection

LOG = logging.getLogger(__name__)


class PortalUnavailable(OSError):
    """A publish that needs every portal found one it cannot listen on; nothing was changed."""


# Connections one daemon serves at once, and how many of them may still be
# logging in (unauthenticated); beyond either, a new connection is closed at
# once, so no flood of sockets can take more than a bounded amount of memory.
MAX_CONNECTIONS = 256
MAX_LOGINS_IN_PROGRESS = 64
# A StreamReader buffers up to twice this before it stops reading the socket.
READ_BUFFER_LIMIT = 64 * 1024


def open_luns(target: WireTarget) -> list[LunBackend]:
    luns: list[LunBackend] = []
    try:
        for index, spec in enumerate(target.luns):
            luns.append(LunBackend(spec, index, target.iqn))
    except OSError:
        for lun in luns:
            lun.close()
        raise
    return luns


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


class WireServer:
    """All targets served by this process."""

    def __init__(self, budget: DaemonBudget | None = None) -> None:
        self.targets: dict[str, ServedTarget] = {}
        self.by_portal: dict[Portal, set[str]] = {}
        self.listeners: dict[Portal, asyncio.AbstractServer] = {}
        self.sessions: dict[tuple[str, bytes, str], SessionHandle] = {}
        self.connections: set[Connection] = set()
        self.budget = budget or DaemonBudget()
        self.refused_connections = 0
        # Withdrawn targets whose kept sessions still run (see withdraw's ``keep``).
        self.lingering: dict[str, list[ServedTarget]] = {}

    # --- target management ------------------------------------------------
    async def publish(self, target: WireTarget, *, every_portal: bool = False) -> list[str]:
        """Serve ``target`` (replacing an older definition); returns portals that could not be bound.

        With ``every_portal``, a portal that cannot be bound raises
        :class:`PortalUnavailable` instead, before anything changes.
        """
        target.validate()
        old = self.targets.get(target.iqn)
        if every_portal:
            failed = await self._bind_portals(target)
            if failed:
                self._close_idle_listeners()
                raise PortalUnavailable(
                    "cannot listen on " + ", ".join(f"{portal} ({why})" for portal, why in failed)
                )
        if old is not None and old.target.to_dict() == target.to_dict():
            return [portal for portal, _why in await self._bind_portals(target)]
        luns = open_luns(target)
        if old is not None:
            self._remove(old)
        served = ServedTarget(target, luns)
        self.targets[target.iqn] = served
        for portal in target.portals:
            self.by_portal.setdefault(portal, set()).add(target.iqn)
        unbound = [portal for portal, _why in await self._bind_portals(target)]
        LOG.info(
            "serving %s: %d LUN(s) on %s%s",
            target.iqn,
            len(luns),
            ", ".join(format_portal(*p) for p in target.portals) or "no portal",
            f" (unbound: {', '.join(unbound)})" if unbound else "",
        )
        return unbound

    async def withdraw(self, iqn: str, keep: Collection[str] = ()) -> bool:
        """Stop serving ``iqn``; sessions of initiators in ``keep`` go on (a stuck
        session, for emulators whose product waits for sessions to end)."""
        for old in self.lingering.get(iqn, []):
            old.close(keep)
        served = self.targets.get(iqn)
        if served is None:
            self._prune(iqn)
            return False
        self._remove(served, keep)
        if served.connections:
            self.lingering.setdefault(iqn, []).append(served)
        kept = f" ({len(served.connections)} session(s) kept)" if served.connections else ""
        LOG.info("withdrew %s%s", iqn, kept)
        return True

    def session_initiators(self, iqn: str) -> dict[str, list[str]]:
        """Initiator names of the sessions on ``iqn``: served now, and withdrawn but still running."""
        self._prune(iqn)
        served = self.targets.get(iqn)
        return {
            "served": sorted(initiator_of(c) for c in served.connections) if served else [],
            "lingering": sorted(
                initiator_of(c) for old in self.lingering.get(iqn, []) for c in old.connections
            ),
        }

    def _prune(self, iqn: str) -> None:
        left = [old for old in self.lingering.get(iqn, []) if old.connections]
        if left:
            self.lingering[iqn] = left
        else:
            self.lingering.pop(iqn, None)

    def _remove(self, served: ServedTarget, keep: Collection[str] = ()) -> None:
        iqn = served.target.iqn
        del self.targets[iqn]
        for portal in served.target.portals:
            users = self.by_portal.get(portal)
            if users is None:
                continue
            users.discard(iqn)
            if not users:
                del self.by_portal[portal]
                listener = self.listeners.pop(portal, None)
                if listener is not None:
                    listener.close()
                    LOG.info("stopped listening on %s", format_portal(*portal))
        served.close(keep)

    def served(self) -> list[str]:
        return sorted(self.targets)

    async def _bind_portals(self, target: WireTarget) -> list[tuple[str, str]]:
        """Listen on the target's portals not listened on yet; (portal, why) of those that failed."""
        unbound = []
        for portal in target.portals:
            if portal in self.listeners:
                continue
            try:
                self.listeners[portal] = await self._listen(portal)
                LOG.info("listening on %s", format_portal(*portal))
            except OSError as exc:
                LOG.warning(
                    "cannot listen on portal %s of %s: %s; skipped",
                    format_portal(*portal),
                    target.iqn,
                    exc.strerror or exc,
                )
                unbound.append((format_portal(*portal), str(exc.strerror or exc)))
        return unbound

    def _close_idle_listeners(self) -> None:
        """Close listeners no served target uses (opened for a publish that was refused)."""
        for portal in [p for p in self.listeners if p not in self.by_portal]:
            self.listeners.pop(portal).close()

    async def _listen(self, portal: Portal) -> asyncio.AbstractServer:
        host, port = portal

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            logging_in = sum(1 for c in self.connections if c.in_login)
            if len(self.connections) >= MAX_CONNECTIONS or logging_in >= MAX_LOGINS_IN_PROGRESS:
                self.refused_connections += 1
                if self.refused_connections % 100 == 1:
                    LOG.warning(
                        "refusing connection from %s: %d connections, %d logging in (limits %d and %d)",
                        writer.get_extra_info("peername"),
                        len(self.connections),
                        logging_in,
                        MAX_CONNECTIONS,
                        MAX_LOGINS_IN_PROGRESS,
                    )
                writer.close()
                return
            conn = Connection(self, portal, reader, writer)
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return await asyncio.start_server(
            on_connect,
            host=host or None,
            port=port,
            family=family,
            reuse_address=True,
            limit=READ_BUFFER_LIMIT,
        )

    async def close(self) -> None:
        for served in list(self.targets.values()):
            self._remove(served)
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        for conn in list(self.connections):
            conn.close()

    # --- used by connections ------------------------------------------
    def lookup(self, iqn: str, portal: Portal) -> ServedTarget | None:
        served = self.targets.get(iqn)
        if served is None or portal not in served.target.portals:
            return None
        return served

    def session_started(self, conn: SessionHandle, initiator: str, isid: bytes, served: ServedTarget) -> None:
        key = (initiator, isid, served.target.iqn)
        old = self.sessions.get(key)
        if old is not None and old is not conn:
            LOG.info("session reinstatement for %s: dropping the old connection", initiator)
            old.close()
        self.sessions[key] = conn
        served.connections.add(conn)
        for lun in served.luns:
            lun.nexuses.add(conn.nexus)

    def connection_closed(self, conn: SessionHandle, served: ServedTarget | None) -> None:
        if served is None or conn not in served.connections:
            return
        served.connections.discard(conn)
        if not any(other.nexus == conn.nexus for other in served.connections):
            for lun in served.luns:
                lun.nexuses.discard(conn.nexus)
                lun.reservations.nexus_lost(conn.nexus)
        served.release_if_idle()
        key = _session_key(conn, served)
        if key is not None and self.sessions.get(key) is conn:
            del self.sessions[key]

    def send_targets(
        self,
        portal: Portal,
        local: Portal,
        initiator: str,
        discovery: bool,
        own_target: str | None,
        value: str,
    ) -> list[tuple[str, str]]:
        """SendTargets answer: targets visible on the session's portal, allowed for its initiator."""
        if value == "All":
            if not discovery:
                return [("SendTargets", "Reject")]
            names = sorted(self.by_portal.get(portal, ()))
        elif value == "":
            names = [own_target] if own_target is not None else []
        else:
            names = [value] if value in self.by_portal.get(portal, ()) else []
        out: list[tuple[str, str]] = []
        for name in names:
            served = self.targets.get(name)
            if served is None:
                continue
            t = served.target
            if t.acl and initiator not in t.acl:
                continue
            out.append(("TargetName", t.iqn))
            for host, port in t.portals:
                if (host, port) not in self.listeners:
                    continue
                if _wildcard(host):
                    host, port = local
                out.append(("TargetAddress", f"{format_portal(host, port)},{t.tpgt}"))
        return out


def _session_key(conn: SessionHandle, served: ServedTarget) -> tuple[str, bytes, str] | None:
    initiator, sep, isid = conn.nexus.rpartition(",i,0x")
    if not sep:
        return None
    return (initiator, bytes.fromhex(isid), served.target.iqn)
