"""Mode pages: MODE SENSE(6/10) encodings and which MODE SELECT(6/10) lists are taken or refused.

Sections of SPC-4 (r37, as mode.py cites it): 6.11/6.12 MODE SELECT, 6.13/6.14
MODE SENSE, 7.5 mode parameters (header, block descriptors; 7.5.7 Control
mode page); SBC-3 6.4 for the direct-access device-specific parameter (WP,
DPOFUA), the block descriptors and the Caching mode page. The changeable
fields are WCE (caching page) and SWP (control page); pages are not saveable.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from iscsi_helper.lab.wire.mode import CACHING_PAGE, CONTROL_PAGE, ModePages
from iscsi_helper.lab.wire.sense import (
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAM,
    PARAM_LIST_LENGTH_ERROR,
    SAVING_PARAMS_NOT_SUPPORTED,
    SenseError,
)

BLOCKS, BLOCK_SIZE = 131072, 512
CURRENT, CHANGEABLE, DEFAULT, SAVED = 0, 1, 2, 3
ALL_PAGES = 0x3F


def mode_sense6(page: int, pc: int = CURRENT, subpage: int = 0, dbd: bool = False, alloc: int = 255) -> bytes:
    return bytes([0x1A, 0x08 if dbd else 0, (pc << 6) | page, subpage, alloc, 0])


def mode_sense10(
    page: int, pc: int = CURRENT, subpage: int = 0, dbd: bool = False, llbaa: bool = False, alloc: int = 4096
) -> bytes:
    flags = (0x08 if dbd else 0) | (0x10 if llbaa else 0)
    return bytes([0x5A, flags, (pc << 6) | page, subpage, 0, 0, 0]) + alloc.to_bytes(2, "big") + b"\0"


def mode_select6(length: int, pf: bool = True, sp: bool = False) -> bytes:
    return bytes([0x15, (0x10 if pf else 0) | (0x01 if sp else 0), 0, 0, length, 0])


def mode_select10(length: int, pf: bool = True, sp: bool = False) -> bytes:
    return (
        bytes([0x55, (0x10 if pf else 0) | (0x01 if sp else 0), 0, 0, 0, 0, 0])
        + length.to_bytes(2, "big")
        + b"\0"
    )


def short_descriptor(blocks: int = BLOCKS, block_size: int = BLOCK_SIZE) -> bytes:
    return b"\0" + min(blocks, 0xFFFFFF).to_bytes(3, "big") + b"\0" + block_size.to_bytes(3, "big")


def list6(*pages: bytes, descriptor: bytes = b"") -> bytes:
    """A MODE SELECT(6) parameter list: header (mode data length reserved), descriptor, pages."""
    return bytes([0, 0, 0, len(descriptor)]) + descriptor + b"".join(pages)


def list10(*pages: bytes, descriptor: bytes = b"") -> bytes:
    return bytes(6) + len(descriptor).to_bytes(2, "big") + descriptor + b"".join(pages)


def sense_of(call: Callable[[], object]) -> tuple[int, int, int]:
    with pytest.raises(SenseError) as raised:
        call()
    return raised.value.key, raised.value.asc, raised.value.ascq


def pages_of(data: bytes, header_len: int, descriptor_len: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = header_len + descriptor_len
    while pos < len(data):
        code, length = data[pos] & 0x3F, data[pos + 1]
        out[code] = data[pos : pos + 2 + length]
        pos += 2 + length
    assert pos == len(data)
    return out


def sense(modes: ModePages, cdb: bytes, read_only: bool = False, blocks: int = BLOCKS) -> bytes:
    return modes.sense(cdb, read_only, blocks, BLOCK_SIZE)


# --- MODE SENSE: header and block descriptors ------------------------------------------------


def test_mode_sense6_header_descriptor_and_length() -> None:
    """SPC-4 7.5: MODE DATA LENGTH counts the bytes after itself; SBC-3 6.4: WP bit 7, DPOFUA bit 4
    (FUA is honoured), the short descriptor holds the block count and the block length."""
    data = sense(ModePages(), mode_sense6(CACHING_PAGE))
    assert data[0] == len(data) - 1
    assert data[1] == 0  # medium type
    assert data[2] == 0x10  # DPOFUA, not write-protected
    assert data[3] == 8
    assert data[4:12] == short_descriptor()
    assert set(pages_of(data, 4, 8)) == {CACHING_PAGE}


def test_mode_sense10_header_descriptor_and_length() -> None:
    data = sense(ModePages(), mode_sense10(CONTROL_PAGE))
    assert struct.unpack_from(">H", data)[0] == len(data) - 2
    assert data[3] == 0x10 and data[4] & 0x01 == 0  # DPOFUA; LONGLBA clear
    assert struct.unpack_from(">H", data, 6)[0] == 8
    assert data[8:16] == short_descriptor()
    assert set(pages_of(data, 8, 8)) == {CONTROL_PAGE}


def test_a_capacity_beyond_the_short_descriptor_reads_ffffff() -> None:
    """SBC-3 6.4: a count that does not fit the 3-byte field is reported as FFFFFFh."""
    data = sense(ModePages(), mode_sense6(CACHING_PAGE), blocks=1 << 30)
    assert data[5:8] == b"\xff\xff\xff"


def test_llbaa_gives_the_long_lba_descriptor() -> None:
    """SPC-4 6.14 LLBAA, 7.5: LONGLBA set, a 16-byte descriptor with an 8-byte block count."""
    blocks = (1 << 33) + 5
    data = sense(ModePages(), mode_sense10(CACHING_PAGE, llbaa=True), blocks=blocks)
    assert data[4] & 0x01
    assert struct.unpack_from(">H", data, 6)[0] == 16
    assert struct.unpack_from(">Q", data, 8)[0] == blocks
    assert struct.unpack_from(">I", data, 20)[0] == BLOCK_SIZE
    assert set(pages_of(data, 8, 16)) == {CACHING_PAGE}


@pytest.mark.parametrize(
    "cdb, header",
    [(mode_sense6(ALL_PAGES, dbd=True), 4), (mode_sense10(ALL_PAGES, dbd=True, llbaa=True), 8)],
    ids=["6", "10"],
)
def test_dbd_returns_no_block_descriptor(cdb: bytes, header: int) -> None:
    data = sense(ModePages(), cdb)
    length = data[3] if header == 4 else struct.unpack_from(">H", data, 6)[0]
    assert length == 0
    assert header == 4 or data[4] & 0x01 == 0  # no long descriptor, no LONGLBA
    assert set(pages_of(data, header, 0)) == {CACHING_PAGE, CONTROL_PAGE}


def test_the_allocation_length_cuts_the_data_but_not_the_mode_data_length() -> None:
    full = sense(ModePages(), mode_sense10(ALL_PAGES))
    cut = sense(ModePages(), mode_sense10(ALL_PAGES, alloc=10))
    assert cut == full[:10]
    assert struct.unpack_from(">H", cut)[0] == len(full) - 2
    assert sense(ModePages(), mode_sense6(ALL_PAGES, alloc=0)) == b""


def test_write_protect_shows_for_a_read_only_lun_and_under_swp() -> None:
    assert sense(ModePages(), mode_sense6(CACHING_PAGE), read_only=True)[2] & 0x80
    assert sense(ModePages(software_write_protect=True), mode_sense6(CACHING_PAGE))[2] & 0x80
    assert sense(ModePages(software_write_protect=True), mode_sense10(CACHING_PAGE))[3] & 0x80


# --- MODE SENSE: pages -------------------------------------------------------------------------


@pytest.mark.parametrize("subpage", [0x00, 0xFF])
def test_all_pages_come_in_ascending_page_code_order(subpage: int) -> None:
    data = sense(ModePages(), mode_sense6(ALL_PAGES, subpage=subpage, dbd=True))
    assert [data[4] & 0x3F, data[4 + 2 + data[5]] & 0x3F] == [CACHING_PAGE, CONTROL_PAGE]


def test_caching_page_reports_write_cache_enable() -> None:
    """SBC-3 caching mode page: 08h, PAGE LENGTH 12h, WCE byte 2 bit 2.

    RCD (bit 0) clear: reads are cached.
    """
    for wce in (True, False):
        page = pages_of(sense(ModePages(write_cache=wce), mode_sense6(CACHING_PAGE, dbd=True)), 4, 0)[
            CACHING_PAGE
        ]
        assert page[0] == CACHING_PAGE and page[1] == 0x12 and len(page) == 20
        assert bool(page[2] & 0x04) == wce
        assert page[2] & 0x01 == 0


def test_control_page_reports_one_task_set_restricted_reordering_fixed_sense_and_swp() -> None:
    """SPC-4 7.5.7: page 0Ah, PAGE LENGTH 0Ah; TST 000b, D_SENSE 0, QUEUE ALGORITHM MODIFIER 0
    (what ordering.py enforces and sense.py produces), SWP byte 4 bit 3, BUSY TIMEOUT PERIOD FFFFh."""
    for swp in (False, True):
        data = sense(ModePages(software_write_protect=swp), mode_sense10(CONTROL_PAGE, dbd=True))
        page = pages_of(data, 8, 0)[CONTROL_PAGE]
        assert page[0] == CONTROL_PAGE and page[1] == 0x0A and len(page) == 12
        assert page[2] >> 5 == 0  # TST
        assert page[2] & 0x04 == 0  # D_SENSE
        assert page[3] >> 4 == 0  # QUEUE ALGORITHM MODIFIER
        assert bool(page[4] & 0x08) == swp
        assert page[8:10] == b"\xff\xff"


def test_changeable_values_mark_only_wce_and_swp() -> None:
    data = sense(ModePages(), mode_sense6(ALL_PAGES, pc=CHANGEABLE, dbd=True))
    pages = pages_of(data, 4, 0)
    caching, control = pages[CACHING_PAGE], pages[CONTROL_PAGE]
    assert caching[2] == 0x04 and not any(caching[3:])
    assert control[4] == 0x08 and not any(control[2:4]) and not any(control[5:])


def test_default_values_stay_the_defaults_after_a_mode_select() -> None:
    """SPC-4 6.13 (PC 10b): the default values, not the current ones."""
    modes = ModePages()
    assert modes.select(
        mode_select10(len(flipped := list10(caching_page(wce=False), control_page(swp=True)))),
        flipped,
        BLOCK_SIZE,
    )
    pages = pages_of(sense(modes, mode_sense10(ALL_PAGES, pc=DEFAULT, dbd=True)), 8, 0)
    assert pages[CACHING_PAGE][2] & 0x04
    assert not pages[CONTROL_PAGE][4] & 0x08
    current = pages_of(sense(modes, mode_sense10(ALL_PAGES, pc=CURRENT, dbd=True)), 8, 0)
    assert not current[CACHING_PAGE][2] & 0x04 and current[CONTROL_PAGE][4] & 0x08


def test_saved_values_are_not_supported() -> None:
    """SPC-4 6.13 (PC 11b): SAVING PARAMETERS NOT SUPPORTED when there are no saved values."""
    assert sense_of(lambda: sense(ModePages(), mode_sense6(CACHING_PAGE, pc=SAVED))) == (
        ILLEGAL_REQUEST,
        *SAVING_PARAMS_NOT_SUPPORTED,
    )


@pytest.mark.parametrize("page, subpage", [(0x01, 0), (0x1C, 0), (CACHING_PAGE, 0x01), (ALL_PAGES, 0x05)])
def test_a_page_or_subpage_that_is_not_implemented_is_an_invalid_field_in_the_cdb(
    page: int, subpage: int
) -> None:
    assert sense_of(lambda: sense(ModePages(), mode_sense10(page, subpage=subpage))) == (
        ILLEGAL_REQUEST,
        *INVALID_FIELD_IN_CDB,
    )


# --- MODE SELECT --------------------------------------------------------------------------------


def caching_page(wce: bool = True) -> bytes:
    return ModePages(write_cache=wce).caching()


def control_page(swp: bool = False) -> bytes:
    return ModePages(software_write_protect=swp).control()


def select(modes: ModePages, params: bytes, ten: bool = True, **cdb_flags: bool) -> bool:
    cdb = mode_select10(len(params), **cdb_flags) if ten else mode_select6(len(params), **cdb_flags)
    return modes.select(cdb, params, BLOCK_SIZE)


def state(modes: ModePages) -> tuple[bool, bool]:
    return modes.write_cache, modes.software_write_protect


@pytest.mark.parametrize("ten", [False, True], ids=["6", "10"])
def test_what_mode_sense_returns_with_wce_cleared_is_taken_back(ten: bool) -> None:
    """The usual round trip: read the page, change a changeable bit, send it back."""
    modes = ModePages()
    page = bytearray(pages_of(sense(modes, mode_sense6(CACHING_PAGE, dbd=True)), 4, 0)[CACHING_PAGE])
    page[2] &= ~0x04
    params = list10(bytes(page)) if ten else list6(bytes(page))
    assert select(modes, params, ten=ten) is True
    assert state(modes) == (False, False)
    assert select(modes, params, ten=ten) is False  # nothing changed: no MODE PARAMETERS CHANGED
    assert state(modes) == (False, False)


def test_swp_is_taken_and_then_reported_as_write_protection() -> None:
    modes = ModePages()
    assert select(modes, list6(control_page(swp=True), descriptor=short_descriptor()), ten=False)
    assert state(modes) == (True, True)
    assert sense(modes, mode_sense6(CONTROL_PAGE))[2] & 0x80
    assert select(modes, list6(control_page(swp=False)), ten=False)
    assert state(modes) == (True, False)


def test_a_zero_parameter_list_length_changes_nothing_and_is_not_an_error() -> None:
    modes = ModePages()
    assert modes.select(mode_select10(0), b"", BLOCK_SIZE) is False
    assert modes.select(mode_select6(0), b"", BLOCK_SIZE) is False
    assert state(modes) == (True, False)


def test_page_format_zero_is_an_invalid_field_in_the_cdb() -> None:
    """PF=0 asks for vendor-specific pages, of which there are none."""
    modes = ModePages()
    assert sense_of(lambda: select(modes, list10(caching_page(wce=False)), pf=False)) == (
        ILLEGAL_REQUEST,
        *INVALID_FIELD_IN_CDB,
    )
    assert state(modes) == (True, False)


@pytest.mark.parametrize("ten", [False, True], ids=["6", "10"])
def test_save_pages_is_an_invalid_field_in_the_cdb_without_saved_pages(ten: bool) -> None:
    """SPC-4 6.11: "If the logical unit does not implement saved mode pages and the SP bit is set
    to one, then the command shall be terminated with ... INVALID FIELD IN CDB"."""
    modes = ModePages()
    params = list10(caching_page(wce=False)) if ten else list6(caching_page(wce=False))
    assert sense_of(lambda: select(modes, params, ten=ten, sp=True)) == (
        ILLEGAL_REQUEST,
        *INVALID_FIELD_IN_CDB,
    )
    assert state(modes) == (True, False)


