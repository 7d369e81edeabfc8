"""IET's ietd.conf as the IET helper edits it: a file shared with other software and hand edits.

ietd reads it at boot, so it is what brings our exports back after a
reboot. Our blocks are changed one at a time under the file's own lock,
found by exact IQN, with every other byte kept (the codec,
:mod:`iscsi_helper.codecs.ietd_conf`), and the whole file is replaced
atomically, mode 0600 as it holds CHAP secrets.
"""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg

from iscsi_helper import locking
from iscsi_helper.codecs.ietd_conf import find_block, replace_block
from iscsi_helper.fileutil import atomic_write, read_text_or_none

# An internal lock (locking.named_lock): its namespace is not the volumes'.
CONF_LOCK = "iet_conf"


class IetdConf:
    """Read and change our blocks of one ietd.conf."""

    def __init__(self, conf: cfg.ConfigOpts, path: Path) -> None:
        self.conf = conf
        self.path = path

    def read(self) -> str:
        return read_text_or_none(self.path) or ""

    def put_block(self, iqn: str, block: str | None) -> str | None:
        """Put (or drop) the block of ``iqn``; returns the file's old text, for :meth:`put_back`."""
        with locking.named_lock(self.conf, CONF_LOCK):
            old = read_text_or_none(self.path)
            new = replace_block(old or "", iqn, block)
            if new != (old or ""):
                atomic_write(self.path, new, mode=0o600)
            return old

    def put_back(self, iqn: str, old_text: str | None) -> None:
        """Return only our block to what ``old_text`` had: others may have changed theirs since."""
        block = find_block(old_text, iqn) if old_text else None
        self.put_block(iqn, "".join(block) if block else None)
