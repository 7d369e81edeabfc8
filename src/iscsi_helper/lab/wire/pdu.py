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


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C (Castagnoli) as iSCSI digests use it.

    Pure Python, so slow on data segments; it is only used when an initiator
    insists on digests (libiscsi prefers None), correctness over speed.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


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
        return int.from_bytes(self.bhs[off:off + 2], "big")

    def set_u16(self, off: int, value: int) -> None:
        self.bhs[off:off + 2] = (value & 0xFFFF).to_bytes(2, "big")

    def u32(self, off: int) -> int:
        return int.from_bytes(self.bhs[off:off + 4], "big")

    def set_u32(self, off: int, value: int) -> None:
        self.bhs[off:off + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")

    def __repr__(self) -> str:  # short: data may be large, and login data may hold CHAP responses
        return f"PDU(op=0x{self.opcode:02x}, flags=0x{self.flags:02x}, itt=0x{self.itt:08x}, dlen={len(self.data)})"


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


class PDUStream:
    """Reads and writes PDUs on one TCP connection, honouring negotiated digests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.header_digest = False
        self.data_digest = False
        # Our own declared MaxRecvDataSegmentLength bounds what we accept.
        self.max_recv_data = 8192

    async def read(self) -> PDU:
        try:
            bhs = bytearray(await self.reader.readexactly(BHS_LEN))
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise EOFError("connection closed") from None
            raise PDUError("connection closed inside a PDU header") from None
        ahs_len = bhs[4] * 4
        data_len = int.from_bytes(bhs[5:8], "big")
        # During login the limit is the RFC default; afterwards our declaration.
        # A little slack for initiators that count padding; anything bigger is
        # a framing error that would otherwise make us allocate without bound.
        if data_len > max(self.max_recv_data, 8192) + 4 * 1024 * 1024:
            raise PDUError(f"data segment of {data_len} bytes exceeds MaxRecvDataSegmentLength")
        try:
            ahs = await self.reader.readexactly(ahs_len) if ahs_len else b""
            if self.header_digest:
                digest = int.from_bytes(await self.reader.readexactly(4), "little")
                if digest != crc32c(bytes(bhs) + ahs):
                    raise PDUError("header digest mismatch")
            data = b""
            if data_len:
                data = await self.reader.readexactly(data_len + pad4(data_len))
                data = data[:data_len]
                if self.data_digest:
                    digest = int.from_bytes(await self.reader.readexactly(4), "little")
                    if digest != crc32c(data + bytes(pad4(data_len))):
                        raise PDUError("data digest mismatch")
        except asyncio.IncompleteReadError:
            raise PDUError("connection closed inside a PDU") from None
        return PDU(bhs, ahs, data)

    def write(self, pdu: PDU) -> None:
        """Queue a PDU; callers ``await drain()`` at natural boundaries."""
        bhs = pdu.bhs
        bhs[4] = len(pdu.ahs) // 4
        bhs[5:8] = len(pdu.data).to_bytes(3, "big")
        parts: list[bytes] = [bytes(bhs), pdu.ahs]
        if self.header_digest:
            parts.append(struct.pack("<I", crc32c(bytes(bhs) + pdu.ahs)))
        if pdu.data:
            padded = pdu.data + bytes(pad4(len(pdu.data)))
            parts.append(padded)
            if self.data_digest:
                parts.append(struct.pack("<I", crc32c(padded)))
        self.writer.write(b"".join(parts))

    async def drain(self) -> None:
        await self.writer.drain()
