"""The login phase (RFC 7143 6.3, 11.12, 11.13): security and operational stages.

Everything here runs before the initiator has proved anything, so every
input is bounded before it is kept: one Login PDU's data segment is at most
8192 bytes (the RFC default that governs login, RFC 7143 13.12), the text
accumulated over continued PDUs at most :data:`MAX_LOGIN_TEXT`, key names at
most 63 bytes and values at most 255 bytes (RFC 7143 6.1; CHAP binary values
and iSCSI names have their own, larger limits below), the number of keys and
of login exchanges is capped, and the whole login must finish within
:data:`LOGIN_TIMEOUT`. A login that breaks a bound fails with a status that
names the problem and the connection closes, releasing what it held.

Responses longer than the initiator may receive are split into Login
Response PDUs with the C bit set (RFC 7143 11.13.3); the initiator asks for
each next part with an empty Login Request.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from iscsi_helper.lab.wire import chap
from iscsi_helper.lab.wire.connection import ConnectionState
from iscsi_helper.lab.wire.model import format_portal
from iscsi_helper.lab.wire.negotiation import (
    OUR_MAX_RECV_DATA_SEGMENT,
    SECURITY_KEYS,
    TextFormatError,
    encode_text,
    parse_text,
)
from iscsi_helper.lab.wire.pdu import (
    LOGIN_MAX_DATA_SEGMENT,
    OP_LOGIN_REQ,
    OP_LOGIN_RSP,
    PDU,
    PDUError,
    new_pdu,
)

LOG = logging.getLogger(__name__)

LOGIN_TIMEOUT = 15.0
MAX_LOGIN_TEXT = 32 * 1024
MAX_LOGIN_EXCHANGES = 32
MAX_KEYS = 128
MAX_KEY_NAME = 63  # RFC 7143 6.1
MAX_VALUE = 255  # RFC 7143 6.1, unless a key says otherwise
MAX_NAME = 223  # iSCSI names, RFC 3722 / RFC 7143 4.2.7.1
MAX_CHAP_BINARY = 2 + 2 * 1024  # CHAP_C / CHAP_R as 0x-hex of at most 1024 bytes (RFC 7143 12.1.3)
LONG_VALUES = {
    "CHAP_C": MAX_CHAP_BINARY,
    "CHAP_R": MAX_CHAP_BINARY,
    "InitiatorName": MAX_NAME,
    "TargetName": MAX_NAME,
    "CHAP_N": MAX_VALUE,
    "InitiatorAlias": MAX_VALUE,
}

# Login status (class << 8 | detail), RFC 7143 11.13.5.
LOGIN_SUCCESS = 0x0000
LOGIN_INITIATOR_ERROR = 0x0200
LOGIN_AUTH_FAILURE = 0x0201
LOGIN_AUTHORIZATION_FAILURE = 0x0202
LOGIN_NOT_FOUND = 0x0203
LOGIN_UNSUPPORTED_VERSION = 0x0205
LOGIN_MISSING_PARAMETER = 0x0207
LOGIN_SESSION_NOT_FOUND = 0x020A
LOGIN_INVALID_REQUEST = 0x020B
LOGIN_TARGET_ERROR = 0x0300
LOGIN_OUT_OF_RESOURCES = 0x0302

STAGE_SECURITY = 0
STAGE_OPERATIONAL = 1
STAGE_FULL_FEATURE = 3

_tsih_counter = itertools.count(1)


def next_tsih() -> int:
    while True:
        value = next(_tsih_counter) & 0xFFFF
        if value:
            return value


class LoginFailed(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class _LoginState:
    first: bool = True
    identified: bool = False
    in_security: bool = False
    auth_done: bool = False
    method: str | None = None
    chap_stage: str = ""
    chap_id: int = 0
    chap_challenge: bytes = b""
    declared_mrdsl: bool = False
    itt: int = 0
    text: bytes = b""
    exchanges: int = 0
    # A response still being sent in parts: (remaining text, (csg, nsg, transit) of its last PDU, final?).
    pending: tuple[bytes, tuple[int, int, bool], bool] | None = None


def check_text_bounds(pairs: list[tuple[str, str]]) -> None:
    """Refuse text that breaks RFC 7143 6.1's size rules (or ours), naming the key."""
    if len(pairs) > MAX_KEYS:
        raise LoginFailed(LOGIN_INITIATOR_ERROR, f"{len(pairs)} keys in one request (at most {MAX_KEYS})")
    for key, value in pairs:
        if len(key.encode()) > MAX_KEY_NAME:
            raise LoginFailed(
                LOGIN_INITIATOR_ERROR,
                f"key name of {len(key.encode())} bytes (at most {MAX_KEY_NAME}): {key[:32]!r}...",
            )
        limit = LONG_VALUES.get(key, MAX_VALUE)
        if len(value.encode()) > limit:
            raise LoginFailed(
                LOGIN_INITIATOR_ERROR,
                f"value of {key[:63]} has {len(value.encode())} bytes (at most {limit})",
            )


