"""iSCSI PDU framing (RFC 7143 section 11).

Only the Basic Header Segment layout and the data segment framing live here;
what each opcode means is decided by :mod:`iscsi_helper.lab.wire.session`.  The
BHS is kept as a mutable ``bytearray`` with typed accessors so that building a
response is "copy the fields the RFC says to echo, set the rest", which reads
close to the RFC tables and avoids one ``struct`` format per opcode.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import crc32c as _crc32c

BHS_LEN = 48
RESERVED_TAG = 0xFFFFFFFF

# Initiator opcodes.
OP_NOP_OUT = 0x00
OP_SCSI_CMD = 0x01
OP_TASK_MGMT_REQ = 0x02
OP_LOGIN_REQ = 0x03
OP_TEXT_REQ = 0x04
OP_DATA_OUT = 0x05
OP_LOGOUT_REQ = 0x06
OP_SNACK_REQ = 0x10
# Target opcodes.
OP_NOP_IN = 0x20
OP_SCSI_RSP = 0x21
OP_TASK_MGMT_RSP = 0x22
OP_LOGIN_RSP = 0x23
OP_TEXT_RSP = 0x24
OP_DATA_IN = 0x25
OP_LOGOUT_RSP = 0x26
OP_R2T = 0x31
OP_ASYNC_MSG = 0x32
OP_REJECT = 0x3F

# Reject reasons (RFC 7143 11.17.1).
REJECT_DATA_DIGEST = 0x02
REJECT_SNACK = 0x03
REJECT_PROTOCOL_ERROR = 0x04
REJECT_CMD_NOT_SUPPORTED = 0x05
REJECT_INVALID_PDU_FIELD = 0x09


class PDUError(Exception):
    """The peer sent something that cannot be framed; the connection must go."""


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) as iSCSI digests use it (RFC 7143 11.1, appendix B.4).

    The native ``crc32c`` package (hardware CRC instructions where the CPU has
    them) checks a 4 MiB segment in well under a millisecond, so digests are
    computed on the event loop without stalling other sessions; ``value``
    continues an earlier checksum so padding needs no concatenated copy.
    """
    return _crc32c.crc32c(data, value)


def pad4(n: int) -> int:
    return (4 - n % 4) % 4


