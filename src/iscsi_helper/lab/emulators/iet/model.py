"""Shapes of the emulator's persisted records (JSON, one file per target).

One file per target keeps an operation's writes proportional to that
target, not to the thousands of others a benchmark creates.
"""

from __future__ import annotations

from typing import TypedDict


class LunRecord(TypedDict):
    lun: int
    path: str
    type: str  # fileio | blockio
    iomode: str  # wt | wb | ro
    blocks: int
    blocksize: int
    scsi_id: str | None
    scsi_sn: str | None


class ConnRecord(TypedDict):
    cid: int
    ip: str
    state: str
    hd: str
    dd: str


class SessionRecord(TypedDict):
    sid: int
    initiator: str
    conns: list[ConnRecord]


class TargetRecord(TypedDict):
    tid: int
    name: str
    seq: int
    params: dict[str, int]
    luns: list[LunRecord]
    incoming: list[list[str]]  # [user, password]
    outgoing: list[list[str]]  # at most one [user, password]
    sessions: list[SessionRecord]


def new_target(tid: int, name: str, seq: int) -> TargetRecord:
    return TargetRecord(
        tid=tid, name=name, seq=seq, params={}, luns=[], incoming=[], outgoing=[], sessions=[]
    )
