"""IET's ``ietd.conf``: our Target blocks, found and replaced without touching anyone else's.

The file is shared with other software and with hand edits, so every
function here keeps each byte outside the block it is asked about. A
block is a ``Target <name>`` line and the lines after it up to a blank
line, a comment or the next ``Target`` (ietd reads the keyword
case-blind). Our block is exactly what Cinder's IetAdm wrote, one tab of
indent::

    Target <iqn>
    \\tIncomingUser <user> <secret>
    \\tLun 0 Path=<path>,Type=<fileio|blockio>
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iscsi_helper.exception import IscsiHelperError, PersistenceError
from iscsi_helper.formats import ChapCredentials
from iscsi_helper.model import ExportSpec


def render_block(spec: ExportSpec, iotype: str) -> str:
    """Our block for ``spec``: exactly what Cinder's IetAdm wrote, one tab of indent."""
    lines = [f"Target {spec.iqn}"]
    if spec.chap:
        lines.append(f"\tIncomingUser {spec.chap.username} {spec.chap.password}")
    if spec.target_chap:
        lines.append(f"\tOutgoingUser {spec.target_chap.username} {spec.target_chap.password}")
    lines.append(f"\tLun {spec.lun} Path={spec.device_path},Type={iotype}")
    return "\n".join(lines) + "\n"


def _target_name(line: str) -> str | None:
    """The name on a ``Target <name>`` line (keyword case-blind, as ietd reads it), else None."""
    words = line.split()
    if len(words) == 2 and words[0].lower() == "target":
        return words[1]
    return None


def _is_block_body(line: str) -> bool:
    """Whether a line continues the Target block above it.

    A blank line, a comment or the next ``Target`` ends a block, so comments
    and spacing around other software's blocks are never taken as ours.
    """
    words = line.split()
    return bool(words) and not words[0].startswith("#") and words[0].lower() != "target"


def iter_blocks(lines: list[str]) -> Iterator[tuple[str, int, int]]:
    """(name, start, end) of every Target block: ``lines[start:end]`` is the block."""
    i = 0
    while i < len(lines):
        name = _target_name(lines[i])
        if name is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and _is_block_body(lines[end]):
            end += 1
        yield name, i, end
        i = end


def find_block(text: str, iqn: str) -> list[str] | None:
    """The lines of the first block of exactly ``iqn`` (line ends kept), or None.

    A file that does not mention the name at all is not split into lines:
    that is the usual case (a new export), and the file grows with the
    number of exports.
    """
    if iqn not in text:
        return None
    lines = text.splitlines(keepends=True)
    for name, start, end in iter_blocks(lines):
        if name == iqn:
            return lines[start:end]
    return None


def replace_block(text: str, iqn: str, block: str | None) -> str:
    """``text`` with the block of exactly ``iqn`` replaced by ``block`` (None: removed).

    The first block of that name is replaced in place; later duplicates
    (ietd would refuse a second target of one name) are dropped. Without a
    block, ``block`` is appended. Every other byte is kept.
    """
    first = text.find(iqn)
    if first < 0:
        # No line can name it: skip the line scan, the N-sized part of a create
        # (one substring search of the file instead of a split of every line).
        if block is None:
            return text
        return (text if not text or text.endswith("\n") else text + "\n") + block
    # A Target line always starts a block, whatever precedes it, so the file
    # before the line of the first mention is kept without being split.
    keep = text.rfind("\n", 0, first) + 1
    if keep:
        return text[:keep] + replace_block(text[keep:], iqn, block)
    lines = text.splitlines(keepends=True)
    spans = [(start, end) for name, start, end in iter_blocks(lines) if name == iqn]
    new_lines = [] if block is None else block.splitlines(keepends=True)
    if not spans:
        if block is None:
            return text
        prefix = text if not text or text.endswith("\n") else text + "\n"
        return prefix + block
    out: list[str] = []
    cursor = 0
    for index, (start, end) in enumerate(spans):
        out += lines[cursor:start]
        if index == 0:
            out += new_lines
        cursor = end
    out += lines[cursor:]
    return "".join(out)


@dataclass(frozen=True)
class ConfBlock:
    """What one Target block says (to adopt a block Cinder's IetAdm wrote)."""

    iqn: str
    incoming: ChapCredentials | None
    outgoing: ChapCredentials | None
    luns: dict[int, str]


def parse_block(lines: list[str], path: Path) -> ConfBlock:
    """One block as :func:`find_block` or :func:`iter_blocks` cut it; ``path`` names the file in errors.

    The first ``IncomingUser`` counts (ietd would accept any, we need one);
    a credential we could not write back is an error naming the block,
    never the secret.
    """
    name = _target_name(lines[0]) if lines else None
    if name is None:
        raise PersistenceError(path=path, reason="a block must start with 'Target <name>'")
    incoming = outgoing = None
    luns: dict[int, str] = {}
    for line in lines[1:]:
        words = line.split()
        keyword = words[0].lower()
        try:
            if keyword in ("incominguser", "outgoinguser") and len(words) == 3:
                creds = ChapCredentials(words[1], words[2])
                if keyword == "incominguser":
                    incoming = incoming or creds
                else:
                    outgoing = creds
            elif keyword == "lun" and len(words) >= 3 and words[1].isdigit():
                params = dict(item.partition("=")[::2] for item in "".join(words[2:]).split(",") if item)
                if params.get("Path"):
                    luns[int(words[1])] = params["Path"]
        except (IscsiHelperError, ValueError) as err:  # a bad credential, a LUN number int() refuses
            raise PersistenceError(path=path, reason=f"block of {name}: {err}") from None
    return ConfBlock(name, incoming, outgoing, luns)