class LoginPhase:
    """Runs the login exchanges of one connection; on success it is in full feature phase."""

    def __init__(self, conn: ConnectionState) -> None:
        self.conn = conn
        self.state = _LoginState()

    async def run(self) -> None:
        conn = self.conn
        while True:
            pdu = await conn.stream.read()
            if pdu.opcode != OP_LOGIN_REQ:
                raise PDUError(f"opcode 0x{pdu.opcode:02x} before login completed")
            done = await self.step(pdu)
            await conn.stream.drain()
            if done:
                return

    async def step(self, pdu: PDU) -> bool:
        conn, state = self.conn, self.state
        flags = pdu.flags
        transit = bool(flags & 0x80)
        cont = bool(flags & 0x40)
        csg = (flags >> 2) & 0x03
        nsg = flags & 0x03
        if state.first:
            state.first = False
            conn.isid = bytes(pdu.bhs[8:14])
            conn.tsih = pdu.u16(14)
            conn.stat_sn = pdu.u32(28)
            conn.exp_cmd_sn = pdu.u32(24)
        state.itt = pdu.itt
        try:
            state.exchanges += 1
            if state.exchanges > MAX_LOGIN_EXCHANGES:
                raise LoginFailed(LOGIN_INITIATOR_ERROR, f"more than {MAX_LOGIN_EXCHANGES} login exchanges")
            if pdu.bhs[3] > 0 or pdu.bhs[2] < 0:  # version-min must allow version 0
                raise LoginFailed(LOGIN_UNSUPPORTED_VERSION, "unsupported iSCSI version")
            if state.pending is not None:
                if pdu.data or cont:
                    raise LoginFailed(
                        LOGIN_INITIATOR_ERROR, "text sent while a login response was being continued"
                    )
                return self._send_next_part()
            if len(state.text) + len(pdu.data) > MAX_LOGIN_TEXT:
                raise LoginFailed(LOGIN_INITIATOR_ERROR, f"login text beyond {MAX_LOGIN_TEXT} bytes")
            state.text += pdu.data
            if cont:
                self._respond(csg, 0, False, b"")
                return False
            try:
                pairs = parse_text(state.text)
            except TextFormatError as exc:
                raise LoginFailed(LOGIN_INVALID_REQUEST, str(exc)) from None
            state.text = b""
            check_text_bounds(pairs)
            if csg == 2 or (transit and (nsg == 2 or nsg <= csg)):
                raise LoginFailed(LOGIN_INVALID_REQUEST, "invalid login stage transition")
            answers: list[tuple[str, str]] = []
            keys = dict(pairs)
            if not state.identified:
                self._identify(keys, answers)
            if csg == STAGE_SECURITY:
                state.in_security = True
                self._security(keys, answers)
            else:
                if not state.in_security and not state.auth_done:
                    if "None" not in self._allowed_auth():
                        raise LoginFailed(LOGIN_AUTH_FAILURE, "authentication required")
                    state.auth_done = True
                if any(k in SECURITY_KEYS for k in keys):
                    raise LoginFailed(LOGIN_INVALID_REQUEST, "security key in operational stage")
            for key, value in pairs:
                if key in SECURITY_KEYS or key in ("InitiatorName", "TargetName", "SessionType"):
                    continue
                if key == "SendTargets":
                    answers.append((key, "Irrelevant"))
                    continue
                answer = conn.params.negotiate(key, value)
                if answer is not None:
                    answers.append((key, answer))
            if csg == STAGE_OPERATIONAL and not state.declared_mrdsl:
                state.declared_mrdsl = True
                answers.append(("MaxRecvDataSegmentLength", str(OUR_MAX_RECV_DATA_SEGMENT)))
            go = transit and state.auth_done
            final = go and nsg == STAGE_FULL_FEATURE
            if final:
                self._admit()
            text = encode_text(answers)
            limit = self._response_limit()
            if len(text) > limit:
                # RFC 7143 11.13.3: C=1 and T=0 until the last part.
                state.pending = (text[limit:], (csg, nsg if go else 0, go), final)
                self._respond(csg, 0, False, text[:limit], cont=True)
                return False
            self._respond(csg, nsg if go else 0, go, text)
            if final:
                self._enter_full_feature()
            return final
        except LoginFailed as exc:
            rsp = new_pdu(OP_LOGIN_RSP, flags=(csg << 2) & 0x0C, itt=pdu.itt)
            rsp.bhs[8:14] = conn.isid
            conn.stamp(rsp)
            rsp.set_u16(36, exc.status)
            conn.stream.write(rsp)
            await conn.stream.drain()
            raise

    def _response_limit(self) -> int:
        return min(LOGIN_MAX_DATA_SEGMENT, self.conn.params.initiator_max_recv_data)

    def _send_next_part(self) -> bool:
        state = self.state
        assert state.pending is not None
        rest, last_flags, final = state.pending
        csg, nsg, go = last_flags
        limit = self._response_limit()
        if len(rest) > limit:
            state.pending = (rest[limit:], last_flags, final)
            self._respond(csg, 0, False, rest[:limit], cont=True)
            return False
        state.pending = None
        self._respond(csg, nsg, go, rest)
        if final:
            self._enter_full_feature()
        return final

    def _admit(self) -> None:
        """Last checks before the session exists: it gets its TSIH and joins its target."""
        conn = self.conn
        if conn.tsih:
            raise LoginFailed(LOGIN_SESSION_NOT_FOUND, "adding connections to sessions is not supported")
        conn.tsih = next_tsih()
        if not conn.discovery:
            assert conn.served is not None
            if conn.served.withdrawn:
                raise LoginFailed(LOGIN_NOT_FOUND, "target withdrawn during login")

    def _enter_full_feature(self) -> None:
        conn = self.conn
        conn.stream.header_digest = conn.params.header_digest
        conn.stream.data_digest = conn.params.data_digest
        conn.stream.max_recv_data = OUR_MAX_RECV_DATA_SEGMENT
        LOG.info(
            "login: %s from %s to %s (%s), header digest %s, data digest %s",
            conn.initiator_name,
            conn.peer,
            conn.target_name(),
            format_portal(*conn.portal),
            "CRC32C" if conn.params.header_digest else "None",
            "CRC32C" if conn.params.data_digest else "None",
        )

    def _respond(self, csg: int, nsg: int, transit: bool, data: bytes, cont: bool = False) -> None:
        conn = self.conn
        flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        rsp = new_pdu(OP_LOGIN_RSP, flags=flags, itt=self.state.itt)
        rsp.bhs[8:14] = conn.isid
        if transit and nsg == STAGE_FULL_FEATURE:
            rsp.set_u16(14, conn.tsih)
        conn.stamp(rsp)
        rsp.data = data
        conn.stream.write(rsp)

    def _identify(self, keys: dict[str, str], answers: list[tuple[str, str]]) -> None:
        conn = self.conn
        self.state.identified = True
        conn.initiator_name = keys.get("InitiatorName", "")
        if not conn.initiator_name:
            raise LoginFailed(LOGIN_MISSING_PARAMETER, "InitiatorName missing")
        if any(c.isspace() or not c.isprintable() for c in conn.initiator_name):
            raise LoginFailed(LOGIN_INITIATOR_ERROR, "InitiatorName is not a valid iSCSI name")
        conn.nexus = f"{conn.initiator_name},i,0x{conn.isid.hex()}"
        session_type = keys.get("SessionType", "Normal")
        if session_type == "Discovery":
            conn.discovery = True
            return
        if session_type != "Normal":
            raise LoginFailed(LOGIN_INVALID_REQUEST, f"unknown SessionType {session_type[:32]!r}")
        name = keys.get("TargetName", "")
        if not name:
            raise LoginFailed(LOGIN_MISSING_PARAMETER, "TargetName missing")
        target = conn.registry.lookup(name, conn.portal)
        if target is None:
            raise LoginFailed(LOGIN_NOT_FOUND, f"target {name[:224]} not served on this portal")
        conn.served = target
        if target.target.acl and conn.initiator_name not in target.target.acl:
            raise LoginFailed(LOGIN_AUTHORIZATION_FAILURE, "initiator not in the target's ACL")
        answers.append(("TargetPortalGroupTag", str(target.target.tpgt)))

    def _allowed_auth(self) -> list[str]:
        conn = self.conn
        if conn.discovery or conn.served is None:
            return ["None"]
        t = conn.served.target
        allowed = t.auth_method.split(",")
        if not t.initiator_credentials and "None" in allowed:
            allowed = ["None"]  # CHAP cannot succeed without credentials; do not offer it
        return allowed

    def _security(self, keys: dict[str, str], answers: list[tuple[str, str]]) -> None:
        state = self.state
        if "AuthMethod" in keys:
            allowed = self._allowed_auth()
            choice = next((m for m in keys["AuthMethod"].split(",") if m in allowed), None)
            if choice is None:
                raise LoginFailed(LOGIN_AUTH_FAILURE, "no acceptable AuthMethod offered")
            answers.append(("AuthMethod", choice))
            state.method = choice
            if choice == "None":
                state.auth_done = True
            else:
                state.chap_stage = "wait_a"
            return
        if state.method == "CHAP":
            if state.chap_stage == "wait_a":
                if "CHAP_A" not in keys:
                    raise LoginFailed(LOGIN_AUTH_FAILURE, "CHAP_A expected")
                if str(chap.CHAP_MD5) not in keys["CHAP_A"].split(","):
                    raise LoginFailed(LOGIN_AUTH_FAILURE, "only CHAP with MD5 is supported")
                state.chap_id, state.chap_challenge = chap.new_challenge()
                answers += [
                    ("CHAP_A", str(chap.CHAP_MD5)),
                    ("CHAP_I", str(state.chap_id)),
                    ("CHAP_C", chap.encode_hex(state.chap_challenge)),
                ]
                state.chap_stage = "wait_r"
                return
            if state.chap_stage == "wait_r":
                self._chap_verify(keys, answers)
                return
            if state.chap_stage == "done":
                return
            raise LoginFailed(LOGIN_AUTH_FAILURE, "unexpected CHAP state")
        if state.method is None and not state.auth_done:
            # No AuthMethod offered at all: that means None, if we allow it.
            if "None" in self._allowed_auth():
                state.auth_done = True
            else:
                raise LoginFailed(LOGIN_AUTH_FAILURE, "authentication required")

    def _chap_verify(self, keys: dict[str, str], answers: list[tuple[str, str]]) -> None:
        state = self.state
        assert self.conn.served is not None
        t = self.conn.served.target
        name = keys.get("CHAP_N")
        resp = keys.get("CHAP_R")
        if name is None or resp is None:
            raise LoginFailed(LOGIN_AUTH_FAILURE, "CHAP_N/CHAP_R expected")
        try:
            answer = chap.decode_binary(resp)
        except chap.ChapFormatError:
            raise LoginFailed(LOGIN_AUTH_FAILURE, "malformed CHAP_R") from None
        if not chap.check(state.chap_id, state.chap_challenge, name, answer, t.initiator_credentials):
            raise LoginFailed(LOGIN_AUTH_FAILURE, f"CHAP failed for user {name[:64]!r}")
        mutual_i = keys.get("CHAP_I")
        mutual_c = keys.get("CHAP_C")
        if (mutual_i is None) != (mutual_c is None):
            raise LoginFailed(LOGIN_AUTH_FAILURE, "CHAP_I and CHAP_C must come together")
        if mutual_i is None:
            if t.chap_policy == "Mutual":
                raise LoginFailed(LOGIN_AUTH_FAILURE, "target requires mutual CHAP")
        else:
            if t.target_credential is None:
                raise LoginFailed(LOGIN_AUTH_FAILURE, "initiator asked for mutual CHAP; no target credential")
            try:
                ident = int(mutual_i, 0)
                challenge = chap.decode_binary(mutual_c)  # type: ignore[arg-type]
            except (ValueError, chap.ChapFormatError):
                raise LoginFailed(LOGIN_AUTH_FAILURE, "malformed mutual CHAP challenge") from None
            if not 0 <= ident <= 255 or not challenge or challenge == state.chap_challenge:
                raise LoginFailed(LOGIN_AUTH_FAILURE, "unacceptable mutual CHAP challenge")
            user, secret = t.target_credential
            reply = chap.encode_hex(chap.response(ident, secret, challenge))
            answers += [("CHAP_N", user), ("CHAP_R", reply)]
        state.chap_stage = "done"
        state.auth_done = True
