"""Text key parsing and operational parameter negotiation (RFC 7143 sections 6 and 13).

The target's preferences are constants here; the negotiated outcome is a
:class:`SessionParams` that the data path reads.  Each key follows the
result function the RFC assigns to it (min, max, OR, AND, list choice), so an
initiator that proposes anything legal gets a legal answer, and anything we
do not know is answered ``NotUnderstood`` rather than breaking the login.
"""

from __future__ import annotations

from dataclasses import dataclass

# What this target is willing to do.
OUR_MAX_RECV_DATA_SEGMENT = 262144
OUR_MAX_BURST = 1048576
OUR_FIRST_BURST = 262144
OUR_MAX_OUTSTANDING_R2T = 8
OUR_INITIAL_R2T = False
OUR_IMMEDIATE_DATA = True
SUPPORTED_DIGESTS = ("None", "CRC32C")

DECLARATIVE = {
    "InitiatorName",
    "InitiatorAlias",
    "TargetName",
    "TargetAlias",
    "SessionType",
    "TargetAddress",
    "TargetPortalGroupTag",
}
SECURITY_KEYS = {"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"}


class TextFormatError(ValueError):
    """Text data that is not a sequence of key=value pairs."""


def parse_text(data: bytes) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in data.split(b"\0"):
        if not item:
            continue
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError:
            raise TextFormatError("text key is not UTF-8") from None
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise TextFormatError(f"malformed text key {key[:64]!r}")
        pairs.append((key, value))
    return pairs


def encode_text(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def _yes(value: str) -> bool:
    return value == "Yes"


@dataclass
class SessionParams:
    """Negotiated values, starting at the RFC 7143 defaults."""

    header_digest: bool = False
    data_digest: bool = False
    initiator_max_recv_data: int = 8192
    max_burst: int = 262144
    first_burst: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    max_connections: int = 1

    def negotiate(self, key: str, value: str) -> str | None:
        """Apply one initiator offer; return our answer, or None for declarations."""
        try:
            return self._negotiate(key, value)
        except ValueError:
            return "Reject"

    def _negotiate(self, key: str, value: str) -> str | None:
        if key in ("HeaderDigest", "DataDigest"):
            for choice in value.split(","):
                if choice in SUPPORTED_DIGESTS:
                    if key == "HeaderDigest":
                        self.header_digest = choice == "CRC32C"
                    else:
                        self.data_digest = choice == "CRC32C"
                    return choice
            return "Reject"
        if key == "MaxRecvDataSegmentLength":
            n = _number(value, 512, 2**24 - 1)
            self.initiator_max_recv_data = n
            return None
        if key == "MaxBurstLength":
            self.max_burst = min(_number(value, 512, 2**24 - 1), OUR_MAX_BURST)
            self.first_burst = min(self.first_burst, self.max_burst)
            return str(self.max_burst)
        if key == "FirstBurstLength":
            self.first_burst = min(_number(value, 512, 2**24 - 1), OUR_FIRST_BURST, self.max_burst)
            return str(self.first_burst)
        if key == "MaxOutstandingR2T":
            self.max_outstanding_r2t = min(_number(value, 1, 65535), OUR_MAX_OUTSTANDING_R2T)
            return str(self.max_outstanding_r2t)
        if key == "MaxConnections":
            _number(value, 1, 65535)
            self.max_connections = 1
            return "1"
        if key == "InitialR2T":
            self.initial_r2t = _bool(value) or OUR_INITIAL_R2T
            return "Yes" if self.initial_r2t else "No"
        if key == "ImmediateData":
            self.immediate_data = _bool(value) and OUR_IMMEDIATE_DATA
            return "Yes" if self.immediate_data else "No"
        if key in ("DataPDUInOrder", "DataSequenceInOrder"):
            _bool(value)
            return "Yes"  # OR with our Yes: we only support in-order delivery
        if key == "ErrorRecoveryLevel":
            _number(value, 0, 2)
            return "0"
        if key == "DefaultTime2Wait":
            return str(max(_number(value, 0, 3600), 2))
        if key == "DefaultTime2Retain":
            return str(min(_number(value, 0, 3600), 20))
        if key in ("IFMarker", "OFMarker"):
            _bool(value)
            return "No"
        if key in ("IFMarkInt", "OFMarkInt"):
            return "Irrelevant"
        if key == "RDMAExtensions":
            _bool(value)
            return "No"
        if key == "iSCSIProtocolLevel":
            return str(min(_number(value, 0, 31), 1))
        if key == "TaskReporting":
            return "RFC3720" if "RFC3720" in value.split(",") else "Reject"
        if key in DECLARATIVE:
            return None
        return "NotUnderstood"


def _number(value: str, low: int, high: int) -> int:
    n = int(value, 0) if value[:2].lower() == "0x" else int(value)
    if not low <= n <= high:
        raise ValueError(f"{n} outside {low}..{high}")
    return n


def _bool(value: str) -> bool:
    if value not in ("Yes", "No"):
        raise ValueError(f"not a boolean: {value!r}")
    return _yes(value)
