"""Persistent reservations and SPC-2 RESERVE/RELEASE, held to the rules of SPC-4 and SPC-2.

Every test drives :class:`Reservations` the way the transport does for one
command (``full_feature.FullFeaturePhase._run``): the access check first,
then the command's handler. Sections are those of SPC-4 r37 (the revision
``reservations.py`` names): 5.12.3 (RESERVE/RELEASE beside persistent
reservations, CRH=1), 5.12.5 to 5.12.11 (registering, reserving, holders,
releasing, unregistering, preempting, clearing), table 50 (commands allowed
under each reservation type), 6.15 PERSISTENT RESERVE IN, 6.16 PERSISTENT
RESERVE OUT; SPC-2 5.5.1 and 7.21/7.16 for RESERVE(6)/RELEASE(6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from iscsi_helper.lab.wire.reservations import (
    EXCLUSIVE_ACCESS,
    EXCLUSIVE_ACCESS_AR,
    EXCLUSIVE_ACCESS_RO,
    SA_CLEAR,
    SA_PREEMPT,
    SA_PREEMPT_AND_ABORT,
    SA_REGISTER,
    SA_REGISTER_AND_IGNORE,
    SA_RELEASE,
    SA_RESERVE,
    WRITE_EXCLUSIVE,
    WRITE_EXCLUSIVE_AR,
    WRITE_EXCLUSIVE_RO,
    Reservations,
)
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
)

# I_T nexuses as the transport names them: iSCSI initiator port name, ",i,0x", ISID (SPC-4 7.6.4.6).
A = "iqn.2004-10.com.example:node-a,i,0x23d000000001"
B = "iqn.2004-10.com.example:node-b,i,0x23d000000002"
C = "iqn.2004-10.com.example:node-c,i,0x23d000000003"
KEY_A, KEY_B, KEY_C = 0xA1, 0xB2, 0xC3

GOOD = "GOOD"
CONFLICT = "RESERVATION CONFLICT"
INVALID_RELEASE = (0x26, 0x04)  # INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4 table 49)
ALL_TYPES = (
    WRITE_EXCLUSIVE,
    EXCLUSIVE_ACCESS,
    WRITE_EXCLUSIVE_RO,
    EXCLUSIVE_ACCESS_RO,
    WRITE_EXCLUSIVE_AR,
    EXCLUSIVE_ACCESS_AR,
)
RO_TYPES = (WRITE_EXCLUSIVE_RO, EXCLUSIVE_ACCESS_RO)
AR_TYPES = (WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR)

# CDBs with the fields the checks read; the rest is zero.
TEST_UNIT_READY = bytes(6)
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 18, 0])
INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
READ_CAPACITY_10 = bytes([0x25]) + bytes(9)
READ_CAPACITY_16 = bytes([0x9E, 0x10]) + bytes(11) + bytes([32, 0, 0])
READ_10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])
READ_16 = bytes([0x88]) + bytes(12) + bytes([1, 0, 0])
WRITE_10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0])
WRITE_16 = bytes([0x8A]) + bytes(12) + bytes([1, 0, 0])
MODE_SENSE_6 = bytes([0x1A, 0, 0x3F, 0, 255, 0])
MODE_SELECT_6 = bytes([0x15, 0x10, 0, 0, 0, 0])
RESERVE_6 = bytes([0x16, 0, 0, 0, 0, 0])
RELEASE_6 = bytes([0x17, 0, 0, 0, 0, 0])
RESERVE_10 = bytes([0x56]) + bytes(9)
RELEASE_10 = bytes([0x57]) + bytes(9)


@dataclass
class Unit:
    """One logical unit's reservation state, driven one command at a time as the transport does."""

    attentions: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    data_in: bytes = b""
    res: Reservations = field(init=False)

    def __post_init__(self) -> None:
        self.res = Reservations(lambda nexus, ua: self.attentions.append((nexus, ua)))

    def run(self, nexus: str, cdb: bytes, data: bytes = b"") -> object:
        """GOOD, RESERVATION CONFLICT or (sense key, ASC, ASCQ); PR IN's data is kept in ``data_in``."""
        try:
            self.res.check_access(nexus, cdb)
            op = cdb[0]
            if op == 0x5E:
                self.data_in = self.res.persistent_reserve_in(nexus, cdb)
            elif op == 0x5F:
                self.res.persistent_reserve_out(nexus, cdb, data)
            elif op in (0x16, 0x56):
                self.res.reserve6(nexus, cdb)
            elif op in (0x17, 0x57):
                self.res.release6(nexus, cdb)
            return GOOD
        except ReservationConflict:
            return CONFLICT
        except SenseError as exc:
            return (exc.key, exc.asc, exc.ascq)

    def prout(
        self,
        nexus: str,
        action: int,
        key: int = 0,
        sark: int = 0,
        kind: int = 0,
        scope: int = 0,
        aptpl: bool = False,
        spec_i_pt: bool = False,
        length: int = 24,
    ) -> object:
        return self.run(
            nexus, prout_cdb(action, kind, scope, length), prout_data(key, sark, aptpl, spec_i_pt)
        )

    def register(self, nexus: str, key: int) -> None:
        assert self.prout(nexus, SA_REGISTER, sark=key) == GOOD

    def reserve(self, nexus: str, key: int, kind: int) -> object:
        return self.prout(nexus, SA_RESERVE, key=key, kind=kind)

    def prin(self, nexus: str, action: int, alloc: int = 4096) -> bytes:
        assert (
            self.run(nexus, bytes([0x5E, action, 0, 0, 0, 0, 0]) + alloc.to_bytes(2, "big") + b"\0") == GOOD
        )
        return self.data_in

    def keys(self) -> tuple[int, list[int]]:
        """READ KEYS (SPC-4 6.15.2): the generation and the registered keys."""
        data = self.prin(C, 0x00)
        generation, length = struct.unpack_from(">II", data)
        return generation, [struct.unpack_from(">Q", data, 8 + i)[0] for i in range(0, length, 8)]

    def generation(self) -> int:
        return self.keys()[0]

    def reservation(self) -> tuple[int, int, int] | None:
        """READ RESERVATION (SPC-4 6.15.3): (key, scope, type) of the reservation, None without one."""
        data = self.prin(C, 0x01)
        length = struct.unpack_from(">I", data, 4)[0]
        if length == 0:
            return None
        assert length == 16
        return struct.unpack_from(">Q", data, 8)[0], data[21] >> 4, data[21] & 0x0F


