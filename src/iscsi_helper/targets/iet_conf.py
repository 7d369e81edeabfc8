"""IET's ietd.conf as the IET helper edits it: a file shared with other software and hand edits.

ietd reads it at boot, so it is what brings our exports back after a
reboot. Our blocks are changed one at a time under the file's own lock,
found by exact IQN, with every other byte kept (the codec,
:mod:`iscsi_helper.codecs.ietd_conf`), and the whole file is replaced
atomically, mode 0600 as it holds CHAP secrets.

Who writes it: with ``root_helper`` set (an unprivileged cinder-volume),
root does, through the root helper (:class:`~iscsi_helper.rootfiles.RootFile`:
mktemp, dd, mv, sync, each allowed by one rootwrap filter), as Cinder's
IetAdm wrote it as root; without one, this process does, and must be able
to (root, or the owner of the file's directory: :meth:`IetdConf.access_needs`
says so before the first change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import access, locking, secretmask, specs
from iscsi_helper.codecs.ietd_conf import find_block, iter_blocks, parse_block, replace_block
from iscsi_helper.exception import IscsiHelperError
from iscsi_helper.executor import Executor
from iscsi_helper.fileutil import atomic_write, read_text_or_none
from iscsi_helper.formats import validate_volume_name
from iscsi_helper.model import ExportRecord, ExportSpec
from iscsi_helper.rootfiles import RootFile

LOG = secretmask.get_logger(__name__)

# An internal lock (locking.named_lock): its namespace is not the volumes'.
CONF_LOCK = "iet_conf"


class IetdConf:
    """Read and change our blocks of one ietd.conf."""

    def __init__(self, conf: cfg.ConfigOpts, path: Path, executor: Executor) -> None:
        self.conf = conf
        self.path = path
        #: Set when root writes the file (a root helper is configured).
        self.as_root = RootFile(path, executor) if executor.root_helper else None

    def _read_or_none(self) -> str | None:
        return self.as_root.read() if self.as_root else read_text_or_none(self.path)

    def _write(self, text: str) -> None:
        if self.as_root:
            self.as_root.write(text)
        else:
            atomic_write(self.path, text, mode=0o600)

    def read(self) -> str:
        return self._read_or_none() or ""

    def put_block(self, iqn: str, block: str | None) -> str | None:
        """Put (or drop) the block of ``iqn``; returns the file's old text, for :meth:`put_back`."""
        with locking.named_lock(self.conf, CONF_LOCK):
            old = self._read_or_none()
            new = replace_block(old or "", iqn, block)
            if new != (old or ""):
                self._write(new)
            return old

    def put_back(self, iqn: str, old_text: str | None) -> None:
        """Return only our block to what ``old_text`` had: others may have changed theirs since."""
        block = find_block(old_text, iqn) if old_text else None
        self.put_block(iqn, "".join(block) if block else None)

    def access_needs(self) -> list[access.Need]:
        """What this process must be able to write itself: the file, unless root writes it."""
        return [] if self.as_root else [access.Need("iet_conf", self.path, "file")]

    def sweep_as_root(self) -> list[Path]:
        """Root's temp files of this file left by writers that died (removed as root)."""
        return self.as_root.sweep() if self.as_root else []

    # -- blocks Cinder's IetAdm wrote, adopted as records without an index (so without a tid)

    def adopted(self, block: list[str], volume_name: str, lun: int) -> ExportRecord | None:
        """The export one block describes, if it has our LUN."""
        found = parse_block(block, self.path)
        if lun not in found.luns:
            return None
        return ExportRecord(
            ExportSpec(
                specs.volume_id_from_name(self.conf, volume_name),
                volume_name,
                found.iqn,
                found.luns[lun],
                lun,
                specs.configured_portals(self.conf),
                found.incoming,
                found.outgoing,
            )
        )

    def adopted_one(self, volume_name: str, lun: int) -> ExportRecord | None:
        block = find_block(self.read(), f"{self.conf.target_prefix}{volume_name}")
        return None if block is None else self.adopted(block, volume_name, lun)

    def adopted_all(
        self, ours: Callable[[str], str | None], skip: set[str], lun: int
    ) -> Iterator[ExportRecord]:
        """Every adoptable block whose name ``ours`` maps to a volume name not in ``skip``."""
        lines = self.read().splitlines(keepends=True)
        for iqn, start, end in iter_blocks(lines):
            name = ours(iqn)
            if name is None or name in skip:
                continue
            try:
                adopted = self.adopted(lines[start:end], validate_volume_name(name), lun)
            except IscsiHelperError as err:  # one bad block must not hide the others
                LOG.error("Skipping ietd.conf block %s: %s", iqn, err)
                continue
            if adopted is not None:
                yield adopted
