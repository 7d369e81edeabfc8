"""The iSCSI behaviour shared by every helper; a helper only says how to talk to its target.

The contract (which credentials to use, what to persist, when a live target
is "right", locking, idempotency, masking secrets) is decided once here.
A helper implements the primitives in the first section of
:class:`IscsiHelper` (docs/architecture.md states their contract). Every
public operation is a fixed number of them, so its cost does not depend on
how many exports the node has.

Three rules hold for every operation:

* everything that can be refused is refused before any lock, file or tool
  is touched (:meth:`IscsiHelper._check_volume` and the configuration check
  when the helper is made), so a refusal changed nothing;
* after a change, the target's own state is looked at again, and the
  operation succeeds only if it shows what was asked: a tool's exit code
  alone is never believed;
* a failure after the first change says, on its one line, what state it
  left (:meth:`IscsiHelper._changing`).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Set
from pathlib import Path
from typing import Any

from iscsi_helper import access, confcheck, locking, secretmask, specs
from iscsi_helper.connection import connector_initiator, iscsi_properties
from iscsi_helper.devices import validate_device_path
from iscsi_helper.exception import (
    CommandNotExecutable,
    CommandNotFound,
    CommandTimedOut,
    ExportInUse,
    ExportNotFound,
    InvalidConnector,
    IscsiHelperError,
    OperationFailed,
    PersistenceError,
    Refused,
    TargetCreateFailed,
)
from iscsi_helper.formats import format_provider_auth, iscsi_name_key, parse_provider_auth
from iscsi_helper.model import (
    EnsureReport,
    ExportRecord,
    ExportSpec,
    ExportStatus,
    LiveTarget,
    Volume,
    VolumeLike,
)
from iscsi_helper.targets.base import Progress, TargetHelper
from iscsi_helper.targets.reconciling import Reconciling
from iscsi_helper.targets.records import RecordKeeping

LOG = secretmask.get_logger(__name__)

SETTLE_HINT = "'iscsi-helper reconcile' reports it, 'reconcile --fix' settles it"


class IscsiHelper(RecordKeeping, Reconciling, TargetHelper):
    """Shared iSCSI logic over a few helper-specific primitives.

    Which files are records: targets/records.py; reconcile: targets/reconciling.py.
    """

    #: LUN of the exported disk (chiscsi and IET count from 0; tgt from 1).
    lun: int = 0
    #: The kinds of initiator name the helper's ACL takes (chiscsi: iqn. and eui. only).
    acl_name_kinds: tuple[str, ...] = ("iqn.", "eui.", "naa.")
    #: Path options the helper uses beyond volumes_dir and lock_path, and what each must be.
    path_options: tuple[tuple[str, str | None, confcheck.PathKind], ...] = ()

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

    def _apply_seen(self, spec: ExportSpec, previous: ExportRecord | None,
                    live: LiveTarget) -> ExportRecord:
        """``_apply`` when a fresh look at the target showed ``live`` (restore, reconcile --fix).

        A helper whose own lookups show less than ``live`` uses it (IET:
        which device the LUN is really on, which its records cannot prove
        after an interrupted device change).
        """
        return self._apply(spec, previous)

    @abc.abstractmethod
    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The live target ``iqn``, or None; constant cost (``record``: what is persisted for it)."""

    def _inspect(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The live target ``iqn`` with every field the tool can show, for reconcile's second look.

        Default: the lookup. A helper whose lookup proves only that the
        target exists (IET) reads its fuller view here.
        """
        return self._lookup(iqn, record)

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
        """What the tool showed that differs from ``spec``, in its words, for an error message.

        Only asked when ``_live_differences`` found a difference; None: the
        field names say it all.
        """
        return None

    @abc.abstractmethod
    def _withdraw(self, volume_name: str, iqn: str) -> None:
        """Stop the target, check it is gone from the target's own state, then drop the record.

        Quiet when either is gone already; a target still there after the
        tool said it was removed is a TargetRemoveFailed, its record kept.
        """

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

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:
        """A restore found ``record`` live and right: keep what its listing says (IET: the tid)."""

    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """The fields in which ``live`` shows something other than ``spec`` (only fields it shows)."""
        differ = []
        paths = dict(live.lun_paths) if live.lun_paths is not None else None
        if paths is not None:
            if spec.lun not in paths:
                differ.append("lun")
            elif paths[spec.lun] != spec.device_path:
                differ.append("device")
        elif live.devices is not None and tuple(live.devices) != (spec.device_path,):
            differ.append("device")
        if live.portals is not None and set(live.portals) != set(spec.portals):
            differ.append("portals")
        if live.chap_users is not None and set(live.chap_users) != (
                {spec.chap.username} if spec.chap else set()):
            differ.append("chap_user")
        if live.target_chap_users is not None and set(live.target_chap_users) != (
                {spec.target_chap.username} if spec.target_chap else set()):
            differ.append("target_chap_user")
        if live.initiators is not None and {iscsi_name_key(n) for n in live.initiators} != {
                iscsi_name_key(n) for n in spec.initiators}:
            differ.append("acl")
        return tuple(differ)

    def _live_matches(self, spec: ExportSpec, live: LiveTarget) -> bool:
        """Whether the live target shows what ``spec`` asks for (where the tool shows it)."""
        return not self._live_differences(spec, live)

    def _already_applied(self, spec: ExportSpec, record: ExportRecord | None,
                         live: LiveTarget | None) -> bool:
        return (record is not None and record.spec == spec and live is not None
                and self._live_matches(spec, live))

    # ----------------------------------------- refusals before the first touch

    def _check_configuration(self) -> None:
        confcheck.check_configuration(self.conf, self.path_options)

    def _own_state(self) -> list[str]:
        """Paths no device may be: our records and locks, and every target's configuration.

        Whichever helper runs, ietd.conf and chiscsi.conf hold the node's
        CHAP secrets: exported as a disk, any initiator could read them.
        """
        conf = self.conf
        return [conf.volumes_dir, conf.oslo_concurrency.lock_path, conf.iet_conf,
                conf.chiscsi_conf, conf.iet_proc_dir]

    def _check_names(self, volume_name: str, iqn: str) -> None:
        """Refuse a name this helper's target cannot carry (a helper adds its own rules)."""

    def _check_volume(self, volume: VolumeLike) -> tuple[Volume, str]:
        """The volume and its target IQN, or a refusal; no lock, file or tool is touched."""
        vol = Volume.coerce(volume)
        iqn = specs.target_iqn(self.conf, vol.name)
        specs.check_template_name(self.conf, vol.name)
        self._check_names(vol.name, iqn)
        return vol, iqn

    def _check_export(self, volume: VolumeLike, volume_path: str) -> Volume:
        """Everything an export's input can be refused for, before its lock is taken."""
        vol, _iqn = self._check_volume(volume)
        validate_device_path(volume_path, self._own_state())
        parse_provider_auth(vol.provider_auth)
        return vol

    def _check_initiator(self, connector: Mapping[str, Any]) -> str:
        initiator = connector_initiator(connector)
        if self.supports_acl and not initiator.startswith(self.acl_name_kinds):
            raise InvalidConnector(reason=f"initiator name {initiator!r}: the {self.names[0]} "
                                          f"helper's ACL takes only "
                                          f"{' and '.join(self.acl_name_kinds)} names")
        return initiator

    # ------------------------------------------------- verification, failure

    def _problem(self, spec: ExportSpec, live: LiveTarget | None) -> str | None:
        """Why ``live`` is not the export ``spec`` describes (None: it is)."""
        if live is None:
            return "the target tool reported success but the target is not live"
        differ = self._live_differences(spec, live)
        if not differ:
            return None
        detail = self._live_differs(spec, live)
        return ("the target tool reported success but the live target differs in "
                + ", ".join(differ) + (f" ({detail})" if detail else ""))

    def _confirm(self, spec: ExportSpec, applied: ExportRecord) -> LiveTarget:
        """Look at the target after an apply: it is done only if the target shows ``spec``."""
        live = self._lookup(spec.iqn, applied)
        problem = self._problem(spec, live)
        if problem is not None:
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=problem)
        assert live is not None
        return live

    def _state_left(self, volume_name: str, iqn: str, error: IscsiHelperError) -> str:
        """What a failed operation left: the record, and (unless the tool is broken) the target."""
        try:
            record = self._read_record(volume_name)
            persisted = "persisted" if record is not None else "not persisted"
        except IscsiHelperError:
            record, persisted = None, "record unreadable"
        if isinstance(error, CommandTimedOut):
            live = "live state unknown (the tool did not answer)"
        else:
            try:
                target = self._inspect(iqn, record)
            except IscsiHelperError:
                live = "live state unknown"
            else:
                live = "not live" if target is None else "live"
                if target is not None and record is not None:
                    differ = self._live_differences(record.spec, target)
                    live += f" (differs in {', '.join(differ)})" if differ else ""
        return f"{volume_name} {persisted}, {live}; {SETTLE_HINT}"

    @contextlib.contextmanager
    def _changing(self, operation: str, volume_name: str, iqn: str) -> Iterator[None]:
        """The part of an operation that may change state: its failures say what they left.

        A refusal raised in here (a value read back from a tool, say) is no
        longer "nothing was changed": it becomes an OperationFailed. A tool
        that is missing or not executable never ran, so the target was not
        touched and the helper put its files back: that line stays as it is.
        """
        try:
            yield
        except Refused as err:
            failure = OperationFailed(operation=f"The {operation} of {volume_name}", reason=str(err))
            raise failure.leaving(self._state_left(volume_name, iqn, failure)) from err
        except (CommandNotFound, CommandNotExecutable):
            raise
        except IscsiHelperError as err:
            err.leaving(self._state_left(volume_name, iqn, err))
            raise

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
                                  record.spec if record else None, self.lun, self._own_state())

    def create_export(self, context: Any, volume: VolumeLike, volume_path: str) -> dict[str, str]:
        status = self.export(volume, volume_path)
        assert status.provider_location is not None and status.spec.chap is not None
        return {"location": status.provider_location,
                "auth": format_provider_auth(status.spec.chap)}

    def export(self, volume: VolumeLike, volume_path: str, *, force: bool = False) -> ExportStatus:
        vol = self._check_export(volume, volume_path)
        with locking.volume_lock(self.conf, vol.name):
            record = self._own_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()):
                if record is not None and record.spec.device_path != spec.device_path:
                    self._check_device_swap(vol, spec, record, force)  # before any change
                with self._changing("export", spec.volume_name, spec.iqn):
                    applied = self._apply(spec, record)
                    try:
                        live = self._confirm(spec, applied)
                    except IscsiHelperError:
                        # Unconfirmed is not done: the caller treats the export as failed,
                        # so it must not stay behind, live and recorded.
                        self._undo(spec, record, applied)
                        raise
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
        vol = self._check_export(volume, volume_path)
        with locking.volume_lock(self.conf, vol.name):
            record = self._own_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()), \
                    self._changing("ensure", spec.volume_name, spec.iqn):
                live = self._lookup(spec.iqn, record)
                if not self._already_applied(spec, record, live):
                    applied = (self._apply(spec, record) if live is None
                               else self._apply_seen(spec, record, live))
                    self._confirm(spec, applied)

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
            names = list(volume_names)
            for name in names:  # every name refused or accepted before any is read
                self._check_volume({"id": specs.volume_id_from_name(self.conf, name), "name": name})
            found = {name: self._own_record(name) for name in names}
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
        applied: dict[str, tuple[ExportSpec, str]] = {}
        if progress:
            progress(0, len(todo))
        for done, (volume, volume_path, require_record) in enumerate(todo, 1):
            self._ensure_one(volume, volume_path, live_targets, tids_in_use, report, applied,
                             require_record=require_record)
            if progress:
                progress(done, len(todo))
        if applied:
            self._confirm_all(applied, report)
        return report

    def _ensure_one(self, volume: Any, volume_path: str, live_targets: Mapping[str, LiveTarget],
                    tids_in_use: Set[int], report: EnsureReport,
                    applied: dict[str, tuple[ExportSpec, str]], *, require_record: bool) -> None:
        volume_id = str(getattr(volume, "id", None)
                        or (volume.get("id") if isinstance(volume, Mapping) else "?"))
        try:
            vol = self._check_export(volume, volume_path)
            with locking.volume_lock(self.conf, vol.name):
                record = self._own_record(vol.name)
                if record is None and require_record:
                    return  # removed by someone else since the listing
                spec = self._desired_spec(vol, volume_path, record)
                with secretmask.handling_secrets(spec.secrets()), \
                        self._changing("restore", spec.volume_name, spec.iqn):
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
                        self._apply_seen(spec, record, live)
                        report.updated.append(vol.id)
                    applied[spec.iqn] = (spec, vol.id)
        except IscsiHelperError as err:
            LOG.error("Could not ensure the export of volume %s: %s", volume_id, err)
            report.failed[volume_id] = str(err)

    def _confirm_all(self, applied: Mapping[str, tuple[ExportSpec, str]],
                     report: EnsureReport) -> None:
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
            live = "live state unknown" if failure else (
                "not live" if iqn not in after else "live but not as recorded")
            report.failed[volume_id] = (f"{problem}; state left: {spec.volume_name} persisted, "
                                        f"{live}; {SETTLE_HINT}")
            LOG.error("Export of volume %s not confirmed: %s", volume_id, report.failed[volume_id])

    def remove_export(self, context: Any, volume: VolumeLike) -> None:
        self.unexport(volume)

    def unexport(self, volume: VolumeLike) -> bool:
        """Withdraw the export; False (and nothing run) when there was neither record nor target.

        Without a record, one lookup decides: a live target left by a crash
        between stop and record removal is still withdrawn.
        """
        vol, iqn = self._check_volume(volume)
        with locking.volume_lock(self.conf, vol.name):
            try:
                present = self._read_record(vol.name) is not None
            except PersistenceError:
                present = True  # a file is there: _withdraw decides what becomes of it
            if not present and self._lookup_unrecorded(iqn) is None:
                LOG.info("Volume %s has no export to remove (%s)", vol.id, iqn)
                return False
            with self._changing("remove", vol.name, iqn):
                self._withdraw(vol.name, iqn)
        LOG.info("Removed the export of volume %s (%s)", vol.id, iqn)
        return True

    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        self._check_initiator(connector)
        return True

    def initialize_connection(self, volume: VolumeLike, connector: Mapping[str, Any]) -> dict[str, Any]:
        vol = Volume.coerce(volume)
        initiator = self._check_initiator(connector) if self.supports_acl else None
        properties = iscsi_properties(vol, connector, discard=self.conf.report_discard_supported)
        if initiator is not None:
            self._check_volume(vol)
            self._set_initiator(vol, initiator, allowed=True)
        return {"driver_volume_type": self.conf.target_protocol, "data": properties}

    def terminate_connection(self, volume: VolumeLike, connector: Mapping[str, Any],
                             **kwargs: Any) -> None:
        if self.supports_acl and connector and connector.get("initiator"):
            vol, _iqn = self._check_volume(volume)
            self._set_initiator(vol, self._check_initiator(connector), allowed=False)

    def _set_initiator(self, volume: Volume, initiator: str, *, allowed: bool) -> None:
        """Add or drop ``initiator`` in the export's ACL, reloading the target only on change.

        Names are compared as RFC 3722 folds them, so two spellings of one
        initiator are one ACL entry.
        """
        with locking.volume_lock(self.conf, volume.name):
            record = self._own_record(volume.name)
            if record is None:
                if allowed:
                    raise ExportNotFound(volume=volume.id)
                return
            current = record.spec.initiators
            present = {iscsi_name_key(n) for n in current}
            key = iscsi_name_key(initiator)
            if (key in present) == allowed:
                return
            wanted = (*current, initiator) if allowed else tuple(
                n for n in current if iscsi_name_key(n) != key)
            spec = record.spec.with_initiators(wanted)
            with secretmask.handling_secrets(record.spec.secrets()), \
                    self._changing("ACL change", volume.name, spec.iqn):
                self._confirm(spec, self._apply(spec, record))

    def extend_target(self, volume: VolumeLike) -> None:
        vol, iqn = self._check_volume(volume)
        with locking.volume_lock(self.conf, vol.name):
            record = self._own_record(vol.name)
            if record is None:
                raise ExportNotFound(volume=vol.id)
            with secretmask.handling_secrets(record.spec.secrets()), \
                    self._changing("extend", vol.name, iqn):
                self._confirm(record.spec, self._apply(record.spec, record))

    def list_exports(self) -> list[ExportStatus]:
        records = sorted(self._list_records(), key=lambda r: r.spec.volume_name)
        live_targets = self._live_view([r.spec.iqn for r in records])
        return [ExportStatus(r.spec, live_targets.get(r.spec.iqn)) for r in records]

    def get_export(self, volume: VolumeLike) -> ExportStatus | None:
        vol, _iqn = self._check_volume(volume)
        record = self._own_record(vol.name)
        if record is None:
            return None
        return ExportStatus(record.spec, self._lookup(record.spec.iqn, record))
