"""C string semantics the product's parsers rely on, so their quirks carry over.

chiscsi parses everything with libc/kernel helpers whose edge cases decide
what is accepted: ``simple_strtoul`` (no sign, no whitespace skipping, base 0
picks octal for a leading zero), C-locale ``isspace``, ASCII-only ``tolower``.
Text is handled as latin-1 ``str`` so that one character is one byte, as in C.
"""

from __future__ import annotations

C_SPACE = " \t\n\v\f\r"
DIGITS = "0123456789"
XDIGITS = "0123456789abcdefABCDEF"
ULONG_MASK = (1 << 64) - 1
UINT_MASK = (1 << 32) - 1


def isspace(ch: str) -> bool:
    return ch != "" and ch in C_SPACE


def isdigit(ch: str) -> bool:
    return ch != "" and ch in DIGITS


def isxdigit(ch: str) -> bool:
    return ch != "" and ch in XDIGITS


def lower(text: str) -> str:
    """``tolower`` byte by byte in the C locale: only A-Z change."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def cstr(text: str) -> str:
    """The C string a buffer holds: everything before the first NUL."""
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


def _digit_value(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - 48
    if "a" <= ch <= "z":
        return ord(ch) - 87
    if "A" <= ch <= "Z":
        return ord(ch) - 55
    return 99


def simple_strtoul(text: str, base: int, start: int = 0) -> tuple[int, int]:
    """Linux ``simple_strtoul``: (value, index just past the digits).

    Base 0 means 16 after ``0x`` followed by a hex digit, 8 after any other
    leading ``0``, else 10; base 16 skips a ``0x`` prefix. No digits gives 0
    with the index left where parsing started (after a skipped prefix). The
    value wraps like an unsigned long.
    """
    i = start
    if base == 0:
        if text[i : i + 1] == "0":
            if text[i + 1 : i + 2] in ("x", "X") and isxdigit(text[i + 2 : i + 3]):
                base = 16
            else:
                base = 8
        else:
            base = 10
    if base == 16 and text[i : i + 1] == "0" and text[i + 1 : i + 2] in ("x", "X"):
        i += 2
    value = 0
    while i < len(text):
        digit = _digit_value(text[i])
        if digit >= base:
            break
        value = (value * base + digit) & ULONG_MASK
        i += 1
    return value, i


def as_uint(value: int) -> int:
    """What storing an unsigned long into an ``unsigned int`` leaves."""
    return value & UINT_MASK


def as_int(value: int) -> int:
    """What storing an unsigned long into an ``int`` leaves (two's complement)."""
    value &= UINT_MASK
    return value - (1 << 32) if value & 0x80000000 else value
