"""IET's tunable target and session keys: names, defaults, ranges, text forms.

``--op update`` takes the keys ietd.conf accepts, and ``--op show`` prints
them back. The tables follow IET's userspace key tables (ranges and
defaults); the emulator is stricter than real ietadm, which silently skips
unknown keys and clamps out-of-range values: a helper that sends a typo
should fail here rather than look fine and misbehave on a real host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from iscsi_helper.lab.emulators.iet.errors import einval

Kind = Literal["number", "bool", "digest", "marker"]


@dataclass(frozen=True)
class Key:
    name: str
    default: int
    minimum: int
    maximum: int
    kind: Kind = "number"


DIGEST_NONE = 1
DIGEST_CRC32C = 2

TARGET_KEYS: tuple[Key, ...] = (
    Key("Wthreads", 8, 1, 128),
    Key("Type", 0, 0, 16),
    Key("QueuedCommands", 32, 1, 256),
)

SESSION_KEYS: tuple[Key, ...] = (
    Key("InitialR2T", 1, 0, 1, "bool"),
    Key("ImmediateData", 1, 0, 1, "bool"),
    Key("MaxConnections", 1, 1, 65535),
    Key("MaxRecvDataSegmentLength", 8192, 512, 16777215),
    Key("MaxXmitDataSegmentLength", 8192, 512, 16777215),
    Key("MaxBurstLength", 262144, 512, 16777215),
    Key("FirstBurstLength", 65536, 512, 16777215),
    Key("DefaultTime2Wait", 2, 0, 3600),
    Key("DefaultTime2Retain", 20, 0, 3600),
    Key("MaxOutstandingR2T", 1, 1, 65535),
    Key("DataPDUInOrder", 1, 0, 1, "bool"),
    Key("DataSequenceInOrder", 1, 0, 1, "bool"),
    Key("ErrorRecoveryLevel", 0, 0, 2),
    Key("HeaderDigest", DIGEST_NONE, DIGEST_NONE, DIGEST_NONE | DIGEST_CRC32C, "digest"),
    Key("DataDigest", DIGEST_NONE, DIGEST_NONE, DIGEST_NONE | DIGEST_CRC32C, "digest"),
    Key("OFMarker", 0, 0, 1, "bool"),
    Key("IFMarker", 0, 0, 1, "bool"),
    Key("OFMarkInt", 2048, 1, 65535, "marker"),
    Key("IFMarkInt", 2048, 1, 65535, "marker"),
)

_BY_LOWER: dict[str, Key] = {key.name.lower(): key for key in TARGET_KEYS + SESSION_KEYS}


def _parse_value(key: Key, text: str) -> int:
    if key.kind == "bool":
        if text in ("Yes", "No"):
            return 1 if text == "Yes" else 0
    elif key.kind == "digest":
        value = 0
        for part in text.split("|"):
            if part == "None":
                value |= DIGEST_NONE
            elif part == "CRC32C":
                value |= DIGEST_CRC32C
            else:
                raise einval(f"{key.name}: {text!r} is not None, CRC32C or CRC32C|None")
        return value
    try:
        value = int(text, 0)
    except ValueError:
        raise einval(f"{key.name}: {text!r} is not a valid value") from None
    if not key.minimum <= value <= key.maximum:
        raise einval(f"{key.name}={value} is outside {key.minimum}..{key.maximum}")
    return value


def parse_update(params: str | None) -> dict[str, int]:
    """Parse ``key=value,...`` for ``--op update``; unknown keys are refused."""
    if not params:
        raise einval("--op update needs --params key=value[,key=value...]")
    result: dict[str, int] = {}
    for item in params.split(","):
        if not item:
            continue
        name, sep, text = item.partition("=")
        if not sep:
            raise einval(f"parameter {item!r} has no '='")
        key = _BY_LOWER.get(name.lower())
        if key is None:
            raise einval(f"unknown target parameter {name!r}")
        result[key.name] = _parse_value(key, text)
    if not result:
        raise einval("--op update needs at least one key=value")
    return result


def _format(key: Key, value: int) -> str:
    if key.kind == "bool":
        return "Yes" if value else "No"
    if key.kind == "digest":
        names = [n for bit, n in ((DIGEST_CRC32C, "CRC32C"), (DIGEST_NONE, "None")) if value & bit]
        return ",".join(names) or "None"
    if key.kind == "marker":
        return "Reject"
    return str(value)


def effective(overrides: dict[str, int]) -> dict[str, int]:
    """The full key set of a target: defaults with its ``--op update`` overrides."""
    values = {key.name: key.default for key in TARGET_KEYS + SESSION_KEYS}
    values.update(overrides)
    return values


def render(keys: tuple[Key, ...], values: dict[str, int]) -> str:
    return "".join(f"{key.name}={_format(key, values[key.name])}\n" for key in keys)
