"""The key tables of a target block and how the kernel decodes them.

A ``-S`` sends the block as ``key=value`` strings; the kernel groups them by
key in order of first appearance (private/klib/text/iscsi_text_decode.c
244-361), then walks its key tables in table order, decoding every value of
each key it finds (604-634, 368-494): a key given twice that is not
multi-valued, an empty value, or a key that is not a target configuration key
is refused (72-193); list keys keep the values that decode and fail only if
none does (391-455); numbers are checked against the table's limits (196-237).
Whatever no table claims is an "unrecognized key" (private/klib/common/
iscsi_node.c 322-328).

Tables: configuration keys private/klib/text/iscsi_config_keys.c 693-784,
session keys iscsi_session_keys.c 48-276, connection keys
iscsi_connection_keys.c 253-470, CHAP keys
private/klib/security/chap/iscsi_chap_key.c 380-419.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel import acl, chap, portals
from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import lower, simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

ISCSI_NAME_LEN_MAX = 223
ISCSI_ALIAS_LEN_MAX = 255
KEY_NAME_MAX_LEN = 63
RESPONSE_VALUES = ("NotUnderstood", "Irrelevant", "Reject")
TARGET_CLASSES = ("CHELSIO",)  # includes/common/iscsi_target_device.h 14; the only class registered


# --------------------------------------------------------------------------
# value decoders (messages and whether they append are the source's)
# --------------------------------------------------------------------------


def decode_numeric(value: str, ebuf: Ebuf) -> int:
    """``kv_decode_numeric`` (private/klib/text/iscsi_value_numeric.c 351-389)."""
    if value[:1] == "0" and value[1:2] in ("x", "X"):
        number, end = simple_strtoul(value, 16)
        if end < len(value):
            ebuf.add(f"{value}: invalid hex digits.\n")
            raise KernelError("numeric")
    else:
        number, end = simple_strtoul(value, 10)
        if end < len(value):
            ebuf.add(f"{value}: invalid decimal digits.\n")
            raise KernelError("numeric")
    return number & 0xFFFFFFFF


def decode_number(value: str, ebuf: Ebuf) -> list[int]:
    return [decode_numeric(value, ebuf)]


def decode_range(value: str, ebuf: Ebuf) -> list[int]:
    """``kv_decode_number_range`` (iscsi_keys_common.c 226-269, 443-467)."""
    if "~" in value:
        first, _, second = value.partition("~")
        if not first:
            ebuf.add(f"ERR! {value}: range missing 1st part.\n")
            raise KernelError("range")
        if not second:
            ebuf.add(f"ERR! {first}: range missing 2nd part.\n")
            raise KernelError("range")
        low = decode_numeric(first, ebuf)
        high = decode_numeric(second, ebuf)
    else:
        low = high = decode_numeric(value, ebuf)
    if high < low:
        ebuf.add(f"INVALID Range {high} < {low}.\n")
        raise KernelError("range")
    return [low, high]


def decode_boolean(value: str, ebuf: Ebuf) -> list[int]:
    """``kv_decode_boolean`` (iscsi_keys_common.c 469-487)."""
    if value == "Yes":
        return [1]
    if value == "No":
        return [0]
    ebuf.add(f"ERR! UNKNOWN boolean {value}.\n")
    raise KernelError("boolean")


def decode_digest(value: str, ebuf: Ebuf) -> str:
    """``kv_decode_digest`` (iscsi_connection_keys.c 14-29)."""
    if value in ("CRC32C", "None"):
        return value
    ebuf.add(f"ERR! digest {value}.\n")
    raise KernelError("digest")


def decode_iscsi_name(value: str, ebuf: Ebuf) -> str:
    """``kv_decode_iscsi_name`` (iscsi_connection_keys.c 130-184): lower-cased, then checked."""
    name = lower(value)
    if not (name.startswith("iqn.") or name.startswith("eui.") or name.startswith("all")):
        ebuf.add(f"ERR! INVALID iscsi name format {name}.\n")
        raise KernelError("name")
    if len(name) > ISCSI_NAME_LEN_MAX:
        ebuf.add(f"ERR! iscsi name {name}, length {len(name)} > {ISCSI_NAME_LEN_MAX}.\n")
        raise KernelError("name")
    for ch in name:
        code = ord(ch)
        if (
            code <= 0x2C
            or code >= 0x80
            or code == 0x2F
            or 0x3B <= code <= 0x40
            or 0x5B <= code <= 0x60
            or 0x7B <= code <= 0x7F
        ):
            ebuf.add(f"iSCSI name {name} contains prohibited ASCII '{ch}' (0x{code:04x}).\n")
            raise KernelError("name")
    return name


def decode_alias(value: str, ebuf: Ebuf) -> str:
    """``kv_decode_iscsi_alias`` (iscsi_connection_keys.c 188-217); empty is allowed."""
    if not value:
        return ""
    if "," in value:
        ebuf.add("ERR! Multiple Aliases not allowed\n")
        raise KernelError("alias")
    if len(value) > ISCSI_ALIAS_LEN_MAX:
        ebuf.add(f"ERR! iscsi alias {value}, length {len(value)} > {ISCSI_ALIAS_LEN_MAX}.\n")
        raise KernelError("alias")
    return value


def decode_text(value: str, ebuf: Ebuf) -> str:
    return value


def decode_target_class(value: str, ebuf: Ebuf) -> str:
    """``kv_decode_targetclass`` (iscsi_config_keys.c 233-245)."""
    if value in TARGET_CLASSES:
        return value
    ebuf.put(f"{value}, Unknown target class.\n")
    raise KernelError("class")


def decode_challenge_length(value: str, ebuf: Ebuf) -> list[int]:
    number = decode_numeric(value, ebuf)
    chap.check_challenge_length(number, ebuf)
    return [number]


def post_check_str(previous: list[Any], new: Any, ebuf: Ebuf) -> None:
    """``kv_post_decode_check_str``: the same TargetDevice string twice."""
    if new and new in previous:
        ebuf.add(f"ERR! duplicate {new}.\n")
        raise KernelError("dup")


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyDef:
    name: str
    decode: Callable[[str, Ebuf], Any] | None
    target_config: bool = True
    multiple: bool = False
    allow_empty: bool = False
    is_list: bool = False
    default: Any = None
    vmin: int | None = None
    vmax: int | None = None
    post: Callable[[list[Any], Any, Ebuf], None] | None = None
    chain: bool = False  # one value decodes into several (PortalGroup addresses)


def _post_portals(previous: list[Any], new: Any, ebuf: Ebuf) -> None:
    portals.post_decode_portalgroup(previous, new, ebuf)


def _post_chap(previous: list[Any], new: Any, ebuf: Ebuf) -> None:
    chap.post_decode_pair(previous, new, ebuf)


CONFIG_TABLE = (
    KeyDef("PortalGroup", portals.decode_portalgroup, multiple=True, post=_post_portals, chain=True),
    KeyDef("TargetSessionMaxCmd", decode_number, default=[128], vmin=1, vmax=2048),
    KeyDef("TargetClass", decode_target_class),
    KeyDef("TargetDevice", decode_text, multiple=True, post=post_check_str),
    KeyDef("ACL_Enable", decode_boolean, default=[0]),
    KeyDef("ACL", acl.decode_acl, multiple=True),
    KeyDef("ShadowMode", decode_boolean, default=[0]),
    KeyDef("RegisteriSNS", decode_boolean, default=[1]),
)

SESSION_TABLE = (
    KeyDef("MaxConnections", decode_number, default=[1], vmin=1, vmax=65535),
    KeyDef("InitialR2T", decode_boolean, default=[1]),
    KeyDef("MaxOutstandingR2T", decode_number, default=[1], vmin=1, vmax=65535),
    KeyDef("ImmediateData", decode_boolean, default=[1]),
    KeyDef("FirstBurstLength", decode_number, default=[65536], vmin=512, vmax=16777215),
    KeyDef("MaxBurstLength", decode_number, default=[262144], vmin=512, vmax=16777215),
    KeyDef("DefaultTime2Wait", decode_number, default=[2], vmin=0, vmax=3600),
    KeyDef("DefaultTime2Retain", decode_number, default=[20], vmin=0, vmax=3600),
    KeyDef("DataPDUInOrder", decode_boolean, default=[1]),
    KeyDef("DataSequenceInOrder", decode_boolean, default=[1]),
    KeyDef("ErrorRecoveryLevel", decode_number, default=[0], vmin=0, vmax=2),
    KeyDef("SessionType", None, target_config=False),
)

CONNECTION_TABLE = (
    KeyDef("HeaderDigest", decode_digest, is_list=True, default=["None"]),
    KeyDef("DataDigest", decode_digest, is_list=True, default=["None"]),
    KeyDef("SendTargets", None, target_config=False, allow_empty=True),
    KeyDef("TargetName", decode_iscsi_name),
    KeyDef("InitiatorName", None, target_config=False),
    KeyDef("TargetAlias", decode_alias, allow_empty=True),
    KeyDef("InitiatorAlias", None, target_config=False, allow_empty=True),
    KeyDef("TargetAddress", None, target_config=False, multiple=True),
    KeyDef("TargetPortalGroupTag", None, target_config=False),
    KeyDef("MaxRecvDataSegmentLength", decode_number, default=[8192], vmin=512, vmax=16777215),
    KeyDef("OFMarker", decode_boolean, default=[0]),
    KeyDef("IFMarker", decode_boolean, default=[0]),
    KeyDef("IFMarkInt", decode_range, default=[2048], vmin=1, vmax=65535),
    KeyDef("OFMarkInt", decode_range, default=[2048], vmin=1, vmax=65535),
    KeyDef("AuthMethod", chap.decode_auth_method, is_list=True),
)

CHAP_TABLE = (
    KeyDef("Auth_CHAP_Target", chap.decode_pair, multiple=True, post=_post_chap),
    KeyDef("Auth_CHAP_Initiator", chap.decode_pair, multiple=True, post=_post_chap),
    KeyDef("Auth_CHAP_ChallengeLength", decode_challenge_length, default=[16], vmin=16, vmax=1024),
    KeyDef("Auth_CHAP_Policy", chap.decode_policy, default="Oneway"),
)

NUMERIC_KEYS = {
    k.name
    for t in (CONFIG_TABLE, SESSION_TABLE, CONNECTION_TABLE, CHAP_TABLE)
    for k in t
    if k.vmin is not None
}


# --------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------


@dataclass
class Pair:
    """All values of one key in a block (``iscsi_string_pair``)."""

    key: str
    values: list[str]
    empty: bool = False
    response: bool = False


def text_to_pairs(entries: list[tuple[str, str]], ebuf: Ebuf) -> list[Pair]:
    """``iscsi_kv_text_to_string_pairq``: group by key, in order of first appearance."""
    pairs: dict[str, Pair] = {}
    for key, value in entries:
        if len(key) > KEY_NAME_MAX_LEN:
            ebuf.add(f"{key}: key length {len(key)} > max {KEY_NAME_MAX_LEN}.\n")
            raise KernelError("key length")
        pair = pairs.setdefault(key, Pair(key, []))
        if value in RESPONSE_VALUES:
            pair.response = True
        elif value == "":
            pair.empty = True
        pair.values.append(value)
    return list(pairs.values())


def _numbers(value: Any) -> list[int]:
    if isinstance(value, list) and all(isinstance(n, int) for n in value):
        return value
    return []


def _check_limits(kdef: KeyDef, value: Any, ebuf: Ebuf) -> bool:
    """``kv_check_value_property``: every number of the value within the key's limits."""
    ok = True
    for n in _numbers(value):
        if kdef.vmin is not None and n < kdef.vmin:
            ebuf.add(f"{kdef.name} ERR: {n} < min {kdef.vmin}.\n")
            ok = False
        if kdef.vmax is not None and n > kdef.vmax:
            ebuf.add(f"{kdef.name} ERR: {n} > max {kdef.vmax}.\n")
            ok = False
    return ok


