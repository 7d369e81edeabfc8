"""A mutable C character buffer, for parsers that cut their input with NULs.

Several chiscsi decoders terminate substrings in place and then print the
buffer in their error messages, so what a message shows depends on the cuts
made so far. Modelling the buffer keeps those messages exact.
"""

from __future__ import annotations


class CBuf:
    __slots__ = ("chars",)

    def __init__(self, text: str) -> None:
        self.chars = list(text) + ["\0"]

    def ch(self, i: int) -> str:
        return self.chars[i] if 0 <= i < len(self.chars) else "\0"

    def set(self, i: int, value: str) -> None:
        self.chars[i] = value

    def s(self, i: int = 0) -> str:
        """The C string starting at ``i``."""
        out = []
        while i < len(self.chars) and self.chars[i] != "\0":
            out.append(self.chars[i])
            i += 1
        return "".join(out)

    def raw(self) -> str:
        return "".join(self.chars)

    def strchr(self, i: int, c: str) -> int | None:
        while i < len(self.chars) and self.chars[i] != "\0":
            if self.chars[i] == c:
                return i
            i += 1
        return None

    def strstr(self, i: int, sub: str) -> int | None:
        text = self.s(i)
        pos = text.find(sub)
        return None if pos < 0 else i + pos

    def strstrbet(self, start: int, end: int, sub: str) -> bool:
        """``os_strstrbet``: ``sub`` occurs in [start, end) (includes/common/os_builtin.h 165-194)."""
        l1 = len(self.s(start))
        l2 = len(self.s(end))
        if l2 >= l1:
            return False
        return sub in self.s(start)[: l1 - l2]
