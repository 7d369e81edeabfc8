"""One iSCSI connection: login phase, then full feature phase (RFC 7143).

Sessions have exactly one connection (MaxConnections=1, ErrorRecoveryLevel=0),
so a connection *is* its session here; that keeps sequence numbers in one
place and lets a withdraw drop a session by closing a socket.  PDUs are
handled in arrival order by one reader coroutine; a write that still waits for
Data-Out is parked in ``write_tasks`` so the reader can continue, which is
what lets R2T, unsolicited data and ABORT TASK interleave correctly.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from iscsi_helper.lab.wire import chap, scsi
from iscsi_helper.lab.wire.model import format_portal
from iscsi_helper.lab.wire.negotiation import (
    OUR_MAX_RECV_DATA_SEGMENT,
    SECURITY_KEYS,
    SessionParams,
    TextFormatError,
    encode_text,
    parse_text,
)
from iscsi_helper.lab.wire.pdu import (
    OP_DATA_IN,
    OP_DATA_OUT,
    OP_LOGIN_REQ,
    OP_LOGIN_RSP,
    OP_LOGOUT_REQ,
    OP_LOGOUT_RSP,
    OP_NOP_IN,
    OP_NOP_OUT,
    OP_R2T,
    OP_REJECT,
    OP_SCSI_CMD,
    OP_SCSI_RSP,
    OP_SNACK_REQ,
    OP_TASK_MGMT_REQ,
    OP_TASK_MGMT_RSP,
    OP_TEXT_REQ,
    OP_TEXT_RSP,
    PDU,
    REJECT_CMD_NOT_SUPPORTED,
    REJECT_PROTOCOL_ERROR,
    RESERVED_TAG,
    PDUError,
    PDUStream,
    decode_lun,
    new_pdu,
)

if TYPE_CHECKING:
    from iscsi_helper.lab.wire.server import ServedTarget, WireServer

LOG = logging.getLogger(__name__)

QUEUE_DEPTH = 64
LOGIN_TIMEOUT = 30.0

# Login status (class << 8 | detail), RFC 7143 11.13.5.
LOGIN_SUCCESS = 0x0000
LOGIN_AUTH_FAILURE = 0x0201
LOGIN_AUTHORIZATION_FAILURE = 0x0202
LOGIN_NOT_FOUND = 0x0203
LOGIN_UNSUPPORTED_VERSION = 0x0205
LOGIN_MISSING_PARAMETER = 0x0207
LOGIN_SESSION_NOT_FOUND = 0x020A
LOGIN_INVALID_REQUEST = 0x020B
LOGIN_TARGET_ERROR = 0x0300

STAGE_SECURITY = 0
STAGE_OPERATIONAL = 1
STAGE_FULL_FEATURE = 3

_tsih_counter = itertools.count(1)


def next_tsih() -> int:
    while True:
        value = next(_tsih_counter) & 0xFFFF
        if value:
            return value


def sn_lt(a: int, b: int) -> bool:
    """Serial number arithmetic (RFC 1982) on 32 bits."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


