"""A root-owned file, read and replaced through the root helper, atomically and 0600.

When iscsi-helper runs as an unprivileged user (cinder-volume does) with
``root_helper`` set, a file that belongs to root, such as IET's
``/etc/iet/ietd.conf``, is written as root the same way
:func:`iscsi_helper.fileutil.atomic_write` writes in-process, with one
coreutils command per step, each allowed by one rootwrap filter
(``etc/iscsi-helper/rootwrap.d/iscsi-helper.filters``):

1. ``mktemp -p DIR .tmp-<name>.<host>.<pid>.XXXXXXXX``: a new file beside
   the target, so the rename stays on one file system; mktemp creates it
   ``O_EXCL`` with mode 0600, before any byte of the content exists;
2. ``dd of=TEMP conv=fsync status=none``: the content (CHAP secrets
   included) goes on dd's stdin, never on a command line, and is on disk
   before dd exits;
3. ``mv -f TEMP FILE``: one ``rename(2)``; a reader sees the old file or
   the new one, never a mix, and the new file is root's and 0600;
4. ``sync DIR``: the directory is fsynced, so the rename survives a crash.

A step that fails removes the temp file (``rm -f TEMP``); one whose process
died is swept later (:meth:`RootFile.sweep`), as in-process temp files are.
The temp name carries host and pid like every temp file of ours, so the
sweep tells a dead writer's leftovers from a live one's.
"""

from __future__ import annotations

import os
from pathlib import Path

from iscsi_helper import fileutil
from iscsi_helper.executor import Executor


class RootFile:
    """One file written as root through ``executor`` (whose root helper is set)."""

    def __init__(self, path: Path, executor: Executor) -> None:
        self.path = path
        self.executor = executor

    def read(self) -> str | None:
        """The file's text (None: no file); read in-process when this user may, else ``cat`` as root."""
        if not os.path.lexists(self.path):
            return None
        if os.access(self.path, os.R_OK):
            return fileutil.read_text_or_none(self.path)
        return self.executor.run("cat", str(self.path)).stdout

    def write(self, text: str) -> None:
        """Replace the file with ``text``: temp file (0600), fsync, rename, directory fsync."""
        directory = self.path.parent
        made = self.executor.run(
            "mktemp", "-p", str(directory), fileutil.temp_name_prefix(self.path.name) + "XXXXXXXX"
        )
        temp = made.stdout.strip()
        if os.path.dirname(temp) != str(directory):
            raise ValueError(f"mktemp made {temp!r}, not a file in {directory}")
        try:
            self.executor.run("dd", f"of={temp}", "conv=fsync", "status=none", stdin=text)
            self.executor.run("mv", "-f", temp, str(self.path))
        except BaseException:
            self._remove(Path(temp))
            raise
        self.executor.run("sync", str(directory))

    def _remove(self, temp: Path) -> bool:
        """Remove one of this file's temp files as root (the filter allows nothing else)."""
        self.executor.run("rm", "-f", str(temp))
        return True

    def sweep(self) -> list[Path]:
        """Remove this file's temp files whose writer died (listed in-process, removed as root)."""
        return fileutil.sweep_temp_files(self.path.parent, of_file=self.path.name, remove=self._remove)
