"""Strict parser for chiscsi's configuration format (``chiscsi.conf`` and per-target files).

The emulator exists to catch helper bugs before they reach a real Chelsio
target, so it rejects anything the documented format does not allow rather
than guessing: a malformed line that the real kernel target silently
misreads is exactly the class of bug (configuration injection, lost CHAP
secrets) the project must not ship. Every error names the file, the line
and the problem, so a failing helper test points straight at the bad write.

Assumptions beyond Chelsio's documentation are listed in
``docs/emulators/chiscsi.md``; the constants below are the single source.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------


class ConfError(Exception):
    """A configuration problem, located so the writer of the file can fix it."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Entry:
    """One ``key=value`` line, kept with its line number for later error messages."""

    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Device:
    path: str
    mode: str  # FILE, BLK or MEM
    explicit_mode: bool
    sync: bool
    read_only: bool
    size_mb: int | None
    sn: str | None
    id: str | None
    wwn: str | None
    line: int


@dataclass(frozen=True)
class Portal:
    ip: str  # without brackets
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.is_ipv6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PortalGroup:
    tag: int
    portals: tuple[Portal, ...]
    line: int

    def __str__(self) -> str:
        return f"{self.tag}@" + ",".join(str(p) for p in self.portals)


@dataclass(frozen=True)
class ChapCredential:
    user: str
    secret: str = field(repr=False)  # never in tracebacks or logs


@dataclass(frozen=True)
class Acl:
    iname: str | None
    sip: tuple[str, ...]
    dip: tuple[str, ...]
    luns: tuple[int, ...] | None  # None: all LUNs
    read_only: bool
    line: int


@dataclass(frozen=True)
class TargetBlock:
    name: str
    devices: tuple[Device, ...]
    portal_groups: tuple[PortalGroup, ...]
    auth_method: str
    chap_policy: str
    chap_initiators: tuple[ChapCredential, ...]
    chap_target: ChapCredential | None
    chap_challenge_length: int | None
    acls: tuple[Acl, ...]
    params: dict[str, str]  # the other (negotiation) keys, as written
    entries: tuple[Entry, ...]  # the block verbatim, so state can re-parse it
    file: str
    line: int


@dataclass(frozen=True)
class ConfFile:
    path: str
    globals: dict[str, str]
    targets: tuple[TargetBlock, ...]

    def find(self, iqn: str) -> TargetBlock | None:
        """Exact match only: Cinder's substring match made volume-1 hit volume-10."""
        for target in self.targets:
            if target.name == iqn:
                return target
        return None


# --------------------------------------------------------------------------
# Value validators
# --------------------------------------------------------------------------

MAX_NAME_LEN = 223  # RFC 3720 3.2.6.1
_IQN_RE = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]+)?$")
_EUI_RE = re.compile(r"^eui\.[0-9A-Fa-f]{16}$")
_CHAP_RE = re.compile(r'^"([^"]*)":"([^"]*)"$')
_SAFE_TEXT_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no space
MAX_CHAP_LEN = 255


def iscsi_name_problem(name: str) -> str | None:
    """Why ``name`` is not an iSCSI name we accept, or None.

    RFC 3720/3722 names are lower case (after stringprep) and use only
    letters, digits, '-', '.', ':'; anything else (quotes, '=', spaces,
    upper case in an iqn.) is refused rather than normalised, so that the
    name a helper wrote is the name it will later look up.
    """
    if not name:
        return "empty iSCSI name"
    if len(name.encode("utf-8")) > MAX_NAME_LEN:
        return f"iSCSI name longer than {MAX_NAME_LEN} bytes"
    if name.startswith("iqn."):
        if _IQN_RE.match(name):
            return None
        return (f"invalid iqn. name {name!r} (expected iqn.YYYY-MM.reversed.domain[:unique], "
                "lower-case letters, digits, '-', '.', ':' only)")
    if name.startswith("eui."):
        if _EUI_RE.match(name):
            return None
        return f"invalid eui. name {name!r} (expected eui. followed by 16 hex digits)"
    return f"invalid iSCSI name {name!r} (must start with iqn. or eui.)"


