"""SCSI status, sense keys and fixed-format sense data (SPC-4 4.5).

Shared by every command module so that a condition is spelled once: a
handler raises :class:`SenseError` and the transport turns it into CHECK
CONDITION with the sense data built here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Status codes (SAM-5 5.3).
GOOD = 0x00
CHECK_CONDITION = 0x02
RESERVATION_CONFLICT = 0x18

# Sense keys (SPC-4 table 48).
NO_SENSE = 0x00
MEDIUM_ERROR = 0x03
ILLEGAL_REQUEST = 0x05
UNIT_ATTENTION = 0x06
DATA_PROTECT = 0x07
ABORTED_COMMAND = 0x0B
MISCOMPARE = 0x0E

# (ASC, ASCQ) pairs (SPC-4 table 49).
INVALID_OPCODE = (0x20, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
LUN_NOT_SUPPORTED = (0x25, 0x00)
INVALID_FIELD_IN_PARAM = (0x26, 0x00)
PARAM_LIST_LENGTH_ERROR = (0x1A, 0x00)
WRITE_PROTECTED = (0x27, 0x00)
SAVING_PARAMS_NOT_SUPPORTED = (0x39, 0x00)
READ_ERROR = (0x11, 0x00)
RESET_OCCURRED = (0x29, 0x00)
WRITE_ERROR = (0x0C, 0x00)
MISCOMPARE_DURING_VERIFY = (0x1D, 0x00)
MODE_PARAMETERS_CHANGED = (0x2A, 0x01)
RESERVATIONS_PREEMPTED = (0x2A, 0x03)
RESERVATIONS_RELEASED = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
INSUFFICIENT_REGISTRATION_RESOURCES = (0x55, 0x04)


class SenseError(Exception):
    """A command ends in CHECK CONDITION with this sense."""

    def __init__(self, key: int, asc_ascq: tuple[int, int], information: int | None = None) -> None:
        super().__init__(f"sense {key:#x}/{asc_ascq[0]:#x}/{asc_ascq[1]:#x}")
        self.key = key
        self.asc, self.ascq = asc_ascq
        self.information = information

    def sense(self) -> bytes:
        return fixed_sense(self.key, self.asc, self.ascq, self.information)


class ReservationConflict(Exception):
    """The command is refused with RESERVATION CONFLICT status (no sense data, SPC-4 5.12.1)."""


def fixed_sense(key: int, asc: int, ascq: int, information: int | None = None) -> bytes:
    sense = bytearray(18)
    sense[0] = 0x70
    if information is not None:
        sense[0] |= 0x80
        sense[3:7] = (information & 0xFFFFFFFF).to_bytes(4, "big")
    sense[2] = key
    sense[7] = 10
    sense[12] = asc
    sense[13] = ascq
    return bytes(sense)


@dataclass
class ScsiOutcome:
    status: int = GOOD
    data: bytes = b""
    sense: bytes = b""


def illegal(field: tuple[int, int] = INVALID_FIELD_IN_CDB) -> SenseError:
    return SenseError(ILLEGAL_REQUEST, field)


def check_condition(key: int, asc_ascq: tuple[int, int]) -> ScsiOutcome:
    return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(key, *asc_ascq))


def be(n: int, width: int) -> bytes:
    return n.to_bytes(width, "big")
