"""IP addresses as chiscsi reads and prints them.

Addresses are kept as 16 bytes, IPv4 mapped into ``::ffff:0:0/96``
(includes/common/iscsi_tcp.h 26-31, 43-49), and printed by
``tcp_endpoint_sprintf`` (iscsi_tcp.h 51-71): IPv4 dotted, IPv6 as eight
zero-padded groups in brackets, ``:port`` only when the port is not 0.
Parsing follows private/klib/text/iscsi_keys_common.c 26-224: IPv4 needs
exactly three dots and only digits (',' and ';' are tolerated), each part is
read with ``simple_strtoul`` base 0 (so ``010`` is octal) and OR-ed into a
32-bit word without range checks; an all-zero address is refused.
"""

from __future__ import annotations

import ipaddress

from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import cstr, isdigit, isxdigit, simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

IPV4_PREFIX = bytes(10) + b"\xff\xff"
PORT_DEFAULT = 3260  # includes/common/iscsi_defs.h 15


def is_ipv6(ip16: bytes) -> bool:
    return ip16[:12] != IPV4_PREFIX


def format_ip(ip16: bytes) -> str:
    if is_ipv6(ip16):
        groups = [f"{ip16[i]:02x}{ip16[i + 1]:02x}" for i in range(0, 16, 2)]
        return "[" + ":".join(groups) + "]"
    return ".".join(str(b) for b in ip16[12:16])


def format_endpoint(ip16: bytes, port: int) -> str:
    """``tcp_endpoint_sprintf``."""
    text = format_ip(ip16)
    if port:
        text += f":{port}"
    return text


def socket_host(ip16: bytes) -> str:
    """The address for ``bind``/``connect``: IPv6 unbracketed, IPv4 dotted."""
    if is_ipv6(ip16):
        return str(ipaddress.IPv6Address(ip16))
    return ".".join(str(b) for b in ip16[12:16])


def count_ipv6_colons(text: str) -> int:
    """``iscsi_string_is_address_ipv6``: colons before ']' or ',', minus one (0 if none)."""
    count = 0
    for ch in text:
        if ch == ":":
            count += 1
        elif ch in "],":
            break
    return count - 1 if count else 0


def string_to_ipv4(text: str, ebuf: Ebuf) -> bytes:
    """``iscsi_string_to_ipv4`` (iscsi_keys_common.c 26-76); ``text`` is the C string."""
    dots = 0
    bad = 0
    for i, ch in enumerate(text):
        if ch == ".":
            dots += 1
            if text[i + 1 : i + 2] == ".":
                bad += 1
        elif not isdigit(ch) and ch not in ",;":
            bad += 1
    if dots != 3 or bad:
        ebuf.add(f"ERR! {text}: invalid IP address format.\n")
        raise KernelError("format")
    values = [simple_strtoul(text, 0)[0]]
    pos = 0
    while True:
        pos = text.find(".", pos)
        if pos < 0 or pos + 1 >= len(text):
            break
        pos += 1
        values.append(simple_strtoul(text, 0, pos)[0])
    addr = 0
    for i, value in enumerate(values[:4]):
        addr |= (value & 0xFFFFFFFF) << (i * 8)
    addr &= 0xFFFFFFFF
    if not addr:
        ebuf.add(f"ERR! {text}: all zero IP address.\n")
        raise KernelError("zero")
    return IPV4_PREFIX + addr.to_bytes(4, "little")


def in6_pton(text: str, delim: str | None) -> bytes | None:
    """Linux ``in6_pton``: parse up to ``delim`` (or the end); None if malformed."""
    if delim is not None and delim in text:
        text = text[: text.index(delim)]
    if not text or any(not (isxdigit(c) or c in ":.") for c in text):
        return None
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        return None


def string_to_ipv6(text: str, ebuf: Ebuf) -> bytes:
    """``iscsi_string_to_ipv6`` for kernels >= 2.6.19 (iscsi_keys_common.c 176-205)."""
    parsed = in6_pton(text[1:], "]") if text.startswith("[") else in6_pton(text, None)
    if parsed is None:
        ebuf.add(f"ERR! {text}: invalid IP address format.\n")
        raise KernelError("format")
    if parsed == bytes(16):
        ebuf.add(f"ERR! {text}: all zero IP address.\n")
        raise KernelError("zero")
    return parsed


def string_to_ip(text: str, ebuf: Ebuf, ipv6: bool) -> bytes:
    """``iscsi_string_to_ip``: the caller decides the family, as the source does."""
    text = cstr(text)
    return string_to_ipv6(text, ebuf) if ipv6 else string_to_ipv4(text, ebuf)
