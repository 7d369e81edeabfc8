"""The kernel's reply buffer: what ``iscsictl`` prints after a control request.

Every control request carries a 512-byte message buffer back to user space
(private/klib/control/iscsi_control_linux.c 29-34, 91-94). The kernel code
writes to it in two ways, and which one a message uses decides what the user
finally sees: ``sprintf(ebuf + strlen(ebuf), ...)`` appends, while a plain
``sprintf(ebuf, ...)`` replaces whatever earlier checks had written. The
emulator keeps that distinction per message, as the source does.
"""

from __future__ import annotations


class Ebuf:
    """Messages of one control request, with the source's append/replace semantics."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text = ""

    def add(self, message: str) -> None:
        """``sprintf(ebuf + os_strlen(ebuf), ...)``."""
        self.text += message

    def put(self, message: str) -> None:
        """``sprintf(ebuf, ...)``: earlier messages of this request are lost."""
        self.text = message

    def __bool__(self) -> bool:
        return bool(self.text)


class KernelError(Exception):
    """A control request failed; the user sees the ebuf and ``ioctl`` returns -1."""
