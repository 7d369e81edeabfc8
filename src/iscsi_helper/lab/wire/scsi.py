"""SCSI block commands (SPC-4 / SBC-3 subset) on a file or block device.

The transport (:mod:`iscsi_helper.lab.wire.session`) hands over a CDB plus any
Data-Out bytes and gets back status, Data-In and sense.  Everything that can
be decided from the CDB alone is checked before touching the backing store so
that invalid requests never cause I/O.  The capacity is re-read from the
backing store for every command that depends on it, which is what makes a
grown file visible without re-publishing the target.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import stat
import struct
from dataclasses import dataclass

from iscsi_helper.lab.wire.model import WireLun

LOG = logging.getLogger(__name__)

# Status codes.
GOOD = 0x00
CHECK_CONDITION = 0x02

# Sense keys.
NO_SENSE = 0x00
MEDIUM_ERROR = 0x03
ILLEGAL_REQUEST = 0x05
UNIT_ATTENTION = 0x06
DATA_PROTECT = 0x07
ABORTED_COMMAND = 0x0B
MISCOMPARE = 0x0E

# (ASC, ASCQ) pairs.
INVALID_OPCODE = (0x20, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
LUN_NOT_SUPPORTED = (0x25, 0x00)
INVALID_FIELD_IN_PARAM = (0x26, 0x00)
PARAM_LIST_LENGTH_ERROR = (0x1A, 0x00)
WRITE_PROTECTED = (0x27, 0x00)
SAVING_PARAMS_NOT_SUPPORTED = (0x39, 0x00)
READ_ERROR = (0x11, 0x00)
RESET_OCCURRED = (0x29, 0x00)
WRITE_ERROR = (0x0C, 0x00)
MISCOMPARE_DURING_VERIFY = (0x1D, 0x00)

MAX_TRANSFER_BYTES = 16 * 1024 * 1024
MAX_UNMAP_DESCRIPTORS = 256
MAX_WRITE_SAME_BYTES = 64 * 1024 * 1024
MAX_COMPARE_AND_WRITE = 128

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def punch_hole(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class SenseError(Exception):
    """A command ends in CHECK CONDITION with this sense."""

    def __init__(self, key: int, asc_ascq: tuple[int, int], information: int | None = None) -> None:
        super().__init__(f"sense {key:#x}/{asc_ascq[0]:#x}/{asc_ascq[1]:#x}")
        self.key = key
        self.asc, self.ascq = asc_ascq
        self.information = information

    def sense(self) -> bytes:
        return fixed_sense(self.key, self.asc, self.ascq, self.information)


def fixed_sense(key: int, asc: int, ascq: int, information: int | None = None) -> bytes:
    sense = bytearray(18)
    sense[0] = 0x70
    if information is not None:
        sense[0] |= 0x80
        sense[3:7] = (information & 0xFFFFFFFF).to_bytes(4, "big")
    sense[2] = key
    sense[7] = 10
    sense[12] = asc
    sense[13] = ascq
    return bytes(sense)


@dataclass
class ScsiOutcome:
    status: int = GOOD
    data: bytes = b""
    sense: bytes = b""


def _pad(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


def _be(n: int, width: int) -> bytes:
    return n.to_bytes(width, "big")


def _illegal(field: tuple[int, int] = INVALID_FIELD_IN_CDB) -> SenseError:
    return SenseError(ILLEGAL_REQUEST, field)


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


class LunBackend:
    """One open LUN: the file descriptor plus the identity strings INQUIRY reports."""

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
            raise OSError(exc.errno, f"cannot open LUN {index} backing store {spec.path}: {exc.strerror}") from None
        st = os.fstat(self.fd)
        self.is_block = stat.S_ISBLK(st.st_mode)
        if not (self.is_block or stat.S_ISREG(st.st_mode)):
            os.close(self.fd)
            raise OSError(errno.EINVAL, f"LUN {index} backing store {spec.path} is neither a file nor a block device")
        self.write_lock = asyncio.Lock()
        self.can_unmap = not spec.read_only and not self.is_block and self._probe_punch()

    def _probe_punch(self) -> bool:
        """Whether holes can be punched, tried beyond EOF so no data is touched."""
        try:
            size = os.fstat(self.fd).st_size
            punch_hole(self.fd, size + self.block_size * 1024, self.block_size)
            return True
        except OSError as exc:
            LOG.info("LUN %d (%s): hole punching unavailable (%s); UNMAP not advertised",
                     self.index, self.spec.path, exc.strerror)
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

    # ------------------------------------------------------------------
    def _check_range(self, lba: int, count: int) -> None:
        if lba + count > self.num_blocks() or lba > 0xFFFFFFFFFFFFFFFF:
            raise SenseError(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)

    def _check_writable(self) -> None:
        if self.read_only:
            raise SenseError(DATA_PROTECT, WRITE_PROTECTED)

    async def _pread(self, lba: int, count: int) -> bytes:
        length = count * self.block_size
        offset = lba * self.block_size
        try:
            data = await asyncio.to_thread(os.pread, self.fd, length, offset)
        except OSError as exc:
            LOG.error("read error on %s: %s", self.spec.path, exc)
            raise SenseError(MEDIUM_ERROR, READ_ERROR) from None
        if len(data) < length:  # a file shrunk under us: read as zeros
            data += bytes(length - len(data))
        return data

    async def _pwrite(self, lba: int, data: bytes, sync: bool = False) -> None:
        offset = lba * self.block_size

        def work() -> None:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
            if sync:
                os.fdatasync(self.fd)
        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            LOG.error("write error on %s: %s", self.spec.path, exc)
            raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None

    # ------------------------------------------------------------------
    def data_out_length(self, cdb: bytes) -> int:
        """Bytes of Data-Out the CDB asks for (0 if none), to compare with the iSCSI EDTL."""
        op = cdb[0]
        bs = self.block_size
        try:
            if op == 0x0A:
                return (cdb[4] or 256) * bs
            if op in (0x2A, 0x2E):
                return struct.unpack_from(">H", cdb, 7)[0] * bs
            if op in (0xAA, 0xAE):
                return struct.unpack_from(">I", cdb, 6)[0] * bs
            if op in (0x8A, 0x8E):
                return struct.unpack_from(">I", cdb, 10)[0] * bs
            if op == 0x2F:
                return struct.unpack_from(">H", cdb, 7)[0] * bs if cdb[1] & 0x06 == 0x02 else (bs if cdb[1] & 0x06 == 0x06 else 0)
            if op == 0xAF:
                return struct.unpack_from(">I", cdb, 6)[0] * bs if cdb[1] & 0x06 == 0x02 else (bs if cdb[1] & 0x06 == 0x06 else 0)
            if op == 0x8F:
                return struct.unpack_from(">I", cdb, 10)[0] * bs if cdb[1] & 0x06 == 0x02 else (bs if cdb[1] & 0x06 == 0x06 else 0)
            if op == 0x41:
                return bs
            if op == 0x93:
                return 0 if cdb[1] & 0x01 else bs
            if op == 0x42:
                return struct.unpack_from(">H", cdb, 7)[0]
            if op == 0x89:
                return 2 * cdb[13] * bs
        except struct.error:
            return 0
        return 0

    async def execute(self, cdb: bytes, data_out: bytes) -> ScsiOutcome:
        try:
            handler = _HANDLERS.get(cdb[0])
            if handler is None:
                raise _illegal(INVALID_OPCODE)
            data = await handler(self, cdb, data_out)
            return ScsiOutcome(GOOD, data or b"")
        except SenseError as exc:
            return ScsiOutcome(CHECK_CONDITION, b"", exc.sense())
        except (IndexError, struct.error):
            return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *INVALID_FIELD_IN_CDB))

    # --- commands --------------------------------------------------------
    async def test_unit_ready(self, cdb: bytes, data: bytes) -> bytes:
        return b""

    async def request_sense(self, cdb: bytes, data: bytes) -> bytes:
        if cdb[1] & 0x01:
            sense = bytes([0x72, 0, 0, 0, 0, 0, 0, 0])
        else:
            sense = fixed_sense(NO_SENSE, 0, 0)
        return sense[:cdb[4]]

    async def inquiry(self, cdb: bytes, data: bytes) -> bytes:
        alloc = struct.unpack_from(">H", cdb, 3)[0]
        evpd = cdb[1] & 0x01
        page = cdb[2]
        if cdb[1] & 0xFE:
            raise _illegal()
        if not evpd:
            if page:
                raise _illegal()
            return self._standard_inquiry()[:alloc]
        builder = self._vpd_pages().get(page)
        if builder is None:
            raise _illegal()
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
            out[58 + 2 * i:60 + 2 * i] = _be(code, 2)
        return bytes(out)

    def _vpd_pages(self) -> dict[int, object]:
        pages = {0x00: self._vpd_supported, 0x80: self._vpd_serial, 0x83: self._vpd_devid,
                 0xB0: self._vpd_block_limits, 0xB1: self._vpd_block_characteristics}
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
        descs += bytes([0x51, 0x94, 0, 4]) + _be(1, 4)
        # SCSI name string of the target device (UTF-8, NUL terminated, padded to 4).
        name = self.target_iqn.encode() + b"\0"
        name += bytes(-len(name) % 4)
        descs += bytes([0x53, 0xA8, 0, len(name)]) + name
        return bytes([0, 0x83]) + _be(len(descs), 2) + bytes(descs)

    def _vpd_block_limits(self) -> bytes:
        out = bytearray(64)
        out[1] = 0xB0
        out[2:4] = _be(0x3C, 2)
        out[4] = 0x01  # WSNZ: WRITE SAME with zero blocks is rejected, not "to the end"
        out[5] = MAX_COMPARE_AND_WRITE
        out[6:8] = _be(1, 2)
        out[8:12] = _be(MAX_TRANSFER_BYTES // self.block_size, 4)
        out[12:16] = _be(min(1024 * 1024 // self.block_size, MAX_TRANSFER_BYTES // self.block_size), 4)
        if self.can_unmap:
            out[20:24] = _be(0xFFFFFFFF, 4)
            out[24:28] = _be(MAX_UNMAP_DESCRIPTORS, 4)
            out[28:32] = _be(1, 4)
        out[36:44] = _be(MAX_WRITE_SAME_BYTES // self.block_size, 8)
        return bytes(out)

    def _vpd_block_characteristics(self) -> bytes:
        out = bytearray(64)
        out[1] = 0xB1
        out[2:4] = _be(0x3C, 2)
        out[4:6] = _be(1, 2)  # non-rotating medium
        return bytes(out)

    def _vpd_lbp(self) -> bytes:
        # LBPU | LBPWS | LBPWS10 | LBPRZ, provisioning type: thin.
        return bytes([0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0])

    async def read_capacity10(self, cdb: bytes, data: bytes) -> bytes:
        if not cdb[8] & 0x01 and struct.unpack_from(">I", cdb, 2)[0]:
            raise _illegal()
        last = self.num_blocks() - 1
        return _be(min(max(last, 0), 0xFFFFFFFF), 4) + _be(self.block_size, 4)

    async def service_action_in16(self, cdb: bytes, data: bytes) -> bytes:
        sa = cdb[1] & 0x1F
        if sa != 0x10:
            raise _illegal()
        alloc = struct.unpack_from(">I", cdb, 10)[0]
        out = bytearray(32)
        out[0:8] = _be(max(self.num_blocks() - 1, 0), 8)
        out[8:12] = _be(self.block_size, 4)
        if self.can_unmap:
            out[14] = 0xC0  # LBPME | LBPRZ
        return bytes(out)[:alloc]

    def _rw_fields(self, cdb: bytes) -> tuple[int, int, int]:
        """(lba, blocks, protect-field) for the READ/WRITE/VERIFY CDB families."""
        op = cdb[0]
        if op in (0x08, 0x0A):
            lba = ((cdb[1] & 0x1F) << 16) | struct.unpack_from(">H", cdb, 2)[0]
            return lba, cdb[4] or 256, 0
        if op in (0x28, 0x2A, 0x2E, 0x2F, 0x34):
            return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0], cdb[1] >> 5
        if op in (0xA8, 0xAA, 0xAE, 0xAF):
            return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">I", cdb, 6)[0], cdb[1] >> 5
        return struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0], cdb[1] >> 5

    def _check_transfer(self, blocks: int) -> None:
        if blocks * self.block_size > MAX_TRANSFER_BYTES:
            raise _illegal()

    async def read(self, cdb: bytes, data: bytes) -> bytes:
        lba, blocks, protect = self._rw_fields(cdb)
        if protect:
            raise _illegal()
        self._check_range(lba, blocks)
        self._check_transfer(blocks)
        if not blocks:
            return b""
        return await self._pread(lba, blocks)

    async def write(self, cdb: bytes, data: bytes) -> bytes:
        lba, blocks, protect = self._rw_fields(cdb)
        self._check_writable()
        if protect:
            raise _illegal()
        self._check_range(lba, blocks)
        self._check_transfer(blocks)
        if not blocks:
            return b""
        # An iSCSI expected length shorter than the CDB's (residual overflow)
        # writes only the whole blocks that were actually transferred, as
        # RFC 7143 11.4.5.2 and libiscsi's residual tests expect.
        bs = self.block_size
        usable = min(blocks * bs, len(data) - len(data) % bs)
        fua = cdb[0] != 0x0A and bool(cdb[1] & 0x08)
        if usable:
            async with self.write_lock:
                await self._pwrite(lba, data[:usable], sync=fua)
        return b""

    async def verify(self, cdb: bytes, data: bytes) -> bytes:
        lba, blocks, protect = self._rw_fields(cdb)
        if protect:
            raise _illegal()
        bytchk = (cdb[1] >> 1) & 0x03
        if bytchk == 0x02:
            raise _illegal()
        self._check_range(lba, blocks)
        self._check_transfer(blocks)
        if not blocks or bytchk == 0:
            return b""
        stored = await self._pread(lba, blocks)
        bs = self.block_size
        expected = data[:blocks * bs] if bytchk == 1 else data[:bs] * blocks
        if len(expected) < len(stored):
            raise _illegal()
        if stored != expected:
            raise SenseError(MISCOMPARE, MISCOMPARE_DURING_VERIFY)
        return b""

    async def prefetch(self, cdb: bytes, data: bytes) -> bytes:
        if cdb[0] == 0x34:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
        self._check_range(lba, blocks)
        return b""

    async def synchronize_cache(self, cdb: bytes, data: bytes) -> bytes:
        if cdb[0] == 0x35:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
        self._check_range(lba, blocks)
        if not self.read_only:
            try:
                await asyncio.to_thread(os.fdatasync, self.fd)
            except OSError as exc:
                LOG.error("fdatasync on %s failed: %s", self.spec.path, exc)
                raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None
        return b""

    async def write_same(self, cdb: bytes, data: bytes) -> bytes:
        flags = cdb[1]
        if cdb[0] == 0x41:
            lba, blocks = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
            ndob = False
        else:
            lba, blocks = struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]
            ndob = bool(flags & 0x01)
        self._check_writable()
        if flags & 0xE0 or flags & 0x10:  # WRPROTECT, ANCHOR
            raise _illegal()
        unmap = bool(flags & 0x08)
        if blocks == 0 or blocks * self.block_size > MAX_WRITE_SAME_BYTES:
            raise _illegal()
        self._check_range(lba, blocks)
        bs = self.block_size
        block = bytes(bs) if ndob else data[:bs]
        if len(block) < bs:
            raise _illegal()
        if unmap and self.can_unmap and not any(block):
            try:
                await asyncio.to_thread(punch_hole, self.fd, lba * bs, blocks * bs)
                return b""
            except OSError as exc:
                LOG.warning("punching a hole in %s failed (%s); writing zeros", self.spec.path, exc.strerror)
        chunk_blocks = max(1, (1024 * 1024) // bs)
        done = 0
        while done < blocks:
            n = min(chunk_blocks, blocks - done)
            await self._pwrite(lba + done, block * n)
            done += n
        return b""

    async def unmap(self, cdb: bytes, data: bytes) -> bytes:
        if not self.can_unmap:
            raise _illegal(INVALID_OPCODE)
        self._check_writable()
        if cdb[1] & 0x01:  # ANCHOR
            raise _illegal()
        plen = struct.unpack_from(">H", cdb, 7)[0]
        if plen == 0:
            return b""
        if plen < 8 or len(data) < 8:
            raise _illegal(PARAM_LIST_LENGTH_ERROR)
        data = data[:plen]
        bd_len = struct.unpack_from(">H", data, 2)[0]
        descs = data[8:8 + bd_len]
        if len(descs) // 16 > MAX_UNMAP_DESCRIPTORS:
            raise _illegal(INVALID_FIELD_IN_PARAM)
        extents = []
        for off in range(0, len(descs) - 15, 16):
            lba, count = struct.unpack_from(">QI", descs, off)
            self._check_range(lba, count)
            if count:
                extents.append((lba, count))
        bs = self.block_size
        for lba, count in extents:
            try:
                await asyncio.to_thread(punch_hole, self.fd, lba * bs, count * bs)
            except OSError as exc:
                LOG.error("punching a hole in %s failed: %s", self.spec.path, exc.strerror)
                raise SenseError(MEDIUM_ERROR, WRITE_ERROR) from None
        return b""

    async def mode_sense(self, cdb: bytes, data: bytes) -> bytes:
        six = cdb[0] == 0x1A
        dbd = bool(cdb[1] & 0x08)
        llbaa = not six and bool(cdb[1] & 0x10)
        pc = cdb[2] >> 6
        page = cdb[2] & 0x3F
        subpage = cdb[3]
        alloc = cdb[4] if six else struct.unpack_from(">H", cdb, 7)[0]
        if pc == 3:
            raise _illegal(SAVING_PARAMS_NOT_SUPPORTED)
        changeable = pc == 1
        pages = {0x08: self._caching_page(changeable), 0x0A: self._control_page(changeable)}
        if page == 0x3F:
            if subpage not in (0x00, 0xFF):
                raise _illegal()
            body = b"".join(pages[k] for k in sorted(pages))
        elif page in pages and subpage == 0:
            body = pages[page]
        else:
            raise _illegal()
        dev_specific = (0x80 if self.read_only else 0) | 0x10  # WP, DPOFUA
        blocks = self.num_blocks()
        if dbd:
            desc = b""
        elif llbaa:
            desc = _be(blocks, 8) + bytes(4) + _be(self.block_size, 4)
        else:
            desc = bytes([0]) + _be(min(blocks, 0xFFFFFF), 3) + bytes([0]) + _be(self.block_size, 3)
        if six:
            header = bytes([0, 0, dev_specific, len(desc)])
            out = bytearray(header + desc + body)
            out[0] = min(len(out) - 1, 0xFF)
        else:
            header = bytes([0, 0, 0, dev_specific, 0x01 if llbaa and desc else 0, 0]) + _be(len(desc), 2)
            out = bytearray(header + desc + body)
            out[0:2] = _be(len(out) - 2, 2)
        return bytes(out)[:alloc]

    def _caching_page(self, changeable: bool) -> bytes:
        page = bytearray(20)
        page[0], page[1] = 0x08, 0x12
        if not changeable:
            page[2] = 0x04  # WCE: writes land in the page cache until SYNCHRONIZE CACHE
        return bytes(page)

    def _control_page(self, changeable: bool) -> bytes:
        page = bytearray(12)
        page[0], page[1] = 0x0A, 0x0A
        if not changeable:
            page[3] = 0x10  # queue algorithm modifier: unrestricted reordering allowed
            page[8:10] = _be(0xFFFF, 2)  # busy timeout period: unlimited
        return bytes(page)

    async def start_stop_unit(self, cdb: bytes, data: bytes) -> bytes:
        return b""

    async def prevent_allow(self, cdb: bytes, data: bytes) -> bytes:
        return b""


    async def compare_and_write(self, cdb: bytes, data: bytes) -> bytes:
        self._check_writable()
        if cdb[1] & 0xE0:
            raise _illegal()
        lba = struct.unpack_from(">Q", cdb, 2)[0]
        blocks = cdb[13]
        if blocks > MAX_COMPARE_AND_WRITE:
            raise _illegal()
        self._check_range(lba, blocks)
        need = blocks * self.block_size
        # The Data-Out buffer must be exactly verify + write data; anything else
        # means initiator and device disagree on the length (SBC-4 5.3).
        if len(data) != 2 * need:
            raise _illegal()
        if not blocks:
            return b""
        # Atomic against other writers of this LUN (other sessions, multipath).
        async with self.write_lock:
            stored = await self._pread(lba, blocks)
            if stored != data[:need]:
                offset = next(i for i in range(need) if stored[i] != data[i])
                raise SenseError(MISCOMPARE, MISCOMPARE_DURING_VERIFY, information=offset)
            await self._pwrite(lba, data[need:2 * need], sync=bool(cdb[1] & 0x08))
        return b""

    async def maintenance_in(self, cdb: bytes, data: bytes) -> bytes:
        if cdb[1] & 0x1F != 0x0C:
            raise _illegal()
        return report_supported_opcodes(cdb, self.can_unmap)


_HANDLERS = {
    0x00: LunBackend.test_unit_ready,
    0x03: LunBackend.request_sense,
    0x12: LunBackend.inquiry,
    0x25: LunBackend.read_capacity10,
    0x9E: LunBackend.service_action_in16,
    0x08: LunBackend.read, 0x28: LunBackend.read, 0xA8: LunBackend.read, 0x88: LunBackend.read,
    0x0A: LunBackend.write, 0x2A: LunBackend.write, 0xAA: LunBackend.write, 0x8A: LunBackend.write,
    0x2E: LunBackend.write, 0xAE: LunBackend.write, 0x8E: LunBackend.write,
    0x2F: LunBackend.verify, 0xAF: LunBackend.verify, 0x8F: LunBackend.verify,
    0x34: LunBackend.prefetch, 0x90: LunBackend.prefetch,
    0x35: LunBackend.synchronize_cache, 0x91: LunBackend.synchronize_cache,
    0x41: LunBackend.write_same, 0x93: LunBackend.write_same,
    0x42: LunBackend.unmap,
    0x1A: LunBackend.mode_sense, 0x5A: LunBackend.mode_sense,
    0x1B: LunBackend.start_stop_unit,
    0x1E: LunBackend.prevent_allow,
    0xA3: LunBackend.maintenance_in,
    0x89: LunBackend.compare_and_write,
}


def report_luns(cdb: bytes, lun_count: int) -> bytes:
    """REPORT LUNS is answered for the target, whatever LUN it was addressed to."""
    from iscsi_helper.lab.wire.pdu import encode_lun

    alloc = struct.unpack_from(">I", cdb, 6)[0]
    if cdb[2] not in (0x00, 0x01, 0x02) or alloc < 16:
        raise _illegal()
    body = b"".join(encode_lun(i) for i in range(lun_count)) if cdb[2] != 0x01 else b""
    return (_be(len(body), 4) + bytes(4) + body)[:alloc]


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
        return ScsiOutcome(GOOD, fixed_sense(ILLEGAL_REQUEST, *LUN_NOT_SUPPORTED)[:cdb[4]])
    return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *LUN_NOT_SUPPORTED))


async def execute(luns: list[LunBackend], lun: int, cdb: bytes, data_out: bytes) -> ScsiOutcome:
    if not cdb:
        return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *INVALID_OPCODE))
    if cdb[0] == 0xA0:
        try:
            return ScsiOutcome(GOOD, report_luns(cdb, len(luns)))
        except SenseError as exc:
            return ScsiOutcome(CHECK_CONDITION, b"", exc.sense())
        except (IndexError, struct.error):
            return ScsiOutcome(CHECK_CONDITION, b"", fixed_sense(ILLEGAL_REQUEST, *INVALID_FIELD_IN_CDB))
    if not 0 <= lun < len(luns):
        return no_such_lun(cdb)
    return await luns[lun].execute(cdb, data_out)


def _usage(op: int, byte1: int, middle: bytes) -> bytes:
    """CDB usage data: which bits of each CDB byte this device server honours."""
    return bytes([op, byte1]) + middle + b"\x00"


_FF = b"\xff"
# (opcode, service action or None) -> CDB usage data; the command set REPORT
# SUPPORTED OPERATION CODES advertises.  DPO/FUA are honoured (FUA syncs),
# protection fields are not (they are rejected), hence the byte-1 masks.
_USAGE: dict[tuple[int, int | None], bytes] = {
    (0x00, None): _usage(0x00, 0x00, bytes(3)),
    (0x03, None): _usage(0x03, 0x01, b"\x00\x00\xff"),
    (0x08, None): _usage(0x08, 0x1F, _FF * 3),
    (0x0A, None): _usage(0x0A, 0x1F, _FF * 3),
    (0x12, None): _usage(0x12, 0x01, _FF * 3),
    (0x1A, None): _usage(0x1A, 0x08, _FF * 3),
    (0x1B, None): _usage(0x1B, 0x01, b"\x00\x0f\xf7"),
    (0x1E, None): _usage(0x1E, 0x00, b"\x00\x00\x03"),
    (0x25, None): _usage(0x25, 0x00, _FF * 4 + b"\x00\x00\x01"),
    (0x28, None): _usage(0x28, 0x18, _FF * 4 + b"\x00" + _FF * 2),
    (0x2A, None): _usage(0x2A, 0x18, _FF * 4 + b"\x00" + _FF * 2),
    (0x2E, None): _usage(0x2E, 0x12, _FF * 4 + b"\x00" + _FF * 2),
    (0x2F, None): _usage(0x2F, 0x16, _FF * 4 + b"\x00" + _FF * 2),
    (0x34, None): _usage(0x34, 0x02, _FF * 4 + b"\x00" + _FF * 2),
    (0x35, None): _usage(0x35, 0x02, _FF * 4 + b"\x00" + _FF * 2),
    (0x41, None): _usage(0x41, 0x08, _FF * 4 + b"\x00" + _FF * 2),
    (0x42, None): _usage(0x42, 0x00, bytes(5) + _FF * 2),
    (0x5A, None): _usage(0x5A, 0x18, _FF * 2 + bytes(3) + _FF * 2),
    (0x88, None): _usage(0x88, 0x18, _FF * 12 + b"\x00"),
    (0x8A, None): _usage(0x8A, 0x18, _FF * 12 + b"\x00"),
    (0x8E, None): _usage(0x8E, 0x12, _FF * 12 + b"\x00"),
    (0x8F, None): _usage(0x8F, 0x16, _FF * 12 + b"\x00"),
    (0x89, None): _usage(0x89, 0x18, _FF * 8 + bytes(3) + _FF + b"\x00"),
    (0x90, None): _usage(0x90, 0x02, _FF * 12 + b"\x00"),
    (0x91, None): _usage(0x91, 0x02, _FF * 12 + b"\x00"),
    (0x93, None): _usage(0x93, 0x09, _FF * 12 + b"\x00"),
    (0x9E, 0x10): _usage(0x9E, 0x10, _FF * 12 + b"\x00"),
    (0xA0, None): _usage(0xA0, 0x00, b"\xff\x00\x00\x00" + _FF * 4 + b"\x00"),
    (0xA3, 0x0C): _usage(0xA3, 0x0C, b"\x87" + _FF * 7 + b"\x00"),
    (0xA8, None): _usage(0xA8, 0x18, _FF * 8 + b"\x00"),
    (0xAA, None): _usage(0xAA, 0x18, _FF * 8 + b"\x00"),
    (0xAE, None): _usage(0xAE, 0x12, _FF * 8 + b"\x00"),
    (0xAF, None): _usage(0xAF, 0x16, _FF * 8 + b"\x00"),
}
_SA_OPCODES = {op for op, sa in _USAGE if sa is not None}
_TIMEOUTS_DESCRIPTOR = _be(0x0A, 2) + bytes(10)


def report_supported_opcodes(cdb: bytes, can_unmap: bool) -> bytes:
    rctd = bool(cdb[2] & 0x80)
    options = cdb[2] & 0x07
    req_op = cdb[3]
    req_sa = struct.unpack_from(">H", cdb, 4)[0]
    alloc = struct.unpack_from(">I", cdb, 6)[0]
    table = {k: v for k, v in _USAGE.items() if can_unmap or k[0] != 0x42}
    if options == 0:
        body = bytearray()
        for (op, sa), usage in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            flags = (0x02 if rctd else 0) | (0x01 if sa is not None else 0)
            body += bytes([op, 0]) + _be(sa or 0, 2) + bytes([0, flags]) + _be(len(usage), 2)
            if rctd:
                body += _TIMEOUTS_DESCRIPTOR
        return (_be(len(body), 4) + bytes(body))[:alloc]
    if options == 1:
        if req_op in _SA_OPCODES:
            raise _illegal()
        key: tuple[int, int | None] = (req_op, None)
    elif options == 2:
        if req_op not in _SA_OPCODES:
            raise _illegal()
        key = (req_op, req_sa)
    elif options == 3:
        key = (req_op, req_sa if req_op in _SA_OPCODES else None)
    else:
        raise _illegal()
    usage = table.get(key)
    if usage is None:
        out = bytes([0, 0x01, 0, 0])  # SUPPORT: not supported
    else:
        out = bytes([0, (0x80 if rctd else 0) | 0x03]) + _be(len(usage), 2) + usage
        if rctd:
            out += _TIMEOUTS_DESCRIPTOR
    return out[:alloc]
