"""``TargetDevice=``: LUN classes, options, identifiers and attaching the backing store.

Sources (under src/chiscsi/):
- classes register BLK first, then FILE (the VFS class, built by default),
  then MEM (base/target/lu_init.c 13-45; base/Makefile 30-37); with no class
  option a LUN gets the first registered class, BLK
  (private/klib/target/target_class.c 192-195);
- option parsing: private/klib/target/target_chelsio.c 8-150; MEM options:
  base/target/lu_mem.c 165-249 (``size=<n>MB|GB``, ``type=1..3``);
- identifiers: private/klib/target/lun.c 154-218 (generated SN/ID/WWN),
  220-268 (generated only when not configured, PROD defaults afterwards);
- one path in one target: lun.c 270-316; attach: base/target/lu_vfs.c 38-101
  (open O_RDWR|O_EXCL, or O_RDONLY for RO; a block device or a regular file,
  not empty), base/target/lu_blk.c 91-109 (BLK refuses what is not a block
  device); display: private/klib/common/iscsi_node.c 918-946.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import cstr, simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

CLASSES = ("BLK", "FILE", "MEM")  # registration order; the first is the default
DEFAULT_CLASS = CLASSES[0]
PRODUCT_ID = "CHISCSI Target"  # includes/common/iscsi_target_class.h 184
RAMDISK_DEFAULT_MB = 16  # base/target/lu_mem.c 29
NODE_MAX_LUN_COUNT = 512  # base/base.c 51 (module parameter default)
TARGET_LUN_MAX = 1024  # includes/common/iscsi_defs.h 44

# Flags in the order the display prints them (iscsi_node.c 923-936).
DISPLAY_FLAGS = ("RO", "NULLRW", "SYNC", "NONEXCL", "NOWCACHE", "PSMODE=1", "PSMODE=2")
SIMPLE_FLAGS = ("RO", "NULLRW", "SYNC", "NONEXCL", "NOWCACHE", "DIX")

# Layout of the identifier fields of struct chiscsi_target_lun
# (iscsi_target_class.h 272-276): prod_id[17] scsi_id[25] scsi_sn[17]
# scsi_wwn[17], then an unsigned int. SN=/ID=/WWN=/PROD= are copied with an
# unbounded strcpy, so a long value runs into the next field.
PROD_OFF, ID_OFF, SN_OFF, WWN_OFF, REGION_END = 0, 17, 42, 59, 80
ID_MAX, SN_MAX, WWN_MAX = 24, 16, 16


@dataclass
class Lun:
    path: str
    lclass: str
    flags: list[str] = field(default_factory=list)
    region: str = ""  # hex of the identifier region
    size: int = 0  # bytes
    rdev: int | None = None  # block devices: the device number held open
    dif_type: int = 0

    def field(self, offset: int) -> str:
        data = bytes.fromhex(self.region)
        end = data.find(b"\0", offset)
        return data[offset : end if end >= 0 else len(data)].decode("latin-1")

    @property
    def prod(self) -> str:
        return self.field(PROD_OFF)

    @property
    def sn(self) -> str:
        return self.field(SN_OFF)

    @property
    def scsi_id(self) -> str:
        return self.field(ID_OFF)

    @property
    def wwn(self) -> str:
        return self.field(WWN_OFF)

    @property
    def read_only(self) -> bool:
        return "RO" in self.flags

    @property
    def exclusive(self) -> bool:
        return "NONEXCL" not in self.flags

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "class": self.lclass,
            "flags": list(self.flags),
            "region": self.region,
            "size": self.size,
            "rdev": self.rdev,
            "dif_type": self.dif_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lun:
        rdev = data.get("rdev")
        return cls(
            str(data["path"]),
            str(data["class"]),
            [str(f) for f in data["flags"]],
            str(data["region"]),
            int(data["size"]),
            None if rdev is None else int(rdev),
            int(data.get("dif_type", 0)),
        )


class _Region:
    """The identifier bytes, written the way ``os_strcpy``/``sprintf`` write them."""

    def __init__(self) -> None:
        self.data = bytearray(REGION_END)

    def strcpy(self, offset: int, text: str) -> None:
        raw = text.encode("latin-1") + b"\0"
        room = REGION_END - offset
        self.data[offset : offset + min(len(raw), room)] = raw[:room]

    def first(self, offset: int) -> int:
        return self.data[offset]

    def read(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        return self.data[offset : end if end >= 0 else REGION_END].decode("latin-1")


def _signed_char(value: int) -> int:
    value &= 0xFF
    return value - 256 if value & 0x80 else value


def generate_string(base1: str, base2: str | None, buflen: int) -> str:
    """``generate_string`` (lun.c 154-188): Chelsio's OUI then XOR-ed name bytes in hex.

    ``base1`` is the target alias (an empty array when none is set, since
    ``n_alias`` is never NULL), ``base2`` the PROD= value. Reads one byte
    before each string, as the source does: that byte is 0 in both cases
    (the end of ``n_name[256]``, the top byte of ``prot_guard``).
    """
    b1 = base1.encode("latin-1")
    b2 = base2.encode("latin-1") if base2 is not None else b""

    def at1(k: int) -> int:
        return b1[k] if 0 <= k < len(b1) else 0

    def at2(k: int) -> int:
        return b2[k] if 0 <= k < len(b2) else 0

    length = min(4, buflen)
    out = "0743"[:length]
    i = j = 0
    while length + 2 < buflen:
        if base2 is not None:
            val = at1(len(b1) - i - 1) ^ at2(len(b2) - j - 1)
            j += 1
            if j > len(b2):
                j = 0
        else:
            val = at1(len(b1) - i - 1) ^ at1(i)
        signed = _signed_char(val)
        piece = f"{signed:02x}" if signed >= 0 else f"{signed & 0xFFFFFFFF:02x}"
        out += piece
        length += len(piece)
        i += 1
        if i >= len(b1):
            i = 0
    if length < buflen:
        val = (at1(len(b1) - i) ^ at1(i)) & 0xF
        out += f"{val:01x}"
    return out


def _mem_options(path: str, region_text: str, tokens: list[str], ebuf: Ebuf) -> tuple[int, int]:
    """``mem_config_parse`` (lu_mem.c 165-249): returns (size in MB, dif type)."""
    size = 0
    gb = False
    dif_type = 1
    for tok in tokens:
        if tok.startswith("size="):
            unit = tok[-2:]
            if unit == "MB":
                gb = False
            elif unit == "GB":
                gb = True
            else:
                ebuf.put(f"ERR! MEM: {path} size {tok} not in MB/GB.\n")
                raise KernelError("mem")
            digits = tok[5:-2]
            size, end = simple_strtoul(digits, 10)
            size &= 0xFFFFFFFF
            if not size:
                ebuf.put(f"ERR! MEM: {path} size invalid.\n")
                raise KernelError("mem")
            if end < len(digits):
                ebuf.put(f"ERR! {cstr(region_text)}: invalid decimal digits.\n")
                raise KernelError("mem")
        elif tok.startswith("type="):
            dif_type, _ = simple_strtoul(tok[5:], 10)
            dif_type &= 0xFFFFFFFF
            if dif_type not in (1, 2, 3):
                ebuf.put(f"ERR! invalid dif type {dif_type}.\n")
                raise KernelError("mem")
        else:
            ebuf.put(f"MEM: Unknown option {tok}.\n")
            raise KernelError("mem")
    return (size << 10 if gb else size), dif_type


def parse_lun(value: str, lun_index: int, alias: str, ebuf: Ebuf) -> Lun:
    """``config_parse_luns`` plus identifier generation (lun.c 237-268)."""
    tokens = value.split(",")
    path = tokens[0]
    lclass: str | None = None
    flags: set[str] = set()
    region = _Region()
    unmatched: list[str] = []
    region_text_parts: list[str] = []  # the option area as the C buffer holds it after zeroing
    for tok in tokens[1:]:
        if not tok:
            region_text_parts.append("")
            continue
        matched = True
        if lclass is None and tok in CLASSES:
            lclass = tok
        elif tok in SIMPLE_FLAGS:
            flags.add(tok)
        elif tok == "DIF":
            flags.update(("DIX", "DIF"))
        elif tok.startswith("SN="):
            region.strcpy(SN_OFF, tok[3:])
        elif tok.startswith("ID="):
            region.strcpy(ID_OFF, tok[3:])
        elif tok.startswith("WWN="):
            region.strcpy(WWN_OFF, tok[4:])
        elif tok.startswith("PROD="):
            region.strcpy(PROD_OFF, tok[5:])
        elif tok.startswith("PSMODE="):
            mode, _ = simple_strtoul(tok, 0, 7)
            if mode == 1:
                flags.add("PSMODE=1")
            elif mode == 2:
                flags.add("PSMODE=2")
            elif mode:
                ebuf.put(f"{path}, Unknown {tok}.\n")
                raise KernelError("psmode")
        else:
            matched = False
            unmatched.append(tok)
        region_text_parts.append("\0" * len(tok) if matched else tok)
    lclass = lclass or DEFAULT_CLASS
    size_mb = 0
    dif_type = 0
    if unmatched:
        if lclass != "MEM":
            ebuf.put(f"{path}: Unknown options for {lclass} luns.\n")
            raise KernelError("options")
        size_mb, dif_type = _mem_options(path, "\0".join(region_text_parts), unmatched, ebuf)
    prod = region.read(PROD_OFF) if region.first(PROD_OFF) else None
    if not region.first(ID_OFF):
        prefix = f"{lun_index}D"
        region.strcpy(ID_OFF, prefix + generate_string(alias, prod, ID_MAX - len(prefix)))
    if not region.first(SN_OFF):
        prefix = f"{lun_index}N"
        region.strcpy(SN_OFF, prefix + generate_string(alias, prod, SN_MAX - len(prefix)))
    if not region.first(WWN_OFF):
        prefix = f":W{lun_index}"
        region.strcpy(WWN_OFF, prefix + generate_string(alias, prod, WWN_MAX - len(prefix)))
    if not region.first(PROD_OFF):
        region.strcpy(PROD_OFF, PRODUCT_ID)
    ordered = [f for f in DISPLAY_FLAGS if f in flags] + sorted(flags - set(DISPLAY_FLAGS))
    lun = Lun(path, lclass, ordered, region.data.hex(), 0, None, dif_type if "DIX" in flags else 0)
    if lclass == "MEM":
        lun.size = (size_mb or RAMDISK_DEFAULT_MB) << 20
    return lun


def display(lun: Lun) -> str:
    """One ``\\tTargetDevice=`` line (iscsi_node.c 920-945)."""
    parts = [lun.path, lun.lclass] + [f for f in lun.flags if f in DISPLAY_FLAGS]
    if lun.prod:
        parts.append(f"PROD={lun.prod}")
    parts += [f"SN={lun.sn}", f"ID={lun.scsi_id}", f"WWN={lun.wwn}"]
    return "\tTargetDevice=" + ",".join(parts) + "\n"


# --------------------------------------------------------------------------
# attach
# --------------------------------------------------------------------------


@dataclass
class Attached:
    size: int
    rdev: int | None


def vfs_attach(lun: Lun, ebuf: Ebuf, exclusively_held: Callable[[int], bool]) -> Attached:
    """``vfs_attach`` (lu_vfs.c 38-101) on the emulator's file system.

    A block device opened O_EXCL stays held while the target lives; the
    emulator cannot keep descriptors between commands, so it records the
    device number and ``exclusively_held`` answers for earlier opens.
    """
    path = lun.path
    try:
        st = os.stat(path)
    except OSError as exc:
        ebuf.put(f"attach {path} failed {-(exc.errno or errno.EINVAL)}.\n")
        raise KernelError("attach") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode) and not lun.read_only:
        ebuf.put(f"attach {path} failed {-errno.EISDIR}.\n")
        raise KernelError("attach")
    if stat.S_ISSOCK(mode):
        ebuf.put(f"attach {path} failed {-errno.ENXIO}.\n")
        raise KernelError("attach")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        ebuf.put(f"{path} device type 0x{mode:x} NOT supported.\n")
        raise KernelError("attach")
    flags = (os.O_RDONLY if lun.read_only else os.O_RDWR) | getattr(os, "O_LARGEFILE", 0)
    if stat.S_ISBLK(mode) and lun.exclusive:
        flags |= os.O_EXCL
        if exclusively_held(st.st_rdev):
            ebuf.put(f"attach {path} failed {-errno.EBUSY}.\n")
            raise KernelError("attach")
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        ebuf.put(f"attach {path} failed {-(exc.errno or errno.EINVAL)}.\n")
        raise KernelError("attach") from None
    try:
        size = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(mode) else st.st_size
    finally:
        os.close(fd)
    if size == 0:
        ebuf.put(f"{path} size is ZERO.\n")
        raise KernelError("attach")
    return Attached(size, st.st_rdev if stat.S_ISBLK(mode) else None)


def attach(lun: Lun, ebuf: Ebuf, exclusively_held: Callable[[int], bool]) -> None:
    """The class's ``fp_attach``: FILE and BLK through the VFS, BLK only for block devices."""
    if lun.lclass == "MEM":
        return  # a RAM disk of lun.size bytes (lu_mem.c 289-322)
    got = vfs_attach(lun, ebuf, exclusively_held)
    if lun.lclass == "BLK" and got.rdev is None:
        ebuf.put(f"{lun.path} NOT BLK device.\n")
        raise KernelError("attach")
    lun.size = got.size
    lun.rdev = got.rdev
