"""Persistent reservations and SPC-2 RESERVE/RELEASE for one logical unit.

Modelled on SPC-4 (r37): 5.12 "Reservations" (persistent reservation types,
registration, holders, PREEMPT and CLEAR), 6.15 PERSISTENT RESERVE IN (READ
KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS), 6.16
PERSISTENT RESERVE OUT (REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT
AND ABORT, REGISTER AND IGNORE EXISTING KEY) and table 50 (commands allowed in
the presence of each reservation type); RESERVE(6)/RELEASE(6) and their
10-byte forms follow SPC-2 7.21/7.16. chiscsi implements both kinds
(clustered initiators fence each other with them).

State lives in the logical unit, shared by every session of the target, and
lasts as long as the target is served: registrations survive logouts, lost
connections and resets, as SPC-4 requires. It is not persisted across a
daemon restart, so REPORT CAPABILITIES says PTPL_C=0 and APTPL=1 is refused.
An I_T nexus is named by its iSCSI initiator port (name + ISID), the form of
an iSCSI TransportID (SPC-4 7.6.4.6); there is one target port.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from iscsi_helper.lab.wire.sense import (
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAM,
    PARAM_LIST_LENGTH_ERROR,
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    ReservationConflict,
    SenseError,
    be,
    illegal,
)

# Reservation types (SPC-4 table 177).
WRITE_EXCLUSIVE = 0x1
EXCLUSIVE_ACCESS = 0x3
WRITE_EXCLUSIVE_RO = 0x5
EXCLUSIVE_ACCESS_RO = 0x6
WRITE_EXCLUSIVE_AR = 0x7
EXCLUSIVE_ACCESS_AR = 0x8
TYPES = (
    WRITE_EXCLUSIVE,
    EXCLUSIVE_ACCESS,
    WRITE_EXCLUSIVE_RO,
    EXCLUSIVE_ACCESS_RO,
    WRITE_EXCLUSIVE_AR,
    EXCLUSIVE_ACCESS_AR,
)
REGISTRANTS_TYPES = (WRITE_EXCLUSIVE_RO, EXCLUSIVE_ACCESS_RO, WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR)
ALL_REGISTRANTS_TYPES = (WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR)
LU_SCOPE = 0x0

INVALID_RELEASE = (0x26, 0x04)  # INVALID RELEASE OF PERSISTENT RESERVATION

# PERSISTENT RESERVE OUT service actions (SPC-4 table 182).
SA_REGISTER = 0x00
SA_RESERVE = 0x01
SA_RELEASE = 0x02
SA_CLEAR = 0x03
SA_PREEMPT = 0x04
SA_PREEMPT_AND_ABORT = 0x05
SA_REGISTER_AND_IGNORE = 0x06
PROUT_PARAMETER_LENGTH = 24

# How each command is treated under a reservation held by another I_T nexus
# (SPC-4 table 50, SBC-3 table 13): READS touch the medium for reading,
# WRITES change the medium or the device, FREE is always allowed.
FREE, READS, WRITES, OTHER = range(4)
ACCESS: dict[int, int] = {
    0x12: FREE,
    0xA0: FREE,
    0x03: FREE,
    0x5E: FREE,
    0x5F: FREE,
    0xA3: FREE,
    0x00: FREE,
    0x25: FREE,
    0x9E: FREE,  # READ CAPACITY (16 and GET LBA STATUS share 0x9E; LBA STATUS is a read)
    0x08: READS,
    0x28: READS,
    0xA8: READS,
    0x88: READS,
    0x2F: READS,
    0xAF: READS,
    0x8F: READS,
    0x34: READS,
    0x90: READS,
    0x0A: WRITES,
    0x2A: WRITES,
    0xAA: WRITES,
    0x8A: WRITES,
    0x2E: WRITES,
    0xAE: WRITES,
    0x8E: WRITES,
    0x41: WRITES,
    0x93: WRITES,
    0x42: WRITES,
    0x89: WRITES,
    0x8B: WRITES,
    0x35: WRITES,
    0x91: WRITES,
    0x15: WRITES,
    0x55: WRITES,
    0x1A: OTHER,
    0x5A: OTHER,
    0x1B: OTHER,
    0x1E: OTHER,
}
# Commands an SPC-2 reservation held elsewhere still lets through (SPC-2 5.5.1).
SPC2_ALLOWED = {0x12, 0xA0, 0x03, 0x17, 0x57, 0xA3, 0x25}  # PR IN/OUT: never (see below)
SPC2_COMMANDS = frozenset((0x16, 0x56, 0x17, 0x57))  # RESERVE(6/10), RELEASE(6/10)

UnitAttentionSink = Callable[[str, tuple[int, int]], None]


@dataclass
class Reservations:
    """Registrations, the persistent reservation and the SPC-2 reservation of one logical unit."""

    raise_unit_attention: UnitAttentionSink = field(repr=False, default=lambda nexus, ua: None)
    registrations: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    holder: str | None = None  # None with a type set: all registrants hold it
    type: int = 0  # 0: no persistent reservation
    spc2_holder: str | None = None

    # --- access control ---------------------------------------------------
    def check_access(self, nexus: str, cdb: bytes) -> None:
        """Raise :class:`ReservationConflict` if a reservation keeps ``nexus`` from running ``cdb``."""
        op = cdb[0]
        if self.spc2_holder is not None and self.spc2_holder != nexus and op not in SPC2_ALLOWED:
            raise ReservationConflict()
        if op in SPC2_COMMANDS:
            self._spc2_exempt(nexus)  # raises when registrations keep RESERVE/RELEASE out
            return
        if not self.type or self._holds(nexus):
            return
        kind = ACCESS.get(op, OTHER)
        if op == 0x9E and cdb[1] & 0x1F == 0x12:
            kind = READS  # GET LBA STATUS
        if kind == FREE:
            return
        exclusive_access = self.type in (EXCLUSIVE_ACCESS, EXCLUSIVE_ACCESS_RO, EXCLUSIVE_ACCESS_AR)
        if kind == WRITES or exclusive_access and kind != FREE:
            raise ReservationConflict()

    def _holds(self, nexus: str) -> bool:
        """Whether table 50 gives ``nexus`` full access: the holder, or any registrant of the
        registrants-only and all-registrants types."""
        if self.type in REGISTRANTS_TYPES:
            return nexus in self.registrations
        return self.holder == nexus

    def _is_holder(self, nexus: str) -> bool:
        """The persistent reservation holder (SPC-4 5.12.10): every registrant of an all-registrants
        reservation, else the one nexus that reserved (registrants-only types included)."""
        if self.type in ALL_REGISTRANTS_TYPES:
            return nexus in self.registrations
        return bool(self.type) and self.holder == nexus

    def _spc2_exempt(self, nexus: str) -> bool:
        """How RESERVE/RELEASE meet persistent reservations with CRH=1 (SPC-4 5.12.3).

        True: complete with GOOD and change nothing (the sender holds the persistent
        reservation, or is registered under a registrants-only or all-registrants one).
        Otherwise SPC-2 5.5.1 applies: while any nexus is registered, every RESERVE and
        RELEASE conflicts, whoever sends it.
        """
        if self.type and self._holds(nexus):
            return True
        if self.registrations:
            raise ReservationConflict()
        return False

    # --- SPC-2 RESERVE / RELEASE -------------------------------------------
    def reserve6(self, nexus: str, cdb: bytes) -> bytes:
        if cdb[0] == 0x56 and cdb[1] & 0x02:  # 3RDPTY: third-party reservations are not supported
            raise illegal()
        if self._spc2_exempt(nexus):
            return b""
        if self.spc2_holder not in (None, nexus):
            raise ReservationConflict()
        self.spc2_holder = nexus
        return b""

    def release6(self, nexus: str, cdb: bytes) -> bytes:
        if cdb[0] == 0x57 and cdb[1] & 0x02:
            raise illegal()
        if self._spc2_exempt(nexus):
            return b""
        if self.spc2_holder == nexus:
            self.spc2_holder = None
        return b""  # releasing someone else's reservation is a no-op (SPC-2 7.16.1)

    def nexus_lost(self, nexus: str) -> None:
        """Logout or connection loss: SPC-2 reservations end with the nexus (SPC-2 5.5.1)."""
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    def reset(self) -> None:
        """LUN or target reset: SPC-2 reservations end; persistent ones stay (SPC-4 5.12.1)."""
        self.spc2_holder = None

    # --- PERSISTENT RESERVE IN (SPC-4 6.15) ------------------------------------
    def persistent_reserve_in(self, nexus: str, cdb: bytes) -> bytes:
        if self.spc2_holder is not None:
            # SPC-2 5.5.1: PR IN and OUT conflict with a RESERVE, whoever sends them.
            raise ReservationConflict()
        action = cdb[1] & 0x1F
        alloc = struct.unpack_from(">H", cdb, 7)[0]
        if action == 0x00:  # READ KEYS
            keys = b"".join(be(key, 8) for key in self.registrations.values())
            out = be(self.generation, 4) + be(len(keys), 4) + keys
        elif action == 0x01:  # READ RESERVATION
            body = b""
            if self.type:
                key = (
                    0 if self.type in ALL_REGISTRANTS_TYPES else self.registrations.get(self.holder or "", 0)
                )
                body = be(key, 8) + bytes(4) + bytes([0, (LU_SCOPE << 4) | self.type]) + bytes(2)
            out = be(self.generation, 4) + be(len(body), 4) + body
        elif action == 0x02:  # REPORT CAPABILITIES (SPC-4 6.15.4)
            mask = 0
            for bit, kind in (
                (15, WRITE_EXCLUSIVE_AR),
                (14, EXCLUSIVE_ACCESS_RO),
                (13, WRITE_EXCLUSIVE_RO),
                (11, EXCLUSIVE_ACCESS),
                (9, WRITE_EXCLUSIVE),
                (0, EXCLUSIVE_ACCESS_AR),
            ):
                if kind in TYPES:
                    mask |= 1 << bit
            # CRH=1 (RESERVE/RELEASE meet PR as in 5.12.3), ATP_C=1 (one target port);
            # TMV=1 with ALLOW COMMANDS=001b: table 50's handling of commands.
            out = be(8, 2) + bytes([0x10 | 0x04, 0x80 | 0x10]) + be(mask, 2) + bytes(2)
        elif action == 0x03:  # READ FULL STATUS (SPC-4 6.15.5)
            descriptors = b""
            for holder_nexus, key in self.registrations.items():
                holds = self.type and (self.type in ALL_REGISTRANTS_TYPES or holder_nexus == self.holder)
                transport_id = _transport_id(holder_nexus)
                descriptors += (
                    be(key, 8)
                    + bytes(4)
                    + bytes([0x01 if holds else 0x00, ((LU_SCOPE << 4) | self.type) if holds else 0])
                    + bytes(4)
                    + be(1, 2)
                    + be(len(transport_id), 4)
                    + transport_id
                )
            out = be(self.generation, 4) + be(len(descriptors), 4) + descriptors
        else:
            raise illegal()
        return out[:alloc]

    # --- PERSISTENT RESERVE OUT (SPC-4 6.16) -----------------------------------
    def persistent_reserve_out(self, nexus: str, cdb: bytes, data: bytes) -> bytes:
        action = cdb[1] & 0x1F
        scope, kind = cdb[2] >> 4, cdb[2] & 0x0F
        length = struct.unpack_from(">I", cdb, 5)[0]
        if action > SA_REGISTER_AND_IGNORE:
            raise illegal()  # REGISTER AND MOVE, REPLACE LOST RESERVATION: not supported
        if self.spc2_holder is not None:
            raise ReservationConflict()  # SPC-2 5.5.1, the holder of the RESERVE included
        if length != PROUT_PARAMETER_LENGTH or len(data) < PROUT_PARAMETER_LENGTH:
            raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
        key, action_key = struct.unpack_from(">QQ", data, 0)
        flags = data[20]
        registering = action in (SA_REGISTER, SA_REGISTER_AND_IGNORE)
        # SPEC_I_PT: not supported (SIP_C=0). APTPL: refused (PTPL_C=0), and valid only for
        # the register actions: the others ignore it (SPC-4 6.16.3).
        if flags & 0x08 or (registering and flags & 0x01):
            raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
        registered = self.registrations.get(nexus)
        if registering:
            self._register(nexus, registered, key, action_key, ignore=action == SA_REGISTER_AND_IGNORE)
            return b""
        if registered is None or registered != key:
            raise ReservationConflict()
        if action in (SA_RESERVE, SA_PREEMPT, SA_PREEMPT_AND_ABORT) or (action == SA_RELEASE and self.type):
            if scope != LU_SCOPE or kind not in TYPES:
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
        if action == SA_RESERVE:
            self._reserve(nexus, kind)
        elif action == SA_RELEASE:
            self._release(nexus, kind)
        elif action == SA_CLEAR:
            others = [n for n in self.registrations if n != nexus]
            self.registrations.clear()
            self.holder, self.type = None, 0
            self.generation += 1
            for other in others:
                self.raise_unit_attention(other, RESERVATIONS_PREEMPTED)
        else:
            self._preempt(nexus, action_key, kind)
        return b""

    def _register(self, nexus: str, registered: int | None, key: int, action_key: int, ignore: bool) -> None:
        if registered is None:
            if not ignore and key != 0:
                raise ReservationConflict()
            if action_key == 0:
                return
            self.registrations[nexus] = action_key
        else:
            if not ignore and key != registered:
                raise ReservationConflict()
            if action_key == 0:
                self._unregister(nexus)
            else:
                self.registrations[nexus] = action_key
        self.generation += 1

    def _unregister(self, nexus: str) -> None:
        del self.registrations[nexus]
        if not self.type:
            return
        if self.type in ALL_REGISTRANTS_TYPES:
            if not self.registrations:
                self.holder, self.type = None, 0
            return
        if self.holder == nexus:
            released = self.type
            self.holder, self.type = None, 0
            if released in REGISTRANTS_TYPES:  # SPC-4 5.12.11.2.3
                for other in self.registrations:
                    self.raise_unit_attention(other, RESERVATIONS_RELEASED)

    def _reserve(self, nexus: str, kind: int) -> None:
        if not self.type:
            self.type = kind
            self.holder = None if kind in ALL_REGISTRANTS_TYPES else nexus
            return
        if self._is_holder(nexus) and self.type == kind:
            return  # the holder reserving again with the same type: nothing changes
        raise ReservationConflict()

    def _release(self, nexus: str, kind: int) -> None:
        if not self.type or not self._is_holder(nexus):
            return  # a registrant that does not hold it: GOOD, nothing released (SPC-4 5.12.11.2.2)
        if kind != self.type:
            raise SenseError(ILLEGAL_REQUEST, INVALID_RELEASE)
        released = self.type
        self.holder, self.type = None, 0
        if released in REGISTRANTS_TYPES:  # SPC-4 5.12.11.2.2
            for other in self.registrations:
                if other != nexus:
                    self.raise_unit_attention(other, RESERVATIONS_RELEASED)

    def _preempt(self, nexus: str, action_key: int, kind: int) -> None:
        """PREEMPT (SPC-4 5.12.11.4); PREEMPT AND ABORT is the same here (tasks are not aborted)."""
        all_registrants = self.type in ALL_REGISTRANTS_TYPES
        if self.type and all_registrants and action_key == 0:
            preempted = [n for n in self.registrations if n != nexus]
            take_over = True
        elif self.type and not all_registrants and action_key == self.registrations.get(self.holder or ""):
            preempted = [n for n, k in self.registrations.items() if k == action_key and n != nexus]
            take_over = True
        else:
            if action_key == 0:
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
            preempted = [n for n, k in self.registrations.items() if k == action_key]
            take_over = False
            if not preempted:
                raise ReservationConflict()
        for other in preempted:
            del self.registrations[other]
            if other != nexus:
                self.raise_unit_attention(other, REGISTRATIONS_PREEMPTED)
        if take_over:
            previous = self.type
            self.type = kind
            self.holder = None if kind in ALL_REGISTRANTS_TYPES else nexus
            if kind != previous:  # SPC-4 5.12.11.2.4.3 f): a new type is news to those still registered
                for other in self.registrations:
                    if other != nexus:
                        self.raise_unit_attention(other, RESERVATIONS_RELEASED)
        self.generation += 1


def _transport_id(nexus: str) -> bytes:
    """iSCSI TransportID, initiator port format (SPC-4 7.6.4.6): name,i,0xISID, NUL, padded to 4."""
    name = nexus.encode() + b"\0"
    name += bytes(-len(name) % 4)
    if len(name) < 20:
        name += bytes(20 - len(name))
    return bytes([0x40 | 0x05, 0]) + be(len(name), 2) + name