def _parse_chap(value: str) -> ChapCredential:
    m = _CHAP_RE.match(value)
    if not m:
        raise ValueError('expected "<id>":"<secret>" (both double-quoted, separated by a colon)')
    user, secret = m.group(1), m.group(2)
    for what, text in (("id", user), ("secret", secret)):
        if not text:
            raise ValueError(f"empty CHAP {what}")
        if len(text) > MAX_CHAP_LEN:
            raise ValueError(f"CHAP {what} longer than {MAX_CHAP_LEN} characters")
        if not _SAFE_TEXT_RE.match(text):
            raise ValueError(f"CHAP {what} must be printable ASCII without spaces")
    return ChapCredential(user, secret)


def _parse_ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an IP address") from None


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number in 1..65535")
    return int(text)


_PORTAL_RE = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\[\]]+)):(?P<port>[^:]*)$")


def _parse_portal(text: str) -> Portal:
    m = _PORTAL_RE.match(text)
    if not m:
        raise ValueError(f"portal {text!r} is not <ip>:<port> (IPv6 as [addr]:port)")
    if m.group("v6") is not None:
        ip = _parse_ip(m.group("v6"), "address")
        if ":" not in ip:
            raise ValueError(f"portal {text!r}: brackets are for IPv6 addresses only")
    else:
        ip = _parse_ip(m.group("v4"), "address")
        if ":" in ip:  # pragma: no cover - the regex keeps colons out
            raise ValueError(f"portal {text!r}: IPv6 addresses must be bracketed")
    return Portal(ip, _parse_port(m.group("port")))


def _parse_portal_group(value: str, line: int) -> PortalGroup:
    tag_text, at, rest = value.partition("@")
    if not at:
        raise ValueError("expected <tag>@<ip>:<port>[,<ip>:<port>...]")
    if not tag_text.isdigit() or not 1 <= int(tag_text) <= 65535:
        raise ValueError(f"portal group tag {tag_text!r} is not a number in 1..65535")
    if not rest:
        raise ValueError("no portal after '@'")
    portals = tuple(_parse_portal(p) for p in rest.split(","))
    if len(set(portals)) != len(portals):
        raise ValueError("the same portal is listed twice")
    return PortalGroup(int(tag_text), portals, line)


_ID_LIMITS = {"SN": 16, "ID": 24, "WWN": 16}
_MODES = ("FILE", "BLK", "MEM")
_SIZE_RE = re.compile(r"^size=([1-9][0-9]{0,6})MB$")
DEFAULT_MEM_MB = 16


def _parse_device(value: str, line: int) -> Device:
    path, *options = value.split(",")
    if not _SAFE_TEXT_RE.match(path):
        raise ValueError(f"device path {path!r} contains spaces, quotes or control characters")
    if '"' in path:
        raise ValueError(f"device path {path!r} contains a double quote")
    mode: str | None = None
    sync = read_only = False
    size_mb: int | None = None
    ids: dict[str, str] = {}
    seen: set[str] = set()
    for opt in options:
        name = opt.split("=", 1)[0]
        if name in seen:
            raise ValueError(f"option {name} given twice")
        seen.add(name)
        if opt in _MODES:
            if mode is not None:
                raise ValueError(f"options {mode} and {opt} exclude each other")
            mode = opt
        elif opt == "SYNC":
            sync = True
        elif opt == "RO":
            read_only = True
        elif name == "size":
            m = _SIZE_RE.match(opt)
            if not m:
                raise ValueError(f"option {opt!r} is not size=<n>MB")
            size_mb = int(m.group(1))
        elif name in _ID_LIMITS:
            text = opt[len(name) + 1:]
            limit = _ID_LIMITS[name]
            if not text or len(text) > limit or not _SAFE_TEXT_RE.match(text) or '"' in text:
                raise ValueError(f"option {name}= needs 1 to {limit} printable characters, got {text!r}")
            ids[name] = text
        else:
            raise ValueError(f"unknown TargetDevice option {opt!r} (known: FILE, BLK, MEM, SYNC, RO, "
                             "size=<n>MB, SN=, ID=, WWN=)")
    explicit = mode is not None
    mode = mode or "FILE"
    if mode != "MEM" and not path.startswith("/"):  # a RAM disk's "path" is only a name
        raise ValueError(f"device path {path!r} is not absolute")
    if sync and mode != "FILE":
        raise ValueError("SYNC is only valid in FILE mode")
    if size_mb is not None and mode != "MEM":
        raise ValueError("size= is only valid with MEM")
    if mode == "MEM" and size_mb is None:
        size_mb = DEFAULT_MEM_MB
    return Device(path, mode, explicit, sync, read_only, size_mb,
                  ids.get("SN"), ids.get("ID"), ids.get("WWN"), line)