class LoginFailed(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ConnectionDropped(Exception):
    """The connection must end without further PDUs (protocol error at ERL 0)."""


@dataclass
class WriteTask:
    """A WRITE-type command waiting for Data-Out."""

    itt: int
    lun: int
    lun_raw: bytes
    cdb: bytes
    cmd_sn: int
    edtl: int
    buffer: bytearray
    received: int = 0
    next_r2t_offset: int = 0
    outstanding_r2t: int = 0
    r2t_sn: int = 0
    # Expected DataSN per sequence, keyed by TTT (RESERVED_TAG: unsolicited).
    data_sn: dict[int, int] = field(default_factory=dict)


class Connection:
    """Serves one TCP connection until logout, error, or withdrawal of its target."""

    def __init__(self, server: WireServer, portal: tuple[str, int],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.portal = portal
        self.stream = PDUStream(reader, writer)
        self.stream.max_recv_data = OUR_MAX_RECV_DATA_SEGMENT
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = format_portal(str(peer[0]), int(peer[1]))
        sock = writer.get_extra_info("sockname") or portal
        self.local = (str(sock[0]), int(sock[1]))
        self.params = SessionParams()
        self.target: ServedTarget | None = None
        self.discovery = False
        self.initiator_name = ""
        self.isid = b""
        self.tsih = 0
        self.stat_sn = 0
        self.exp_cmd_sn = 0
        self.write_tasks: dict[int, WriteTask] = {}
        self.ttt_counter = itertools.count(1)
        self.text_pending: tuple[int, bytes] | None = None  # (ttt, remaining data)
        self.text_in = b""
        self.closed = False
        self.full_feature = False
        self.luns: list[scsi.LunBackend] = []
        # Pending unit attention per LUN for this I_T nexus (SAM-5 5.14).
        self.unit_attention: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------
    @property
    def max_cmd_sn(self) -> int:
        return (self.exp_cmd_sn + QUEUE_DEPTH - 1) & 0xFFFFFFFF

    def close(self) -> None:
        """Drop the connection; the reader loop ends with EOF."""
        if not self.closed:
            self.closed = True
            self.writer.close()

    def _stamp(self, pdu: PDU, advance: bool = True) -> None:
        """Fill StatSN/ExpCmdSN/MaxCmdSN; advance StatSN for status-carrying PDUs."""
        pdu.set_u32(24, self.stat_sn)
        pdu.set_u32(28, self.exp_cmd_sn)
        pdu.set_u32(32, self.max_cmd_sn)
        if advance:
            self.stat_sn = (self.stat_sn + 1) & 0xFFFFFFFF

    async def run(self) -> None:
        try:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                await asyncio.wait_for(self._login(), LOGIN_TIMEOUT)
            except LoginFailed as exc:
                LOG.info("login from %s (%s) to %s refused: %s (status 0x%04x)", self.peer,
                         self.initiator_name or "?", self.target.target.iqn if self.target else "?",
                         exc, exc.status)
                return
            except TimeoutError:
                LOG.info("login from %s timed out", self.peer)
                return
            self.full_feature = True
            await self._full_feature()
        except (EOFError, ConnectionError, ConnectionDropped):
            pass
        except PDUError as exc:
            LOG.info("connection from %s dropped: %s", self.peer, exc)
        except Exception:
            LOG.exception("connection from %s failed", self.peer)
        finally:
            self.write_tasks.clear()
            self.server.connection_closed(self)
            self.close()

    # --- login -----------------------------------------------------------
    async def _login(self) -> None:
        state = _LoginState()
        while True:
            pdu = await self.stream.read()
            if pdu.opcode != OP_LOGIN_REQ:
                raise PDUError(f"opcode 0x{pdu.opcode:02x} before login completed")
            done = await self._login_step(pdu, state)
            await self.stream.drain()
            if done:
                return

    async def _login_step(self, pdu: PDU, state: _LoginState) -> bool:
        flags = pdu.flags
        transit = bool(flags & 0x80)
        cont = bool(flags & 0x40)
        csg = (flags >> 2) & 0x03
        nsg = flags & 0x03
        if state.first:
            state.first = False
            self.isid = bytes(pdu.bhs[8:14])
            self.tsih = pdu.u16(14)
            self.stat_sn = pdu.u32(28)
            self.exp_cmd_sn = pdu.u32(24)
        state.itt = pdu.itt
        try:
            if pdu.bhs[3] > 0 or pdu.bhs[2] < 0:  # version-min must allow version 0
                raise LoginFailed(LOGIN_UNSUPPORTED_VERSION, "unsupported iSCSI version")
            state.text += pdu.data
            if cont:
                self._login_response(state, csg, 0, False, b"", cont=False)
                return False
            try:
                pairs = parse_text(state.text)
            except TextFormatError as exc:
                raise LoginFailed(LOGIN_INVALID_REQUEST, str(exc)) from None
            state.text = b""
            if csg == 2 or (transit and (nsg == 2 or nsg <= csg)):
                raise LoginFailed(LOGIN_INVALID_REQUEST, "invalid login stage transition")
            answers: list[tuple[str, str]] = []
            keys = dict(pairs)
            if not state.identified:
                self._identify(keys, answers, state)
            if csg == STAGE_SECURITY:
                state.in_security = True
                self._security(keys, answers, state)
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
                answer = self.params.negotiate(key, value)
                if answer is not None:
                    answers.append((key, answer))
            if csg == STAGE_OPERATIONAL and not state.declared_mrdsl:
                state.declared_mrdsl = True
                answers.append(("MaxRecvDataSegmentLength", str(OUR_MAX_RECV_DATA_SEGMENT)))
            go = transit and state.auth_done
            final = go and nsg == STAGE_FULL_FEATURE
            if final:
                if self.tsih:
                    raise LoginFailed(LOGIN_SESSION_NOT_FOUND, "adding connections to sessions is not supported")
                self.tsih = next_tsih()
                if not self.discovery:
                    assert self.target is not None
                    if self.target.withdrawn:
                        raise LoginFailed(LOGIN_NOT_FOUND, "target withdrawn during login")
                    self.luns = self.target.luns
                    self.server.session_started(self)
            self._login_response(state, csg, nsg if go else 0, go, encode_text(answers))
            if final:
                self.stream.header_digest = self.params.header_digest
                self.stream.data_digest = self.params.data_digest
                LOG.info("login: %s from %s to %s (%s), header digest %s, data digest %s",
                         self.initiator_name, self.peer,
                         "discovery" if self.discovery else self.target.target.iqn,  # type: ignore[union-attr]
                         format_portal(*self.portal), "CRC32C" if self.params.header_digest else "None",
                         "CRC32C" if self.params.data_digest else "None")
            return final
        except LoginFailed as exc:
            rsp = new_pdu(OP_LOGIN_RSP, flags=(csg << 2) & 0x0C, itt=pdu.itt)
            rsp.bhs[8:14] = self.isid
            self._stamp(rsp)
            rsp.set_u16(36, exc.status)
            self.stream.write(rsp)
            await self.stream.drain()
            raise

    def _login_response(self, state: _LoginState, csg: int, nsg: int, transit: bool, data: bytes,
                        cont: bool = False) -> None:
        flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        rsp = new_pdu(OP_LOGIN_RSP, flags=flags, itt=state.itt)
        rsp.bhs[8:14] = self.isid
        if transit and nsg == STAGE_FULL_FEATURE:
            rsp.set_u16(14, self.tsih)
        self._stamp(rsp)
        rsp.data = data
        self.stream.write(rsp)

    def _identify(self, keys: dict[str, str], answers: list[tuple[str, str]], state: _LoginState) -> None:
        state.identified = True
        self.initiator_name = keys.get("InitiatorName", "")
        if not self.initiator_name:
            raise LoginFailed(LOGIN_MISSING_PARAMETER, "InitiatorName missing")
        session_type = keys.get("SessionType", "Normal")
        if session_type == "Discovery":
            self.discovery = True
            return
        if session_type != "Normal":
            raise LoginFailed(LOGIN_INVALID_REQUEST, f"unknown SessionType {session_type[:32]!r}")
        name = keys.get("TargetName", "")
        if not name:
            raise LoginFailed(LOGIN_MISSING_PARAMETER, "TargetName missing")
        target = self.server.lookup(name, self.portal)
        if target is None:
            raise LoginFailed(LOGIN_NOT_FOUND, f"target {name[:224]} not served on this portal")
        self.target = target
        if target.target.acl and self.initiator_name not in target.target.acl:
            raise LoginFailed(LOGIN_AUTHORIZATION_FAILURE, "initiator not in the target's ACL")
        answers.append(("TargetPortalGroupTag", str(target.target.tpgt)))

    def _allowed_auth(self) -> list[str]:
        if self.discovery or self.target is None:
            return ["None"]
        t = self.target.target
        allowed = t.auth_method.split(",")
        if not t.initiator_credentials and "None" in allowed:
            allowed = ["None"]  # CHAP cannot succeed without credentials; do not offer it
        return allowed

    def _security(self, keys: dict[str, str], answers: list[tuple[str, str]], state: _LoginState) -> None:
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
                answers += [("CHAP_A", str(chap.CHAP_MD5)), ("CHAP_I", str(state.chap_id)),
                            ("CHAP_C", chap.encode_hex(state.chap_challenge))]
                state.chap_stage = "wait_r"
                return
            if state.chap_stage == "wait_r":
                self._chap_verify(keys, answers, state)
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

    def _chap_verify(self, keys: dict[str, str], answers: list[tuple[str, str]], state: _LoginState) -> None:
        assert self.target is not None
        t = self.target.target
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
            answers += [("CHAP_N", user), ("CHAP_R", chap.encode_hex(chap.response(ident, secret, challenge)))]
        state.chap_stage = "done"
        state.auth_done = True

    # --- full feature phase ---------------------------------------------
    async def _full_feature(self) -> None:
        while True:
            pdu = await self.stream.read()
            op = pdu.opcode
            if op == OP_SCSI_CMD:
                await self._scsi_command(pdu)
            elif op == OP_DATA_OUT:
                await self._data_out(pdu)
            elif op == OP_NOP_OUT:
                self._nop_out(pdu)
            elif op == OP_TEXT_REQ:
                self._text(pdu)
            elif op == OP_TASK_MGMT_REQ:
                self._task_mgmt(pdu)
            elif op == OP_LOGOUT_REQ:
                self._logout(pdu)
                await self.stream.drain()
                return
            elif op == OP_SNACK_REQ:
                self._reject(pdu, REJECT_CMD_NOT_SUPPORTED)
            else:
                self._reject(pdu, REJECT_PROTOCOL_ERROR)
            await self.stream.drain()

    def _accept_cmd_sn(self, pdu: PDU) -> bool:
        """Window check and ExpCmdSN advance; out-of-window commands are silently ignored."""
        cmd_sn = pdu.u32(24)
        if pdu.immediate:
            return True
        if not (sn_le(self.exp_cmd_sn, cmd_sn) and sn_le(cmd_sn, self.max_cmd_sn)):
            LOG.debug("%s: CmdSN %d outside window [%d, %d]; ignored", self.peer, cmd_sn,
                      self.exp_cmd_sn, self.max_cmd_sn)
            return False
        self.exp_cmd_sn = (cmd_sn + 1) & 0xFFFFFFFF
        return True

    def _reject(self, pdu: PDU, reason: int) -> None:
        rsp = new_pdu(OP_REJECT)
        rsp.bhs[2] = reason
        self._stamp(rsp)
        rsp.data = bytes(pdu.bhs)
        self.stream.write(rsp)

    async def _scsi_command(self, pdu: PDU) -> None:
        if self.discovery:
            self._reject(pdu, REJECT_PROTOCOL_ERROR)
            return
        if not self._accept_cmd_sn(pdu):
            return
        flags = pdu.flags
        write = bool(flags & 0x20)
        edtl = pdu.u32(20)
        cdb = bytes(pdu.bhs[32:48])
        if pdu.ahs:
            cdb += self._extended_cdb(pdu.ahs)
        lun = decode_lun(pdu.lun_raw)
        if write and edtl > scsi.MAX_TRANSFER_BYTES + 65536:
            # Refuse before allocating: the EDTL comes from the network.
            sense = scsi.fixed_sense(scsi.ILLEGAL_REQUEST, *scsi.INVALID_FIELD_IN_CDB)
            self._scsi_response(pdu.itt, scsi.ScsiOutcome(scsi.CHECK_CONDITION, b"", sense), 0, 0, 0)
            return
        if write and edtl:
            task = WriteTask(pdu.itt, lun, pdu.lun_raw, cdb, pdu.u32(24), edtl, bytearray(edtl))
            immediate = pdu.data[:edtl]
            if immediate and not self.params.immediate_data:
                raise ConnectionDropped("immediate data not negotiated")
            task.buffer[:len(immediate)] = immediate
            task.received = len(immediate)
            unsolicited = not pdu.final and not self.params.initial_r2t
            task.next_r2t_offset = min(edtl, self.params.first_burst) if unsolicited else len(immediate)
            if unsolicited:
                task.data_sn[RESERVED_TAG] = 0
            if task.received >= edtl:
                await self._finish_write(task)
                return
            self.write_tasks[task.itt] = task
            self._send_r2ts(task)
            return
        await self._run_command(pdu.itt, lun, pdu.lun_raw, cdb, edtl, b"", write)

    @staticmethod
    def _extended_cdb(ahs: bytes) -> bytes:
        out = b""
        pos = 0
        while pos + 3 <= len(ahs):
            length = int.from_bytes(ahs[pos:pos + 2], "big")
            ahs_type = ahs[pos + 2]
            if ahs_type == 0x01:  # extended CDB: one reserved byte, then the rest of the CDB
                out += ahs[pos + 4:pos + 3 + length]
            pos += 3 + length
            pos += (-pos) % 4
        return out

    def _send_r2ts(self, task: WriteTask) -> None:
        while task.outstanding_r2t < self.params.max_outstanding_r2t and task.next_r2t_offset < task.edtl:
            length = min(self.params.max_burst, task.edtl - task.next_r2t_offset)
            ttt = next(self.ttt_counter) & 0xFFFFFFFF
            if ttt == RESERVED_TAG:
                ttt = next(self.ttt_counter) & 0xFFFFFFFF
            r2t = new_pdu(OP_R2T, itt=task.itt)
            r2t.lun_raw = task.lun_raw
            r2t.set_u32(20, ttt)
            self._stamp(r2t, advance=False)
            r2t.set_u32(36, task.r2t_sn)
            r2t.set_u32(40, task.next_r2t_offset)
            r2t.set_u32(44, length)
            task.data_sn[ttt] = 0
            task.r2t_sn += 1
            task.next_r2t_offset += length
            task.outstanding_r2t += 1
            self.stream.write(r2t)

    async def _data_out(self, pdu: PDU) -> None:
        task = self.write_tasks.get(pdu.itt)
        if task is None:
            LOG.debug("%s: Data-Out for unknown task 0x%08x ignored", self.peer, pdu.itt)
            return
        ttt = pdu.u32(20)
        offset = pdu.u32(40)
        data = pdu.data
        expected_sn = task.data_sn.get(ttt)
        if expected_sn is None:
            raise ConnectionDropped("Data-Out with unknown Target Transfer Tag")
        if pdu.u32(36) != expected_sn:
            # ERL 0 cannot recover a lost Data-Out: the connection must go.
            raise ConnectionDropped(f"Data-Out DataSN {pdu.u32(36)} where {expected_sn} was expected")
        task.data_sn[ttt] = expected_sn + 1
        if offset + len(data) > task.edtl:
            raise ConnectionDropped("Data-Out beyond the expected data transfer length")
        task.buffer[offset:offset + len(data)] = data
        task.received += len(data)
        if pdu.final:
            del task.data_sn[ttt]
            if ttt != RESERVED_TAG:
                task.outstanding_r2t -= 1
        if task.received >= task.edtl and not task.outstanding_r2t:
            del self.write_tasks[task.itt]
            await self._finish_write(task)
        elif pdu.final:
            self._send_r2ts(task)

    async def _finish_write(self, task: WriteTask) -> None:
        await self._run_command(task.itt, task.lun, task.lun_raw, task.cdb, task.edtl,
                                bytes(task.buffer), True, exp_data_sn=task.r2t_sn)

    async def _run_command(self, itt: int, lun: int, lun_raw: bytes, cdb: bytes, edtl: int,
                           data_out: bytes, write: bool, exp_data_sn: int = 0) -> None:
        assert self.target is not None
        if self.target.withdrawn:
            self.close()
            return
        if write and 0 <= lun < len(self.luns):
            needed = self.luns[lun].data_out_length(cdb)
        else:
            needed = 0
        outcome = self._take_unit_attention(lun, cdb) or await scsi.execute(self.luns, lun, cdb, data_out)
        if write:
            residual_flags, residual = self._residual(edtl, needed)
            self._scsi_response(itt, outcome, residual_flags, residual, exp_data_sn)
            return
        data = outcome.data
        residual_flags, residual = self._residual(edtl, len(data))
        data = data[:edtl]
        if outcome.status == scsi.GOOD and data:
            self._send_data_in(itt, lun_raw, data, residual_flags, residual)
            return
        sent = self._send_data_in(itt, lun_raw, data, 0, 0, with_status=False) if data else 0
        self._scsi_response(itt, outcome, residual_flags, residual, sent)

    def _take_unit_attention(self, lun: int, cdb: bytes) -> scsi.ScsiOutcome | None:
        """Report a pending unit attention instead of running the command, as SAM requires.

        INQUIRY and REPORT LUNS pass through; REQUEST SENSE returns the
        condition as its data.
        """
        ua = self.unit_attention.get(lun)
        if ua is None or not cdb or cdb[0] in (0x12, 0xA0):
            return None
        del self.unit_attention[lun]
        sense = scsi.fixed_sense(scsi.UNIT_ATTENTION, *ua)
        if cdb[0] == 0x03:
            return scsi.ScsiOutcome(scsi.GOOD, sense[:cdb[4]])
        return scsi.ScsiOutcome(scsi.CHECK_CONDITION, b"", sense)

    def _raise_unit_attention(self, luns: list[int]) -> None:
        """A reset is reported to every nexus of the target, the issuer's included.

        libiscsi's multipath reset test expects the issuing path to see it too.
        """
        assert self.target is not None
        for conn in self.target.connections:
            for lun in luns:
                conn.unit_attention[lun] = scsi.RESET_OCCURRED

    @staticmethod
    def _residual(edtl: int, actual: int) -> tuple[int, int]:
        if actual < edtl:
            return 0x02, edtl - actual  # U: underflow
        if actual > edtl:
            return 0x04, actual - edtl  # O: overflow
        return 0, 0

    def _send_data_in(self, itt: int, lun_raw: bytes, data: bytes, residual_flags: int, residual: int,
                      with_status: bool = True) -> int:
        """Send read data as Data-In PDUs, status collapsed into the last one.  Returns the PDU count."""
        seg = self.params.initiator_max_recv_data
        burst = self.params.max_burst
        view = memoryview(data)
        total = len(data)
        offset = 0
        data_sn = 0
        while offset < total:
            burst_end = min(total, (offset // burst + 1) * burst)
            length = min(seg, burst_end - offset)
            end = offset + length
            last = end >= total
            pdu = new_pdu(OP_DATA_IN, flags=0, itt=itt)
            flags = 0
            if end >= burst_end:
                flags |= 0x80
            pdu.lun_raw = lun_raw
            pdu.set_u32(20, RESERVED_TAG)
            if last and with_status:
                flags |= 0x80 | 0x01 | residual_flags
                pdu.bhs[3] = scsi.GOOD
                self._stamp(pdu)
                pdu.set_u32(44, residual)
            else:
                pdu.set_u32(28, self.exp_cmd_sn)
                pdu.set_u32(32, self.max_cmd_sn)
            pdu.flags = flags
            pdu.set_u32(36, data_sn)
            pdu.set_u32(40, offset)
            pdu.data = bytes(view[offset:end])
            self.stream.write(pdu)
            data_sn += 1
            offset = end
        return data_sn

    def _scsi_response(self, itt: int, outcome: scsi.ScsiOutcome, residual_flags: int, residual: int,
                       exp_data_sn: int) -> None:
        rsp = new_pdu(OP_SCSI_RSP, flags=0x80 | residual_flags, itt=itt)
        rsp.bhs[2] = 0x00  # command completed at target
        rsp.bhs[3] = outcome.status
        self._stamp(rsp)
        rsp.set_u32(36, exp_data_sn)
        rsp.set_u32(44, residual)
        if outcome.sense:
            rsp.data = len(outcome.sense).to_bytes(2, "big") + outcome.sense
        self.stream.write(rsp)

    def _nop_out(self, pdu: PDU) -> None:
        if pdu.itt == RESERVED_TAG:
            return  # an answer to a NOP-In of ours, or a pure CmdSN/ExpStatSN update
        if not self._accept_cmd_sn(pdu):
            return
        rsp = new_pdu(OP_NOP_IN, itt=pdu.itt)
        rsp.lun_raw = pdu.lun_raw
        rsp.set_u32(20, RESERVED_TAG)
        self._stamp(rsp)
        rsp.data = pdu.data[:self.params.initiator_max_recv_data]
        self.stream.write(rsp)

    def _text(self, pdu: PDU) -> None:
        if not self._accept_cmd_sn(pdu):
            return
        ttt = pdu.u32(20)
        if ttt != RESERVED_TAG and self.text_pending and self.text_pending[0] == ttt:
            self._text_send(pdu.itt, pdu.lun_raw, self.text_pending[1])
            return
        self.text_pending = None
        self.text_in += pdu.data
        if pdu.flags & 0x40:  # C: more request text follows
            rsp = new_pdu(OP_TEXT_RSP, flags=0x00, itt=pdu.itt)
            rsp.set_u32(20, RESERVED_TAG)
            self._stamp(rsp)
            self.stream.write(rsp)
            return
        try:
            pairs = parse_text(self.text_in)
        except TextFormatError:
            pairs = []
        self.text_in = b""
        answers: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "SendTargets":
                answers += self.server.send_targets(self, value)
            else:
                answer = self.params.negotiate(key, value) if key not in SECURITY_KEYS else "Reject"
                if answer is not None:
                    answers.append((key, answer))
        self._text_send(pdu.itt, pdu.lun_raw, encode_text(answers))

    def _text_send(self, itt: int, lun_raw: bytes, data: bytes) -> None:
        limit = self.params.initiator_max_recv_data
        chunk, rest = data[:limit], data[limit:]
        rsp = new_pdu(OP_TEXT_RSP, flags=0x80, itt=itt)
        rsp.lun_raw = lun_raw
        if rest:
            ttt = next(self.ttt_counter) & 0x7FFFFFFF
            rsp.flags = 0x40
            rsp.set_u32(20, ttt)
            self.text_pending = (ttt, rest)
        else:
            rsp.set_u32(20, RESERVED_TAG)
            self.text_pending = None
        self._stamp(rsp)
        rsp.data = chunk
        self.stream.write(rsp)

    def _task_mgmt(self, pdu: PDU) -> None:
        function = pdu.flags & 0x7F
        if not self._accept_cmd_sn(pdu):
            return
        lun = decode_lun(pdu.lun_raw)
        response = 0  # function complete
        if self.discovery:
            response = 255
        elif function == 1:  # ABORT TASK
            ref = pdu.u32(20)
            if self.write_tasks.pop(ref, None) is None:
                ref_cmd_sn = pdu.u32(32)
                # Not here: complete if it may still arrive (in window, before us), else unknown.
                in_window = sn_le(self.exp_cmd_sn, ref_cmd_sn) and sn_lt(ref_cmd_sn, pdu.u32(24))
                response = 0 if in_window else 1
        elif function in (2, 4, 5):  # ABORT TASK SET, CLEAR TASK SET, LUN RESET
            if not 0 <= lun < len(self.luns):
                response = 2
            else:
                for itt in [i for i, t in self.write_tasks.items() if t.lun == lun]:
                    del self.write_tasks[itt]
                if function == 5:
                    self._raise_unit_attention([lun])
        elif function in (6, 7):  # TARGET WARM/COLD RESET
            self.write_tasks.clear()
            self._raise_unit_attention(list(range(len(self.luns))))
        elif function == 3:  # CLEAR ACA: we never establish ACA
            pass
        elif function == 8:
            response = 4  # task reassignment needs ERL 2
        else:
            response = 5
        LOG.info("%s: task management function %d on LUN %d -> %d", self.peer, function, lun, response)
        rsp = new_pdu(OP_TASK_MGMT_RSP, itt=pdu.itt)
        rsp.bhs[2] = response
        self._stamp(rsp)
        self.stream.write(rsp)
        if function == 7 and response == 0:
            self.close()  # a cold reset ends the I_T nexus; buffered data is still flushed

    def _logout(self, pdu: PDU) -> None:
        self._accept_cmd_sn(pdu)
        reason = pdu.flags & 0x7F
        rsp = new_pdu(OP_LOGOUT_RSP, itt=pdu.itt)
        rsp.bhs[2] = 0 if reason in (0, 1) else 2
        self._stamp(rsp)
        self.stream.write(rsp)


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
