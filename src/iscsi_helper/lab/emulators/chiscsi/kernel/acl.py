"""``ACL=`` and ``ACL_Enable=``: decoded always, applied only when enabled.

Sources (under src/chiscsi/):
- decode: private/klib/text/iscsi_config_keys.c 255-688 (``kv_decode_acl``):
  ``iname=``, ``sip=``, ``dip=``, ``lun=`` separated by ';', at least one of
  iname/sip/dip; inames must start ``iqn.``/``eui.``; without the LUN-masking
  build option (off by default: Makefile 17, base/Makefile 60-68) the LUN
  list must be ``ALL:<R|W|RW>``;
- applying: private/klib/target/acl.c 308-366 (``iscsi_acl_config``): without
  ``ACL_Enable=Yes`` every ACL line is dropped; with it, addresses are parsed
  (141-271) and each dip must be one of the target's started portals (274-305);
- login check: acl.c 536-593, 801-831: an initiator gets in only if some ACL
  entry matches its name (if the entry has names) and addresses; ACL_Enable
  with no entry lets nobody in; writes need ``W`` (833-875);
- display: acl.c 368-431, 451-462.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel.addr import count_ipv6_colons, format_endpoint, string_to_ip
from iscsi_helper.lab.emulators.chiscsi.kernel.cbuf import CBuf
from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import isxdigit
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

ISCSI_NAME_LEN_MAX = 223
FLAG_ALLR = 0x1
FLAG_ALLW = 0x2
FLAG_ALLRW = FLAG_ALLR | FLAG_ALLW


@dataclass
class AclValue:
    """A decoded ``ACL=`` line (the lists still as text, as the source keeps them)."""

    inames: list[str]
    sips: list[str]
    dips: list[str]
    lun_flag: int


@dataclass
class AclEntry:
    """An applied ACL (``iscsi_target_acl``)."""

    inames: list[str] = field(default_factory=list)
    sips: list[str] = field(default_factory=list)  # 16-byte addresses, hex
    dips: list[str] = field(default_factory=list)
    flag: int = FLAG_ALLRW

    def to_dict(self) -> dict[str, object]:
        return {"inames": self.inames, "sips": self.sips, "dips": self.dips, "flag": self.flag}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AclEntry:
        return cls(
            [str(x) for x in data["inames"]],
            [str(x) for x in data["sips"]],
            [str(x) for x in data["dips"]],
            int(data["flag"]),
        )

    @property
    def writable(self) -> bool:
        return bool(self.flag & FLAG_ALLW)


def _split_list(text: str) -> list[str]:
    """``break_list_by_comma``: empty elements are skipped."""
    return [part for part in text.split(",") if part]


def _check_inames(names: list[str], ebuf: Ebuf) -> None:
    for name in names:
        if len(name) > ISCSI_NAME_LEN_MAX:
            ebuf.put(f"ERR! ACL iname too long {len(name)} > {ISCSI_NAME_LEN_MAX}: {name}.\n")
            raise KernelError("acl")
        if not (name.startswith("iqn.") or name.startswith("eui.")):
            ebuf.put(f"ERR! ACL iname invalid: {name}.\n")
            raise KernelError("acl")
    for i, name in enumerate(names):
        if name in names[i + 1 :]:
            ebuf.put(f"ERR! ACL dup iname: {name}.\n")
            raise KernelError("acl")


def _check_ipaddrs(addrs: list[str], ebuf: Ebuf) -> None:
    for ip in addrs:
        depth = 0
        bad = False
        for c in ip:
            if c in "[]":
                depth += 1 if c == "[" else -1
                continue
            if not isxdigit(c) and c not in ".:":
                bad = True
                break
        if bad or depth:
            ebuf.put(f"ERR! ACL ip invalid: {ip}.\n")
            raise KernelError("acl")


def _check_lunmask(text: str, ebuf: Ebuf) -> int:
    """``acl_check_lunmask_list`` for the default build (no LUN masking)."""
    buf = CBuf(text)
    r = w = 0
    flag = 0
    lun = 0
    c = 0
    while buf.ch(c) != "\0":
        c = lun
        while buf.ch(c) != "\0" and buf.ch(c) != ":":
            c += 1
        sav = buf.ch(c)
        buf.set(c, "\0")
        all_pos = buf.strstr(lun, "ALL")
        if all_pos is not None and c - lun != 3:
            ebuf.put(f"ERR! ACL, bad lun list {buf.s(lun)}.\n")
            raise KernelError("acl")
        if all_pos is None:
            ebuf.put(f"ERR! ACL lun {buf.s(lun)} must be ALL.\n")
            raise KernelError("acl")
        buf.set(c, sav)
        rw = c + 1
        c = rw
        while buf.ch(c) != "\0" and buf.ch(c) != ",":
            c += 1
        sav = buf.ch(c)
        buf.set(c, "\0")
        perm = buf.s(rw)
        if perm in ("RW", "WR"):
            r = w = 1
        elif perm == "R":
            r = 1
        elif perm == "W":
            w = 1
        else:
            ebuf.put(f"ERR! ACL, bad rw permission {perm}.\n")
            raise KernelError("acl")
        buf.set(c, sav)
        if buf.ch(c) != "\0":
            c += 1
        if (r and flag & FLAG_ALLR) or (w and flag & FLAG_ALLW):
            ebuf.put(f"ERR! ACL, overlapping lun rw {buf.s(0)}.\n")
            raise KernelError("acl")
        if r:
            flag |= FLAG_ALLR
        if w:
            flag |= FLAG_ALLW
        for i in range(lun, c):
            buf.set(i, "\0")
        lun = c
    return flag


def decode_acl(value: str, ebuf: Ebuf) -> AclValue:
    """``kv_decode_acl`` (iscsi_config_keys.c 535-688). Most refusals leave no message."""
    fields: dict[str, tuple[int, int]] = {}
    buf = value
    c1 = c2 = 0
    while c2 < len(buf):
        if buf[c2] != "=":
            c2 += 1
            continue
        c3 = c2 + 1
        while c3 < len(buf) and buf[c3] != ";":
            c3 += 1
        key = buf[c1:c2]
        if key not in ("iname", "sip", "dip", "lun"):
            raise KernelError("acl key")  # os_log only
        fields[key] = (c2 + 1, c3)
        c2 = c3
        while c2 < len(buf) and buf[c2] == ";":
            c2 += 1
        c1 = c2
    if not any(k in fields for k in ("iname", "sip", "dip")):
        raise KernelError("acl empty")  # os_log only
    inames = sips = dips = []
    if "iname" in fields:
        inames = _split_list(buf[slice(*fields["iname"])])
        if not inames:
            raise KernelError("acl")
        _check_inames(inames, ebuf)
    if "sip" in fields:
        sips = _split_list(buf[slice(*fields["sip"])])
        if not sips:
            raise KernelError("acl")
        _check_ipaddrs(sips, ebuf)
    if "dip" in fields:
        dips = _split_list(buf[slice(*fields["dip"])])
        if not dips:
            raise KernelError("acl")
        _check_ipaddrs(dips, ebuf)
    if "lun" in fields:
        start, end = fields["lun"]
        # The copy takes one character past the value (iscsi_config_keys.c
        # 639-648): a ';' after lun=... becomes part of the permission.
        lun_text = buf[start : end + 1]
        flag = _check_lunmask(lun_text, ebuf)
    else:
        flag = FLAG_ALLRW
    return AclValue(inames, sips, dips, flag)


def _parse_ip(text: str, ebuf: Ebuf) -> str:
    return string_to_ip(text, ebuf, bool(count_ipv6_colons(text))).hex()


def configure(values: list[AclValue], enabled: bool, started_ips: list[bytes], ebuf: Ebuf) -> list[AclEntry]:
    """``iscsi_acl_config`` (acl.c 308-366); disabled means every line is ignored."""
    if not enabled:
        return []
    entries = []
    for v in values:
        flag = v.lun_flag
        if flag & FLAG_ALLW:
            flag |= FLAG_ALLR
        entries.append(
            AclEntry(
                list(v.inames),
                [_parse_ip(ip, ebuf) for ip in v.sips],
                [_parse_ip(ip, ebuf) for ip in v.dips],
                flag,
            )
        )
    for entry in entries:
        for dip in entry.dips:
            if bytes.fromhex(dip) not in started_ips:
                ebuf.put(f"ACL dip invalid: {format_endpoint(bytes.fromhex(dip), 0)}.\n")
                raise KernelError("acl dip")
    return entries


def display(entries: list[AclEntry]) -> str:
    out = ""
    for a in entries:
        text = ""
        if a.inames:
            text += "iname=" + ",".join(a.inames) + ";"
        if a.sips:
            text += "sip=" + ",".join(format_endpoint(bytes.fromhex(ip), 0) for ip in a.sips) + ";"
        if a.dips:
            text += "dip=" + ",".join(format_endpoint(bytes.fromhex(ip), 0) for ip in a.dips) + ";"
        text += "lun="
        if a.flag & FLAG_ALLR and a.flag & FLAG_ALLW:
            text += "ALL:RW"
        elif a.flag & FLAG_ALLR:
            text += "ALL:R"
        out += "\tACL=" + text + "\n"
    return out