@dataclass
class PDU:
    """One PDU: a 48-byte BHS plus optional AHS and data segment."""

    bhs: bytearray = field(default_factory=lambda: bytearray(BHS_LEN))
    ahs: bytes = b""
    data: bytes = b""

    # --- common fields -------------------------------------------------
    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @opcode.setter
    def opcode(self, value: int) -> None:
        self.bhs[0] = (self.bhs[0] & 0x40) | (value & 0x3F)

    @property
    def immediate(self) -> bool:
        return bool(self.bhs[0] & 0x40)

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @flags.setter
    def flags(self, value: int) -> None:
        self.bhs[1] = value & 0xFF

    @property
    def final(self) -> bool:
        return bool(self.bhs[1] & 0x80)

    @property
    def itt(self) -> int:
        return self.u32(16)

    @itt.setter
    def itt(self, value: int) -> None:
        self.set_u32(16, value)

    @property
    def lun_raw(self) -> bytes:
        return bytes(self.bhs[8:16])

    @lun_raw.setter
    def lun_raw(self, value: bytes) -> None:
        self.bhs[8:16] = value

    def u16(self, off: int) -> int:
        return int.from_bytes(self.bhs[off : off + 2], "big")

    def set_u16(self, off: int, value: int) -> None:
        self.bhs[off : off + 2] = (value & 0xFFFF).to_bytes(2, "big")

    def u32(self, off: int) -> int:
        return int.from_bytes(self.bhs[off : off + 4], "big")

    def set_u32(self, off: int, value: int) -> None:
        self.bhs[off : off + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")

    def __repr__(self) -> str:  # short: data may be large, and login data may hold CHAP responses
        return (
            f"PDU(op=0x{self.opcode:02x}, flags=0x{self.flags:02x}, itt=0x{self.itt:08x}, "
            f"dlen={len(self.data)})"
        )


def new_pdu(opcode: int, flags: int = 0x80, itt: int = RESERVED_TAG) -> PDU:
    pdu = PDU()
    pdu.opcode = opcode
    pdu.flags = flags
    pdu.itt = itt
    return pdu


def encode_lun(lun: int) -> bytes:
    """SAM LUN encoding: peripheral addressing below 256, flat space above."""
    if lun < 256:
        return bytes([0, lun]) + bytes(6)
    return bytes([0x40 | ((lun >> 8) & 0x3F), lun & 0xFF]) + bytes(6)


def decode_lun(raw: bytes) -> int:
    method = raw[0] >> 6
    if method == 0:
        return raw[1] if raw[0] == 0 else -1
    if method == 1:
        return ((raw[0] & 0x3F) << 8) | raw[1]
    return -1


# RFC 7143 13.12: MaxRecvDataSegmentLength defaults to 8192, and that default
# governs every Login PDU (the key only takes effect in full feature phase).
LOGIN_MAX_DATA_SEGMENT = 8192
# At most one AHS of each kind we understand (extended CDB up to 260 bytes).
MAX_AHS_BYTES = 1020
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


class PDUStream:
    """Reads and writes PDUs on one TCP connection, honouring negotiated digests.

    ``max_recv_data`` is what this target declared it can receive: a PDU
    whose header announces more is a framing error, refused before anything
    is allocated for it, so no peer can make us buffer more than one
    declared segment per connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.header_digest = False
        self.data_digest = False
        self.max_recv_data = LOGIN_MAX_DATA_SEGMENT

    async def read(self) -> PDU:
        try:
            bhs = bytearray(await self.reader.readexactly(BHS_LEN))
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise EOFError("connection closed") from None
            raise PDUError("connection closed inside a PDU header") from None
        ahs_len = bhs[4] * 4
        data_len = int.from_bytes(bhs[5:8], "big")
        if data_len > self.max_recv_data:
            raise PDUError(
                f"data segment of {data_len} bytes exceeds MaxRecvDataSegmentLength {self.max_recv_data}"
            )
        if ahs_len > MAX_AHS_BYTES:
            raise PDUError(f"additional header segments of {ahs_len} bytes")
        try:
            ahs = await self.reader.readexactly(ahs_len) if ahs_len else b""
            if self.header_digest:
                digest = int.from_bytes(await self.reader.readexactly(4), "little")
                if digest != crc32c(ahs, crc32c(bhs)):
                    raise PDUError("header digest mismatch")
            data: bytes = b""
            if data_len:
                padding = pad4(data_len)
                data = await self.reader.readexactly(data_len + padding)
                if self.data_digest:
                    digest = int.from_bytes(await self.reader.readexactly(4), "little")
                    if digest != crc32c(data):
                        raise PDUError("data digest mismatch")
                if padding:
                    data = data[:data_len]
        except asyncio.IncompleteReadError:
            raise PDUError("connection closed inside a PDU") from None
        return PDU(bhs, ahs, data)

    def write(self, pdu: PDU) -> None:
        """Queue a PDU; callers ``await drain()`` at natural boundaries."""
        bhs = pdu.bhs
        bhs[4] = len(pdu.ahs) // 4
        bhs[5:8] = len(pdu.data).to_bytes(3, "big")
        self.write_raw(bytes(bhs) + pdu.ahs, pdu.data)

    def write_raw(self, header: bytes, data: bytes | bytearray | memoryview = b"") -> None:
        """Queue a ready header (BHS + AHS, lengths filled in) and its data segment.

        The hot path of the full feature phase packs headers itself and calls
        this: one join, digests computed without concatenating copies.
        """
        parts: list[bytes | bytearray | memoryview] = [header]
        if self.header_digest:
            parts.append(struct.pack("<I", crc32c(header)))
        if data:
            parts.append(data)
            padding = _PADDING[len(data) % 4]
            if padding:
                parts.append(padding)
            if self.data_digest:
                parts.append(struct.pack("<I", crc32c(padding, crc32c(data))))
        self.writer.write(b"".join(parts))

    async def drain(self) -> None:
        await self.writer.drain()