def prout_cdb(action: int, kind: int = 0, scope: int = 0, length: int = 24) -> bytes:
    return bytes([0x5F, action, (scope << 4) | kind, 0, 0]) + length.to_bytes(4, "big") + b"\0"


def prout_data(key: int, sark: int, aptpl: bool = False, spec_i_pt: bool = False) -> bytes:
    flags = (0x08 if spec_i_pt else 0) | (0x01 if aptpl else 0)
    return key.to_bytes(8, "big") + sark.to_bytes(8, "big") + bytes(4) + bytes([flags, 0, 0, 0])


def sense(asc_ascq: tuple[int, int], key: int = ILLEGAL_REQUEST) -> tuple[int, int, int]:
    return (key, *asc_ascq)


@pytest.fixture
def lu() -> Unit:
    return Unit()


# --- registering (SPC-4 5.12.7, 6.16.2) -----------------------------------------------


def test_register_from_an_unregistered_nexus_needs_a_zero_reservation_key(lu: Unit) -> None:
    assert lu.prout(A, SA_REGISTER, key=KEY_A, sark=KEY_A) == CONFLICT
    assert lu.keys() == (0, [])
    assert lu.prout(A, SA_REGISTER, key=0, sark=KEY_A) == GOOD
    assert lu.keys() == (1, [KEY_A])


def test_a_registered_nexus_changes_or_removes_its_key_only_with_the_key_it_holds(lu: Unit) -> None:
    lu.register(A, KEY_A)
    assert lu.prout(A, SA_REGISTER, key=0x999, sark=0x5) == CONFLICT
    assert lu.keys() == (1, [KEY_A])  # a refused command does not count
    assert lu.prout(A, SA_REGISTER, key=KEY_A, sark=0x5) == GOOD
    assert lu.keys() == (2, [0x5])
    assert lu.prout(A, SA_REGISTER, key=0x5, sark=0) == GOOD  # SARK 0: unregister (5.12.11.2.3)
    assert lu.keys() == (3, [])


def test_register_and_ignore_existing_key_ignores_the_reservation_key_field(lu: Unit) -> None:
    assert lu.prout(A, SA_REGISTER_AND_IGNORE, key=0x777, sark=KEY_A) == GOOD
    assert lu.keys() == (1, [KEY_A])
    assert lu.prout(A, SA_REGISTER_AND_IGNORE, key=0x888, sark=0x42) == GOOD
    assert lu.keys() == (2, [0x42])
    assert lu.prout(A, SA_REGISTER_AND_IGNORE, key=0x999, sark=0) == GOOD
    assert lu.keys() == (3, [])


def test_every_nexus_registers_its_own_key_and_read_keys_lists_them_all(lu: Unit) -> None:
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    generation, keys = lu.keys()
    assert generation == 2 and sorted(keys) == [KEY_A, KEY_B]


def test_read_keys_keeps_the_full_additional_length_when_the_allocation_length_cuts_it(lu: Unit) -> None:
    """SPC-4 6.15.2: ADDITIONAL LENGTH is not altered by the allocation length."""
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    data = lu.prin(C, 0x00, alloc=12)
    assert len(data) == 12
    assert struct.unpack_from(">II", data) == (2, 16)


# --- reserving, holders, READ RESERVATION (5.12.9, 5.12.10, 6.15.3) ----------------------