_LUN_RANGE_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def _parse_lun_list(text: str) -> tuple[int, ...] | None:
    if text == "ALL":
        return None
    luns: list[int] = []
    for part in text.split(","):
        m = _LUN_RANGE_RE.match(part)
        if not m:
            raise ValueError(f"LUN list item {part!r} is not <n> or <n>-<m>")
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) is not None else low
        if high < low or high > 16383:
            raise ValueError(f"LUN range {part!r} is empty or beyond 16383")
        luns.extend(range(low, high + 1))
    return tuple(sorted(set(luns)))


def _parse_ip_list(text: str, what: str) -> tuple[str, ...]:
    out = []
    for item in text.split(","):
        bare = item[1:-1] if item.startswith("[") and item.endswith("]") else item
        out.append(_parse_ip(bare, what))
    return tuple(out)


def _parse_acl(value: str, line: int) -> Acl:
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, eq, val = part.partition("=")
        if not eq or not val:
            raise ValueError(f"ACL field {part!r} is not <name>=<value>")
        if key not in ("iname", "sip", "dip", "lun"):
            raise ValueError(f"unknown ACL field {key!r} (known: iname, sip, dip, lun)")
        if key in fields:
            raise ValueError(f"ACL field {key} given twice")
        fields[key] = val
    iname = fields.get("iname")
    if iname is not None and (problem := iscsi_name_problem(iname)):
        raise ValueError(f"ACL iname: {problem}")
    sip = _parse_ip_list(fields["sip"], "ACL sip") if "sip" in fields else ()
    dip = _parse_ip_list(fields["dip"], "ACL dip") if "dip" in fields else ()
    luns: tuple[int, ...] | None = None
    read_only = False
    if "lun" in fields:
        lun_text, colon, perm = fields["lun"].rpartition(":")
        if not colon or perm not in ("R", "RW"):
            raise ValueError(f"ACL lun={fields['lun']!r} is not <lun list>:<R|RW>")
        luns = _parse_lun_list(lun_text)
        read_only = perm == "R"
    return Acl(iname, sip, dip, luns, read_only, line)


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return check