@pytest.mark.parametrize(
    "params, length",
    [
        (list10(caching_page()), 7),  # cuts the header
        (list10(caching_page()), 8 + 1),  # cuts the page header
        (list10(caching_page()), 8 + 10),  # cuts the page
        (list10(caching_page(), descriptor=short_descriptor()), 8 + 4),  # cuts the block descriptor
        (list10(caching_page()), 8 + 20 + 4),  # longer than the data sent
    ],
    ids=["header", "page-header", "page", "descriptor", "beyond-data"],
)
def test_a_list_that_truncates_a_header_descriptor_or_page_is_a_length_error(
    params: bytes, length: int
) -> None:
    """SPC-4 6.11: truncation of any header, descriptor or page is PARAMETER LIST LENGTH ERROR."""
    modes = ModePages()
    assert sense_of(lambda: modes.select(mode_select10(length), params, BLOCK_SIZE)) == (
        ILLEGAL_REQUEST,
        *PARAM_LIST_LENGTH_ERROR,
    )
    assert state(modes) == (True, False)


def _with(page: bytes, index: int, value: int) -> bytes:
    changed = bytearray(page)
    changed[index] = value
    return bytes(changed)


@pytest.mark.parametrize(
    "page",
    [
        _with(caching_page(), 2, 0x04 | 0x01),  # RCD
        _with(caching_page(), 12, 0x80),  # FSW and friends
        _with(control_page(), 2, 0x04),  # D_SENSE (descriptor sense is not produced)
        _with(control_page(), 3, 0x10),  # QUEUE ALGORITHM MODIFIER 1
        _with(control_page(), 2, 0x20),  # TST 001b
        _with(control_page(), 9, 0x00),  # BUSY TIMEOUT PERIOD
    ],
    ids=["RCD", "caching-byte12", "D_SENSE", "QAM", "TST", "busy-timeout"],
)
def test_changing_a_field_that_is_not_changeable_is_refused_and_nothing_is_applied(page: bytes) -> None:
    """SPC-4 6.11: a field whose changeable mask is zero must carry its current value, else
    INVALID FIELD IN PARAMETER LIST. The whole list is checked before any of it is applied
    (mode.py), so the WCE change in front of the bad page does not happen."""
    modes = ModePages()
    params = list10(caching_page(wce=False), page)
    assert sense_of(lambda: select(modes, params)) == (ILLEGAL_REQUEST, *INVALID_FIELD_IN_PARAM)
    assert state(modes) == (True, False)