def test_reserve_needs_a_registration_and_its_key(lu: Unit) -> None:
    assert lu.reserve(A, 0, WRITE_EXCLUSIVE) == CONFLICT  # not registered
    lu.register(A, KEY_A)
    assert lu.reserve(A, 0x999, WRITE_EXCLUSIVE) == CONFLICT  # wrong key
    assert lu.reservation() is None
    assert lu.reserve(A, KEY_A, WRITE_EXCLUSIVE) == GOOD
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


def test_reserve_and_release_leave_the_generation_alone(lu: Unit) -> None:
    """SPC-4 6.16.1 table 182 (PRGENERATION incremented: RESERVE no, RELEASE no)."""
    lu.register(A, KEY_A)
    before = lu.generation()
    assert lu.reserve(A, KEY_A, EXCLUSIVE_ACCESS) == GOOD
    assert lu.prout(A, SA_RELEASE, key=KEY_A, kind=EXCLUSIVE_ACCESS) == GOOD
    assert lu.generation() == before


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_the_holder_reserving_again_with_the_same_type_changes_nothing(lu: Unit, kind: int) -> None:
    lu.register(A, KEY_A)
    assert lu.reserve(A, KEY_A, kind) == GOOD
    assert lu.reserve(A, KEY_A, kind) == GOOD
    assert lu.reservation() == (0 if kind in AR_TYPES else KEY_A, 0, kind)


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_the_holder_cannot_change_the_type_with_reserve(lu: Unit, kind: int) -> None:
    lu.register(A, KEY_A)
    assert lu.reserve(A, KEY_A, kind) == GOOD
    other = EXCLUSIVE_ACCESS if kind != EXCLUSIVE_ACCESS else WRITE_EXCLUSIVE
    assert lu.reserve(A, KEY_A, other) == CONFLICT
    assert lu.reservation() == (0 if kind in AR_TYPES else KEY_A, 0, kind)


@pytest.mark.parametrize("kind", (WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS, *RO_TYPES))
def test_a_registrant_that_is_not_the_holder_cannot_reserve(lu: Unit, kind: int) -> None:
    """One holder for every type but the all-registrants ones (5.12.10): the others get a conflict,
    registrants-only types included (being registered gives access, not the reservation)."""
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    assert lu.reserve(A, KEY_A, kind) == GOOD
    assert lu.reserve(B, KEY_B, kind) == CONFLICT
    assert lu.reservation() == (KEY_A, 0, kind)


@pytest.mark.parametrize("kind", AR_TYPES)
def test_all_registrants_reservations_are_held_by_every_registrant_and_report_key_zero(
    lu: Unit, kind: int
) -> None:
    """5.12.10: every registered nexus holds an all-registrants reservation; 6.15.3: its key reads 0."""
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    assert lu.reserve(A, KEY_A, kind) == GOOD
    assert lu.reserve(B, KEY_B, kind) == GOOD  # B is a holder too
    assert lu.reservation() == (0, 0, kind)


def test_reserve_with_an_unknown_type_is_an_invalid_field_in_the_cdb(lu: Unit) -> None:
    lu.register(A, KEY_A)
    assert lu.reserve(A, KEY_A, 0x2) == sense(INVALID_FIELD_IN_CDB)  # 2h is obsolete (table 177)
    assert lu.reservation() is None


def test_read_full_status_describes_every_registration_and_marks_the_holder(lu: Unit) -> None:
    """SPC-4 6.15.5: one descriptor per registration, R_HOLDER and SCOPE/TYPE only for the holder,
    an iSCSI initiator port TransportID (7.6.4.6: format 01b, protocol 5, NUL-terminated name,
    ADDITIONAL LENGTH a multiple of 4 and at least 20)."""
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    assert lu.reserve(B, KEY_B, EXCLUSIVE_ACCESS_RO) == GOOD
    data = lu.prin(C, 0x03)
    generation, length = struct.unpack_from(">II", data)
    assert generation == 2 and len(data) == 8 + length
    seen = {}
    pos = 8
    while pos < len(data):
        key = struct.unpack_from(">Q", data, pos)[0]
        holder, scope_type = data[pos + 12] & 0x01, data[pos + 13]
        tid_len = struct.unpack_from(">I", data, pos + 20)[0]
        tid = data[pos + 24 : pos + 24 + tid_len]
        assert tid[0] == 0x45  # FORMAT CODE 01b (initiator port), PROTOCOL IDENTIFIER 5 (iSCSI)
        name_len = struct.unpack_from(">H", tid, 2)[0]
        assert name_len % 4 == 0 and name_len >= 20 and len(tid) == 4 + name_len
        name = tid[4:].split(b"\0")[0].decode()
        seen[name] = (key, holder, scope_type)
        pos += 24 + tid_len
    assert seen == {A: (KEY_A, 0, 0), B: (KEY_B, 1, EXCLUSIVE_ACCESS_RO)}