def _int_range(low: int, high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.isdigit() or not low <= int(value) <= high:
            raise ValueError(f"must be a number in {low}..{high}")
        return value
    return check


def _text(value: str) -> str:
    if not re.match(r"^[\x20-\x7e]+$", value) or '"' in value:
        raise ValueError("must be printable ASCII without double quotes")
    return value


_YES_NO = _choice("Yes", "No")
_DIGEST = _choice("None", "CRC32C", "None,CRC32C", "CRC32C,None")

#: Single-valued iSCSI keys beyond the ones with dedicated handling. Taken
#: from RFC 3720 section 12 (the operational keys a target administrator
#: sets), with RFC ranges; the five fixed ones accept only the value
#: chiscsi documents.
EXTRA_TARGET_KEYS: dict[str, Callable[[str], str]] = {
    "DataPDUInOrder": _choice("Yes"),
    "DataSequenceInOrder": _choice("Yes"),
    "ErrorRecoveryLevel": _choice("0"),
    "OFMarker": _choice("No"),
    "IFMarker": _choice("No"),
    "TargetAlias": _text,
    "HeaderDigest": _DIGEST,
    "DataDigest": _DIGEST,
    "MaxConnections": _int_range(1, 65535),
    "InitialR2T": _YES_NO,
    "ImmediateData": _YES_NO,
    "MaxRecvDataSegmentLength": _int_range(512, 16777215),
    "MaxBurstLength": _int_range(512, 16777215),
    "FirstBurstLength": _int_range(512, 16777215),
    "DefaultTime2Wait": _int_range(0, 3600),
    "DefaultTime2Retain": _int_range(0, 3600),
    "MaxOutstandingR2T": _int_range(1, 65535),
}

#: Keys that may appear more than once in a target block.
MULTI_TARGET_KEYS = frozenset({"TargetDevice", "PortalGroup", "Auth_CHAP_Initiator", "ACL"})

SPECIAL_TARGET_KEYS = frozenset({
    "TargetName", "TargetDevice", "PortalGroup", "AuthMethod", "Auth_CHAP_Policy",
    "Auth_CHAP_Initiator", "Auth_CHAP_Target", "Auth_CHAP_ChallengeLength", "ACL",
})

KNOWN_TARGET_KEYS = SPECIAL_TARGET_KEYS | frozenset(EXTRA_TARGET_KEYS)

GLOBAL_KEYS: dict[str, Callable[[str], str]] = {
    "iscsi_offload_mode": _choice("AUTO", "TOE", "ULP"),
}
GLOBAL_DEFAULTS = {"iscsi_offload_mode": "AUTO"}

AUTH_METHODS = ("None", "CHAP", "None,CHAP")
DEFAULT_AUTH_METHOD = "None,CHAP"
CHAP_POLICIES = ("Oneway", "Mutual")


def validate_global(key: str, value: str) -> str:
    """Shared by the file parser and ``iscsictl -G``: one rule for both ways in."""
    if key not in GLOBAL_KEYS:
        raise ValueError(f"unknown global key {key!r} (known: {', '.join(sorted(GLOBAL_KEYS))})")
    try:
        return GLOBAL_KEYS[key](value)
    except ValueError as exc:
        raise ValueError(f"{key}={value}: {exc}") from None


# --------------------------------------------------------------------------
# Lexing
# --------------------------------------------------------------------------


def _strip_comment(raw: str, file: str, lineno: int) -> str:
    """Drop a ``#`` comment that is outside double quotes (CHAP secrets may contain '#')."""
    in_quotes = False
    for i, ch in enumerate(raw):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "#" and not in_quotes:
            return raw[:i]
    if in_quotes:
        raise ConfError(file, lineno, "unterminated double quote")
    return raw


@dataclass
class _RawBlock:
    kind: str
    line: int
    entries: list[Entry] = field(default_factory=list)


def _lex(text: str, file: str) -> list[_RawBlock]:
    blocks: list[_RawBlock] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if "\x00" in raw:
            raise ConfError(file, lineno, "NUL byte in line")
        line = _strip_comment(raw, file, lineno).strip()
        if not line:
            continue
        if line in ("global:", "target:"):
            blocks.append(_RawBlock(line[:-1], lineno))
            continue
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line):
            raise ConfError(file, lineno, "control character in line")
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise ConfError(file, lineno, f"expected 'global:', 'target:' or 'key=value', got {line!r}")
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", key):
            raise ConfError(file, lineno, f"invalid key name {key!r}")
        if not blocks:
            raise ConfError(file, lineno, f"key {key} outside a 'global:' or 'target:' block")
        if not value:
            raise ConfError(file, lineno, f"empty value for {key}")
        blocks[-1].entries.append(Entry(key, value, lineno))
    return blocks


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------


