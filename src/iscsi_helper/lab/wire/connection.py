"""State one TCP connection carries from login into the full feature phase.

Sessions have exactly one connection (MaxConnections=1,
ErrorRecoveryLevel=0), so a connection *is* its session here: sequence
numbers, the negotiated parameters and the initiator's identity live in one
object that the login phase fills in and the full feature phase uses.
"""

from __future__ import annotations

import asyncio
import struct

from iscsi_helper.lab.wire.model import format_portal
from iscsi_helper.lab.wire.negotiation import SessionParams
from iscsi_helper.lab.wire.pdu import PDU, PDUStream
from iscsi_helper.lab.wire.served import Portal, ServedTarget, SessionHandle, TargetRegistry

# Commands a session may have in flight (the CmdSN window, RFC 7143 4.2.2.1).
QUEUE_DEPTH = 64

_SEQ = struct.Struct(">III")


class ConnectionDropped(Exception):
    """The connection must end without further PDUs (protocol error at ERL 0)."""


def sn_lt(a: int, b: int) -> bool:
    """Serial number arithmetic (RFC 1982) on 32 bits."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


class ConnectionState:
    def __init__(
        self,
        registry: TargetRegistry,
        portal: Portal,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.registry = registry
        self.portal = portal
        self.stream = PDUStream(reader, writer)
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = format_portal(str(peer[0]), int(peer[1]))
        sock = writer.get_extra_info("sockname") or portal
        self.local: Portal = (str(sock[0]), int(sock[1]))
        self.params = SessionParams()
        self.served: ServedTarget | None = None
        self.discovery = False
        self.initiator_name = ""
        self.isid = b""
        self.nexus = ""
        self.tsih = 0
        self.stat_sn = 0
        self.exp_cmd_sn = 0
        # Commands accepted and not yet answered: they hold slots of the window.
        self.in_flight = 0
        self.closed = False
        # What the target and other sessions see of this connection once it is a session.
        self.session: SessionHandle | None = None

    @property
    def max_cmd_sn(self) -> int:
        """The window closes as commands pile up and reopens as they complete (RFC 7143 4.2.2.1)."""
        return (self.exp_cmd_sn + QUEUE_DEPTH - 1 - self.in_flight) & 0xFFFFFFFF

    def close(self) -> None:
        """Drop the connection; the reader loop ends with EOF."""
        if not self.closed:
            self.closed = True
            self.writer.close()

    def stamp(self, pdu: PDU, advance: bool = True) -> None:
        """Fill StatSN/ExpCmdSN/MaxCmdSN; advance StatSN for status-carrying PDUs."""
        _SEQ.pack_into(pdu.bhs, 24, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn)
        if advance:
            self.stat_sn = (self.stat_sn + 1) & 0xFFFFFFFF

    def target_name(self) -> str:
        if self.discovery:
            return "discovery"
        return self.served.target.iqn if self.served is not None else "?"
