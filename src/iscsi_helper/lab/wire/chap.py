"""CHAP with MD5 (RFC 1994) as iSCSI carries it (RFC 7143 section 12.1.3).

Kept apart from the login state machine so that the cryptographic checks can
be read and tested on their own.  Comparisons are constant time; secrets are
never formatted into messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

CHAP_MD5 = 5
CHALLENGE_LEN = 16


class ChapFormatError(ValueError):
    """A CHAP_R / CHAP_C value that is not valid hex or base64 binary."""


def decode_binary(value: str) -> bytes:
    """Decode an iSCSI binary value: ``0x`` hex or ``0b`` base64 (RFC 7143 6.1)."""
    try:
        if value[:2] in ("0x", "0X"):
            digits = value[2:]
            if len(digits) % 2:
                digits = "0" + digits
            return bytes.fromhex(digits)
        if value[:2] in ("0b", "0B"):
            return base64.b64decode(value[2:], validate=True)
    except ValueError as exc:
        raise ChapFormatError("malformed binary value") from exc
    raise ChapFormatError("binary value must start with 0x or 0b")


def encode_hex(data: bytes) -> str:
    return "0x" + data.hex()


def response(identifier: int, secret: str, challenge: bytes) -> bytes:
    return hashlib.md5(bytes([identifier & 0xFF]) + secret.encode() + challenge).digest()


def new_challenge() -> tuple[int, bytes]:
    return secrets.randbelow(256), secrets.token_bytes(CHALLENGE_LEN)


def check(
    identifier: int, challenge: bytes, name: str, answer: bytes, credentials: list[tuple[str, str]]
) -> bool:
    """True if ``answer`` proves knowledge of the secret of any credential named ``name``.

    Several initiator credentials may be configured (chiscsi allows repeated
    Auth_CHAP_Initiator lines); any one that matches admits the initiator.
    """
    ok = False
    for user, secret in credentials:
        if hmac.compare_digest(user.encode(), name.encode()):
            ok |= hmac.compare_digest(response(identifier, secret, challenge), answer)
    return ok
