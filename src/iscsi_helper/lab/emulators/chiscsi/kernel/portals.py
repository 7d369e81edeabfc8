"""``PortalGroup=``: decoding, starting listeners, and the display line.

Sources (paths under src/chiscsi/):
- decode: private/klib/text/iscsi_config_keys.c 29-180 (``kv_decode_portalgroup``),
  duplicate tag/address checks 187-228, address list
  private/klib/text/iscsi_keys_common.c 301-414 (``kv_decode_addr_n_port``);
- start: private/klib/target/iscsi_target_portal.c 108-168 (a portal already
  listening for another target is shared, else the kernel binds and
  listens), 333-468 (``iscsi_target_portals_update``: a portal that cannot
  be started is reported and dropped; none started is an error);
  redirection 230-300;
- display: iscsi_target_portal.c 27-74 (``iscsi_node_portal_display``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel.addr import (
    PORT_DEFAULT,
    count_ipv6_colons,
    format_endpoint,
    is_ipv6,
    socket_host,
    string_to_ip,
)
from iscsi_helper.lab.emulators.chiscsi.kernel.cbuf import CBuf
from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

HEARTBEAT_DEFAULT = 0  # includes/common/iscsi_defs.h 27: the default "timeout="

FLAG_REDIRECT_FROM = "from"
FLAG_REDIRECT_TO_LOCAL = "to-local"
FLAG_REDIRECT_TO_REMOTE = "to-remote"


@dataclass
class PortalValue:
    """One address of one ``PortalGroup=`` line, as decoded."""

    ip: bytes
    port: int
    tag: int = 0
    timeout: int = 0
    redirect: str | None = None  # only on the first address of a line


@dataclass
class TargetPortal:
    """One entry of a node's portal list (``iscsi_target_portal``)."""

    ip: bytes = bytes(16)
    port: int = 0
    tag: int = 0
    timeout: int = 0
    started: bool = False
    flags: list[str] = field(default_factory=list)
    redirect_to: list[int] = field(default_factory=list)

    @property
    def key(self) -> str:
        return portal_key(self.ip, self.port)

    def to_dict(self) -> dict[str, object]:
        return {
            "ip": self.ip.hex(),
            "port": self.port,
            "tag": self.tag,
            "timeout": self.timeout,
            "started": self.started,
            "flags": list(self.flags),
            "redirect_to": list(self.redirect_to),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetPortal:
        return cls(
            bytes.fromhex(str(data["ip"])),
            int(data["port"]),
            int(data["tag"]),
            int(data["timeout"]),
            bool(data["started"]),
            list(data["flags"]),
            [int(t) for t in data["redirect_to"]],
        )


def portal_key(ip: bytes, port: int) -> str:
    return f"{ip.hex()}-{port}"


# --------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------


def _decode_addresses(buf: CBuf, start: int, ebuf: Ebuf) -> list[PortalValue]:
    """``kv_decode_addr_n_port`` (iscsi_keys_common.c 301-414)."""
    values: list[PortalValue] = []
    ch = start
    while buf.ch(ch) != "\0":
        ipv6 = count_ipv6_colons(buf.s(ch))
        rest = buf.s(ch)
        if len(rest) == 3 and rest[0] == "[" and rest[2] == "]":
            break  # a redirect list left at the end
        ip_start = ch
        has_port = False
        if not ipv6:
            while buf.ch(ch) != "\0" and buf.ch(ch) not in ":,":
                ch += 1
            if buf.ch(ch) == ":":
                buf.set(ch, "\0")
                ch += 1
                has_port = True
            elif buf.ch(ch) == ",":
                buf.set(ch, "\0")
                ch += 1
            ip = string_to_ip(buf.s(ip_start), ebuf, False)
        else:
            while buf.ch(ch) != "\0" and buf.ch(ch) not in "],":
                ch += 1
            if buf.ch(ch) == "]" and buf.ch(ch + 1) == ":":
                ch += 2
                has_port = True
            elif buf.ch(ch) == ",":
                ch += 1
            ip = string_to_ip(buf.s(ip_start), ebuf, True)
        port = PORT_DEFAULT
        if has_port:
            port, ch = simple_strtoul(buf.raw(), 0, ch)
            port &= 0xFFFFFFFF
            if buf.ch(ch) != "\0":
                ch += 1
        values.append(PortalValue(ip, port))
    return values


def decode_portalgroup(value: str, ebuf: Ebuf) -> list[PortalValue]:
    """``kv_decode_portalgroup`` (iscsi_config_keys.c 29-180)."""
    buf = CBuf(value)
    tmstr = buf.strstr(0, "timeout=")
    rstart = buf.strchr(0, "[")
    rend = buf.strchr(0, "]")
    # brackets holding a ':' are an IPv6 address, not a redirect list
    while rstart is not None and rend is not None:
        if buf.strstrbet(rstart, rend, ":"):
            old = rend
            rstart = buf.strchr(old, "[")
            rend = buf.strchr(old + 1, "]")
        else:
            break
    if tmstr == 0 or rstart == 0:
        ebuf.add(f"ERR! {buf.s()} missing portal info. at the beginning.\n")
        raise KernelError("format")
    if (rstart is None) != (rend is None):
        ebuf.add(f"ERR! {buf.s()} redirect un-terminated.\n")
        raise KernelError("format")
    if rstart is not None and rend is not None:
        if buf.ch(rstart - 1) != ",":
            ebuf.add(f"ERR! {buf.s()} bad redirect config.\n")
            raise KernelError("format")
        if rend - rstart == 1:
            ebuf.add(f"ERR! {buf.s()} empty redirect config.\n")
            raise KernelError("format")
        buf.set(rend, "\0")
        # iscsi_config_keys.c 93-101 means to refuse non-digits here, but its
        # test (c < '0' && c > '9') can never be true: nothing is refused.
    timeout = HEARTBEAT_DEFAULT
    if tmstr is not None:
        if buf.ch(tmstr - 1) != ",":
            ebuf.add(f"ERR! {buf.s()} bad timeout format.\n")
            raise KernelError("format")
        eq = buf.strchr(tmstr, "=")
        assert eq is not None
        timeout, end = simple_strtoul(buf.raw(), 10, eq + 1)
        timeout &= 0xFFFFFFFF
        if buf.ch(end) != "\0":
            ebuf.add(f"ERR! {buf.s()} invalid timeout value.\n")
            raise KernelError("format")
        buf.set(tmstr - 1, "\0")
    if rstart is not None:
        buf.set(rstart - 1, "\0")
    tag, end = simple_strtoul(buf.raw(), 10, 0)
    tag &= 0xFFFFFFFF
    if buf.ch(end) != "@":
        ebuf.add(f"ERR! {buf.s()} missing portal group tag.\n")
        raise KernelError("format")
    if buf.ch(end + 1) == "\0":
        ebuf.add(f"ERR! {buf.s()} missing ip address.\n")
        raise KernelError("format")
    values = _decode_addresses(buf, end + 1, ebuf)
    if not values:  # only a redirect remnant: the source reads an empty value
        values = [PortalValue(bytes(16), 0)]
    for v in values:
        v.tag = tag
        v.timeout = timeout
    if rstart is not None:
        values[0].redirect = buf.s(rstart + 1)
    return values


def post_decode_portalgroup(previous: list[PortalValue], new: list[PortalValue], ebuf: Ebuf) -> None:
    """``kv_post_decode_portalgroup`` (iscsi_config_keys.c 187-228): tags and first address unique."""
    first = new[0]
    if any(p.tag == first.tag for p in previous):
        ebuf.add(f"PortalGroup, duplicate tag {first.tag}.\n")
        raise KernelError("dup")
    if any(p.ip == first.ip and p.port == first.port for p in previous):
        ebuf.add(f"PortalGroup, duplicate ip {format_endpoint(first.ip, first.port)}.\n")
        raise KernelError("dup")


# --------------------------------------------------------------------------
# start
# --------------------------------------------------------------------------


def can_listen(ip: bytes, port: int) -> bool:
    """What the kernel's bind+listen with SO_REUSEADDR would do (base/transport/os_socket.c 442-530)."""
    import socket

    family = socket.AF_INET6 if is_ipv6(ip) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((socket_host(ip), port & 0xFFFF))
            sock.listen(1)
    except OSError:
        return False
    return True


@dataclass
class PortalsResult:
    portals: list[TargetPortal]
    redirect_on: bool


def start_portals(
    values: list[PortalValue], name: str, shadow: bool, ebuf: Ebuf, acquire: Callable[[bytes, int], bool]
) -> PortalsResult:
    """``iscsi_target_portals_update`` (iscsi_target_portal.c 333-468).

    ``acquire(ip, port)`` starts (or shares) a listener and returns whether it
    runs; the caller releases what was acquired if this raises.
    """
    slots = [TargetPortal() for _ in values]
    cnt = failed = active = 0
    redirect_on = False
    redirect_strs: dict[int, str] = {}
    stop = False
    index = 0
    while index < len(values) and not stop:
        group_tag = values[index].tag
        redirect = values[index].redirect
        if redirect is not None:
            redirect_on = True
        started = 0
        while index < len(values) and values[index].tag == group_tag:
            v = values[index]
            index += 1
            tp = slots[cnt]
            tp.ip, tp.port, tp.tag, tp.timeout = v.ip, v.port, v.tag, v.timeout
            if redirect is not None:
                tp.flags.append(FLAG_REDIRECT_FROM)
            elif shadow:
                tp.flags.append(FLAG_REDIRECT_TO_REMOTE)
                cnt += 1
                continue
            if not acquire(v.ip, v.port):
                ebuf.add(f"failed to start {format_endpoint(v.ip, v.port)}.\n")
                failed += 1
                slots[cnt] = TargetPortal()
                if redirect is not None:
                    stop = True
                    break
                continue
            tp.started = True
            if not started and redirect is not None:
                redirect_strs[cnt] = redirect
            started += 1
            active += 1
            cnt += 1
    total = len(values)
    if not active:
        ebuf.add(f"{name}: No valid portal started!\n")
        raise KernelError("no portal")
    if redirect_on:
        _correlate_redirects(slots[:total], redirect_strs, shadow, ebuf)
    return PortalsResult(slots[: total - failed], redirect_on)


def _correlate_redirects(
    slots: list[TargetPortal], redirect_strs: dict[int, str], shadow: bool, ebuf: Ebuf
) -> None:
    """``it_portal_redirect_correlate`` (iscsi_target_portal.c 230-300)."""
    for i, text in redirect_strs.items():
        tags: list[int] = []
        pos = 0
        while pos < len(text):
            tag, end = simple_strtoul(text, 10, pos)
            if end == pos and text[pos] != ",":
                # The source loops forever here (no progress on a non-digit):
                # a hung ioctl. The emulator refuses instead; see the assumptions.
                ebuf.put(f"emulator: redirect list [{text}] would hang the kernel (non-digit)\n")
                raise KernelError("hang")
            pos = end + 1 if text[end : end + 1] == "," else end
            tags.append(tag & 0xFFFFFFFF)
            found = False
            for tp2 in slots:
                if tp2.tag != tags[-1]:
                    continue
                found = True
                flag = FLAG_REDIRECT_TO_REMOTE if shadow else FLAG_REDIRECT_TO_LOCAL
                if flag not in tp2.flags:
                    tp2.flags.append(flag)
            if not found:
                ebuf.put(f"redirect portalgroup {tags[-1]} not found.\n")
                raise KernelError("redirect")
        slots[i].redirect_to = tags
    for tp in slots:
        if not set(tp.flags) & {FLAG_REDIRECT_FROM, FLAG_REDIRECT_TO_LOCAL, FLAG_REDIRECT_TO_REMOTE}:
            ebuf.put(f"{format_endpoint(tp.ip, tp.port)} unknown to redirection.\n")
            raise KernelError("redirect")


# --------------------------------------------------------------------------
# display
# --------------------------------------------------------------------------


def display(portals: list[TargetPortal]) -> str:
    """``iscsi_node_portal_display``: one ``\\tPortalGroup=`` line per run of equal tags."""
    if not portals:
        return "\n"
    out = ""
    prev: TargetPortal | None = None
    tag = portals[0].tag
    redirect = False
    for i, p in enumerate(portals):
        if i == 0 or tag != p.tag:
            if prev is not None:
                out += _group_end(prev, redirect)
            tag = p.tag
            redirect = FLAG_REDIRECT_FROM in p.flags
            if out:
                out += "\n"
            out += f"\tPortalGroup={tag}@"
        out += format_endpoint(p.ip, p.port) + ","
        prev = p
    assert prev is not None
    out += _group_end(prev, redirect)
    return out + "\n"


def _group_end(prev: TargetPortal, redirect: bool) -> str:
    text = f"timeout={prev.timeout},"
    if redirect and prev.redirect_to:
        return text + "[" + ",".join(str(t) for t in prev.redirect_to) + "]"
    if redirect:
        return text + "["
    return text[:-1]
