"""The strings Cinder and iSCSI agree on: names, portals, provider_location/auth.

Everything a helper writes into a target's configuration passes through the
validators here first, so a value that would break a config format (a
newline, a quote, a comma) is refused before any file or target is touched.
Parsers are exact: they accept what the formatters produce, and Cinder's own
strings, and nothing looser.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from dataclasses import dataclass

from iscsi_helper.exception import InvalidInput

MAX_ISCSI_NAME_BYTES = 223  # RFC 3720 section 3.2.6.1
CHAP_SECRET_MIN = 12  # RFC 3720 section 8.2.1: at least 96 bits
CHAP_SECRET_MAX = 255
CHAP_NAME_MAX = 255
GENERATED_USERNAME_LENGTH = 20  # Cinder's generate_username default
GENERATED_SECRET_LENGTH = 16  # Cinder's generate_password default; Windows' max

_IQN = re.compile(
    r"iqn\.(?P<year>\d{4})-(?P<month>\d{2})"
    r"\.(?P<authority>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<unique>[a-z0-9.:-]+))?"
)
_EUI = re.compile(r"eui\.[0-9A-F]{16}")
_NAA = re.compile(r"naa\.(?:[0-9A-F]{16}|[0-9A-F]{32})")
_VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9.:-]*")
# Printable ASCII without space, quote, backslash or comma: survives every
# target format we write (chiscsi quotes it, ietd.conf and provider_auth split
# on whitespace, tgtadm takes it as one word, and ietadm's
# --params=IncomingUser=<user>,Password=<secret> splits on commas).
_CHAP_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'()*+-./:;<=>?@[]^_`{|}~")
_GENERATED_ALPHABET = string.ascii_letters + string.digits


def _show(value: object) -> str:
    """A value quoted for an error message, cut short and with controls escaped."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_iscsi_name(name: str, field: str = "iSCSI name") -> str:
    """Accept an iqn./eui./naa. name as RFC 3720/3722 define it, else raise.

    Upper case is refused in iqn names rather than folded: these are the
    names we give our targets, and an initiator would fold it and then ask
    for a target we never created. An initiator's name is folded instead
    (:func:`normalize_initiator_name`).
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(field=field, value=_show(name), reason="must be a non-empty string")
    if len(name.encode("utf-8")) > MAX_ISCSI_NAME_BYTES:
        raise InvalidInput(
            field=field, value=_show(name), reason=f"longer than {MAX_ISCSI_NAME_BYTES} bytes (RFC 3720)"
        )
    if name.startswith("iqn."):
        match = _IQN.fullmatch(name)
        if not match:
            raise InvalidInput(
                field=field,
                value=_show(name),
                reason="not a valid iqn name (iqn.yyyy-mm.reversed.domain[:unique], "
                "lower-case letters, digits, '.', '-' and ':' only; RFC 3720/3722)",
            )
        if not 1 <= int(match["month"]) <= 12:
            raise InvalidInput(field=field, value=_show(name), reason="month must be 01-12")
        return name
    if name.startswith("eui.") and _EUI.fullmatch(name):
        return name
    if name.startswith("naa.") and _NAA.fullmatch(name):
        return name
    raise InvalidInput(
        field=field, value=_show(name), reason="must be an iqn., eui. (16 upper-case hex digits) or naa. name"
    )


def _fold_hex_name(name: str, kind: str, digits: tuple[int, ...]) -> str | None:
    """``eui.``/``naa.`` + hex in its one spelling (upper-case hex, RFC 3720 3.2.6.3), or None."""
    hexpart = name[len(kind) :]
    if len(hexpart) in digits and all(c in string.hexdigits for c in hexpart):
        return kind + hexpart.upper()
    return None


def normalize_initiator_name(name: str, field: str = "initiator name") -> str:
    """An initiator's iSCSI name in the one spelling we store and compare (RFC 3722).

    RFC 3722's stringprep profile folds case, so ``iqn.1991-05.com.microsoft:WIN-HOST``
    and ``...:win-host`` are one initiator. The decision (docs/initiator-names.md):
    ASCII case is folded: an ``iqn.`` name is lower-cased (its normalized
    form, what a conforming initiator sends), the type prefix of ``eui.`` and
    ``naa.`` names too, and their hex digits upper-cased (RFC 3720's
    spelling); names with non-ASCII characters are refused rather than
    mapped, as nameprep's Unicode tables (NFKC, mapped and prohibited
    characters) are not implemented here. Two spellings of one initiator
    therefore always give the same string, which is what ACLs store.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(field=field, value=_show(name), reason="must be a non-empty string")
    if not name.isascii():
        raise InvalidInput(
            field=field,
            value=_show(name),
            reason="non-ASCII iSCSI names are not accepted (RFC 3722's nameprep "
            "mapping of them is not implemented)",
        )
    folded = name.lower()
    for kind, digits in (("eui.", (16,)), ("naa.", (16, 32))):
        if folded.startswith(kind):
            spelled = _fold_hex_name(folded, kind, digits)
            if spelled is None:
                break  # validate_iscsi_name says what is wrong
            return validate_iscsi_name(spelled, field)
    return validate_iscsi_name(folded, field)