def decode_pair(kdef: KeyDef, pair: Pair, ebuf: Ebuf) -> list[Any]:
    """``iscsi_kvp_decode_pair`` for one key: its decoded values, in order."""
    decoded: list[Any] = []
    for count, text in enumerate(pair.values, start=1):
        if count > 1 and not kdef.multiple:
            ebuf.add(f"{kdef.name}: rcv'd {count} times.\n")
            raise KernelError("duplicate key")
        if pair.empty and not kdef.allow_empty:
            ebuf.add(f"{kdef.name}: rcv'd empty value.\n")
            raise KernelError("empty")
        if not kdef.target_config:
            ebuf.add(f"{kdef.name}: unexpected target key.\n")
            raise KernelError("unexpected")
        if pair.response:
            raise KernelError("response value")  # refused without a message
        assert kdef.decode is not None
        if kdef.is_list:
            good = 0
            for item in text.split(","):
                if not item:
                    continue
                try:
                    value = kdef.decode(item, ebuf)
                except KernelError:
                    continue
                if not _check_limits(kdef, value, ebuf):
                    continue
                decoded.append(value)
                good += 1
            if not good:
                ebuf.add(f"{kdef.name}, ERR! NO valid value found.\n")
                raise KernelError("no valid value")
            continue
        value = kdef.decode(text, ebuf)
        if kdef.post is not None:
            previous = [v for chain in decoded for v in chain] if kdef.chain else decoded
            kdef.post(previous, value, ebuf)
        if not all(_check_limits(kdef, v, ebuf) for v in (value if kdef.chain else [value])):
            raise KernelError("limits")
        decoded.append(value)
    return decoded


def decode_table(table: tuple[KeyDef, ...], pairs: list[Pair], ebuf: Ebuf) -> dict[str, list[Any]]:
    """``iscsi_kvlist_decode_pairq``: table order; claimed pairs leave the queue."""
    found: dict[str, list[Any]] = {}
    for kdef in table:
        pair = next((p for p in pairs if p.key == kdef.name), None)
        if pair is None:
            continue
        found[kdef.name] = decode_pair(kdef, pair, ebuf)
        pairs.remove(pair)
    return found


def value_or_default(table: tuple[KeyDef, ...], decoded: dict[str, list[Any]], name: str) -> Any:
    """A single-valued key's value after ``iscsi_kvlist_fill_default``."""
    values = decoded.get(name)
    if values:
        return values[0]
    kdef = next(k for k in table if k.name == name)
    return kdef.default
