"""The wire target's bounds, each tested with the hostile input that once got past it.

Memory is read from the daemon's /proc status (VmRSS) before and after the
attack; the bound asserted is the one docs/wire-target.md ("Limits")
documents for what the attack can make the daemon hold. While the attacker
is connected a real initiator (libiscsi) must still be served.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from iscsi_helper.lab.wire.control import WireService

from .conftest import Targets, run
from .rawclient import RawSession, login_pdu, pdu

MiB = 1 << 20
# What one connection may make the daemon hold (write budget 16 MiB, one
# 256 KiB PDU, its read buffer), plus allocator slack.
CONNECTION_BOUND = 40 * MiB


def rss(service: WireService) -> int:
    pid = service.pid()
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def still_served(targets: Targets, url: str) -> None:
    inq = run("iscsi-inq", url, timeout=60)
    assert inq.returncode == 0, inq.stderr
    cap = run("iscsi-readcapacity16", url, timeout=60)
    assert cap.returncode == 0, cap.stderr


def test_oversized_login_segments_are_refused_before_they_are_read(
    service: WireService, targets: Targets
) -> None:
    """60 login PDUs announcing 4 MiB each took the daemon from 61 to 353 MiB once."""
    t = targets.add("bigtext")
    before = rss(service)
    socks = []
    try:
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", targets.port), timeout=10)
            header = login_pdu({}, cont=True, transit=False)[:48]
            s.sendall(header[:5] + (4 * MiB).to_bytes(3, "big") + header[8:] + b"A" * 65536)
            socks.append(s)
        still_served(targets, targets.url(t))
        for s in socks:  # each was dropped at its header: reading sees the close
            s.settimeout(10)
            try:
                assert s.recv(65536) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in socks:
            s.close()
    assert rss(service) - before < CONNECTION_BOUND


def test_continued_login_text_is_capped(service: WireService, targets: Targets) -> None:
    """Continued (C bit) login text accumulates to 32 KiB at most, then the login fails."""
    t = targets.add("conttext")
    s = RawSession(targets.port)
    try:
        filler = {"X-junk": "y" * 200}
        status = None
        for _ in range(400):  # 400 * 8 KiB would be 3 MiB without the cap
            s.sock.sendall(
                login_pdu({**{f"X-k{i}": "v" * 200 for i in range(36)}, **filler}, cont=True, transit=False)
            )
            bhs, _ = s.recv_pdu()
            status = int.from_bytes(bhs[36:38], "big")
            if status:
                break
        assert status == 0x0200  # initiator error: text beyond the cap
        with pytest.raises((EOFError, ConnectionResetError)):
            s.recv_pdu()
    finally:
        s.close()
    still_served(targets, targets.url(t))


def test_long_key_names_and_values_are_refused(targets: Targets) -> None:
    t = targets.add("longkeys")
    for keys in ({"K" * 64: "1"}, {"MaxBurstLength": "1" * 256}, {"InitiatorName": "iqn." + "a" * 230}):
        s = RawSession(targets.port)
        try:
            with pytest.raises(RuntimeError, match="status 0x0200"):
                s.login(t.iqn, keys)
        finally:
            s.close()


def test_long_login_response_is_split_to_8_KiB(targets: Targets) -> None:
    """Hundreds of unknown keys are each answered NotUnderstood: the answer spans PDUs of at most 8 KiB."""
    t = targets.add("split")
    s = RawSession(targets.port)
    try:
        keys = {"InitiatorName": "iqn.2024-01.org.example:raw", "TargetName": t.iqn}
        keys.update({f"X-{i:03d}-{'k' * 54}": "v" for i in range(120)})  # 60-byte names: 7.5 KiB asked
        s.sock.sendall(login_pdu(keys))
        parts = []
        while True:
            bhs, data = s.recv_pdu()
            assert int.from_bytes(bhs[36:38], "big") == 0
            assert len(data) <= 8192
            parts.append(data)
            if not bhs[1] & 0x40:  # C clear: last part
                break
            s.sock.sendall(login_pdu({}, transit=False))
        answer = b"".join(parts).decode()
    finally:
        s.close()
    assert len(parts) >= 2
    assert answer.count("=NotUnderstood") == 120


def test_many_large_writes_do_not_reserve_memory(service: WireService, targets: Targets) -> None:
    """32 WRITE(16) of 16 MiB whose data never comes once reserved 32 zeroed 16 MiB buffers (+510 MiB)."""
    t = targets.add("writeflood", size=64 * MiB)
    s = RawSession(targets.port)
    before = rss(service)
    try:
        s.login(t.iqn)
        blocks = (16 * MiB) // 512
        for i in range(32):
            cdb = bytes([0x8A, 0]) + struct.pack(">QI", (i % 4) * blocks, blocks) + bytes(2)
            s.scsi(cdb, 16 * MiB, write=True, data=b"\xee" * 65536, final=False)
        still_served(targets, targets.url(t))
        grown = rss(service) - before
    finally:
        s.close()
    assert grown < CONNECTION_BOUND, f"daemon grew by {grown / MiB:.0f} MiB"
    still_served(targets, targets.url(t))  # and the aborted connection released what it held


def test_data_digest_is_checked_and_produced(targets: Targets) -> None:
    t = targets.add("digest")
    s = RawSession(targets.port)
    try:
        answers = s.login(t.iqn, {"DataDigest": "CRC32C"})
        assert answers["DataDigest"] == "CRC32C"
        payload = bytes(range(256)) * 16 + b"xyz"
        assert s.nop(payload, digest=True) == payload
        # A corrupted digest ends the connection (ERL 0).
        raw = pdu(0x40, 0x80, b"ping", itt=9, fields=bytes(8) + bytes(4) + struct.pack(">I", 0xFFFFFFFF))
        s.sock.sendall(raw + b"\0\0\0\0")
        with pytest.raises((EOFError, ConnectionResetError)):
            s.recv_pdu()
    finally:
        s.close()
