"""Reading the ``-f`` file the way ``iscsictl`` does (``iscsictl_config_file_read``).

Source: private/klib/../ulib, i.e. src/chiscsi/private/ulib/iscsictl_cmd.c 473-700,
with the string macros of user/common/iscsictl_private.h 7-57. What it implies:

- lines are read with ``fgets`` into 1024 bytes: a longer line is split;
- leading white space goes; then everything from the *last* ``#`` of the line
  on is a comment (so a ``#`` inside a quoted secret cuts the line there);
  trailing white space goes;
- a line ending in ``:`` opens a block; its name, lower-cased, must be
  ``global``, ``target`` or ``default``; any other line is ``key=value``;
  a line before any block, or a block name not in the list, is "invalid format";
- white space before ``=`` is dropped, white space after it is kept (the
  macro meant to drop it assigns to the wrong variable);
- a target's ``TargetName`` is remembered lower-cased; a second ``TargetName``
  or ``TargetAlias`` in one block is a "duplicate declaration"; a target block
  without ``TargetName`` is refused only when another block follows it;
- a file with no block prints "no valid block is found" but is not an error.
Blocks are otherwise not looked at here: the kernel validates the one started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import cstr, isspace, lower

LINE_BUFFER_LENGTH = 1024
BLOCK_TYPES = ("global", "target", "default")


@dataclass
class ConfigEntry:
    type: str
    name: str | None = None
    alias: str | None = None
    entries: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ConfigFile:
    blocks: list[ConfigEntry]
    error: bool
    messages: str  # what iscsictl printed on stderr while reading


def _fgets_lines(data: str) -> list[str]:
    """What successive ``fgets(buf, 1024, f)`` calls return."""
    lines = []
    pos = 0
    limit = LINE_BUFFER_LENGTH - 1
    while pos < len(data):
        end = data.find("\n", pos, pos + limit)
        if end >= 0:
            lines.append(data[pos : end + 1])
            pos = end + 1
        else:
            lines.append(data[pos : pos + limit])
            pos += limit
    return lines


def _trim_trailing(text: str) -> str:
    """``str_trim_trailing_spaces``: never looks at the first character."""
    chars = list(text)
    i = len(chars) - 1
    while i > 0 and isspace(chars[i]):
        chars[i] = ""
        i -= 1
    return "".join(chars)


def parse(data: str, fname: str) -> ConfigFile:
    """``iscsictl_config_file_read`` on the file's bytes (latin-1 text)."""
    blocks: list[ConfigEntry] = []
    error, messages = _read_blocks(data, fname, blocks)
    if not blocks:
        # printed whether or not reading failed (iscsictl_cmd.c 687-689)
        messages += f"ERROR: {fname}, no valid block is found.\n"
    return ConfigFile([] if error else blocks, error, messages)


def _read_blocks(data: str, fname: str, blocks: list[ConfigEntry]) -> tuple[bool, str]:
    messages = ""
    current: ConfigEntry | None = None
    block_type: str | None = None
    line_no = 0
    for raw in _fgets_lines(data):
        line_no += 1
        text = cstr(raw)
        start = 0
        while start < len(text) and isspace(text[start]):
            start += 1
        text = text[start:]
        if text:
            hash_at = text.rfind("#")
            if hash_at >= 0:
                text = text[:hash_at]
            text = _trim_trailing(text)
        if not text or text[0] == "#":
            continue
        block_start = text.endswith(":")
        if block_start:
            name = lower(text[:-1])
            block_type = name if name in BLOCK_TYPES else None
        if block_type is None:
            return True, messages + f"{fname}, line {line_no}, invalid format.\n"
        if block_start:
            if current is not None and current.type == "target" and current.name is None:
                return True, messages + f"{fname} line {line_no}, missing TargetName.\n"
            current = ConfigEntry(block_type)
            blocks.append(current)
            continue
        assert current is not None
        key, eq, value = text.partition("=")
        if not eq:
            return True, messages + f'{fname}, line {line_no}: "{text}" invalid format!\n'
        key = _trim_trailing(key)
        current.entries.append((key, value))
        if current.type == "target":
            if key == "TargetName":
                if current.name is not None:
                    return True, messages + f"line {line_no}: duplicate declaration.\n"
                current.name = lower(value)
            if key == "TargetAlias":
                if current.alias is not None:
                    return True, messages + f"line {line_no}: duplicate declaration.\n"
                current.alias = value
    return False, messages


def read(fname: str) -> ConfigFile:
    """Open and parse; a file that cannot be opened is the caller's error."""
    with open(fname, "rb") as handle:
        data = handle.read()
    return parse(data.decode("latin-1"), fname)