def iscsi_name_key(name: str) -> str:
    """What two spellings of one iSCSI name share (RFC 3722 folds ASCII case)."""
    return name.lower()


def validate_volume_name(name: str) -> str:
    """A volume name becomes a file name and the tail of an IQN: keep it to both alphabets.

    The length is checked here, not only through the IQN, because the name
    also names the volume's lock file, which is taken before the IQN is
    built: a name the file system cannot hold must fail as invalid input.
    """
    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name):
        raise InvalidInput(
            field="volume name",
            value=_show(name),
            reason="must start with a lower-case letter or digit and contain only "
            "lower-case letters, digits, '.', '-' and ':' (it becomes part of an IQN)",
        )
    if len(name) > MAX_ISCSI_NAME_BYTES:
        raise InvalidInput(
            field="volume name",
            value=_show(name),
            reason=f"longer than {MAX_ISCSI_NAME_BYTES} bytes (it becomes part of an IQN)",
        )
    return name


def validate_volume_id(volume_id: str) -> str:
    """A volume id is written into records and log lines; Cinder's are 36-character UUIDs."""
    if not isinstance(volume_id, str) or not volume_id:
        raise InvalidInput(field="volume id", value=_show(volume_id), reason="must be a non-empty string")
    if not _VOLUME_NAME.fullmatch(volume_id):
        raise InvalidInput(
            field="volume id",
            value=_show(volume_id),
            reason="must contain only lower-case letters, digits, '.', '-' and ':'",
        )
    if len(volume_id) > MAX_ISCSI_NAME_BYTES:
        raise InvalidInput(
            field="volume id", value=_show(volume_id), reason=f"longer than {MAX_ISCSI_NAME_BYTES} characters"
        )
    return volume_id


