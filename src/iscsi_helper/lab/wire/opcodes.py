"""REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the command set this device server honours.

One table of CDB usage data per (opcode, service action): which bits of each
CDB byte the device server looks at. It is the single list of supported
commands the initiator can discover, so a command added to
:mod:`iscsi_helper.lab.wire.scsi` is added here too.
"""

from __future__ import annotations

import struct

from iscsi_helper.lab.wire.sense import be, illegal


def _usage(op: int, byte1: int, middle: bytes) -> bytes:
    """CDB usage data: which bits of each CDB byte this device server honours."""
    return bytes([op, byte1]) + middle + b"\x00"


_FF = b"\xff"
# (opcode, service action or None) -> CDB usage data; the command set REPORT
# SUPPORTED OPERATION CODES advertises.  DPO/FUA are honoured (FUA syncs),
# protection fields are not (they are rejected), hence the byte-1 masks.
_USAGE: dict[tuple[int, int | None], bytes] = {
    (0x00, None): _usage(0x00, 0x00, bytes(3)),
    (0x03, None): _usage(0x03, 0x01, b"\x00\x00\xff"),
    (0x08, None): _usage(0x08, 0x1F, _FF * 3),
    (0x0A, None): _usage(0x0A, 0x1F, _FF * 3),
    (0x12, None): _usage(0x12, 0x01, _FF * 3),
    (0x1A, None): _usage(0x1A, 0x08, _FF * 3),
    (0x1B, None): _usage(0x1B, 0x01, b"\x00\x0f\xf7"),
    (0x15, None): _usage(0x15, 0x11, b"\x00\x00\xff"),
    (0x16, None): _usage(0x16, 0x00, bytes(3)),
    (0x17, None): _usage(0x17, 0x00, bytes(3)),
    (0x1E, None): _usage(0x1E, 0x00, b"\x00\x00\x03"),
    (0x25, None): _usage(0x25, 0x00, _FF * 4 + b"\x00\x00\x01"),
    (0x28, None): _usage(0x28, 0x18, _FF * 4 + b"\x00" + _FF * 2),
    (0x2A, None): _usage(0x2A, 0x18, _FF * 4 + b"\x00" + _FF * 2),
    (0x2E, None): _usage(0x2E, 0x12, _FF * 4 + b"\x00" + _FF * 2),
    (0x2F, None): _usage(0x2F, 0x16, _FF * 4 + b"\x00" + _FF * 2),
    (0x34, None): _usage(0x34, 0x02, _FF * 4 + b"\x00" + _FF * 2),
    (0x35, None): _usage(0x35, 0x02, _FF * 4 + b"\x00" + _FF * 2),
    (0x41, None): _usage(0x41, 0x08, _FF * 4 + b"\x00" + _FF * 2),
    (0x42, None): _usage(0x42, 0x00, bytes(5) + _FF * 2),
    (0x5A, None): _usage(0x5A, 0x18, _FF * 2 + bytes(3) + _FF * 2),
    (0x55, None): _usage(0x55, 0x11, bytes(5) + _FF * 2),
    (0x56, None): _usage(0x56, 0x00, bytes(7)),
    (0x57, None): _usage(0x57, 0x00, bytes(7)),
    (0x5E, 0x00): _usage(0x5E, 0x00, bytes(5) + _FF * 2),
    (0x5E, 0x01): _usage(0x5E, 0x01, bytes(5) + _FF * 2),
    (0x5E, 0x02): _usage(0x5E, 0x02, bytes(5) + _FF * 2),
    (0x5E, 0x03): _usage(0x5E, 0x03, bytes(5) + _FF * 2),
    (0x5F, 0x00): _usage(0x5F, 0x00, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x01): _usage(0x5F, 0x01, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x02): _usage(0x5F, 0x02, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x03): _usage(0x5F, 0x03, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x04): _usage(0x5F, 0x04, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x05): _usage(0x5F, 0x05, b"\xff" + bytes(2) + _FF * 4),
    (0x5F, 0x06): _usage(0x5F, 0x06, b"\xff" + bytes(2) + _FF * 4),
    (0x88, None): _usage(0x88, 0x18, _FF * 12 + b"\x00"),
    (0x8B, None): _usage(0x8B, 0x18, _FF * 12 + b"\x00"),
    (0x8A, None): _usage(0x8A, 0x18, _FF * 12 + b"\x00"),
    (0x8E, None): _usage(0x8E, 0x12, _FF * 12 + b"\x00"),
    (0x8F, None): _usage(0x8F, 0x16, _FF * 12 + b"\x00"),
    (0x89, None): _usage(0x89, 0x18, _FF * 8 + bytes(3) + _FF + b"\x00"),
    (0x90, None): _usage(0x90, 0x02, _FF * 12 + b"\x00"),
    (0x91, None): _usage(0x91, 0x02, _FF * 12 + b"\x00"),
    (0x93, None): _usage(0x93, 0x09, _FF * 12 + b"\x00"),
    (0x9E, 0x10): _usage(0x9E, 0x10, _FF * 12 + b"\x00"),
    (0x9E, 0x12): _usage(0x9E, 0x12, _FF * 12 + b"\x00"),
    (0xA0, None): _usage(0xA0, 0x00, b"\xff\x00\x00\x00" + _FF * 4 + b"\x00"),
    (0xA3, 0x0C): _usage(0xA3, 0x0C, b"\x87" + _FF * 7 + b"\x00"),
    (0xA8, None): _usage(0xA8, 0x18, _FF * 8 + b"\x00"),
    (0xAA, None): _usage(0xAA, 0x18, _FF * 8 + b"\x00"),
    (0xAE, None): _usage(0xAE, 0x12, _FF * 8 + b"\x00"),
    (0xAF, None): _usage(0xAF, 0x16, _FF * 8 + b"\x00"),
}
_THIN_ONLY = {(0x42, None), (0x9E, 0x12)}  # UNMAP, GET LBA STATUS: only on thin LUNs
_SA_OPCODES = {op for op, sa in _USAGE if sa is not None}
_TIMEOUTS_DESCRIPTOR = be(0x0A, 2) + bytes(10)


