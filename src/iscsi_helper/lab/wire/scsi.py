"""SCSI block commands (SPC-4 / SBC-3 subset) on a file or block device.

The transport (:mod:`iscsi_helper.lab.wire.full_feature`) asks this module
three things about a CDB: which blocks it touches (for
:mod:`iscsi_helper.lab.wire.ordering`), how much Data-Out it carries, and,
once it may run, its result. READ and WRITE move their data themselves
(:meth:`LunBackend.read_inline`, :meth:`LunBackend.read_blocks`,
:meth:`LunBackend.write_chunks`) so that large transfers stream instead of
being held whole; every other command gets its Data-Out as one buffer,
bounded by :data:`MAX_BUFFERED_DATA_OUT`.

Commands that need no I/O are plain functions the transport calls inline;
those that read or write the backing store are coroutines whose system calls
run in :mod:`iscsi_helper.lab.wire.blocking`'s pool, except reads that the
page cache can satisfy at once (``preadv(RWF_NOWAIT)``), which cost no thread
hop. Everything that can be decided from the CDB alone is checked before
touching the backing store; the capacity is read from the backing store for
every command that depends on it, which is what makes a grown file visible
without re-publishing the target.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import stat
import struct
from collections.abc import Awaitable, Callable

from iscsi_helper.lab.wire.blocking import run_blocking
from iscsi_helper.lab.wire.mode import ModePages
from iscsi_helper.lab.wire.model import WireLun
from iscsi_helper.lab.wire.opcodes import report_supported_opcodes
from iscsi_helper.lab.wire.ordering import WHOLE_LUN, TaskSet
from iscsi_helper.lab.wire.reservations import Reservations
from iscsi_helper.lab.wire.sense import (
    CHECK_CONDITION,
    DATA_PROTECT,
    GOOD,
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAM,
    INVALID_OPCODE,
    LBA_OUT_OF_RANGE,
    LUN_NOT_SUPPORTED,
    MEDIUM_ERROR,
    MISCOMPARE,
    MISCOMPARE_DURING_VERIFY,
    MODE_PARAMETERS_CHANGED,
    NO_SENSE,
    PARAM_LIST_LENGTH_ERROR,
    READ_ERROR,
    WRITE_ERROR,
    WRITE_PROTECTED,
    ScsiOutcome,
    SenseError,
    be,
    fixed_sense,
    illegal,
)

LOG = logging.getLogger(__name__)

# Largest READ/WRITE (Block Limits VPD MAXIMUM TRANSFER LENGTH): streamed, so it
# costs no memory beyond the connection's budget.
MAX_TRANSFER_BYTES = 64 * 1024 * 1024
# Commands whose Data-Out must be held whole (COMPARE AND WRITE, ORWRITE,
# VERIFY with BYTCHK, UNMAP, MODE SELECT, PERSISTENT RESERVE OUT...).
MAX_BUFFERED_DATA_OUT = 16 * 1024 * 1024
MAX_UNMAP_DESCRIPTORS = 256
MAX_WRITE_SAME_BYTES = 64 * 1024 * 1024
MAX_COMPARE_AND_WRITE = 128
WRITE_SAME_CHUNK = 1024 * 1024
# GET LBA STATUS: descriptors returned at most per command.
MAX_LBA_STATUS_DESCRIPTORS = 64

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
SOFTWARE_WRITE_PROTECTED = (0x27, 0x02)

READ_OPS = frozenset((0x08, 0x28, 0xA8, 0x88))
WRITE_OPS = frozenset((0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E))
# Commands that change how every later command is treated: run as barriers.
BARRIER_OPS = frozenset((0x5F, 0x16, 0x17, 0x56, 0x57, 0x15, 0x55))

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def punch_hole(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _pad(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


def naa_from_wwn(wwn: str | None, fallback_seed: str) -> bytes:
    """An NAA designator: the WWN if it is already NAA hex, else a stable derived one.

    chiscsi documents WWN= as 16 free-form characters, so arbitrary text must
    still yield a valid, stable identifier; NAA 3 (locally assigned) is used
    for derived values so they cannot collide with registered ones.
    """
    if wwn:
        digits = wwn.lower().removeprefix("0x").replace(":", "").replace("-", "")
        if all(c in "0123456789abcdef" for c in digits):
            if len(digits) == 16 and digits[0] in "235":
                return bytes.fromhex(digits)
            if len(digits) == 32 and digits[0] == "6":
                return bytes.fromhex(digits)
        seed = "wwn:" + wwn
    else:
        seed = fallback_seed
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:8])
    digest[0] = 0x30 | (digest[0] & 0x0F)
    return bytes(digest)


def rw_fields(cdb: bytes) -> tuple[int, int, int]:
    """(lba, blocks, protect field) of the READ/WRITE/VERIFY/ORWRITE CDB families (SBC-3 5.x)."""
    op = cdb[0]
    if op in (0x08, 0x0A):
        lba = ((cdb[1] & 0x1F) << 16) | struct.unpack_from(">H", cdb, 2)[0]
        return lba, cdb[4] or 256, 0
    if op in (0x28, 0x2A, 0x2E, 0x2F, 0x34, 0x35, 0x41):
        return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0], cdb[1] >> 5
    if op in (0xA8, 0xAA, 0xAE, 0xAF):
        return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">I", cdb, 6)[0], cdb[1] >> 5
    return struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0], cdb[1] >> 5


def extent_of(cdb: bytes) -> tuple[tuple[int, int] | None, bool]:
    """The blocks a command touches and whether it writes them, for the task set.

    Parsed before any validation, so a malformed CDB yields the whole LUN
    (the safe answer) rather than an exception.
    """
    op = cdb[0]
    try:
        if op in READ_OPS or op in (0x2F, 0xAF, 0x8F, 0x34, 0x90):
            lba, blocks, _ = rw_fields(cdb)
            return (lba, lba + max(blocks, 1)), False
        if op in WRITE_OPS or op in (0x89, 0x8B):
            if op == 0x89:
                lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], cdb[13]
            else:
                lba, blocks, _ = rw_fields(cdb)
            return (lba, lba + max(blocks, 1)), True
        if op in (0x41, 0x93):
            lba, blocks, _ = rw_fields(cdb)
            return (lba, lba + blocks if blocks else WHOLE_LUN[1]), True
        if op == 0x9E and cdb[1] & 0x1F == 0x12:
            lba = struct.unpack_from(">Q", cdb, 2)[0]
            return (lba, WHOLE_LUN[1]), False
    except (IndexError, struct.error):
        return WHOLE_LUN, True
    if op in (0x42, 0x35, 0x91, 0x04):  # UNMAP, SYNCHRONIZE CACHE: every earlier write first
        return WHOLE_LUN, True
    return None, False


def data_out_length(cdb: bytes, block_size: int) -> int:
    """Bytes of Data-Out the CDB asks for (0 if none), to compare with the iSCSI EDTL."""
    op = cdb[0]
    bs = block_size
    try:
        if op in WRITE_OPS or op == 0x8B:
            return rw_fields(cdb)[1] * bs
        if op in (0x2F, 0xAF, 0x8F):
            bytchk = (cdb[1] >> 1) & 0x03
            return rw_fields(cdb)[1] * bs if bytchk == 1 else (bs if bytchk == 3 else 0)
        if op == 0x41:
            return bs
        if op == 0x93:
            return 0 if cdb[1] & 0x01 else bs
        if op == 0x42:
            return struct.unpack_from(">H", cdb, 7)[0]
        if op == 0x89:
            return 2 * cdb[13] * bs
        if op == 0x15:
            return cdb[4]
        if op == 0x55:
            return struct.unpack_from(">H", cdb, 7)[0]
        if op == 0x5F:
            return struct.unpack_from(">I", cdb, 5)[0]
    except struct.error:
        return 0
    return 0


SyncHandler = Callable[["LunBackend", bytes, bytes, str], bytes]
AsyncHandler = Callable[["LunBackend", bytes, bytes, str], Awaitable[bytes]]


class LunBackend:
    """One open LUN: the file descriptor, its task set, reservations and mode pages."""

    def __init__(self, spec: WireLun, index: int, target_iqn: str) -> None:
        self.spec = spec
        self.index = index
        self.target_iqn = target_iqn
        self.block_size = spec.block_size
        self.read_only = spec.read_only
        seed = f"{target_iqn}/{index}"
        self.serial = spec.serial or hashlib.sha256(seed.encode()).hexdigest()[:16]
        self.device_id = spec.device_id or self.serial
        self.naa = naa_from_wwn(spec.wwn, seed)
        flags = (os.O_RDONLY if spec.read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            self.fd = os.open(spec.path, flags)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot open LUN {index} backing store {spec.path}: {exc.strerror}"
            ) from None
        st = os.fstat(self.fd)
        self.is_block = stat.S_ISBLK(st.st_mode)
        if not (self.is_block or stat.S_ISREG(st.st_mode)):
            os.close(self.fd)
            raise OSError(
                errno.EINVAL, f"LUN {index} backing store {spec.path} is neither a file nor a block device"
            )
        self.can_unmap = not spec.read_only and not self.is_block and self._probe_punch()
        self.task_set = TaskSet()
        self.modes = ModePages()
        # Unit attentions waiting for each I_T nexus (SAM-5 5.14), oldest first.
        self.unit_attentions: dict[str, list[tuple[int, int]]] = {}
        self.reservations = Reservations(self.raise_unit_attention)
        # I_T nexuses with a session to this LUN's target now (kept by the server).
        self.nexuses: set[str] = set()

    def _probe_punch(self) -> bool:
        """Whether holes can be punched, tried beyond EOF so no data is touched."""
        try:
            size = os.fstat(self.fd).st_size
            punch_hole(self.fd, size + self.block_size * 1024, self.block_size)
            return True
        except OSError as exc:
            LOG.info(
                "LUN %d (%s): hole punching unavailable (%s); UNMAP not advertised",
                self.index,
                self.spec.path,
                exc.strerror,
            )
            return False

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    def size_bytes(self) -> int:
        if self.is_block:
            return os.lseek(self.fd, 0, os.SEEK_END)
        return os.fstat(self.fd).st_size

    def num_blocks(self) -> int:
        return self.size_bytes() // self.block_size

    # --- unit attentions -------------------------------------------------
    def raise_unit_attention(self, nexus: str, condition: tuple[int, int]) -> None:
        pending = self.unit_attentions.setdefault(nexus, [])
        if condition not in pending:
            pending.append(condition)

    def take_unit_attention(self, nexus: str, cdb: bytes) -> ScsiOutcome | None:
        """Report a pending unit attention instead of running the command (SAM-5 5.14).

        INQUIRY and REPORT LUNS pass through; REQUEST SENSE returns the
        condition as its data.
        """
        pending = self.unit_attentions.get(nexus)
        if not pending or cdb[0] in (0x12, 0xA0):
            return None
        condition = pending.pop(0)
        if not pending:
            del self.unit_attentions[nexus]
        sense = fixed_sense(0x06, *condition)
        if cdb[0] == 0x03:
            return ScsiOutcome(GOOD, sense[: cdb[4]])
        return ScsiOutcome(CHECK_CONDITION, b"", sense)

    # --- checks ------------------------------------------------------------
    def check_range(self, lba: int, count: int) -> None:
        if lba + count > self.num_blocks() or lba > 0xFFFFFFFFFFFFFFFF:
            raise SenseError(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)

    def check_writable(self) -> None:
        if self.read_only:
            raise SenseError(DATA_PROTECT, WRITE_PROTECTED)
        if self.modes.software_write_protect:
            raise SenseError(DATA_PROTECT, SOFTWARE_WRITE_PROTECTED)

    def check_transfer(self, blocks: int) -> None:
        if blocks * self.block_size > MAX_TRANSFER_BYTES:
            raise illegal()

    def read_request(self, cdb: bytes) -> tuple[int, int]:
        """Validate a READ(6/10/12/16); returns (lba, blocks)."""
        lba, blocks, protect = rw_fields(cdb)
        if protect:
            raise illegal()
        self.check_range(lba, blocks)
        self.check_transfer(blocks)
        return lba, blocks

    def write_request(self, cdb: bytes) -> tuple[int, int, bool]:
        """Validate a WRITE or WRITE AND VERIFY; returns (lba, blocks, durable-before-status)."""
        lba, blocks, protect = rw_fields(cdb)
        self.check_writable()
        if protect:
            raise illegal()
        if cdb[0] in (0x2E, 0xAE, 0x8E) and cdb[1] & 0x02 and (cdb[1] >> 1) & 0x03 != 1:
            raise illegal()  # WRITE AND VERIFY BYTCHK: only 0 and 1 are defined
        self.check_range(lba, blocks)
        self.check_transfer(blocks)
        fua = cdb[0] != 0x0A and bool(cdb[1] & 0x08)
        return lba, blocks, fua or not self.modes.write_cache

    # --- data movement -----------------------------------------------------
    def read_inline(self, lba: int, blocks: int) -> bytearray | None:
        """The blocks if the page cache holds them all now, else None (then read in a thread)."""
        length = blocks * self.block_size
        buf = bytearray(length)
        try:
            got = os.preadv(self.fd, [buf], lba * self.block_size, os.RWF_NOWAIT)
        except OSError:
            return None
        return buf if got == length else None

    async def read_blocks(self, lba: int, blocks: int) -> bytes:
        length = blocks * self.block_size
        offset = lba * self.block_size
        try:
            data = await run_blocking(os.pread, self.fd, length, offset)
        except OSError as exc:
            LOG.error("read error on %s: %s", self.spec.path, exc)
            raise SenseError(MEDIUM_ERROR, READ_ERROR) from None
        if len(data) < length:  # a file shrunk under us: read as zeros
            data += bytes(length - len(data))
        return data

    def _write_all(self, offset: int, chunks: list[bytes | memoryview], sync: bool) -> None:
        views = [memoryview(c) for c in chunks if len(c)]
        while views:
            done = os.pwritev(self.fd, views, offset)
            offset += done
            while views and done >= len(views[0]):
                done -= len(views[0])
                views.pop(0)
            if views and done:
                views[0] = views[0][done:]
        if sync:
            os.fdatasync(self.fd)

    async def write_chunks(self, offset: int, chunks: list[bytes | memoryview], sync: bool = False) -> None:
        """Write consecutive chunks at a byte offset with one pwritev (no joining copy)."""
        try:
            await run_blocking(self._write_all, offset, chunks, sync)
        except OSError as exc:
            LOG.error("write error on %s: %s", self.spec.path, exc)
            raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None

    async def sync(self) -> None:
        if self.read_only:
            return
        try:
            await run_blocking(os.fdatasync, self.fd)
        except OSError as exc:
            LOG.error("fdatasync on %s failed: %s", self.spec.path, exc)
            raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None

    # --- dispatch --------------------------------------------------------------
    def sync_handler(self, op: int) -> SyncHandler | None:
        return _SYNC_HANDLERS.get(op)

    def async_handler(self, op: int) -> AsyncHandler | None:
        return _ASYNC_HANDLERS.get(op)

    # --- commands without I/O --------------------------------------------------
    def test_unit_ready(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return b""

    def request_sense(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if cdb[1] & 0x01:
            sense = bytes([0x72, 0, 0, 0, 0, 0, 0, 0])
        else:
            sense = fixed_sense(NO_SENSE, 0, 0)
        return sense[: cdb[4]]

    def inquiry(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        alloc = struct.unpack_from(">H", cdb, 3)[0]
        evpd = cdb[1] & 0x01
        page = cdb[2]
        if cdb[1] & 0xFE:
            raise illegal()
        if not evpd:
            if page:
                raise illegal()
            return self._standard_inquiry()[:alloc]
        builder = self._vpd_pages().get(page)
        if builder is None:
            raise illegal()
        return builder()[:alloc]

    def _standard_inquiry(self) -> bytes:
        out = bytearray(74)
        out[0] = 0x00  # connected direct-access block device
        out[2] = 0x06  # SPC-4
        out[3] = 0x12  # HiSup, response data format 2
        out[4] = len(out) - 5
        out[7] = 0x02  # CmdQue
        out[8:16] = _pad(self.spec.vendor, 8)
        out[16:32] = _pad(self.spec.product, 16)
        out[32:36] = _pad("0001", 4)
        # Version descriptors: SAM-5, iSCSI (no version), SPC-4, SBC-3.
        for i, code in enumerate((0x00A0, 0x0960, 0x0460, 0x04C0)):
            out[58 + 2 * i : 60 + 2 * i] = be(code, 2)
        return bytes(out)

    def _vpd_pages(self) -> dict[int, Callable[[], bytes]]:
        pages = {
            0x00: self._vpd_supported,
            0x80: self._vpd_serial,
            0x83: self._vpd_devid,
            0xB0: self._vpd_block_limits,
            0xB1: self._vpd_block_characteristics,
        }
        if self.can_unmap:
            pages[0xB2] = self._vpd_lbp
        return pages

    def _vpd_supported(self) -> bytes:
        pages = sorted(self._vpd_pages())
        return bytes([0, 0x00, 0, len(pages)] + pages)

    def _vpd_serial(self) -> bytes:
        serial = self.serial.encode("ascii")
        return bytes([0, 0x80, 0, len(serial)]) + serial

    def _vpd_devid(self) -> bytes:
        descs = bytearray()
        # NAA, logical unit association, binary.
        descs += bytes([0x01, 0x03, 0, len(self.naa)]) + self.naa
        # T10 vendor ID, logical unit association, ASCII.
        t10 = _pad(self.spec.vendor, 8) + self.device_id.encode("ascii")
        descs += bytes([0x02, 0x01, 0, len(t10)]) + t10
        # Relative target port 1 (target port association, iSCSI, PIV).
        descs += bytes([0x51, 0x94, 0, 4]) + be(1, 4)
        # SCSI name string of the target device (UTF-8, NUL terminated, padded to 4).
        name = self.target_iqn.encode() + b"\0"
        name += bytes(-len(name) % 4)
        descs += bytes([0x53, 0xA8, 0, len(name)]) + name
        return bytes([0, 0x83]) + be(len(descs), 2) + bytes(descs)

    def _vpd_block_limits(self) -> bytes:
        out = bytearray(64)
        out[1] = 0xB0
        out[2:4] = be(0x3C, 2)
        out[4] = 0x00  # WSNZ=0: WRITE SAME with zero blocks writes to the end (SBC-3 5.42)
        out[5] = MAX_COMPARE_AND_WRITE
        out[6:8] = be(1, 2)
        out[8:12] = be(MAX_TRANSFER_BYTES // self.block_size, 4)
        out[12:16] = be(min(1024 * 1024 // self.block_size, MAX_TRANSFER_BYTES // self.block_size), 4)
        if self.can_unmap:
            out[20:24] = be(0xFFFFFFFF, 4)
            out[24:28] = be(MAX_UNMAP_DESCRIPTORS, 4)
            out[28:32] = be(1, 4)
        out[36:44] = be(MAX_WRITE_SAME_BYTES // self.block_size, 8)
        return bytes(out)

    def _vpd_block_characteristics(self) -> bytes:
        out = bytearray(64)
        out[1] = 0xB1
        out[2:4] = be(0x3C, 2)
        out[4:6] = be(1, 2)  # non-rotating medium
        return bytes(out)

    def _vpd_lbp(self) -> bytes:
        # LBPU | LBPWS | LBPWS10 | LBPRZ, provisioning type: thin.
        return bytes([0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0])

    def read_capacity10(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if not cdb[8] & 0x01 and struct.unpack_from(">I", cdb, 2)[0]:
            raise illegal()
        last = self.num_blocks() - 1
        return be(min(max(last, 0), 0xFFFFFFFF), 4) + be(self.block_size, 4)

    def service_action_in16(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        sa = cdb[1] & 0x1F
        if sa == 0x12:
            return self.get_lba_status(cdb)
        if sa != 0x10:
            raise illegal()
        alloc = struct.unpack_from(">I", cdb, 10)[0]
        out = bytearray(32)
        out[0:8] = be(max(self.num_blocks() - 1, 0), 8)
        out[8:12] = be(self.block_size, 4)
        if self.can_unmap:
            out[14] = 0xC0  # LBPME | LBPRZ
        return bytes(out)[:alloc]

    def get_lba_status(self, cdb: bytes) -> bytes:
        """GET LBA STATUS (SBC-3 5.7): mapped and deallocated extents from the file's holes.

        SEEK_DATA/SEEK_HOLE (lseek, metadata only) tell where the file has
        data; a hole is reported as deallocated (provisioning status 1),
        matching LBPRZ=1 (it reads as zeros).
        """
        if not self.can_unmap:
            raise illegal(INVALID_OPCODE)
        lba = struct.unpack_from(">Q", cdb, 2)[0]
        alloc = struct.unpack_from(">I", cdb, 10)[0]
        blocks = self.num_blocks()
        if lba >= blocks:
            raise SenseError(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)
        bs = self.block_size
        end = blocks * bs
        offset = lba * bs
        descriptors = bytearray()
        room = max(0, (alloc - 8) // 16) if alloc >= 8 else 0
        limit = max(1, min(room, MAX_LBA_STATUS_DESCRIPTORS))
        while offset < end and len(descriptors) // 16 < limit:
            try:
                data_at = os.lseek(self.fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise SenseError(MEDIUM_ERROR, READ_ERROR) from None
                data_at = end
            if data_at > offset:
                stop, status = min(data_at, end), 1
            else:
                try:
                    stop = min(os.lseek(self.fd, offset, os.SEEK_HOLE), end)
                except OSError:
                    stop = end
                status = 0
            # Extents are reported in whole blocks: round a partial block towards "mapped".
            first, last = offset // bs, -(-stop // bs) if status == 0 else stop // bs
            if last <= first:
                last, status = first + 1, 0
            count = min(last - first, 0xFFFFFFFF)
            descriptors += be(first, 8) + be(count, 4) + bytes([status, 0, 0, 0])
            offset = (first + count) * bs
        return (be(len(descriptors) + 4, 4) + bytes(4) + bytes(descriptors))[:alloc]

    def prefetch(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if cdb[0] == 0x34:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
        self.check_range(lba, blocks)
        return b""

    def mode_sense(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return self.modes.sense(cdb, self.read_only, self.num_blocks(), self.block_size)

    def mode_select(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if self.modes.select(cdb, data, self.block_size):
            for other in self._nexuses_except(nexus):
                self.raise_unit_attention(other, MODE_PARAMETERS_CHANGED)
        return b""

    def _nexuses_except(self, nexus: str) -> list[str]:
        known = set(self.unit_attentions) | set(self.reservations.registrations) | self.nexuses
        known.discard(nexus)
        return sorted(known)

    def start_stop_unit(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return b""

    def prevent_allow(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return b""

    def maintenance_in(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if cdb[1] & 0x1F != 0x0C:
            raise illegal()
        return report_supported_opcodes(cdb, self.can_unmap)

    def persistent_reserve_in(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return self.reservations.persistent_reserve_in(nexus, cdb)

    def persistent_reserve_out(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return self.reservations.persistent_reserve_out(nexus, cdb, data)

    def reserve(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return self.reservations.reserve6(nexus, cdb)

    def release(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        return self.reservations.release6(nexus, cdb)

    # --- commands with I/O -------------------------------------------------------
    async def verify(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        lba, blocks, protect = rw_fields(cdb)
        if protect:
            raise illegal()
        bytchk = (cdb[1] >> 1) & 0x03
        if bytchk == 0x02:
            raise illegal()
        self.check_range(lba, blocks)
        self.check_transfer(blocks)
        if not blocks or bytchk == 0:
            return b""
        stored = await self.read_blocks(lba, blocks)
        bs = self.block_size
        expected = data[: blocks * bs] if bytchk == 1 else bytes(data[:bs]) * blocks
        if len(expected) < len(stored):
            raise illegal()
        if stored != expected:
            raise SenseError(MISCOMPARE, MISCOMPARE_DURING_VERIFY)
        return b""

    async def synchronize_cache(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if cdb[0] == 0x35:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
        self.check_range(lba, blocks)
        await self.sync()
        return b""

    async def write_same(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        """WRITE SAME(10/16) (SBC-3 5.41/5.42); zero blocks means "to the last LBA" (WSNZ=0)."""
        flags = cdb[1]
        if cdb[0] == 0x41:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
            ndob = False
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
            ndob = bool(flags & 0x01)
        self.check_writable()
        if flags & 0xE0 or flags & 0x10:  # WRPROTECT, ANCHOR
            raise illegal()
        unmap = bool(flags & 0x08)
        bs = self.block_size
        total = self.num_blocks()
        if lba > total:
            raise SenseError(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)
        if blocks == 0:
            blocks = total - lba
        if blocks * bs > MAX_WRITE_SAME_BYTES:
            raise illegal()
        self.check_range(lba, blocks)
        block = bytes(bs) if ndob else bytes(data[:bs])
        if len(block) < bs:
            raise illegal()
        if not blocks:
            return b""
        if unmap and self.can_unmap:
            # UNMAP=1 asks for the blocks to be deallocated (SBC-3 5.42/5.43); with LBPRZ=1
            # they then read as zeros whatever the Data-Out block held, as libiscsi checks.
            try:
                await run_blocking(punch_hole, self.fd, lba * bs, blocks * bs)
                return b""
            except OSError as exc:
                LOG.warning("punching a hole in %s failed (%s); writing zeros", self.spec.path, exc.strerror)
        chunk_blocks = max(1, WRITE_SAME_CHUNK // bs)
        pattern = block * min(chunk_blocks, blocks)
        done = 0
        while done < blocks:
            n = min(chunk_blocks, blocks - done)
            await self.write_chunks((lba + done) * bs, [memoryview(pattern)[: n * bs]])
            done += n
        if not self.modes.write_cache:
            await self.sync()
        return b""

    async def unmap(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        if not self.can_unmap:
            raise illegal(INVALID_OPCODE)
        self.check_writable()
        if cdb[1] & 0x01:  # ANCHOR
            raise illegal()
        plen = struct.unpack_from(">H", cdb, 7)[0]
        if plen == 0:
            return b""
        if plen < 8 or len(data) < 8:
            raise illegal(PARAM_LIST_LENGTH_ERROR)
        data = data[:plen]
        bd_len = struct.unpack_from(">H", data, 2)[0]
        descs = data[8 : 8 + bd_len]
        if len(descs) // 16 > MAX_UNMAP_DESCRIPTORS:
            raise illegal(INVALID_FIELD_IN_PARAM)
        extents = []
        for off in range(0, len(descs) - 15, 16):
            lba, count = struct.unpack_from(">QI", descs, off)
            self.check_range(lba, count)
            if count:
                extents.append((lba, count))
        bs = self.block_size
        for lba, count in extents:
            try:
                await run_blocking(punch_hole, self.fd, lba * bs, count * bs)
            except OSError as exc:
                LOG.error("punching a hole in %s failed: %s", self.spec.path, exc.strerror)
                raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None
        return b""

    async def compare_and_write(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        """COMPARE AND WRITE (SBC-3 5.2): atomic because the task set orders overlapping writes."""
        self.check_writable()
        if cdb[1] & 0xE0:
            raise illegal()
        lba = struct.unpack_from(">Q", cdb, 2)[0]
        blocks = cdb[13]
        if blocks > MAX_COMPARE_AND_WRITE:
            raise illegal()
        self.check_range(lba, blocks)
        need = blocks * self.block_size
        # The Data-Out buffer must be exactly verify + write data; anything else
        # means initiator and device disagree on the length (SBC-4 5.3).
        if len(data) != 2 * need:
            raise illegal()
        if not blocks:
            return b""
        stored = await self.read_blocks(lba, blocks)
        if stored != data[:need]:
            offset = next(i for i in range(need) if stored[i] != data[i])
            raise SenseError(MISCOMPARE, MISCOMPARE_DURING_VERIFY, information=offset)
        await self.write_chunks(
            lba * self.block_size,
            [memoryview(data)[need : 2 * need]],
            sync=bool(cdb[1] & 0x08) or not self.modes.write_cache,
        )
        return b""

    async def orwrite(self, cdb: bytes, data: bytes, nexus: str) -> bytes:
        """ORWRITE(16) (SBC-3 5.9): the stored blocks become stored OR Data-Out.

        Read-modify-write under the task set's ordering, so no overlapping
        command sees the blocks half updated.
        """
        lba, blocks, protect = rw_fields(cdb)
        self.check_writable()
        if protect:
            raise illegal()
        self.check_range(lba, blocks)
        self.check_transfer(blocks)
        if not blocks:
            return b""
        need = blocks * self.block_size
        if len(data) < need:
            raise illegal()
        stored = await self.read_blocks(lba, blocks)
        merged_bits = int.from_bytes(stored, "little") | int.from_bytes(data[:need], "little")
        merged = merged_bits.to_bytes(need, "little")
        await self.write_chunks(
            lba * self.block_size, [merged], sync=bool(cdb[1] & 0x08) or not self.modes.write_cache
        )
        return b""


_SYNC_HANDLERS: dict[int, SyncHandler] = {
    0x00: LunBackend.test_unit_ready,
    0x03: LunBackend.request_sense,
    0x12: LunBackend.inquiry,
    0x25: LunBackend.read_capacity10,
    0x9E: LunBackend.service_action_in16,
    0x34: LunBackend.prefetch,
    0x90: LunBackend.prefetch,
    0x1A: LunBackend.mode_sense,
    0x5A: LunBackend.mode_sense,
    0x15: LunBackend.mode_select,
    0x55: LunBackend.mode_select,
    0x1B: LunBackend.start_stop_unit,
    0x1E: LunBackend.prevent_allow,
    0xA3: LunBackend.maintenance_in,
    0x5E: LunBackend.persistent_reserve_in,
    0x5F: LunBackend.persistent_reserve_out,
    0x16: LunBackend.reserve,
    0x56: LunBackend.reserve,
    0x17: LunBackend.release,
    0x57: LunBackend.release,
}

_ASYNC_HANDLERS: dict[int, AsyncHandler] = {
    0x2F: LunBackend.verify,
    0xAF: LunBackend.verify,
    0x8F: LunBackend.verify,
    0x35: LunBackend.synchronize_cache,
    0x91: LunBackend.synchronize_cache,
    0x41: LunBackend.write_same,
    0x93: LunBackend.write_same,
    0x42: LunBackend.unmap,
    0x89: LunBackend.compare_and_write,
    0x8B: LunBackend.orwrite,
}


def report_luns(cdb: bytes, lun_count: int) -> bytes:
    """REPORT LUNS (SPC-4 6.33) is answered for the target, whatever LUN it was addressed to."""
    from iscsi_helper.lab.wire.pdu import encode_lun

    alloc = struct.unpack_from(">I", cdb, 6)[0]
    if cdb[2] not in (0x00, 0x01, 0x02) or alloc < 16:
        raise illegal()
    body = b"".join(encode_lun(i) for i in range(lun_count)) if cdb[2] != 0x01 else b""
    return (be(len(body), 4) + bytes(4) + body)[:alloc]


def no_such_lun(cdb: bytes) -> ScsiOutcome:
    """Answer for an unconfigured LUN: INQUIRY says 'not connected', all else fails."""
    op = cdb[0]
    if op == 0x12 and not cdb[1] & 0x01:
        alloc = struct.unpack_from(">H", cdb, 3)[0]
        out = bytearray(36)
        out[0] = 0x7F  # peripheral qualifier 3, device type 0x1f
        out[2], out[3], out[4] = 0x06, 0x02, 31
        return ScsiOutcome(GOOD, bytes(out)[:alloc])
    if op == 0x03:
        return ScsiOutcome(GOOD, fixed_sense(ILLEGAL_REQUEST, *LUN_NOT_SUPPORTED)[: cdb[4]])
    return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *LUN_NOT_SUPPORTED))


def invalid_cdb() -> ScsiOutcome:
    return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *INVALID_FIELD_IN_CDB))
