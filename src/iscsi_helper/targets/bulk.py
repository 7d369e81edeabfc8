"""Operations over many exports at once: ensure, restore and list.

Each lists the target once (and, after applying, once more to confirm), so
its cost is one listing plus one apply per export that is missing or
differs, not one lookup per export. The record is the truth: it is re-read
under each volume's lock, so an export removed meanwhile by another process
stays removed. Reconcile, the other bulk operation, is in
targets/reconciling.py; sweeping temp files in targets/records.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Set
from typing import Any

from iscsi_helper import locking, secretmask, specs
from iscsi_helper.exception import ExportNotFound, IscsiHelperError
from iscsi_helper.formats import format_provider_auth
from iscsi_helper.model import EnsureReport, ExportSpec, ExportStatus, LiveTarget, Volume, VolumeLike
from iscsi_helper.targets.base import Progress
from iscsi_helper.targets.records import RecordKeeping
from iscsi_helper.targets.refusals import Refusals
from iscsi_helper.targets.verification import SETTLE_HINT, Verification

LOG = secretmask.get_logger(__name__)


class BulkOperations(Refusals, Verification, RecordKeeping):
    """``ensure_exports``, ``restore_exports`` and ``list_exports`` over the primitives."""

    def ensure_exports(
        self, context: Any, volumes: Iterable[tuple[VolumeLike, str]], progress: Progress | None = None
    ) -> EnsureReport:
        """One listing of the target, then one apply per export that is missing or differs."""
        todo = list(volumes)
        return self._ensure_all([(volume, path, False) for volume, path in todo], progress)

    def restore_exports(
        self,
        volume_names: Iterable[str] | None = None,
        progress: Progress | None = None,
        *,
        missing_ok: bool = True,
    ) -> EnsureReport:
        """Bring persisted exports back live (service start, ``iscsi-helper ensure``).

        The record is the truth here: it is re-read under the volume's lock,
        so an export removed meanwhile by another process stays removed.
        """
        if volume_names is None:
            self.sweep_temp_files()
            records = self._list_records()
        else:
            names = list(volume_names)
            for name in names:  # every name refused or accepted before any is read
                self._check_volume({"id": specs.volume_id_from_name(self.conf, name), "name": name})
            found = {name: self._own_record(name) for name in names}
            missing = [name for name, record in found.items() if record is None]
            if missing and not missing_ok:
                # Named by id, as the caller (the CLI) named them: the names are ours.
                raise ExportNotFound(
                    volume=", ".join(specs.volume_id_from_name(self.conf, name) for name in missing)
                )
            records = [record for record in found.values() if record is not None]
        return self._ensure_all(
            [
                (
                    Volume(
                        r.spec.volume_id,
                        r.spec.volume_name,
                        provider_auth=format_provider_auth(r.spec.chap) if r.spec.chap else None,
                    ),
                    r.spec.device_path,
                    True,
                )
                for r in records
            ],
            progress,
        )

    def _ensure_all(self, todo: list[tuple[Any, str, bool]], progress: Progress | None) -> EnsureReport:
        wanted = []
        for volume, _path, _required in todo:
            with contextlib.suppress(IscsiHelperError):  # reported per volume below
                wanted.append(specs.target_iqn(self.conf, Volume.coerce(volume).name))
        live_targets = self._live_view(wanted)
        tids_in_use = frozenset(t.tid for t in live_targets.values())
        report = EnsureReport()
        applied: dict[str, tuple[ExportSpec, str]] = {}
        if progress:
            progress(0, len(todo))
        for done, (volume, volume_path, require_record) in enumerate(todo, 1):
            self._ensure_one(
                volume, volume_path, live_targets, tids_in_use, report, applied, require_record=require_record
            )
            if progress:
                progress(done, len(todo))
        if applied:
            self._confirm_all(applied, report)
        return report

    def _ensure_one(
        self,
        volume: Any,
        volume_path: str,
        live_targets: Mapping[str, LiveTarget],
        tids_in_use: Set[int],
        report: EnsureReport,
        applied: dict[str, tuple[ExportSpec, str]],
        *,
        require_record: bool,
    ) -> None:
        volume_id = str(
            getattr(volume, "id", None) or (volume.get("id") if isinstance(volume, Mapping) else "?")
        )
        try:
            vol = self._check_export(volume, volume_path)
            with locking.volume_lock(self.conf, vol.name):
                record = self._own_record(vol.name)
                if record is None and require_record:
                    return  # removed by someone else since the listing
                spec = self._desired_spec(vol, volume_path, record)
                with (
                    secretmask.handling_secrets(spec.secrets()),
                    self._changing("restore", spec.volume_name, spec.iqn),
                ):
                    live = live_targets.get(spec.iqn)
                    if record is not None and live is not None and self._already_applied(spec, record, live):
                        self._note_live(record, live)
                        report.unchanged.append(vol.id)
                        return
                    if live is None:
                        self._apply_missing(spec, record, tids_in_use)
                        report.started.append(vol.id)
                    else:
                        self._apply_seen(spec, record, live)
                        report.updated.append(vol.id)
                    applied[spec.iqn] = (spec, vol.id)
        except IscsiHelperError as err:
            LOG.error("Could not ensure the export of volume %s: %s", volume_id, err)
            report.failed[volume_id] = str(err)

    def _confirm_all(self, applied: Mapping[str, tuple[ExportSpec, str]], report: EnsureReport) -> None:
        """One more listing after a bulk apply: what a tool called done counts only if it is live.

        A constant cost per bulk operation (one listing), not per export.
        """
        try:
            after: Mapping[str, LiveTarget] = self._live_view(list(applied))
            failure = None
        except IscsiHelperError as err:
            after, failure = {}, f"could not be confirmed: {err}"
        for iqn, (spec, volume_id) in applied.items():
            problem = failure or self._problem(spec, after.get(iqn))
            if problem is None:
                continue
            for done in (report.started, report.updated):
                if volume_id in done:
                    done.remove(volume_id)
            live = (
                "live state unknown"
                if failure
                else ("not live" if iqn not in after else "live but not as recorded")
            )
            report.failed[volume_id] = (
                f"{problem}; state left: {spec.volume_name} persisted, {live}; {SETTLE_HINT}"
            )
            LOG.error("Export of volume %s not confirmed: %s", volume_id, report.failed[volume_id])

    def list_exports(self) -> list[ExportStatus]:
        records = sorted(self._list_records(), key=lambda r: r.spec.volume_name)
        live_targets = self._live_view([r.spec.iqn for r in records])
        return [ExportStatus(r.spec, live_targets.get(r.spec.iqn)) for r in records]
