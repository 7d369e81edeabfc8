"""The iSCSI behaviour shared by every helper; a helper only says how to talk to its target.

The contract (which credentials to use, what to persist, when a live target
is "right", locking, idempotency, masking secrets) is decided once here.
A helper implements the primitives in the first section of
:class:`IscsiHelper` (docs/architecture.md states their contract). Every
public operation is a fixed number of them, so its cost does not depend on
how many exports the node has.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Collection, Iterable, Mapping, Set
from pathlib import Path
from typing import Any

from iscsi_helper import access, locking, secretmask, specs
from iscsi_helper.connection import connector_initiator, iscsi_properties
from iscsi_helper.exception import (
    ExportInUse,
    ExportNotFound,
    IscsiHelperError,
    PersistenceError,
    TargetCreateFailed,
)
from iscsi_helper.fileutil import is_temp_file, sweep_temp_files
from iscsi_helper.formats import format_provider_auth, validate_volume_name
from iscsi_helper.model import (
    Drift,
    EnsureReport,
    ExportRecord,
    ExportSpec,
    ExportStatus,
    LiveTarget,
    Volume,
    VolumeLike,
)
from iscsi_helper.targets.base import Progress, TargetHelper

LOG = secretmask.get_logger(__name__)


class IscsiHelper(TargetHelper):
    """Shared iSCSI logic over a few helper-specific primitives."""

    #: LUN of the exported disk (chiscsi and IET count from 0; tgt from 1).
    lun: int = 0
    #: Records live in ``<volumes_dir>/<records_subdir>/<volume name>``.
    records_subdir: str = ""

    # ----------------------------------------------------------- primitives

    @abc.abstractmethod
    def _read_record(self, volume_name: str) -> ExportRecord | None:
        """The persisted export of ``volume_name``, or None; constant cost."""

    @abc.abstractmethod
    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        """Persist ``spec`` and make its live target match it; returns the record now persisted.

        ``previous`` is the record read under the volume's lock moments
        before (None: nothing persisted). On failure the helper leaves its
        files as ``previous`` and the live target as it was, then raises.
        """

    def _apply_missing(self, spec: ExportSpec, previous: ExportRecord | None,
                       tids_in_use: Set[int]) -> ExportRecord:
        """``_apply`` when a restore's one listing (tids ``tids_in_use``) shows no ``spec.iqn``.

        A helper may trust the listing to skip a lookup of its own, and must
        cope when it proves stale (another process acted in between).
        """
        return self._apply(spec, previous)

    @abc.abstractmethod
    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The live target ``iqn``, or None; constant cost (``record``: what is persisted for it)."""

    @abc.abstractmethod
    def _list_live(self) -> dict[str, LiveTarget]:
        """All live targets by IQN: one call of the target tool."""

    def _live_view(self, iqns: Collection[str]) -> Mapping[str, LiveTarget]:
        """The live targets a bulk operation needs: at least those of ``iqns`` that are live.

        One listing by default. A helper whose listing can miss targets
        (chiscsi's is cut at 128 KiB of names) also looks ``iqns`` up.
        """
        return self._list_live()

    def _live_differs(self, spec: ExportSpec, live: LiveTarget) -> str | None:
        """Why the target a create just made is not the one asked for; None when it is.

        For a helper whose lookup shows more than ``_live_matches`` compares.
        """
        return None

    @abc.abstractmethod
    def _withdraw(self, volume_name: str, iqn: str) -> None:
        """Stop the target and drop its persisted record; quiet when either is gone."""

    def _lookup_unrecorded(self, iqn: str) -> LiveTarget | None:
        """The live target ``iqn`` that has no record (an orphan); only rare paths ask.

        Default: the lookup without a record. A helper whose lookup needs the
        record (IET vouches for its recorded tid) looks wider.
        """
        return self._lookup(iqn, None)

    def _session_count(self, iqn: str, record: ExportRecord | None,
                       live: LiveTarget) -> int | None:
        """Sessions logged in to the live target ``iqn``; None when the tool cannot show them.

        Asked only before a change that would disturb initiators (a device
        swap), so it may cost a tool call. Default: what the lookup showed.
        """
        return live.sessions

    def _list_records(self) -> list[ExportRecord]:
        """Every persisted export (bulk paths only); one unreadable record cannot block a restore."""
        records = []
        for name in self._record_names():
            try:
                record = self._read_record(name)
            except PersistenceError as err:
                LOG.error("Skipping %s", err)
                continue
            if record is not None:
                records.append(record)
        return records

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:
        """A restore found ``record`` live and right: keep what its listing says (IET: the tid)."""

    def _live_matches(self, spec: ExportSpec, live: LiveTarget) -> bool:
        """Whether the live target shows what ``spec`` asks for (where the tool shows it)."""
        if live.devices is not None and tuple(live.devices) != (spec.device_path,):
            return False
        if live.portals is not None and set(live.portals) != set(spec.portals):
            return False
        return True

    def _already_applied(self, spec: ExportSpec, record: ExportRecord | None,
                         live: LiveTarget | None) -> bool:
        return (record is not None and record.spec == spec and live is not None
                and self._live_matches(spec, live))

    # ------------------------------------------------------- records, state

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

    def _access_needs(self) -> list[access.Need]:
        """Paths this helper writes in-process (a helper adds its own, e.g. IET's ietd.conf)."""
        needs = [access.Need("volumes_dir", Path(self.conf.volumes_dir), "directory")]
        if not self.conf.coordination_url:
            needs.append(access.Need("[oslo_concurrency] lock_path",
                                     Path(self.conf.oslo_concurrency.lock_path), "directory"))
        return needs

    def check_access(self) -> None:
        access.check(self._access_needs())

    # ---------------------------------------------------------- operations

    def _desired_spec(self, volume: Volume, volume_path: str,
                      record: ExportRecord | None) -> ExportSpec:
        return specs.desired_spec(self.conf, volume, volume_path,
                                  record.spec if record else None, self.lun)

    def create_export(self, context: Any, volume: VolumeLike, volume_path: str) -> dict[str, str]:
        status = self.export(volume, volume_path)
        assert status.provider_location is not None and status.spec.chap is not None
        return {"location": status.provider_location,
                "auth": format_provider_auth(status.spec.chap)}

    def export(self, volume: VolumeLike, volume_path: str, *, force: bool = False) -> ExportStatus:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()):
                if record is not None and record.spec.device_path != spec.device_path:
                    self._check_device_swap(vol, spec, record, force)
                applied = self._apply(spec, record)
                try:
                    live = self._lookup(spec.iqn, applied)
                except IscsiHelperError:
                    # Unverified is not done: the caller will treat the export as
                    # failed, so it must not stay behind, live and recorded.
                    self._undo(spec, record, applied)
                    raise
                problem = ("the target tool reported success but the target is not live"
                           if live is None else self._live_differs(spec, live))
                if problem is not None:
                    self._undo(spec, record, applied)
                    raise TargetCreateFailed(volume_id=vol.id, reason=problem)
                assert live is not None
                LOG.info("Exported volume %s as %s (tid %s)", vol.id, spec.iqn, live.tid)
                return ExportStatus(spec, live)

    def _check_device_swap(self, volume: Volume, spec: ExportSpec, record: ExportRecord,
                           force: bool) -> None:
        """Refuse (unless ``force``) to swap the device of an export initiators use."""
        connected = []
        if record.spec.initiators:
            connected.append("access granted to " + ", ".join(record.spec.initiators))
        try:
            live = self._lookup(record.spec.iqn, record)
            sessions = self._session_count(record.spec.iqn, record, live) if live else 0
        except IscsiHelperError as err:  # unknown is not "nobody": nothing is changed
            raise TargetCreateFailed(volume_id=volume.id, reason=(
                f"cannot tell whether initiators use it before changing its device: {err}"
            )) from None
        if sessions:
            connected.append(f"{sessions} session(s) logged in")
        if not connected:
            return
        refusal = ExportInUse(volume_id=volume.id, connected="; ".join(connected),
                              new=spec.device_path, old=record.spec.device_path)
        if not force:
            raise refusal
        LOG.warning("Forced: %s", refusal)

    def _undo(self, spec: ExportSpec, previous: ExportRecord | None,
              applied: ExportRecord) -> None:
        """Best effort return to ``previous`` after a create that half-happened."""
        try:
            if previous is None:
                self._withdraw(spec.volume_name, spec.iqn)
            else:
                self._apply(previous.spec, applied)
        except IscsiHelperError as err:
            LOG.error("Could not undo the export of %s: %s", spec.volume_id, err)

    def ensure_export(self, context: Any, volume: VolumeLike, volume_path: str) -> None:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()):
                live = self._lookup(spec.iqn, record)
                if not self._already_applied(spec, record, live):
                    self._apply(spec, record)

    def ensure_exports(self, context: Any, volumes: Iterable[tuple[VolumeLike, str]],
                       progress: Progress | None = None) -> EnsureReport:
        """One listing of the target, then one apply per export that is missing or differs."""
        todo = list(volumes)
        return self._ensure_all([(volume, path, False) for volume, path in todo], progress)

    def restore_exports(self, volume_names: Iterable[str] | None = None,
                        progress: Progress | None = None, *,
                        missing_ok: bool = True) -> EnsureReport:
        """Bring persisted exports back live (service start, ``iscsi-helper ensure``).

        The record is the truth here: it is re-read under the volume's lock,
        so an export removed meanwhile by another process stays removed.
        """
        if volume_names is None:
            self.sweep_temp_files()
            records = self._list_records()
        else:
            found = {name: self._read_record(validate_volume_name(name)) for name in volume_names}
            missing = [name for name, record in found.items() if record is None]
            if missing and not missing_ok:
                # Named by id, as the caller (the CLI) named them: the names are ours.
                raise ExportNotFound(volume=", ".join(
                    specs.volume_id_from_name(self.conf, name) for name in missing))
            records = [record for record in found.values() if record is not None]
        return self._ensure_all(
            [(Volume(r.spec.volume_id, r.spec.volume_name,
                     provider_auth=format_provider_auth(r.spec.chap) if r.spec.chap else None),
              r.spec.device_path, True) for r in records], progress)

    def _ensure_all(self, todo: list[tuple[Any, str, bool]],
                    progress: Progress | None) -> EnsureReport:
        wanted = []
        for volume, _path, _required in todo:
            with contextlib.suppress(IscsiHelperError):  # reported per volume below
                wanted.append(specs.target_iqn(self.conf, Volume.coerce(volume).name))
        live_targets = self._live_view(wanted)
        tids_in_use = frozenset(t.tid for t in live_targets.values())
        report = EnsureReport()
        if progress:
            progress(0, len(todo))
        for done, (volume, volume_path, require_record) in enumerate(todo, 1):
            self._ensure_one(volume, volume_path, live_targets, tids_in_use, report,
                             require_record=require_record)
            if progress:
                progress(done, len(todo))
        return report

    def _ensure_one(self, volume: Any, volume_path: str, live_targets: Mapping[str, LiveTarget],
                    tids_in_use: Set[int], report: EnsureReport, *,
                    require_record: bool) -> None:
        volume_id = str(getattr(volume, "id", None)
                        or (volume.get("id") if isinstance(volume, Mapping) else "?"))
        try:
            vol = Volume.coerce(volume)
            with locking.named_lock(self.conf, vol.name):
                record = self._read_record(vol.name)
                if record is None and require_record:
                    return  # removed by someone else since the listing
                spec = self._desired_spec(vol, volume_path, record)
                with secretmask.handling_secrets(spec.secrets()):
                    live = live_targets.get(spec.iqn)
                    if record is not None and live is not None \
                            and self._already_applied(spec, record, live):
                        self._note_live(record, live)
                        report.unchanged.append(vol.id)
                        return
                    if live is None:
                        self._apply_missing(spec, record, tids_in_use)
                        report.started.append(vol.id)
                    else:
                        self._apply(spec, record)
                        report.updated.append(vol.id)
        except IscsiHelperError as err:
            LOG.error("Could not ensure the export of volume %s: %s", volume_id, err)
            report.failed[volume_id] = str(err)

    def remove_export(self, context: Any, volume: VolumeLike) -> None:
        self.unexport(volume)

    def unexport(self, volume: VolumeLike) -> bool:
        """Withdraw the export; False (and nothing run) when there was neither record nor target.

        Without a record, one lookup decides: a live target left by a crash
        between stop and record removal is still withdrawn.
        """
        vol = Volume.coerce(volume)
        iqn = specs.target_iqn(self.conf, vol.name)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            if record is None and self._lookup_unrecorded(iqn) is None:
                LOG.info("Volume %s has no export to remove (%s)", vol.id, iqn)
                return False
            self._withdraw(vol.name, iqn)
        LOG.info("Removed the export of volume %s (%s)", vol.id, iqn)
        return True

    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        connector_initiator(connector)
        return True

    def initialize_connection(self, volume: VolumeLike, connector: Mapping[str, Any]) -> dict[str, Any]:
        vol = Volume.coerce(volume)
        properties = iscsi_properties(vol, connector, discard=self.conf.report_discard_supported)
        if self.supports_acl:
            self._set_initiator(vol, connector_initiator(connector), allowed=True)
        return {"driver_volume_type": self.conf.target_protocol, "data": properties}

    def terminate_connection(self, volume: VolumeLike, connector: Mapping[str, Any],
                             **kwargs: Any) -> None:
        if self.supports_acl and connector and connector.get("initiator"):
            self._set_initiator(Volume.coerce(volume), connector_initiator(connector),
                                allowed=False)

    def _set_initiator(self, volume: Volume, initiator: str, *, allowed: bool) -> None:
        """Add or drop ``initiator`` in the export's ACL, reloading the target only on change."""
        with locking.named_lock(self.conf, volume.name):
            record = self._read_record(volume.name)
            if record is None:
                if allowed:
                    raise ExportNotFound(volume=volume.id)
                return
            current = set(record.spec.initiators)
            wanted = current | {initiator} if allowed else current - {initiator}
            if wanted == current:
                return
            with secretmask.handling_secrets(record.spec.secrets()):
                self._apply(record.spec.with_initiators(tuple(wanted)), record)

    def extend_target(self, volume: VolumeLike) -> None:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            if record is None:
                raise ExportNotFound(volume=vol.id)
            with secretmask.handling_secrets(record.spec.secrets()):
                self._apply(record.spec, record)

    def list_exports(self) -> list[ExportStatus]:
        records = sorted(self._list_records(), key=lambda r: r.spec.volume_name)
        live_targets = self._live_view([r.spec.iqn for r in records])
        return [ExportStatus(r.spec, live_targets.get(r.spec.iqn)) for r in records]

    def get_export(self, volume: VolumeLike) -> ExportStatus | None:
        vol = Volume.coerce(volume)
        record = self._read_record(vol.name)
        if record is None:
            return None
        return ExportStatus(record.spec, self._lookup(record.spec.iqn, record))

    def reconcile(self, fix: bool = False, *, stop_orphans: bool = False) -> list[Drift]:
        """Compare persisted exports with the live target; with ``fix``, repair the drift.

        Only targets named with our ``target_prefix`` are ever considered:
        other software's targets on the same node are not ours to touch.
        Every repair re-reads the state under the volume's lock, so a
        concurrent create or remove is never undone.
        """
        if fix:
            self.sweep_temp_files()
        records = {r.spec.iqn: r.spec for r in self._list_records()}
        live_targets = self._live_view(list(records))
        prefix = self.conf.target_prefix
        report: list[Drift] = []
        for iqn in sorted(set(records) | {i for i in live_targets if i.startswith(prefix)}):
            spec, live = records.get(iqn), live_targets.get(iqn)
            name = spec.volume_name if spec else iqn[len(prefix):]
            if spec is None:
                state = "orphan-live"
            elif live is None:
                state = "missing-live"
            else:
                state = "ok" if self._live_matches(spec, live) else "differs"
            drift = Drift(name, iqn, state)
            if fix and state != "ok" and (stop_orphans or state != "orphan-live"):
                drift = self._repair(drift)
            report.append(drift)
        return report

    def _repair(self, drift: Drift) -> Drift:
        try:
            with locking.named_lock(self.conf, drift.volume_name):
                record = self._read_record(drift.volume_name)
                if drift.state == "orphan-live":
                    if record is None:
                        self._withdraw(drift.volume_name, drift.iqn)
                elif record is not None:
                    with secretmask.handling_secrets(record.spec.secrets()):
                        self._apply(record.spec, record)
        except IscsiHelperError as err:
            return Drift(drift.volume_name, drift.iqn, drift.state, False, str(err))
        return Drift(drift.volume_name, drift.iqn, drift.state, True)
