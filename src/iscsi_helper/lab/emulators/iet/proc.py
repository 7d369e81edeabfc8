"""The text of ``/proc/net/iet/volume`` and ``/proc/net/iet/session``, and cheap edits of it.

Layout (what IET's kernel module prints; helpers such as Cinder's parse it
with regular expressions, so every byte matters)::

    volume:   tid:<tid> name:<iqn>
              \\tlun:<lun> state:0 iotype:<fileio|blockio> iomode:<wt|wb|ro> blocks:<n> \\
                  blocksize:<bs> path:<path>              (one line)
    session:  tid:<tid> name:<iqn>
              \\tsid:<sid> initiator:<initiator iqn>
              \\t\\tcid:<cid> ip:<ip> state:active hd:none dd:none

Every target appears in both files, with or without LUNs or sessions. The
kernel keeps targets, sessions and connections on lists it adds to at the
head, so the newest comes first; LUNs are added at the tail, so they stay in
creation order.

Rewriting the files from every target's state would cost a read of every
state file per operation; with thousands of targets that dominates. Since a
target's lines form one block that starts with ``tid:`` (no other line
does: names cannot hold whitespace and inner lines are indented), an
operation replaces, prepends or cuts just its block in the current text.
"""

from __future__ import annotations

import ipaddress

from iscsi_helper.lab.emulators.iet.model import TargetRecord


def _header(record: TargetRecord) -> str:
    return f"tid:{record['tid']} name:{record['name']}\n"


def volume_block(record: TargetRecord) -> str:
    lines = [_header(record)]
    for lun in record["luns"]:
        lines.append(
            f"\tlun:{lun['lun']} state:0 iotype:{lun['type']} iomode:{lun['iomode']}"
            f" blocks:{lun['blocks']} blocksize:{lun['blocksize']} path:{lun['path']}\n"
        )
    return "".join(lines)


def format_ip(ip: str) -> str:
    """IET prints IPv6 peers bracketed with all eight groups zero-padded."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return str(address)
    return "[" + ":".join(f"{int(group, 16):04x}" for group in address.exploded.split(":")) + "]"


def session_block(record: TargetRecord) -> str:
    lines = [_header(record)]
    for session in record["sessions"]:
        lines.append(f"\tsid:{session['sid']} initiator:{session['initiator']}\n")
        for conn in session["conns"]:
            lines.append(
                f"\t\tcid:{conn['cid']} ip:{format_ip(conn['ip'])} state:{conn['state']}"
                f" hd:{conn['hd']} dd:{conn['dd']}\n"
            )
    return "".join(lines)


def find_block(text: str, tid: int) -> tuple[int, int] | None:
    """Start and end offsets of target ``tid``'s block in a proc text, if present."""
    marker = f"tid:{tid} name:"
    if text.startswith(marker):
        start = 0
    else:
        found = text.find("\n" + marker)
        if found < 0:
            return None
        start = found + 1
    nxt = text.find("\ntid:", start)
    end = len(text) if nxt < 0 else nxt + 1
    return start, end


def splice(text: str, tid: int, block: str | None, *, new: bool) -> str | None:
    """Apply one target's change to a proc text; None when the text is not as expected.

    ``new`` targets are prepended (newest first) and must not be present yet;
    changed targets are replaced in place; ``block=None`` removes the target.
    A None result tells the caller the text drifted from the state (for
    example after a crash between the two writes) and a full rebuild is due.
    """
    span = find_block(text, tid)
    if new:
        if span is not None or block is None:
            return None
        return block + text
    if span is None:
        return None
    start, end = span
    return text[:start] + (block or "") + text[end:]
