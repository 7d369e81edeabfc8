"""Mode pages: MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 6.11-6.14, 7.5).

Two pages are modelled, the Caching page (SBC-3 6.4.5) and the Control page
(SPC-4 7.5.7). Two fields are changeable: WCE (write cache enable: when 0,
every write is made durable before it completes) and SWP (software write
protect: when 1, every command that writes fails with DATA PROTECT, as the
WP bit then reports). The values are kept per logical unit, shared by all
I_T nexuses (SPC-4 7.5.1 lets a device server keep one set), and a change
raises MODE PARAMETERS CHANGED for the other nexuses (SPC-4 7.5.1). Saving
pages (SP=1) is not supported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from iscsi_helper.lab.wire.sense import (
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_PARAM,
    PARAM_LIST_LENGTH_ERROR,
    SAVING_PARAMS_NOT_SUPPORTED,
    SenseError,
    be,
    illegal,
)

CACHING_PAGE = 0x08
CONTROL_PAGE = 0x0A
MAX_PARAMETER_LIST = 4096


@dataclass
class ModePages:
    write_cache: bool = True  # WCE: writes land in the page cache until SYNCHRONIZE CACHE
    software_write_protect: bool = False  # SWP

    def caching(self, changeable: bool = False) -> bytes:
        page = bytearray(20)
        page[0], page[1] = CACHING_PAGE, 0x12
        if changeable:
            page[2] = 0x04
        elif self.write_cache:
            page[2] = 0x04
        return bytes(page)

    def control(self, changeable: bool = False) -> bytes:
        page = bytearray(12)
        page[0], page[1] = CONTROL_PAGE, 0x0A
        if changeable:
            page[4] = 0x08  # SWP
            return bytes(page)
        # TST 000b (one task set), QUEUE ALGORITHM MODIFIER 0: restricted reordering,
        # which iscsi_helper.lab.wire.ordering enforces.
        page[3] = 0x00
        if self.software_write_protect:
            page[4] = 0x08
        page[8:10] = be(0xFFFF, 2)  # busy timeout period: unlimited
        return bytes(page)

    def pages(self, changeable: bool) -> dict[int, bytes]:
        return {CACHING_PAGE: self.caching(changeable), CONTROL_PAGE: self.control(changeable)}

    def sense(self, cdb: bytes, read_only: bool, blocks: int, block_size: int) -> bytes:
        six = cdb[0] == 0x1A
        dbd = bool(cdb[1] & 0x08)
        llbaa = not six and bool(cdb[1] & 0x10)
        pc = cdb[2] >> 6
        page = cdb[2] & 0x3F
        subpage = cdb[3]
        alloc = cdb[4] if six else struct.unpack_from(">H", cdb, 7)[0]
        if pc == 3:
            raise illegal(SAVING_PARAMS_NOT_SUPPORTED)
        # PC 10b asks for the default values (SPC-4 6.13), whatever MODE SELECT has changed since.
        pages = (ModePages() if pc == 2 else self).pages(changeable=pc == 1)
        if page == 0x3F:
            if subpage not in (0x00, 0xFF):
                raise illegal()
            body = b"".join(pages[k] for k in sorted(pages))
        elif page in pages and subpage == 0:
            body = pages[page]
        else:
            raise illegal()
        dev_specific = (0x80 if read_only or self.software_write_protect else 0) | 0x10  # WP, DPOFUA
        if dbd:
            desc = b""
        elif llbaa:
            desc = be(blocks, 8) + bytes(4) + be(block_size, 4)
        else:
            desc = bytes([0]) + be(min(blocks, 0xFFFFFF), 3) + bytes([0]) + be(block_size, 3)
        if six:
            out = bytearray(bytes([0, 0, dev_specific, len(desc)]) + desc + body)
            out[0] = min(len(out) - 1, 0xFF)
        else:
            header = bytes([0, 0, 0, dev_specific, 0x01 if llbaa and desc else 0, 0]) + be(len(desc), 2)
            out = bytearray(header + desc + body)
            out[0:2] = be(len(out) - 2, 2)
        return bytes(out)[:alloc]

    def select(self, cdb: bytes, data: bytes, block_size: int) -> bool:
        """Apply a MODE SELECT parameter list; True if a value changed.

        Every field that is not changeable must carry its current value
        (SPC-4 6.11: otherwise INVALID FIELD IN PARAMETER LIST); the page is
        applied only once the whole list has been checked.
        """
        six = cdb[0] == 0x15
        if cdb[1] & 0x01:
            raise illegal()  # SP=1 without saved pages: INVALID FIELD IN CDB (SPC-4 6.11)
        if not cdb[1] & 0x10:
            raise illegal()  # PF=0: vendor-specific page format, not supported
        length = cdb[4] if six else struct.unpack_from(">H", cdb, 7)[0]
        if length == 0:
            return False
        if length > MAX_PARAMETER_LIST or len(data) < length:
            raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
        data = data[:length]
        header_len = 4 if six else 8
        if len(data) < header_len:
            raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
        desc_len = data[3] if six else struct.unpack_from(">H", data, 6)[0]
        pos = header_len
        if desc_len:
            if desc_len != 8:  # one short descriptor is all this device has (no LONGLBA)
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
            if len(data) < pos + 8:  # a truncated descriptor (SPC-4 6.11)
                raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
            if int.from_bytes(data[pos + 5 : pos + 8], "big") != block_size:
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
            pos += 8
        wce, swp = self.write_cache, self.software_write_protect
        while pos < len(data):
            if len(data) < pos + 2:
                raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
            code, page_len = data[pos] & 0x3F, data[pos + 1]
            if data[pos] & 0x40:  # SPF: no subpages here
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
            page = data[pos : pos + 2 + page_len]
            if len(page) != 2 + page_len:
                raise SenseError(ILLEGAL_REQUEST, PARAM_LIST_LENGTH_ERROR)
            if code == CACHING_PAGE and page_len == 0x12:
                wce = bool(page[2] & 0x04)
                _same_apart_from(page, self.caching(), self.caching(changeable=True))
            elif code == CONTROL_PAGE and page_len == 0x0A:
                swp = bool(page[4] & 0x08)
                _same_apart_from(page, self.control(), self.control(changeable=True))
            else:
                raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
            pos += 2 + page_len
        changed = (wce, swp) != (self.write_cache, self.software_write_protect)
        self.write_cache, self.software_write_protect = wce, swp
        return changed


def _same_apart_from(given: bytes, current: bytes, changeable: bytes) -> None:
    # Byte 0 bit 7 is PS, reserved in MODE SELECT: not compared.
    for i in range(1, len(current)):
        if (given[i] ^ current[i]) & ~changeable[i] & 0xFF:
            raise SenseError(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAM)