def test_report_capabilities_says_what_is_supported(lu: Unit) -> None:
    """SPC-4 6.15.4: CRH=1 (5.12.3 applies), ATP_C=1 (one target port), SIP_C=0, PTPL_C=0 (nothing
    survives a daemon restart), TMV=1 with the six types in the mask, PTPL_A=0."""
    data = lu.prin(A, 0x02)
    assert struct.unpack_from(">H", data)[0] == 8
    assert data[2] & 0x10 and data[2] & 0x04  # CRH, ATP_C
    assert not data[2] & 0x08 and not data[2] & 0x01  # SIP_C, PTPL_C
    assert data[3] & 0x80 and not data[3] & 0x01  # TMV, PTPL_A
    assert data[4] == 0x80 | 0x40 | 0x20 | 0x08 | 0x02  # WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
    assert data[5] == 0x01  # EX_AC_AR


# --- which commands a nexus may run (table 50; SBC-3 for the medium commands) -------------

ALWAYS_ALLOWED = [
    TEST_UNIT_READY,
    REQUEST_SENSE,
    INQUIRY,
    REPORT_LUNS,
    READ_CAPACITY_10,
    READ_CAPACITY_16,
    bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]),
]
READS = [READ_10, READ_16]
WRITES = [WRITE_10, WRITE_16, MODE_SELECT_6]


def _reserved_by_a(lu: Unit, kind: int, register_b: bool) -> None:
    lu.register(A, KEY_A)
    if register_b:
        lu.register(B, KEY_B)
    assert lu.reserve(A, KEY_A, kind) == GOOD


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_the_holder_runs_everything(lu: Unit, kind: int) -> None:
    _reserved_by_a(lu, kind, register_b=False)
    for cdb in ALWAYS_ALLOWED + READS + WRITES + [MODE_SENSE_6]:
        assert lu.run(A, cdb) == GOOD, cdb.hex()


@pytest.mark.parametrize("kind", ALL_TYPES)
@pytest.mark.parametrize("registered", [False, True], ids=["unregistered", "registered"])
def test_commands_a_nexus_that_does_not_hold_the_reservation_may_run(
    lu: Unit, kind: int, registered: bool
) -> None:
    """Table 50: WRITE EXCLUSIVE lets others read, EXCLUSIVE ACCESS lets them do neither; the
    REGISTRANTS ONLY and ALL REGISTRANTS variants give every registered nexus full access and
    treat the others like their base type. Registered nexuses under plain WE/EA are "others"."""
    _reserved_by_a(lu, kind, register_b=registered)
    full_access = registered and kind in RO_TYPES + AR_TYPES
    write_exclusive = kind in (WRITE_EXCLUSIVE, WRITE_EXCLUSIVE_RO, WRITE_EXCLUSIVE_AR)
    for cdb in ALWAYS_ALLOWED:
        assert lu.run(B, cdb) == GOOD, cdb.hex()
    for cdb in READS + [MODE_SENSE_6]:
        assert lu.run(B, cdb) == (GOOD if full_access or write_exclusive else CONFLICT), cdb.hex()
    for cdb in WRITES:
        assert lu.run(B, cdb) == (GOOD if full_access else CONFLICT), cdb.hex()


def test_without_a_reservation_registrations_restrict_nothing(lu: Unit) -> None:
    lu.register(A, KEY_A)
    for cdb in ALWAYS_ALLOWED + READS + WRITES + [MODE_SENSE_6]:
        assert lu.run(B, cdb) == GOOD


def test_an_unregistered_nexus_may_always_register_even_under_exclusive_access(lu: Unit) -> None:
    _reserved_by_a(lu, EXCLUSIVE_ACCESS, register_b=False)
    assert lu.prout(B, SA_REGISTER, sark=KEY_B) == GOOD
    assert sorted(lu.keys()[1]) == [KEY_A, KEY_B]


# --- releasing (5.12.11.2.2) -----------------------------------------------------------


def test_only_a_registered_nexus_with_its_key_may_release(lu: Unit) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=False)
    assert lu.prout(B, SA_RELEASE, key=0, kind=WRITE_EXCLUSIVE) == CONFLICT
    assert lu.prout(A, SA_RELEASE, key=0x999, kind=WRITE_EXCLUSIVE) == CONFLICT
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


def test_the_holder_releasing_with_another_type_is_an_invalid_release(lu: Unit) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=False)
    assert lu.prout(A, SA_RELEASE, key=KEY_A, kind=EXCLUSIVE_ACCESS) == sense(INVALID_RELEASE)
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


@pytest.mark.parametrize("kind", (WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS, *RO_TYPES))
def test_release_from_a_registrant_that_does_not_hold_the_reservation_does_nothing(
    lu: Unit, kind: int
) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.prout(B, SA_RELEASE, key=KEY_B, kind=kind) == GOOD
    assert lu.reservation() == (KEY_A, 0, kind)
    assert lu.attentions == []


