"""``target_helper = fake``: the contract with no target tool behind it.

It keeps "persisted" records and "live" targets as small JSON files under
``volumes_dir``, so it behaves across processes and restarts like a real
helper (a simulated reboot removes ``fake-live``) and runs the shared
behaviour suite without any external program. It exists for tests and
for trying the CLI; it exports nothing on the wire.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from iscsi_helper.codecs import export_json
from iscsi_helper.exception import TargetRemoveFailed
from iscsi_helper.fileutil import atomic_write, is_temp_file, read_text_or_none, remove_file
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.targets.iscsi import IscsiHelper
from iscsi_helper.tids import TidCounter


class FakeHelper(IscsiHelper):
    """``target_helper = fake``."""

    names = ("fake",)
    lun = 0
    supports_acl = True
    records_subdir = "fake"

    @property
    def live_dir(self) -> Path:
        """The "target": one file per live target, gone after a simulated reboot."""
        return Path(self.conf.volumes_dir) / "fake-live"

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        return [*super()._state_dirs(), (self.live_dir, True, None)]

    def _live_path(self, iqn: str) -> Path:
        return self.live_dir / quote(iqn, safe="")

    @staticmethod
    def _read(path: Path, volume_name: str | None = None) -> ExportRecord | None:
        text = read_text_or_none(path)
        return None if text is None else export_json.parse_record(text, path, volume_name)

    def _read_record(self, volume_name: str) -> ExportRecord | None:
        return self._read(self._record_path(volume_name), volume_name)

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        text = export_json.render_record(ExportRecord(spec))
        atomic_write(self._record_path(spec.volume_name), text)
        live = self._read(self._live_path(spec.iqn))
        # An internal lock (locking.named_lock): never a volume's.
        tid = live.tid if live else TidCounter(self.conf, self.live_dir / ".next-tid", "fake_tid").allocate()
        atomic_write(self._live_path(spec.iqn), export_json.render_record(ExportRecord(spec, tid)))
        return ExportRecord(spec, text=text)

    def live_spec(self, iqn: str) -> ExportSpec | None:
        """The full live configuration (a real target shows it through its own tools)."""
        live = self._read(self._live_path(iqn))
        return None if live is None else live.spec

    @staticmethod
    def _live_target(record: ExportRecord) -> LiveTarget:
        spec = record.spec
        return LiveTarget(
            spec.iqn,
            record.tid or 0,
            spec.portals,
            (spec.device_path,),
            lun_paths=((spec.lun, spec.device_path),),
            chap_users=(spec.chap.username,) if spec.chap else (),
            target_chap_users=(spec.target_chap.username,) if spec.target_chap else (),
            initiators=spec.initiators,
        )

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        live = self._read(self._live_path(iqn))
        return None if live is None else self._live_target(live)

    def _list_live(self) -> dict[str, LiveTarget]:
        try:
            names = os.listdir(self.live_dir)
        except FileNotFoundError:
            return {}
        targets = [
            self._live_target(record)
            for name in names
            if not name.startswith(".") and not is_temp_file(name)
            if (record := self._read(self.live_dir / name)) is not None
        ]
        return {t.iqn: t for t in targets}

    def _withdraw(self, volume_name: str, iqn: str) -> None:
        remove_file(self._live_path(iqn))
        if self._lookup(iqn, None) is not None:  # as every helper does: look before believing
            raise TargetRemoveFailed(volume_id=volume_name, reason=f"{iqn} is still live")
        remove_file(self._record_path(volume_name))
