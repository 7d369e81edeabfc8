"""The full feature phase of one connection (RFC 7143 4.2, 11.2-11.11, 11.14).

One reader coroutine takes PDUs off the socket in order and never waits for
a command to finish: each SCSI command enters its logical unit's task set
(:mod:`iscsi_helper.lab.wire.ordering`) in CmdSN order and then either
completes on the spot (a read the page cache can serve, a command without
I/O, nothing earlier in its way) or runs as its own coroutine. Up to
:data:`~iscsi_helper.lab.wire.connection.QUEUE_DEPTH` commands are in flight;
the CmdSN window advertised in every response (MaxCmdSN) shrinks by one for
each of them and grows back as they complete, so an initiator can never
queue more than that.

Data is moved with few copies: read data goes from ``preadv`` into the
socket buffer with its header in one join; write data goes from the PDU's
bytes to ``pwritev`` as it arrives, a burst at a time, instead of into a
buffer the size of the whole command. R2Ts are sent only for data that fits
the connection's and the daemon's budget (:mod:`iscsi_helper.lab.wire.budget`),
and the reader stops reading while unsolicited data has put the connection
over its limit or while the peer is not reading our responses.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import struct

from iscsi_helper.lab.wire import scsi
from iscsi_helper.lab.wire.budget import ConnectionBudget
from iscsi_helper.lab.wire.connection import ConnectionDropped, ConnectionState, sn_le, sn_lt
from iscsi_helper.lab.wire.negotiation import SECURITY_KEYS, TextFormatError, encode_text, parse_text
from iscsi_helper.lab.wire.ordering import ATTR_ORDERED, Entry, wait_for
from iscsi_helper.lab.wire.pdu import (
    OP_DATA_OUT,
    OP_LOGOUT_REQ,
    OP_LOGOUT_RSP,
    OP_NOP_IN,
    OP_NOP_OUT,
    OP_REJECT,
    OP_SCSI_CMD,
    OP_SNACK_REQ,
    OP_TASK_MGMT_REQ,
    OP_TASK_MGMT_RSP,
    OP_TEXT_REQ,
    OP_TEXT_RSP,
    PDU,
    REJECT_CMD_NOT_SUPPORTED,
    REJECT_PROTOCOL_ERROR,
    RESERVED_TAG,
    decode_lun,
    new_pdu,
)
from iscsi_helper.lab.wire.sense import (
    CHECK_CONDITION,
    GOOD,
    RESERVATION_CONFLICT,
    RESET_OCCURRED,
    ReservationConflict,
    ScsiOutcome,
    SenseError,
)

LOG = logging.getLogger(__name__)

# Reads up to this size that the page cache holds are answered without a coroutine.
INLINE_READ_MAX = 256 * 1024
# Larger reads are staged and sent a chunk at a time, each chunk charged to the budget.
READ_CHUNK = 1024 * 1024
# Stop reading requests while this much of our output waits for the peer.
OUTPUT_HIGH_WATER = 4 * 1024 * 1024
# Text request data accumulated over continued Text PDUs (RFC 7143 11.10).
MAX_TEXT_REQUEST = 32 * 1024

# Data-In / SCSI Response / R2T headers (RFC 7143 11.7.1, 11.4, 11.8).
_DATA_IN = struct.Struct(">BBBBI8sIIIIIIII")
_SCSI_RSP = struct.Struct(">BBBBI8sIIIIIIII")
_R2T = struct.Struct(">BBBBI8sIIIIIIII")
_NO_LUN = bytes(8)


class Command:
    """A SCSI command between its arrival and its response."""

    __slots__ = (
        "itt",
        "lun",
        "lun_raw",
        "cdb",
        "edtl",
        "attribute",
        "entry",
        "blockers",
        "task",
        "expected",
        "chunks",
        "held",
        "unsolicited_end",
        "unsolicited_sn",
        "sequences",
        "r2t_end",
        "r2t_sn",
        "data_event",
        "done",
        "stream",
        "answered",
        "write",
    )

    def __init__(
        self,
        itt: int,
        lun: scsi.LunBackend | None,
        lun_raw: bytes,
        cdb: bytes,
        edtl: int,
        attribute: int,
        write: bool,
    ) -> None:
        self.itt = itt
        self.write = write
        self.lun = lun
        self.lun_raw = lun_raw
        self.cdb = cdb
        self.edtl = edtl
        self.attribute = attribute
        self.entry: Entry | None = None
        self.blockers: list[Entry] = []
        self.task: asyncio.Task[None] | None = None
        # Data-Out: bytes received so far arrive strictly in offset order (DataPDUInOrder,
        # DataSequenceInOrder = Yes), so "expected" is both the next offset and the count.
        self.expected = 0
        self.chunks: list[bytes] = []
        self.held = 0  # bytes charged to the budget and not yet given back
        self.unsolicited_end = 0
        self.unsolicited_sn = 0
        self.sequences: dict[int, list[int]] = {}  # TTT -> [next DataSN, end offset]
        self.r2t_end = 0
        self.r2t_sn = 0
        self.data_event: asyncio.Event | None = None  # made when a write first waits
        self.done = False
        self.stream = False
        self.answered = False


class FullFeaturePhase:
    def __init__(self, conn: ConnectionState) -> None:
        self.conn = conn
        self.stream = conn.stream
        self.params = conn.params
        self.transport = conn.writer.transport
        self.budget = ConnectionBudget(conn.registry.budget)
        self.commands: dict[int, Command] = {}
        self.ttt_counter = itertools.count(1)
        self.text_pending: tuple[int, bytes] | None = None
        self.text_in = b""
        self.luns: list[scsi.LunBackend] = conn.served.luns if conn.served is not None else []

    # --- reader ------------------------------------------------------------
    async def run(self) -> None:
        conn = self.conn
        stream = self.stream
        try:
            while True:
                if self.budget.over():
                    await self.budget.below_limit()
                if self.transport.get_write_buffer_size() > OUTPUT_HIGH_WATER:
                    await stream.drain()
                pdu = await stream.read()
                op = pdu.opcode
                if op == OP_SCSI_CMD:
                    self._scsi_command(pdu)
                elif op == OP_DATA_OUT:
                    self._data_out(pdu)
                elif op == OP_NOP_OUT:
                    self._nop_out(pdu)
                elif op == OP_TEXT_REQ:
                    self._text(pdu)
                elif op == OP_TASK_MGMT_REQ:
                    self._task_mgmt(pdu)
                elif op == OP_LOGOUT_REQ:
                    await self._logout(pdu)
                    await stream.drain()
                    return
                elif op == OP_SNACK_REQ:
                    self._reject(pdu, REJECT_CMD_NOT_SUPPORTED)
                else:
                    self._reject(pdu, REJECT_PROTOCOL_ERROR)
                if conn.closed:
                    return
        finally:
            self.abort_tasks(None)

    async def shutdown(self) -> None:
        """The connection is gone: end every command and give back all it held."""
        tasks = [c.task for c in self.commands.values() if c.task is not None and not c.task.done()]
        self.abort_tasks(None)
        if tasks:
            await asyncio.wait(tasks)
        self.budget.release_all()

    def abort_tasks(self, lun: int | None) -> None:
        """End commands without answering them (reset, abort task set, connection gone)."""
        for command in list(self.commands.values()):
            if lun is None or (command.lun is not None and command.lun.index == lun):
                self._drop(command)

    def _drop(self, command: Command) -> None:
        command.answered = True  # nothing more goes out for it
        if command.task is not None and not command.task.done():
            command.task.cancel()
        else:
            self._finish(command)

    def _task_done(self, command: Command, _task: asyncio.Task[None]) -> None:
        self._finish(command)

    def _finish(self, command: Command) -> None:
        """Release everything a command held; safe to call more than once."""
        if command.done:
            return
        command.done = True
        if self.commands.get(command.itt) is command:
            del self.commands[command.itt]
        if command.entry is not None and command.lun is not None:
            command.lun.task_set.leave(command.entry)
        if command.held:
            self.budget.give(command.held)
            command.held = 0
        command.chunks = []
        self.conn.in_flight -= 1

    # --- CmdSN window ------------------------------------------------------
    def _accept_cmd_sn(self, pdu: PDU) -> bool:
        """Window check and ExpCmdSN advance.

        Out-of-window commands are silently ignored (RFC 7143 4.2.2.1).
        """
        conn = self.conn
        cmd_sn = pdu.u32(24)
        if pdu.immediate:
            return True
        if not (sn_le(conn.exp_cmd_sn, cmd_sn) and sn_le(cmd_sn, conn.max_cmd_sn)):
            LOG.debug(
                "%s: CmdSN %d outside window [%d, %d]; ignored",
                conn.peer,
                cmd_sn,
                conn.exp_cmd_sn,
                conn.max_cmd_sn,
            )
            return False
        conn.exp_cmd_sn = (cmd_sn + 1) & 0xFFFFFFFF
        return True

    def _reject(self, pdu: PDU, reason: int) -> None:
        rsp = new_pdu(OP_REJECT)
        rsp.bhs[2] = reason
        self.conn.stamp(rsp)
        rsp.data = bytes(pdu.bhs)
        self.stream.write(rsp)

    # --- SCSI commands -----------------------------------------------------
    def _scsi_command(self, pdu: PDU) -> None:
        conn = self.conn
        if conn.discovery:
            self._reject(pdu, REJECT_PROTOCOL_ERROR)
            return
        if not self._accept_cmd_sn(pdu):
            return
        bhs = pdu.bhs
        flags = bhs[1]
        itt, edtl = struct.unpack_from(">II", bhs, 16)
        cdb = bytes(bhs[32:48])
        if pdu.ahs:
            cdb += _extended_cdb(pdu.ahs)
        lun_raw = bytes(bhs[8:16])
        lun_number = decode_lun(lun_raw)
        lun = self.luns[lun_number] if 0 <= lun_number < len(self.luns) else None
        write = bool(flags & 0x20)
        conn.in_flight += 1
        if (
            not write
            and lun is not None
            and cdb[0] in scsi.READ_OPS
            and flags & 0x07 != ATTR_ORDERED
            and itt not in self.commands
            and self._fast_read(itt, lun, lun_raw, cdb, edtl)
        ):
            conn.in_flight -= 1
            return
        command = Command(itt, lun, lun_raw, cdb, edtl, flags & 0x07, write)
        if itt in self.commands:
            raise ConnectionDropped(f"task tag 0x{itt:08x} already in use")
        if write and pdu.data and not self.params.immediate_data:
            raise ConnectionDropped("immediate data not negotiated")
        if len(pdu.data) > edtl:
            raise ConnectionDropped("immediate data beyond the expected data transfer length")
        outcome = self._refuse_at_arrival(command, write)
        if outcome is not None:
            self._complete(command, outcome)
            self._finish(command)
            return
        assert lun is not None
        op = cdb[0]
        command.stream = op in scsi.WRITE_OPS
        extent, writes = scsi.extent_of(cdb)
        if (
            op in scsi.READ_OPS
            and not write
            and command.attribute != ATTR_ORDERED
            and lun.task_set.clear_for(extent, writes)
            and self._read_inline(command)
        ):
            return
        if op in scsi.BARRIER_OPS:
            command.attribute = ATTR_ORDERED
        command.entry, command.blockers = lun.task_set.enter(extent, writes, command.attribute)
        self.commands[itt] = command
        if write and edtl:
            if pdu.data:
                command.held += len(pdu.data)
                self.budget.force(len(pdu.data))
                self._accept_data(command, pdu.data)
            if not pdu.final and not self.params.initial_r2t:
                command.unsolicited_end = min(edtl, self.params.first_burst)
                command.sequences[RESERVED_TAG] = [0, command.unsolicited_end]
            else:
                command.unsolicited_end = len(pdu.data)
            command.r2t_end = max(command.unsolicited_end, len(pdu.data))
        command.task = asyncio.get_running_loop().create_task(self._run(command, write))
        # A task cancelled before it first runs never executes its finally clause:
        # the callback is what releases the command's task set entry then.
        command.task.add_done_callback(functools.partial(self._task_done, command))

    def _refuse_at_arrival(self, command: Command, write: bool) -> ScsiOutcome | None:
        """What is decided in arrival order: LUN, CDB size limits, pending unit attention."""
        cdb, lun = command.cdb, command.lun
        if not cdb:
            return scsi.invalid_cdb()
        if cdb[0] == 0xA0:
            try:
                return ScsiOutcome(GOOD, scsi.report_luns(cdb, len(self.luns)))
            except SenseError as exc:
                return ScsiOutcome(CHECK_CONDITION, b"", exc.sense())
            except (IndexError, struct.error):
                return scsi.invalid_cdb()
        if lun is None:
            return scsi.no_such_lun(cdb)
        if write:
            limit = scsi.MAX_TRANSFER_BYTES if cdb[0] in scsi.WRITE_OPS else scsi.MAX_BUFFERED_DATA_OUT
            if command.edtl > limit:  # refused before anything is held for it
                return scsi.invalid_cdb()
        return lun.take_unit_attention(self.conn.nexus, cdb)

    def _fast_read(self, itt: int, lun: scsi.LunBackend, lun_raw: bytes, cdb: bytes, edtl: int) -> bool:
        """The common case answered with nothing allocated but the data.

        A small cached READ with nothing in its way.
        """
        if lun.unit_attentions or lun.reservations.type or lun.reservations.spc2_holder is not None:
            return False
        try:
            lba, blocks = lun.read_request(cdb)
        except (SenseError, IndexError, struct.error):
            return False
        length = blocks * lun.block_size
        if (
            not 0 < length <= INLINE_READ_MAX
            or length > edtl
            or not lun.task_set.clear_for((lba, lba + blocks), False)
        ):
            return False
        data = lun.read_inline(lba, blocks)
        if data is None:
            return False
        conn = self.conn
        header = _DATA_IN.pack(
            0x25,
            0x81 | (0x02 if length < edtl else 0),
            0,
            GOOD,
            length,
            lun_raw,
            itt,
            RESERVED_TAG,
            conn.stat_sn,
            conn.exp_cmd_sn,
            (conn.max_cmd_sn + 1) & 0xFFFFFFFF,
            0,
            0,
            edtl - length,
        )
        if length > self.params.initiator_max_recv_data or length > self.params.max_burst:
            return False
        conn.stat_sn = (conn.stat_sn + 1) & 0xFFFFFFFF
        self.stream.write_raw(header, data)
        return True

    def _read_inline(self, command: Command) -> bool:
        """Answer a READ now if nothing stands in its way and the page cache has the blocks."""
        lun = command.lun
        assert lun is not None
        try:
            lun.reservations.check_access(self.conn.nexus, command.cdb)
            lba, blocks = lun.read_request(command.cdb)
        except (ReservationConflict, SenseError, IndexError, struct.error):
            return False  # the coroutine path reports it
        length = blocks * lun.block_size
        if length > INLINE_READ_MAX:
            return False
        data = lun.read_inline(lba, blocks) if blocks else b""
        if data is None:
            return False
        self._answer_read(command, data, length)
        self._finish(command)
        return True

    async def _run(self, command: Command, write: bool) -> None:
        lun = command.lun
        assert lun is not None
        try:
            if command.blockers:
                await wait_for(command.blockers)
            try:
                lun.reservations.check_access(self.conn.nexus, command.cdb)
                op = command.cdb[0]
                if op in scsi.READ_OPS:
                    await self._read(command)
                    return
                if op in scsi.WRITE_OPS:
                    await self._write(command)
                    return
                data = await self._collect(command) if write and command.edtl else b""
                outcome = await self._execute(command, data)
            except ReservationConflict:
                outcome = ScsiOutcome(RESERVATION_CONFLICT)
            except SenseError as exc:
                outcome = ScsiOutcome(CHECK_CONDITION, b"", exc.sense())
            except (IndexError, struct.error):
                outcome = scsi.invalid_cdb()
            self._complete(command, outcome)
        except asyncio.CancelledError:
            pass
        except ConnectionDropped as exc:
            LOG.info("%s: %s", self.conn.peer, exc)
            self.conn.close()
        finally:
            self._finish(command)
            await self._drain_if_backed_up()

    async def _execute(self, command: Command, data: bytes) -> ScsiOutcome:
        lun = command.lun
        assert lun is not None
        op = command.cdb[0]
        sync = lun.sync_handler(op)
        if sync is not None:
            result = sync(lun, command.cdb, data, self.conn.nexus)
        else:
            handler = lun.async_handler(op)
            if handler is None:
                raise SenseError(0x05, (0x20, 0x00))
            result = await handler(lun, command.cdb, data, self.conn.nexus)
        return ScsiOutcome(GOOD, result)

    # --- reads -------------------------------------------------------------
    async def _read(self, command: Command) -> None:
        lun = command.lun
        assert lun is not None
        lba, blocks = lun.read_request(command.cdb)
        length = blocks * lun.block_size
        if length <= INLINE_READ_MAX:
            data = lun.read_inline(lba, blocks) if blocks else b""
            if data is None:
                data = await lun.read_blocks(lba, blocks)
            self._answer_read(command, data, length)
            return
        # Large: a chunk at a time, each staged only while it is being sent.
        to_send = min(length, command.edtl)
        bs = lun.block_size
        offset = 0
        data_sn = 0
        while offset < to_send:
            size = min(READ_CHUNK, to_send - offset)
            await self.budget.take(size)
            command.held += size
            try:
                first = lba + offset // bs
                count = -(-size // bs)
                chunk = lun.read_inline(first, count) or await lun.read_blocks(first, count)
                last = offset + size >= to_send
                data_sn = self._send_data_in(
                    command,
                    memoryview(chunk)[:size],
                    offset,
                    data_sn,
                    self._residual(command.edtl, length) if last else None,
                )
                await self._drain_if_backed_up()
            finally:
                self.budget.give(size)
                command.held -= size
            offset += size
        if not to_send:
            self._complete(command, ScsiOutcome(GOOD), residual=self._residual(command.edtl, length))
        command.answered = True

    def _answer_read(self, command: Command, data: bytes | bytearray, length: int) -> None:
        """Read data with the status collapsed into its last Data-In (RFC 7143 11.7.4)."""
        to_send = min(length, command.edtl)
        if not to_send:
            self._complete(command, ScsiOutcome(GOOD), residual=self._residual(command.edtl, length))
            return
        command.answered = True
        self._send_data_in(command, memoryview(data)[:to_send], 0, 0, self._residual(command.edtl, length))

    @staticmethod
    def _residual(edtl: int, actual: int) -> tuple[int, int]:
        if actual < edtl:
            return 0x02, edtl - actual  # U: underflow
        if actual > edtl:
            return 0x04, actual - edtl  # O: overflow
        return 0, 0

    def _send_data_in(
        self, command: Command, data: memoryview, base: int, data_sn: int, status: tuple[int, int] | None
    ) -> int:
        """Send ``data`` (at buffer offset ``base``) as Data-In PDUs; status rides on the last if given."""
        conn = self.conn
        seg = self.params.initiator_max_recv_data
        burst = self.params.max_burst
        write = self.stream.write_raw
        total = len(data)
        pos = 0
        while pos < total:
            offset = base + pos
            burst_end = (offset // burst + 1) * burst
            length = min(seg, burst_end - offset, total - pos)
            last = pos + length >= total
            flags = 0x80 if offset + length >= burst_end else 0
            if last and status is not None:
                flags |= 0x81 | status[0]
                # The slot this command holds is free once its status is out.
                header = _DATA_IN.pack(
                    0x25,
                    flags,
                    0,
                    GOOD,
                    length,
                    command.lun_raw,
                    command.itt,
                    RESERVED_TAG,
                    conn.stat_sn,
                    conn.exp_cmd_sn,
                    (conn.max_cmd_sn + 1) & 0xFFFFFFFF,
                    data_sn,
                    offset,
                    status[1],
                )
                conn.stat_sn = (conn.stat_sn + 1) & 0xFFFFFFFF
            else:
                if last:
                    flags |= 0x80
                header = _DATA_IN.pack(
                    0x25,
                    flags,
                    0,
                    0,
                    length,
                    command.lun_raw,
                    command.itt,
                    RESERVED_TAG,
                    0,
                    conn.exp_cmd_sn,
                    conn.max_cmd_sn,
                    data_sn,
                    offset,
                    0,
                )
            write(header, data[pos : pos + length])
            data_sn += 1
            pos += length
        return data_sn

    def _complete(
        self,
        command: Command,
        outcome: ScsiOutcome,
        residual: tuple[int, int] | None = None,
        exp_data_sn: int = 0,
    ) -> None:
        """Send the SCSI Response (RFC 7143 11.4), after the command's data if it returns some."""
        if command.answered:
            return
        data = outcome.data
        if data and outcome.status == GOOD and command.edtl and not command.write:
            # Command data (INQUIRY, MODE SENSE...): status collapsed into the last Data-In.
            self._answer_read(command, data, len(data))
            return
        command.answered = True
        conn = self.conn
        if residual is None:
            if command.write:
                needed = scsi.data_out_length(command.cdb, command.lun.block_size) if command.lun else 0
                residual = self._residual(command.edtl, needed)
            else:
                residual = self._residual(command.edtl, len(data))
        sense = outcome.sense
        body = (len(sense).to_bytes(2, "big") + sense) if sense else b""
        header = _SCSI_RSP.pack(
            0x21,
            0x80 | residual[0],
            0,
            outcome.status,
            len(body),
            _NO_LUN,
            command.itt,
            0,
            conn.stat_sn,
            conn.exp_cmd_sn,
            (conn.max_cmd_sn + 1) & 0xFFFFFFFF,
            exp_data_sn,
            0,
            residual[1],
        )
        conn.stat_sn = (conn.stat_sn + 1) & 0xFFFFFFFF
        self.stream.write_raw(header, body)

    async def _drain_if_backed_up(self) -> None:
        if self.transport.get_write_buffer_size() > OUTPUT_HIGH_WATER and not self.conn.closed:
            try:
                await self.stream.drain()
            except ConnectionError:
                pass

    # --- Data-Out ----------------------------------------------------------
    def _accept_data(self, command: Command, data: bytes) -> None:
        """Take in-order data; it stays charged to the budget until it reaches the backing store."""
        command.chunks.append(data)
        command.expected += len(data)
        if command.data_event is not None:
            command.data_event.set()

    def _data_out(self, pdu: PDU) -> None:
        command = self.commands.get(pdu.itt)
        if command is None or command.done:
            LOG.debug("%s: Data-Out for unknown task 0x%08x ignored", self.conn.peer, pdu.itt)
            return
        ttt, _, _, _, data_sn, offset = struct.unpack_from(">IIIIII", pdu.bhs, 20)
        sequence = command.sequences.get(ttt)
        if sequence is None:
            raise ConnectionDropped("Data-Out with unknown Target Transfer Tag")
        if data_sn != sequence[0]:
            # ERL 0 cannot recover a lost Data-Out: the connection must go.
            raise ConnectionDropped(f"Data-Out DataSN {data_sn} where {sequence[0]} was expected")
        data = pdu.data
        if offset != command.expected:
            raise ConnectionDropped(f"Data-Out at offset {offset} where {command.expected} was expected")
        if offset + len(data) > sequence[1]:
            raise ConnectionDropped("Data-Out beyond its R2T or FirstBurstLength")
        sequence[0] += 1
        if ttt == RESERVED_TAG:
            command.held += len(data)
            self.budget.force(len(data))
        self._accept_data(command, data)
        if pdu.final:
            del command.sequences[ttt]
            if command.data_event is not None:
                command.data_event.set()

    async def _wait_data(self, command: Command) -> None:
        if command.data_event is None:
            command.data_event = asyncio.Event()
        command.data_event.clear()
        await command.data_event.wait()

    async def _solicit(self, command: Command, charge: bool = True) -> None:
        """Send R2Ts for the rest of the data as MaxOutstandingR2T and the budget allow (RFC 7143 11.8).

        Each burst is charged before its R2T goes out. The wait for budget
        happens only when nothing of this command is in flight or held, so a
        command never waits for room that only its own data could free.
        """
        upto = command.edtl
        while command.r2t_end < upto:
            open_sequences = len(command.sequences)
            if open_sequences - (RESERVED_TAG in command.sequences) >= self.params.max_outstanding_r2t:
                return
            length = min(self.params.max_burst, upto - command.r2t_end)
            if charge:
                if not self.budget.try_take(length):
                    if open_sequences or command.chunks:
                        return  # data on its way or held: come back once it has moved
                    await self.budget.take(length)
                command.held += length
            ttt = next(self.ttt_counter) & 0xFFFFFFFF
            if ttt == RESERVED_TAG:
                ttt = next(self.ttt_counter) & 0xFFFFFFFF
            conn = self.conn
            header = _R2T.pack(
                0x31,
                0x80,
                0,
                0,
                0,
                command.lun_raw,
                command.itt,
                ttt,
                conn.stat_sn,
                conn.exp_cmd_sn,
                conn.max_cmd_sn,
                command.r2t_sn,
                command.r2t_end,
                length,
            )
            self.stream.write_raw(header)
            command.sequences[ttt] = [0, command.r2t_end + length]
            command.r2t_sn += 1
            command.r2t_end += length

    async def _collect(self, command: Command) -> bytes:
        """All of a command's Data-Out, for commands that need it whole (bounded by MAX_BUFFERED_DATA_OUT)."""
        rest = command.edtl - command.r2t_end
        if rest > 0:
            await self.budget.take(rest)  # all at once: it is held until the command completes
            command.held += rest
        while command.expected < command.edtl:
            await self._solicit(command, charge=False)
            if command.expected < command.edtl:
                await self._wait_data(command)
        while command.sequences:
            await self._wait_data(command)
        return b"".join(command.chunks)

    async def _write(self, command: Command) -> None:
        """WRITE / WRITE AND VERIFY: data streams to the backing store a burst at a time."""
        lun = command.lun
        assert lun is not None
        try:
            lba, blocks, durable = lun.write_request(command.cdb)
        except SenseError as exc:
            self._complete(command, ScsiOutcome(CHECK_CONDITION, b"", exc.sense()))
            await self._discard_data(command)
            return
        bs = lun.block_size
        needed = blocks * bs
        # An expected length shorter than the CDB's writes only the whole blocks
        # transferred (RFC 7143 11.4.5.2, libiscsi's residual tests).
        usable = min(needed, command.edtl - command.edtl % bs)
        base = lba * bs
        written = 0
        error: SenseError | None = None
        while True:
            if command.chunks:
                chunks, command.chunks = command.chunks, []
                size = sum(len(c) for c in chunks)
                start = written
                written += size
                keep = max(0, min(size, usable - start))
                if keep and error is None:
                    views: list[bytes | memoryview] = []
                    left = keep
                    for chunk in chunks:
                        if left <= 0:
                            break
                        views.append(chunk if len(chunk) <= left else memoryview(chunk)[:left])
                        left -= len(chunk)
                    try:
                        await lun.write_chunks(base + start, views)
                    except SenseError as exc:
                        error = exc
                self.budget.give(size)
                command.held -= size
                continue
            if command.expected >= command.edtl and not command.sequences:
                break
            await self._solicit(command)
            if not command.chunks and (command.sequences or command.expected < command.edtl):
                await self._wait_data(command)
        if error is None and durable and usable:
            try:
                await lun.sync()
            except SenseError as exc:
                error = exc
        outcome = ScsiOutcome(GOOD) if error is None else ScsiOutcome(CHECK_CONDITION, b"", error.sense())
        self._complete(
            command, outcome, residual=self._residual(command.edtl, needed), exp_data_sn=command.r2t_sn
        )

    async def _discard_data(self, command: Command) -> None:
        """A refused write: unsolicited data already on its way is read and dropped."""
        command.sequences = {k: v for k, v in command.sequences.items() if k == RESERVED_TAG}
        while command.sequences:
            await self._wait_data(command)
            if command.chunks:
                size = sum(len(c) for c in command.chunks)
                command.chunks = []
                self.budget.give(size)
                command.held -= size

    # --- other PDUs --------------------------------------------------------
    def _nop_out(self, pdu: PDU) -> None:
        if pdu.itt == RESERVED_TAG:
            return  # an answer to a NOP-In of ours, or a pure CmdSN/ExpStatSN update
        if not self._accept_cmd_sn(pdu):
            return
        rsp = new_pdu(OP_NOP_IN, itt=pdu.itt)
        rsp.lun_raw = pdu.lun_raw
        rsp.set_u32(20, RESERVED_TAG)
        self.conn.stamp(rsp)
        rsp.data = pdu.data[: self.params.initiator_max_recv_data]
        self.stream.write(rsp)

    def _text(self, pdu: PDU) -> None:
        if not self._accept_cmd_sn(pdu):
            return
        ttt = pdu.u32(20)
        if ttt != RESERVED_TAG and self.text_pending and self.text_pending[0] == ttt:
            self._text_send(pdu.itt, pdu.lun_raw, self.text_pending[1])
            return
        self.text_pending = None
        if len(self.text_in) + len(pdu.data) > MAX_TEXT_REQUEST:
            raise ConnectionDropped(f"text request beyond {MAX_TEXT_REQUEST} bytes")
        self.text_in += pdu.data
        if pdu.flags & 0x40:  # C: more request text follows
            rsp = new_pdu(OP_TEXT_RSP, flags=0x00, itt=pdu.itt)
            rsp.set_u32(20, RESERVED_TAG)
            self.conn.stamp(rsp)
            self.stream.write(rsp)
            return
        try:
            pairs = parse_text(self.text_in)
        except TextFormatError:
            pairs = []
        self.text_in = b""
        conn = self.conn
        answers: list[tuple[str, str]] = []
        for key, value in pairs[:128]:
            if key == "SendTargets":
                answers += conn.registry.send_targets(
                    conn.portal,
                    conn.local,
                    conn.initiator_name,
                    conn.discovery,
                    conn.served.target.iqn if conn.served is not None else None,
                    value,
                )
            else:
                answer = self.params.negotiate(key, value) if key not in SECURITY_KEYS else "Reject"
                if answer is not None:
                    answers.append((key[:63], answer))
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
        self.conn.stamp(rsp)
        rsp.data = chunk
        self.stream.write(rsp)

    def _task_mgmt(self, pdu: PDU) -> None:
        """Task management (RFC 7143 11.5/11.6): answered once the affected commands are gone."""
        function = pdu.flags & 0x7F
        if not self._accept_cmd_sn(pdu):
            return
        conn = self.conn
        lun = decode_lun(pdu.lun_raw)
        response = 0  # function complete
        affected: list[Command] = []
        if conn.discovery:
            response = 255
        elif function == 1:  # ABORT TASK
            ref = pdu.u32(20)
            command = self.commands.get(ref)
            if command is not None:
                affected.append(command)
            else:
                ref_cmd_sn = pdu.u32(32)
                # Not here: complete if it may still arrive (in window, before us), else unknown.
                in_window = sn_le(conn.exp_cmd_sn, ref_cmd_sn) and sn_lt(ref_cmd_sn, pdu.u32(24))
                response = 0 if in_window else 1
        elif function in (2, 4, 5):  # ABORT TASK SET, CLEAR TASK SET, LUN RESET
            if not 0 <= lun < len(self.luns):
                response = 2
            else:
                affected = [c for c in self.commands.values() if c.lun is self.luns[lun]]
                if function in (4, 5) and conn.served is not None:
                    for other in list(conn.served.connections):
                        if other is not conn.session:
                            other.abort_tasks(lun)
                if function == 5:
                    self._reset([self.luns[lun]])
        elif function in (6, 7):  # TARGET WARM/COLD RESET
            affected = list(self.commands.values())
            if conn.served is not None:
                for other in list(conn.served.connections):
                    if other is not conn.session:
                        other.abort_tasks(None)
            self._reset(self.luns)
        elif function == 3:  # CLEAR ACA: we never establish ACA
            pass
        elif function == 8:
            response = 4  # task reassignment needs ERL 2
        else:
            response = 5
        LOG.info("%s: task management function %d on LUN %d -> %d", conn.peer, function, lun, response)
        tasks = [c.task for c in affected if c.task is not None and not c.task.done()]
        for command in affected:
            self._drop(command)

        async def answer() -> None:
            if tasks:
                await asyncio.wait(tasks)
            rsp = new_pdu(OP_TASK_MGMT_RSP, itt=pdu.itt)
            rsp.bhs[2] = response
            conn.stamp(rsp)
            self.stream.write(rsp)
            if function == 7 and response == 0:
                conn.close()  # a cold reset ends the I_T nexus; buffered data is still flushed

        if tasks:
            asyncio.get_running_loop().create_task(answer())
        else:
            # Answer in line so the response keeps its place among the others.
            rsp = new_pdu(OP_TASK_MGMT_RSP, itt=pdu.itt)
            rsp.bhs[2] = response
            conn.stamp(rsp)
            self.stream.write(rsp)
            if function == 7 and response == 0:
                conn.close()

    def _reset(self, luns: list[scsi.LunBackend]) -> None:
        """A reset is reported to every nexus of the target, the issuer's included (SAM-5 6.3.3).

        libiscsi's multipath reset test expects the issuing path to see it too.
        """
        for lun in luns:
            lun.reservations.reset()
            for nexus in lun.nexuses:
                lun.raise_unit_attention(nexus, RESET_OCCURRED)

    async def _logout(self, pdu: PDU) -> None:
        self._accept_cmd_sn(pdu)
        tasks = [c.task for c in self.commands.values() if c.task is not None and not c.task.done()]
        self.abort_tasks(None)
        if tasks:
            await asyncio.wait(tasks)
        reason = pdu.flags & 0x7F
        rsp = new_pdu(OP_LOGOUT_RSP, itt=pdu.itt)
        rsp.bhs[2] = 0 if reason in (0, 1) else 2
        self.conn.stamp(rsp)
        self.stream.write(rsp)


def _extended_cdb(ahs: bytes) -> bytes:
    out = b""
    pos = 0
    while pos + 3 <= len(ahs):
        length = int.from_bytes(ahs[pos : pos + 2], "big")
        ahs_type = ahs[pos + 2]
        if ahs_type == 0x01:  # extended CDB: one reserved byte, then the rest of the CDB
            out += ahs[pos + 4 : pos + 3 + length]
        pos += 3 + length
        pos += (-pos) % 4
    return out