def test_release_without_a_reservation_is_good(lu: Unit) -> None:
    lu.register(A, KEY_A)
    assert lu.prout(A, SA_RELEASE, key=KEY_A, kind=WRITE_EXCLUSIVE) == GOOD


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_release_by_the_holder_ends_it_and_tells_the_other_registrants_for_shared_types(
    lu: Unit, kind: int
) -> None:
    """RESERVATIONS RELEASED goes to every other registered nexus for the registrants-only and
    all-registrants types, and to nobody for WRITE EXCLUSIVE / EXCLUSIVE ACCESS."""
    _reserved_by_a(lu, kind, register_b=True)
    lu.register(C, KEY_C)
    assert lu.prout(A, SA_RELEASE, key=KEY_A, kind=kind) == GOOD
    assert lu.reservation() is None
    if kind in RO_TYPES + AR_TYPES:
        assert sorted(lu.attentions) == [(B, RESERVATIONS_RELEASED), (C, RESERVATIONS_RELEASED)]
    else:
        assert lu.attentions == []
    assert sorted(lu.keys()[1]) == [KEY_A, KEY_B, KEY_C]  # registrations stay


@pytest.mark.parametrize("kind", AR_TYPES)
def test_any_registrant_releases_an_all_registrants_reservation(lu: Unit, kind: int) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.prout(B, SA_RELEASE, key=KEY_B, kind=kind) == GOOD
    assert lu.reservation() is None
    assert lu.attentions == [(A, RESERVATIONS_RELEASED)]


# --- unregistering (5.12.11.2.3) ---------------------------------------------------------


@pytest.mark.parametrize("kind", (WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS, *RO_TYPES))
def test_the_holder_unregistering_releases_the_reservation(lu: Unit, kind: int) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.prout(A, SA_REGISTER, key=KEY_A, sark=0) == GOOD
    assert lu.reservation() is None
    assert lu.run(B, WRITE_10) == GOOD
    # Registrants-only: the remaining registrants learn the reservation is gone.
    assert lu.attentions == ([(B, RESERVATIONS_RELEASED)] if kind in RO_TYPES else [])


@pytest.mark.parametrize("kind", AR_TYPES)
def test_an_all_registrants_reservation_lasts_until_its_last_registrant_leaves(lu: Unit, kind: int) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.prout(A, SA_REGISTER, key=KEY_A, sark=0) == GOOD
    assert lu.reservation() == (0, 0, kind)
    assert lu.run(A, WRITE_10) == CONFLICT  # A is no longer registered
    assert lu.run(B, WRITE_10) == GOOD
    assert lu.prout(B, SA_REGISTER_AND_IGNORE, sark=0) == GOOD
    assert lu.reservation() is None


def test_a_registrant_that_does_not_hold_the_reservation_unregisters_without_releasing_it(lu: Unit) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    assert lu.prout(B, SA_REGISTER, key=KEY_B, sark=0) == GOOD
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


# --- clearing (5.12.11.2.7) --------------------------------------------------------------


def test_clear_removes_every_registration_and_the_reservation_and_tells_the_others(lu: Unit) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    lu.register(C, KEY_C)
    before = lu.generation()
    assert lu.prout(B, SA_CLEAR, key=KEY_B) == GOOD
    assert lu.keys() == (before + 1, [])
    assert lu.reservation() is None
    assert sorted(lu.attentions) == [(A, RESERVATIONS_PREEMPTED), (C, RESERVATIONS_PREEMPTED)]


def test_clear_needs_a_registration_and_its_key(lu: Unit) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=False)
    assert lu.prout(B, SA_CLEAR, key=0) == CONFLICT
    assert lu.prout(A, SA_CLEAR, key=0x999) == CONFLICT
    assert lu.keys() == (1, [KEY_A])
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


# --- preempting (5.12.11.2.4, 5.12.11.2.6) -----------------------------------------------

PREEMPTS = pytest.mark.parametrize("action", (SA_PREEMPT, SA_PREEMPT_AND_ABORT), ids=["PREEMPT", "AND_ABORT"])


@PREEMPTS
def test_preempting_the_holder_takes_over_the_reservation(lu: Unit, action: int) -> None:
    """SARK names the holder: its registrations go (REGISTRATIONS PREEMPTED), the preempting
    nexus holds a reservation of the TYPE it asked for, the generation moves on."""
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    before = lu.generation()
    assert lu.prout(B, action, key=KEY_B, sark=KEY_A, kind=EXCLUSIVE_ACCESS) == GOOD
    assert lu.keys() == (before + 1, [KEY_B])
    assert lu.reservation() == (KEY_B, 0, EXCLUSIVE_ACCESS)
    assert (A, REGISTRATIONS_PREEMPTED) in lu.attentions
    assert lu.run(A, READ_10) == CONFLICT
    assert lu.run(B, WRITE_10) == GOOD