def report_supported_opcodes(cdb: bytes, can_unmap: bool) -> bytes:
    rctd = bool(cdb[2] & 0x80)
    options = cdb[2] & 0x07
    req_op = cdb[3]
    req_sa = struct.unpack_from(">H", cdb, 4)[0]
    alloc = struct.unpack_from(">I", cdb, 6)[0]
    table = {k: v for k, v in _USAGE.items() if can_unmap or k not in _THIN_ONLY}
    if options == 0:
        body = bytearray()
        for (op, sa), usage in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            flags = (0x02 if rctd else 0) | (0x01 if sa is not None else 0)
            body += bytes([op, 0]) + be(sa or 0, 2) + bytes([0, flags]) + be(len(usage), 2)
            if rctd:
                body += _TIMEOUTS_DESCRIPTOR
        return (be(len(body), 4) + bytes(body))[:alloc]
    if options == 1:
        if req_op in _SA_OPCODES:
            raise illegal()
        key: tuple[int, int | None] = (req_op, None)
    elif options == 2:
        if req_op not in _SA_OPCODES:
            raise illegal()
        key = (req_op, req_sa)
    elif options == 3:
        key = (req_op, req_sa if req_op in _SA_OPCODES else None)
    else:
        raise illegal()
    found = table.get(key)
    if found is None:
        out = bytes([0, 0x01, 0, 0])  # SUPPORT: not supported
    else:
        out = bytes([0, (0x80 if rctd else 0) | 0x03]) + be(len(found), 2) + found
        if rctd:
            out += _TIMEOUTS_DESCRIPTOR
    return out[:alloc]