def build_target(entries: Iterable[Entry], file: str, line: int) -> TargetBlock:
    """Validate one target block; also used to re-read a block kept in emulator state."""
    entries = tuple(entries)
    seen: dict[str, int] = {}
    for e in entries:
        if e.key not in KNOWN_TARGET_KEYS:
            raise ConfError(file, e.line, f"unknown key {e.key!r} in target block")
        if e.key in seen and e.key not in MULTI_TARGET_KEYS:
            raise ConfError(file, e.line, f"{e.key} given more than once in this target block "
                                          f"(first at line {seen[e.key]})")
        seen.setdefault(e.key, e.line)

    def single(key: str) -> Entry | None:
        return next((e for e in entries if e.key == key), None)

    def convert(e: Entry, fn: Callable[[str], object]) -> object:
        try:
            return fn(e.value)
        except ValueError as exc:
            raise ConfError(file, e.line, f"{e.key}: {exc}") from None

    name_entry = single("TargetName")
    if name_entry is None:
        raise ConfError(file, line, "target block without TargetName")
    if problem := iscsi_name_problem(name_entry.value):
        raise ConfError(file, name_entry.line, f"TargetName: {problem}")

    devices = tuple(convert(e, lambda v, e=e: _parse_device(v, e.line))  # type: ignore[misc]
                    for e in entries if e.key == "TargetDevice")
    if not devices:
        raise ConfError(file, line, f"target {name_entry.value} has no TargetDevice")

    groups: list[PortalGroup] = []
    for e in entries:
        if e.key == "PortalGroup":
            pg = convert(e, lambda v, e=e: _parse_portal_group(v, e.line))
            assert isinstance(pg, PortalGroup)
            for other in groups:
                if other.tag == pg.tag:
                    raise ConfError(file, e.line, f"PortalGroup: tag {pg.tag} already defined at line {other.line}")
            groups.append(pg)
    if not groups:
        raise ConfError(file, line, f"target {name_entry.value} has no PortalGroup")

    auth_entry = single("AuthMethod")
    auth_method = (str(convert(auth_entry, _choice(*AUTH_METHODS))) if auth_entry else DEFAULT_AUTH_METHOD)
    policy_entry = single("Auth_CHAP_Policy")
    policy = str(convert(policy_entry, _choice(*CHAP_POLICIES))) if policy_entry else "Oneway"

    initiators: list[ChapCredential] = []
    for e in entries:
        if e.key == "Auth_CHAP_Initiator":
            cred = convert(e, _parse_chap)
            assert isinstance(cred, ChapCredential)
            if any(c.user == cred.user for c in initiators):
                raise ConfError(file, e.line, f"Auth_CHAP_Initiator: id {cred.user!r} given twice")
            initiators.append(cred)
    target_entry = single("Auth_CHAP_Target")
    chap_target = convert(target_entry, _parse_chap) if target_entry else None
    assert chap_target is None or isinstance(chap_target, ChapCredential)
    challenge_entry = single("Auth_CHAP_ChallengeLength")
    challenge = int(str(convert(challenge_entry, _int_range(16, 1024)))) if challenge_entry else None

    if auth_method == "CHAP" and not initiators:
        raise ConfError(file, auth_entry.line if auth_entry else line,
                        "AuthMethod=CHAP but no Auth_CHAP_Initiator: no initiator could log in")
    if policy == "Mutual" and chap_target is None:
        raise ConfError(file, policy_entry.line if policy_entry else line,
                        "Auth_CHAP_Policy=Mutual needs Auth_CHAP_Target")

    acls = tuple(convert(e, lambda v, e=e: _parse_acl(v, e.line))  # type: ignore[misc]
                 for e in entries if e.key == "ACL")

    params: dict[str, str] = {}
    for e in entries:
        if e.key in EXTRA_TARGET_KEYS:
            params[e.key] = str(convert(e, EXTRA_TARGET_KEYS[e.key]))

    return TargetBlock(
        name=name_entry.value, devices=devices, portal_groups=tuple(groups),  # type: ignore[arg-type]
        auth_method=auth_method, chap_policy=policy, chap_initiators=tuple(initiators),
        chap_target=chap_target, chap_challenge_length=challenge, acls=acls,  # type: ignore[arg-type]
        params=params, entries=entries, file=file, line=line)


def parse_text(text: str, file: str = "<string>") -> ConfFile:
    """Parse a whole file's text; the first problem found raises ConfError."""
    globals_: dict[str, str] = {}
    global_lines: dict[str, int] = {}
    targets: list[TargetBlock] = []
    names: dict[str, int] = {}
    for block in _lex(text, file):
        if block.kind == "global":
            for e in block.entries:
                if e.key in global_lines:
                    raise ConfError(file, e.line, f"{e.key} given more than once "
                                                  f"(first at line {global_lines[e.key]})")
                try:
                    globals_[e.key] = validate_global(e.key, e.value)
                except ValueError as exc:
                    raise ConfError(file, e.line, str(exc)) from None
                global_lines[e.key] = e.line
            continue
        target = build_target(block.entries, file, block.line)
        if target.name in names:
            raise ConfError(file, block.line, f"duplicate TargetName {target.name} "
                                              f"(already defined in the block at line {names[target.name]})")
        names[target.name] = block.line
        targets.append(target)
    return ConfFile(file, globals_, tuple(targets))


def parse_file(path: Path | str) -> ConfFile:
    """Read and parse ``path``; unreadable or non-UTF-8 files are configuration errors too."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfError(name, None, "no such file") from None
    except OSError as exc:
        raise ConfError(name, None, f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfError(name, line, "not valid UTF-8") from None
    return parse_text(text, name)