@PREEMPTS
def test_preempt_that_changes_the_type_tells_the_remaining_registrants_it_was_released(
    lu: Unit, action: int
) -> None:
    """5.12.11.2.4.3 f): with a new type, every nexus still registered (but the preempting one)
    gets RESERVATIONS RELEASED; the preempted one gets REGISTRATIONS PREEMPTED."""
    _reserved_by_a(lu, WRITE_EXCLUSIVE_RO, register_b=True)
    lu.register(C, KEY_C)
    assert lu.prout(B, action, key=KEY_B, sark=KEY_A, kind=EXCLUSIVE_ACCESS_RO) == GOOD
    assert sorted(lu.attentions) == [(A, REGISTRATIONS_PREEMPTED), (C, RESERVATIONS_RELEASED)]


@PREEMPTS
def test_preempt_that_keeps_the_type_raises_no_reservations_released(lu: Unit, action: int) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE_RO, register_b=True)
    lu.register(C, KEY_C)
    assert lu.prout(B, action, key=KEY_B, sark=KEY_A, kind=WRITE_EXCLUSIVE_RO) == GOOD
    assert lu.attentions == [(A, REGISTRATIONS_PREEMPTED)]


@PREEMPTS
def test_preempt_removes_every_registration_with_the_key_but_the_preempting_one(
    lu: Unit, action: int
) -> None:
    lu.register(A, KEY_A)
    lu.register(C, KEY_A)  # two nexuses may share a key
    lu.register(B, KEY_A)
    assert lu.reserve(A, KEY_A, WRITE_EXCLUSIVE) == GOOD
    assert lu.prout(B, action, key=KEY_A, sark=KEY_A, kind=WRITE_EXCLUSIVE) == GOOD
    assert lu.keys()[1] == [KEY_A]
    assert lu.res.registrations == {B: KEY_A}
    assert sorted(lu.attentions) == [(A, REGISTRATIONS_PREEMPTED), (C, REGISTRATIONS_PREEMPTED)]


def test_the_holder_may_preempt_itself_to_change_the_type(lu: Unit) -> None:
    """5.12.11.2.4.3: not an error; the new reservation is established and the registration kept."""
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=False)
    assert lu.prout(A, SA_PREEMPT, key=KEY_A, sark=KEY_A, kind=EXCLUSIVE_ACCESS) == GOOD
    assert lu.reservation() == (KEY_A, 0, EXCLUSIVE_ACCESS)
    assert lu.keys()[1] == [KEY_A]
    assert lu.attentions == []


@PREEMPTS
def test_preempting_a_key_that_does_not_hold_the_reservation_only_removes_registrations(
    lu: Unit, action: int
) -> None:
    """5.12.11.2.4.4: the reservation stays as it is (SCOPE and TYPE ignored)."""
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    lu.register(C, KEY_C)
    assert lu.prout(B, action, key=KEY_B, sark=KEY_C, kind=EXCLUSIVE_ACCESS) == GOOD
    assert sorted(lu.keys()[1]) == [KEY_A, KEY_B]
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)
    assert lu.attentions == [(C, REGISTRATIONS_PREEMPTED)]


@PREEMPTS
def test_preempt_without_a_reservation_removes_registrations_and_reserves_nothing(
    lu: Unit, action: int
) -> None:
    lu.register(A, KEY_A)
    lu.register(B, KEY_B)
    assert lu.prout(B, action, key=KEY_B, sark=KEY_A, kind=EXCLUSIVE_ACCESS) == GOOD
    assert lu.keys()[1] == [KEY_B]
    assert lu.reservation() is None


@PREEMPTS
def test_removing_registrations_tells_every_nexus_that_lost_one_but_the_preempting_one(
    lu: Unit, action: int
) -> None:
    """5.12.11.2.4.4 a) and d): every registration with the key goes, the sender's own too when it
    shares the key, and each nexus that lost one but the sender gets REGISTRATIONS PREEMPTED."""
    lu.register(A, KEY_A)
    lu.register(B, KEY_A)
    lu.register(C, KEY_C)
    assert lu.prout(B, action, key=KEY_A, sark=KEY_A, kind=WRITE_EXCLUSIVE) == GOOD
    assert lu.res.registrations == {C: KEY_C}
    assert lu.reservation() is None
    assert lu.attentions == [(A, REGISTRATIONS_PREEMPTED)]


@PREEMPTS
def test_preempting_a_key_nobody_holds_is_a_conflict_and_changes_nothing(lu: Unit, action: int) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    before = lu.keys()
    assert lu.prout(B, action, key=KEY_B, sark=0x4242, kind=WRITE_EXCLUSIVE) == CONFLICT
    assert lu.keys() == before
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


@PREEMPTS
def test_preempt_with_key_zero_is_refused_unless_all_registrants_hold_it(lu: Unit, action: int) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    assert lu.prout(B, action, key=KEY_B, sark=0, kind=WRITE_EXCLUSIVE) == sense(INVALID_FIELD_IN_PARAM)
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