@pytest.mark.parametrize(
    "page",
    [
        bytes([0x01, 0x0A]) + bytes(10),  # read-write error recovery page: not implemented
        caching_page()[:1] + bytes([0x10]) + caching_page()[2:18],  # caching page with a wrong PAGE LENGTH
        bytes([0x40 | CONTROL_PAGE, 0x01, 0x00, 0x1C]) + bytes(28),  # SPF: a subpage
    ],
    ids=["unknown-page", "wrong-page-length", "subpage"],
)
def test_a_page_that_is_not_supported_as_sent_is_an_invalid_field_in_the_parameter_list(page: bytes) -> None:
    modes = ModePages()
    assert sense_of(lambda: select(modes, list10(page))) == (ILLEGAL_REQUEST, *INVALID_FIELD_IN_PARAM)
    assert state(modes) == (True, False)


def test_a_block_descriptor_must_keep_the_block_length() -> None:
    """The block length cannot be changed (there is no FORMAT UNIT): another length is refused, the
    current one accepted (and the block count, which MODE SELECT cannot change here, ignored)."""
    modes = ModePages()
    other = short_descriptor(block_size=4096)
    assert sense_of(lambda: select(modes, list10(caching_page(wce=False), descriptor=other))) == (
        ILLEGAL_REQUEST,
        *INVALID_FIELD_IN_PARAM,
    )
    assert state(modes) == (True, False)
    assert select(modes, list10(caching_page(wce=False), descriptor=short_descriptor(blocks=0)))
    assert state(modes) == (False, False)