def validate_chap_credential(value: str, field: str, *, secret: bool) -> str:
    """Refuse CHAP values that a target or provider_auth could not carry verbatim."""
    shown = "<secret>" if secret else _show(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput(field=field, value=shown, reason="must not be empty")
    bad = sorted({c for c in value if c not in _CHAP_CHARS})
    if bad:
        kinds = []
        if any(c.isspace() for c in bad):
            kinds.append("whitespace")
        if '"' in bad:
            kinds.append("'\"'")
        if "\\" in bad:
            kinds.append("'\\'")
        if any(not c.isprintable() for c in bad if not c.isspace()):
            kinds.append("control characters")
        if any(ord(c) > 127 for c in bad):
            kinds.append("non-ASCII characters")
        if "," in bad:
            kinds.append("',' (ietadm splits its parameters on commas)")
        raise InvalidInput(
            field=field, value=shown, reason="must not contain " + (", ".join(kinds) or "those characters")
        )
    limit = CHAP_SECRET_MAX if secret else CHAP_NAME_MAX
    if len(value) > limit:
        raise InvalidInput(field=field, value=shown, reason=f"longer than {limit} characters")
    if secret and len(value) < CHAP_SECRET_MIN:
        raise InvalidInput(
            field=field,
            value=shown,
            reason=f"shorter than {CHAP_SECRET_MIN} characters (RFC 3720 asks for 96 bits)",
        )
    return value


@dataclass(frozen=True)
class ChapCredentials:
    """One CHAP identity. ``repr`` hides the secret so it cannot reach a log by accident."""

    username: str
    password: str

    def __post_init__(self) -> None:
        validate_chap_credential(self.username, "CHAP username", secret=False)
        validate_chap_credential(self.password, "CHAP secret", secret=True)

    def __repr__(self) -> str:
        return f"ChapCredentials(username={self.username!r}, password='***')"

    @classmethod
    def generate(cls) -> ChapCredentials:
        return cls(random_token(GENERATED_USERNAME_LENGTH), random_token(GENERATED_SECRET_LENGTH))


def random_token(length: int) -> str:
    """``length`` symbols of ``_GENERATED_ALPHABET``, each equally likely, from the OS's CSPRNG.

    One ``token_bytes`` read per value instead of a system call per symbol
    (``secrets.choice``): a create generates 36 of them. Bytes at or above
    the largest multiple of the alphabet's size are dropped, so ``% size``
    has no bias.
    """
    size = len(_GENERATED_ALPHABET)
    limit = 256 - 256 % size
    symbols: list[str] = []
    while len(symbols) < length:
        for byte in secrets.token_bytes(length + 8):
            if byte < limit:
                symbols.append(_GENERATED_ALPHABET[byte % size])
                if len(symbols) == length:
                    break
    return "".join(symbols)


def format_provider_auth(credentials: ChapCredentials) -> str:
    return f"CHAP {credentials.username} {credentials.password}"


def parse_provider_auth(text: str | None) -> ChapCredentials | None:
    """Cinder's ``provider_auth`` (``CHAP <user> <secret>``); None when absent."""
    if not text:
        return None
    # Split on single spaces only, as Cinder writes it: a stray tab, newline
    # or trailing space is refused rather than silently trimmed off a secret.
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != "CHAP":
        raise InvalidInput(
            field="provider_auth",
            value="<hidden>",
            reason="expected 'CHAP <username> <secret>', single spaces between",
        )
    return ChapCredentials(parts[1], parts[2])


def format_portal(host: str, port: int) -> str:
    """``ip:port``, an IPv6 address in brackets: the one spelling of a portal in the package.

    Cinder's provider_location, os-brick's ``target_portal``, chiscsi's
    PortalGroup, SendTargets answers and qemu's ``portal=`` option all
    write it this way, so everything that prints a portal calls this.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, order=True)
class Portal:
    """An iSCSI portal; ``str()`` is Cinder's form, IPv6 in brackets."""

    ip: str
    port: int

    def __str__(self) -> str:
        return format_portal(self.ip, self.port)


def validate_bindable_ip(ip: str, field: str = "portal address") -> str:
    """An address a target can listen on and an initiator can dial: one host's unicast address.

    ``0.0.0.0`` and ``::`` (every address, no address to dial), multicast,
    the IPv4 broadcast address and the reserved 240.0.0.0/4 are refused:
    written into provider_location they would send initiators nowhere.
    """
    text = validate_ip(ip, field)
    address = ipaddress.ip_address(text)
    problem = None
    if address.is_unspecified:
        problem = "is the unspecified address (every address, none an initiator can dial)"
    elif address.is_multicast:
        problem = "is a multicast address"
    elif isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address("255.255.255.255"):
        problem = "is the broadcast address"
    elif isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        problem = "is in the reserved range 240.0.0.0/4"
    if problem:
        raise InvalidInput(
            field=field,
            value=_show(ip),
            reason=f"{problem}; a portal must be one unicast address of this host",
        )
    return text


def _decimal(text: str | int) -> int | None:
    """A non-negative integer written in ASCII digits only (no sign, '_', spaces or other scripts)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text >= 0 else None
    if isinstance(text, str) and text.isascii() and text.isdigit():
        return int(text)
    return None


def validate_ip(ip: str, field: str = "portal address") -> str:
    """An IPv4 or IPv6 literal in canonical form; host names and zone ids are refused.

    Zone ids (``fe80::1%eth0``) are meaningful only on one host and cannot
    be written into provider_location for another host to use.
    """
    if not isinstance(ip, str) or not ip:
        raise InvalidInput(field=field, value=_show(ip), reason="must be an IP address")
    text = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
    if "%" in text:
        raise InvalidInput(field=field, value=_show(ip), reason="IPv6 zone ids are not supported")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(field=field, value=_show(ip), reason="not an IPv4 or IPv6 address") from None
    return address.compressed


def make_portal(ip: str, port: int | str) -> Portal:
    number = _decimal(port)
    if number is None:
        raise InvalidInput(field="portal port", value=_show(port), reason="not a number (ASCII digits only)")
    if not 1 <= number <= 65535:
        raise InvalidInput(field="portal port", value=_show(port), reason="must be 1-65535")
    return Portal(validate_ip(ip), number)


def parse_portal(text: str) -> Portal:
    """``ip:port`` or ``[ipv6]:port``."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise InvalidInput(field="portal", value=_show(text), reason="expected [ipv6]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise InvalidInput(field="portal", value=_show(text), reason="expected ip:port")
    return make_portal(host, port)


def portals_from_config(ip: str, secondary: list[str], port: int) -> list[Portal]:
    """The portal list Cinder builds: primary first, then secondaries, duplicates dropped."""
    result: list[Portal] = []
    for address in [ip, *secondary]:
        portal = make_portal(validate_bindable_ip(address), port)
        if portal not in result:
            result.append(portal)
    return result


@dataclass(frozen=True)
class ProviderLocation:
    """Cinder's provider_location: ``<portal>[;<portal>...],<tid> <iqn> <lun>``."""

    portals: tuple[Portal, ...]
    tid: int
    iqn: str
    lun: int

    def __str__(self) -> str:
        return f"{';'.join(map(str, self.portals))},{self.tid} {self.iqn} {self.lun}"

    @classmethod
    def parse(cls, text: str) -> ProviderLocation:
        parts = text.split(" ") if isinstance(text, str) else []
        if len(parts) != 3 or "," not in parts[0]:
            raise InvalidInput(
                field="provider_location",
                value=_show(text),
                reason="expected '<ip>:<port>[;<ip>:<port>...],<tid> <iqn> <lun>'",
            )
        portal_text, _, tid_text = parts[0].rpartition(",")
        tid, lun = _decimal(tid_text), _decimal(parts[2])
        if tid is None or lun is None:
            raise InvalidInput(
                field="provider_location",
                value=_show(text),
                reason="target id and LUN must be non-negative integers in ASCII digits",
            )
        portals = tuple(parse_portal(p) for p in portal_text.split(";"))
        return cls(portals, tid, validate_iscsi_name(parts[1], "target IQN"), lun)


def parse_geometry(text: str | None) -> tuple[int, int] | None:
    """provider_geometry ``"<physical> <logical>"`` block sizes, or None."""
    if not text:
        return None
    parts = text.split()
    try:
        physical, logical = (int(p) for p in parts)
    except ValueError:
        raise InvalidInput(
            field="provider_geometry",
            value=_show(text),
            reason="expected '<physical block size> <logical block size>'",
        ) from None
    for size in (physical, logical):
        if size < 512 or size & (size - 1):
            raise InvalidInput(
                field="provider_geometry",
                value=_show(text),
                reason="block sizes must be powers of two, at least 512",
            )
    return physical, logical