@PREEMPTS
@pytest.mark.parametrize("kind", AR_TYPES)
def test_preempt_with_key_zero_takes_an_all_registrants_reservation_from_everyone(
    lu: Unit, action: int, kind: int
) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    lu.register(C, KEY_C)
    assert lu.prout(B, action, key=KEY_B, sark=0, kind=WRITE_EXCLUSIVE) == GOOD
    assert lu.keys()[1] == [KEY_B]
    assert lu.reservation() == (KEY_B, 0, WRITE_EXCLUSIVE)
    assert sorted(lu.attentions) == [(A, REGISTRATIONS_PREEMPTED), (C, REGISTRATIONS_PREEMPTED)]


@PREEMPTS
def test_only_a_registered_nexus_with_its_key_may_preempt(lu: Unit, action: int) -> None:
    _reserved_by_a(lu, WRITE_EXCLUSIVE, register_b=True)
    assert lu.prout(C, action, key=0, sark=KEY_A, kind=WRITE_EXCLUSIVE) == CONFLICT
    assert lu.prout(B, action, key=0x999, sark=KEY_A, kind=WRITE_EXCLUSIVE) == CONFLICT
    assert lu.reservation() == (KEY_A, 0, WRITE_EXCLUSIVE)


# --- the parameter list (6.16.3) ---------------------------------------------------------


@pytest.mark.parametrize("length", [0, 23, 25, 32])
def test_a_parameter_list_that_is_not_24_bytes_is_a_length_error(lu: Unit, length: int) -> None:
    assert lu.prout(A, SA_REGISTER, sark=KEY_A, length=length) == sense(PARAM_LIST_LENGTH_ERROR)
    assert lu.keys() == (0, [])


@pytest.mark.parametrize("action", (SA_REGISTER, SA_REGISTER_AND_IGNORE))
def test_aptpl_is_refused_on_register_because_nothing_persists_a_restart(lu: Unit, action: int) -> None:
    """PTPL_C=0: an APTPL bit of one in a REGISTER is INVALID FIELD IN PARAMETER LIST."""
    assert lu.prout(A, action, sark=KEY_A, aptpl=True) == sense(INVALID_FIELD_IN_PARAM)
    assert lu.keys() == (0, [])


def test_aptpl_is_ignored_by_the_other_service_actions(lu: Unit) -> None:
    """The APTPL bit is valid only for REGISTER and REGISTER AND IGNORE EXISTING KEY."""
    lu.register(A, KEY_A)
    assert lu.prout(A, SA_RESERVE, key=KEY_A, kind=WRITE_EXCLUSIVE, aptpl=True) == GOOD
    assert lu.prout(A, SA_RELEASE, key=KEY_A, kind=WRITE_EXCLUSIVE, aptpl=True) == GOOD
    assert lu.prout(A, SA_CLEAR, key=KEY_A, aptpl=True) == GOOD
    assert lu.keys()[1] == []


@pytest.mark.parametrize("action", (SA_REGISTER, SA_RESERVE))
def test_spec_i_pt_is_refused(lu: Unit, action: int) -> None:
    """SIP_C=0; and SPEC_I_PT with any service action but REGISTER is always invalid."""
    lu.register(A, KEY_A)
    assert lu.prout(A, action, key=KEY_A, sark=KEY_A, kind=WRITE_EXCLUSIVE, spec_i_pt=True) == sense(
        INVALID_FIELD_IN_PARAM
    )
    assert lu.reservation() is None


@pytest.mark.parametrize("action", (0x07, 0x08, 0x1F))
def test_unsupported_service_actions_are_an_invalid_field_in_the_cdb(lu: Unit, action: int) -> None:
    """REGISTER AND MOVE and REPLACE LOST RESERVATION are not implemented; 09h-1Fh are reserved."""
    lu.register(A, KEY_A)
    assert lu.prout(A, action, key=KEY_A, sark=KEY_B) == sense(INVALID_FIELD_IN_CDB)
    assert lu.keys() == (1, [KEY_A])


# --- persistence through nexus loss and resets (5.12.1) ------------------------------------


def test_registrations_and_the_reservation_outlive_nexus_loss_and_resets(lu: Unit) -> None:
    _reserved_by_a(lu, EXCLUSIVE_ACCESS, register_b=True)
    lu.res.nexus_lost(A)
    lu.res.reset()
    assert sorted(lu.keys()[1]) == [KEY_A, KEY_B]
    assert lu.reservation() == (KEY_A, 0, EXCLUSIVE_ACCESS)
    assert lu.run(B, READ_10) == CONFLICT


# --- SPC-2 RESERVE / RELEASE (SPC-2 5.5.1, 7.21, 7.16) --------------------------------------


