"""Which files of a records directory are exports of ours, and how they are read and listed.

A mixin of :class:`~iscsi_helper.targets.iscsi.IscsiHelper`. A record is
adopted only when it is a regular file under a name our
``volume_name_template`` produces and its content describes the export of
that very name: an operator's copy (``volume-1.bak``), an editor's backup
(``volume-1~``) or a note is reported (``foreign-file``), never started,
moved or deleted.
"""

from __future__ import annotations

import abc
import os
import stat
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import secretmask, specs
from iscsi_helper.exception import PersistenceError, Refused
from iscsi_helper.fileutil import is_temp_file, sweep_temp_files
from iscsi_helper.model import ExportRecord

LOG = secretmask.get_logger(__name__)


class RecordKeeping(abc.ABC):
    """The records directory of one helper."""

    conf: cfg.ConfigOpts
    #: Records live in ``<volumes_dir>/<records_subdir>/<volume name>``.
    records_subdir: str = ""

    @abc.abstractmethod
    def _read_record(self, volume_name: str) -> ExportRecord | None:
        """The persisted export of ``volume_name``, or None; constant cost."""

    @property
    def records_dir(self) -> Path:
        return Path(self.conf.volumes_dir) / self.records_subdir

    def _record_path(self, volume_name: str) -> Path:
        return self.records_dir / volume_name

    def _record_names(self) -> list[str]:
        """Names of the files in ``records_dir`` that can be records (no dot files, no temp files)."""
        try:
            names = os.listdir(self.records_dir)
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith(".") and not is_temp_file(n)]

    def _own_record(self, volume_name: str) -> ExportRecord | None:
        """``_read_record``, refused (PersistenceError) when the file describes another export."""
        record = self._read_record(volume_name)
        if record is not None:
            expected = specs.target_iqn(self.conf, volume_name)
            if record.spec.iqn != expected or record.spec.volume_name != volume_name:
                raise PersistenceError(
                    path=self._record_path(volume_name),
                    reason=f"it describes {record.spec.iqn}, not {expected} "
                    "(a copy of another export's record?)",
                )
        return record

    def _foreign(self, name: str) -> str | None:
        """Why the entry ``name`` of the records directory is no record of ours; None if it may be."""
        if specs.template_id(self.conf, name) is None:
            return f"not a name volume_name_template {self.conf.volume_name_template!r} produces"
        try:
            mode = os.lstat(self._record_path(name)).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(mode):
            return "not a regular file"
        return None

    def _scan_records(self) -> tuple[list[ExportRecord], list[tuple[str, str]]]:
        """Every persisted export, and every other entry of the records directory with the reason.

        Only a regular file whose name our template produces and whose
        content describes the export of that name is adopted; anything
        else (``volume-1.bak``, ``volume-1~``, a copy) is never started,
        moved or deleted, and reconcile reports it.
        """
        records: list[ExportRecord] = []
        foreign: list[tuple[str, str]] = []
        for name in sorted(self._record_names()):
            why = self._foreign(name)
            if why is None:
                try:
                    record = self._own_record(name)
                except (PersistenceError, Refused) as err:
                    why = str(err)
                else:
                    if record is not None:
                        records.append(record)
            if why is not None:
                foreign.append((name, why))
        return records, foreign

    def _list_records(self) -> list[ExportRecord]:
        """Every persisted export (bulk paths only); one unreadable record cannot block a restore."""
        records, foreign = self._scan_records()
        for name, why in foreign:
            LOG.warning("Skipping %s in %s: %s", name, self.records_dir, why)
        return records

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        """Directories this helper writes: (path, walk below it, only temp files of this name)."""
        return [(self.records_dir, True, None)]

    def sweep_temp_files(self) -> list[Path]:
        """Drop temp files of writes whose process died before the rename (restart, reconcile --fix)."""
        removed = []
        for directory, recursive, of_file in self._state_dirs():
            for path in sweep_temp_files(directory, recursive=recursive, of_file=of_file):
                LOG.warning("Removed %s, left by a write interrupted before its rename", path)
                removed.append(path)
        return removed
