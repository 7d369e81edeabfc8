"""A deliberately minimal iSCSI initiator on a plain socket, for hostile inputs.

libiscsi only sends well-formed traffic; the bounds of the wire target are
tested with PDUs built here by hand (RFC 7143 section 11 layouts).
"""

from __future__ import annotations

import socket
import struct

import crc32c


def pdu(
    opcode: int, flags: int, data: bytes = b"", itt: int = 1, fields: bytes = b"", announce: int | None = None
) -> bytes:
    """BHS (+ padded data). ``fields`` fills bytes 8..47; ``announce`` lies about the data length."""
    length = len(data) if announce is None else announce
    bhs = bytes([opcode, flags, 0, 0, 0]) + length.to_bytes(3, "big") + fields.ljust(40, b"\0")[:40]
    bhs = bhs[:16] + struct.pack(">I", itt) + bhs[20:]
    return bhs + data + bytes(-len(data) % 4)


def text(pairs: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs.items())


def login_pdu(keys: dict[str, str], cont: bool = False, transit: bool = True) -> bytes:
    isid = bytes([0x80, 0, 0, 0, 0, 1])
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (1 << 2) | (3 if transit else 0)
    fields = (
        isid + bytes(2) + bytes(4) + bytes(4) + struct.pack(">II", 0, 0)
    )  # ITT set by pdu(); CID, CmdSN, ExpStatSN
    return pdu(0x43, flags, text(keys), itt=0, fields=fields)


class RawSession:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=20)
        self.cmd_sn = 0
        self.itt = 100

    def close(self) -> None:
        self.sock.close()

    def recv_pdu(self) -> tuple[bytes, bytes]:
        bhs = self._exact(48)
        length = int.from_bytes(bhs[5:8], "big")
        data = self._exact(length + (-length % 4))[:length] if length else b""
        return bhs, data

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("target closed the connection")
            out += chunk
        return out

    def login(self, target: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        keys = {
            "InitiatorName": "iqn.2024-01.org.example:raw",
            "TargetName": target,
            "SessionType": "Normal",
            "ImmediateData": "Yes",
            "InitialR2T": "No",
            "MaxBurstLength": "262144",
            "FirstBurstLength": "262144",
            "MaxRecvDataSegmentLength": "262144",
            "HeaderDigest": "None",
            "DataDigest": "None",
            **(extra or {}),
        }
        self.sock.sendall(login_pdu(keys))
        bhs, data = self.recv_pdu()
        status = int.from_bytes(bhs[36:38], "big")
        if bhs[0] & 0x3F != 0x23 or status:
            raise RuntimeError(f"login refused: status 0x{status:04x}")
        self.exp_stat_sn = int.from_bytes(bhs[24:28], "big") + 1
        self.cmd_sn = int.from_bytes(bhs[28:32], "big")
        return dict(item.split("=", 1) for item in data.decode().split("\0") if item)

    def scsi(self, cdb: bytes, edtl: int, write: bool, data: bytes = b"", final: bool = True) -> int:
        self.itt += 1
        flags = (0x80 if final else 0) | (0x20 if write else 0x40) | 0x01
        fields = (
            bytes(8)
            + struct.pack(">I", 0)
            + struct.pack(">III", edtl, self.cmd_sn, self.exp_stat_sn)
            + cdb.ljust(16, b"\0")
        )
        self.sock.sendall(pdu(0x01, flags, data, itt=self.itt, fields=fields))
        self.cmd_sn += 1
        return self.itt

    def nop(self, data: bytes, digest: bool = False) -> bytes:
        """NOP-Out with a ping payload; returns the NOP-In's data. ``digest``: CRC32C data digest."""
        self.itt += 1
        fields = (
            bytes(8)
            + struct.pack(">I", 0)
            + struct.pack(">IIII", 0xFFFFFFFF, self.cmd_sn, self.exp_stat_sn, 0)
        )
        raw = pdu(0x40 | 0x00, 0x80, data, itt=self.itt, fields=fields)
        if digest:
            padded = raw[48:]
            raw = raw[:48] + padded + struct.pack("<I", crc32c.crc32c(padded))
        self.sock.sendall(raw)
        bhs = self._exact(48)
        length = int.from_bytes(bhs[5:8], "big")
        body = self._exact(length + (-length % 4) + (4 if digest and length else 0))
        if digest and length:
            (got,) = struct.unpack("<I", body[-4:])
            assert got == crc32c.crc32c(body[:-4]), "NOP-In data digest does not match"
        return body[:length]