@pytest.mark.parametrize(
    "reserve, release", [(RESERVE_6, RELEASE_6), (RESERVE_10, RELEASE_10)], ids=["6", "10"]
)
def test_reserve_gives_one_nexus_the_logical_unit(lu: Unit, reserve: bytes, release: bytes) -> None:
    assert lu.run(A, reserve) == GOOD
    assert lu.run(A, reserve) == GOOD  # the holder may reserve again
    for cdb in READS + WRITES + [MODE_SENSE_6, TEST_UNIT_READY]:
        assert lu.run(A, cdb) == GOOD
        assert lu.run(B, cdb) == CONFLICT, cdb.hex()
    for cdb in (INQUIRY, REPORT_LUNS, REQUEST_SENSE):
        assert lu.run(B, cdb) == GOOD
    assert lu.run(B, reserve) == CONFLICT
    assert lu.run(B, release) == GOOD  # another initiator's RELEASE is a no-op (SPC-2 7.16)
    assert lu.run(B, READ_10) == CONFLICT
    assert lu.run(A, release) == GOOD
    assert lu.run(B, READ_10) == GOOD
    assert lu.run(B, reserve) == GOOD


def test_an_spc2_reservation_ends_with_its_nexus_and_at_a_reset(lu: Unit) -> None:
    assert lu.run(A, RESERVE_6) == GOOD
    lu.res.nexus_lost(B)
    assert lu.run(B, READ_10) == CONFLICT
    lu.res.nexus_lost(A)
    assert lu.run(B, READ_10) == GOOD
    assert lu.run(B, RESERVE_6) == GOOD
    lu.res.reset()
    assert lu.run(A, WRITE_10) == GOOD


def test_third_party_reserve_and_release_are_refused(lu: Unit) -> None:
    assert lu.run(A, bytes([0x56, 0x02]) + bytes(8)) == sense(INVALID_FIELD_IN_CDB)
    assert lu.run(A, bytes([0x57, 0x02]) + bytes(8)) == sense(INVALID_FIELD_IN_CDB)
    assert lu.run(B, WRITE_10) == GOOD


@pytest.mark.parametrize("nexus", [A, B], ids=["holder", "other"])
def test_persistent_reserve_commands_conflict_with_an_spc2_reservation_whoever_sends_them(
    lu: Unit, nexus: str
) -> None:
    """SPC-2 5.5.1: while a RESERVE holds the unit, every PERSISTENT RESERVE IN and OUT conflicts,
    regardless of initiator or service action."""
    assert lu.run(A, RESERVE_6) == GOOD
    assert lu.prout(nexus, SA_REGISTER, sark=KEY_A) == CONFLICT
    assert lu.run(nexus, bytes([0x5E, 0x00, 0, 0, 0, 0, 0, 0, 8, 0])) == CONFLICT
    assert lu.res.registrations == {}


@pytest.mark.parametrize("cdb", [RESERVE_6, RELEASE_6, RESERVE_10, RELEASE_10], ids=lambda c: c[:1].hex())
def test_reserve_and_release_conflict_while_registrations_exist(lu: Unit, cdb: bytes) -> None:
    """SPC-2 5.5.1 (applied by SPC-4 5.12.3 "in all other cases"): with any registration in place
    and no persistent reservation that exempts the sender, RESERVE and RELEASE conflict whoever
    sends them, registered or not."""
    lu.register(A, KEY_A)
    assert lu.run(B, cdb) == CONFLICT
    assert lu.run(A, cdb) == CONFLICT
    assert lu.res.spc2_holder is None
    assert lu.run(B, WRITE_10) == GOOD


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_reserve_and_release_from_the_persistent_holder_are_good_and_change_nothing(
    lu: Unit, kind: int
) -> None:
    """SPC-4 5.12.3 a): no SPC-2 reservation is made and the persistent one is not released."""
    _reserved_by_a(lu, kind, register_b=False)
    assert lu.run(A, RESERVE_6) == GOOD
    assert lu.res.spc2_holder is None
    assert lu.run(A, RELEASE_6) == GOOD
    assert lu.reservation() == (0 if kind in AR_TYPES else KEY_A, 0, kind)
    assert lu.run(A, WRITE_10) == GOOD


@pytest.mark.parametrize("kind", RO_TYPES + AR_TYPES)
def test_reserve_and_release_from_a_registrant_of_a_shared_type_are_good_and_change_nothing(
    lu: Unit, kind: int
) -> None:
    """SPC-4 5.12.3 b): a registered nexus under a registrants-only or all-registrants reservation."""
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.run(B, RESERVE_10) == GOOD
    assert lu.run(B, RELEASE_10) == GOOD
    assert lu.res.spc2_holder is None
    assert lu.reservation() is not None


@pytest.mark.parametrize("kind", (WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS))
def test_reserve_from_a_registrant_that_does_not_hold_a_plain_reservation_conflicts(
    lu: Unit, kind: int
) -> None:
    _reserved_by_a(lu, kind, register_b=True)
    assert lu.run(B, RESERVE_6) == CONFLICT
    assert lu.run(C, RESERVE_6) == CONFLICT
    assert lu.reservation() == (KEY_A, 0, kind)
