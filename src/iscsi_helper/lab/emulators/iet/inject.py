"""Emulator-only: pretend an initiator logged in, so session handling can be tested.

Real sessions appear in ``/proc/net/iet/session`` when an initiator logs in;
no initiator can log in to an emulator without a data path, yet helpers must
be tested on what they do with sessions (Cinder force-closes them before
deleting a target, and ``--op delete --tid`` is refused while they exist).
This is not part of ietadm's syntax and must never be relied on outside
tests::

    python -m iscsi_helper.lab.emulators.iet --inject-session --tid=N \\
        --initiator=iqn.1994-05.com.example:host --ip=192.0.2.10 [--cid=0] [--sid=S] \\
        [--digest=none|crc32c]

It prints the session id. The sid, unless given, is built as iSCSI builds
one, ``ISID << 16 | TSIH``, from a counter of the state directory.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from iscsi_helper.lab.emulators.iet.errors import EmulatorConfigError, IetError, einval
from iscsi_helper.lab.emulators.iet.model import ConnRecord, SessionRecord
from iscsi_helper.lab.emulators.iet.state import State

ISID_BASE = 0x023D_0000_0000  # an ISID of the "random" type (0b00 qualifier), as initiators use


def inject_session(
    state: State,
    tid: int,
    initiator: str,
    ip: str,
    *,
    cid: int = 0,
    sid: int | None = None,
    digest: str = "none",
) -> int:
    """Add one session with one active connection to target ``tid``; returns its sid."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise einval(f"{ip!r} is not an IP address") from None
    if not initiator or any(c.isspace() for c in initiator):
        raise einval("initiator name must be non-empty and hold no whitespace")
    with state.locked(), state.changing():
        record = state.load_target(tid)
        if record is None:
            raise IetError(2, f"no target with tid {tid}")
        if sid is None:
            n = state.next_counter("sid")
            sid = ((ISID_BASE + n) << 16) | (n & 0xFFFF or 1)
        for session in record["sessions"]:
            if session["sid"] == sid:
                raise IetError(17, f"session {sid} exists on target {tid}")
        conn = ConnRecord(cid=cid, ip=ip, state="active", hd=digest, dd=digest)
        record["sessions"].insert(0, SessionRecord(sid=sid, initiator=initiator, conns=[conn]))
        state.save_target(record)
        state.update_proc(tid, record)
    return sid


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iscsi_helper.lab.emulators.iet --inject-session",
        description="Emulator-only: add a fake logged-in session.",
    )
    parser.add_argument("--inject-session", action="store_true", required=True)
    parser.add_argument("--tid", type=int, required=True)
    parser.add_argument("--initiator", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--cid", type=int, default=0)
    parser.add_argument("--sid", type=int)
    parser.add_argument("--digest", choices=("none", "crc32c"), default="none")
    args = parser.parse_args(argv)
    try:
        sid = inject_session(
            State.from_env(),
            args.tid,
            args.initiator,
            args.ip,
            cid=args.cid,
            sid=args.sid,
            digest=args.digest,
        )
    except EmulatorConfigError as exc:
        sys.stderr.write(f"inject-session: {exc}\n")
        return 255
    except IetError as exc:
        sys.stderr.write(f"inject-session: {exc.message}\n")
        return exc.exit_status
    sys.stdout.write(f"{sid}\n")
    return 0
