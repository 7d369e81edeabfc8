"""The iSCSI behaviour shared by every helper; a helper only says how to talk to its target.

The contract (which credentials to use, what to persist, when a live target
is "right", locking, idempotency, masking secrets) is decided once here.
A helper implements a handful of primitives: read/list its persisted
records, realise a spec (persist + start or reload, rolling back on
failure), look up one live target, list all live targets, and unrealise.
Every public operation is then a fixed number of those primitives, so its
cost does not depend on how many exports the node has.
"""

from __future__ import annotations

import abc
import contextlib
import os
import stat
from pathlib import Path
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from iscsi_helper import locking, secretmask
from iscsi_helper.connection import connector_initiator, iscsi_properties
from iscsi_helper.exception import (ExportNotFound, InvalidInput, IscsiHelperError,
                                    PersistenceError,
                                    TargetCreateFailed)
from iscsi_helper.fileutil import is_temp_file, sweep_temp_files
from iscsi_helper.formats import (ChapCredentials, ProviderLocation, format_provider_auth,
                                  parse_provider_auth, portals_from_config,
                                  validate_chap_credential, validate_iscsi_name)
from iscsi_helper.model import Drift, EnsureReport, ExportSpec, ExportStatus, LiveTarget, Volume
from iscsi_helper.targets.base import Target

LOG = secretmask.get_logger(__name__)

# Each of these is syntax in some target's format: ',' and '=' separate
# device options (chiscsi, ietd.conf), '"' quotes, '#' starts a comment in
# chiscsi.conf and ietd.conf, '\\' escapes.
_DEVICE_PATH_FORBIDDEN = {",": "a comma", '"': "a double quote", "\n": "a newline",
                          "\r": "a carriage return", "\x00": "a NUL byte", "=": "'='",
                          "#": "'#'", "\\": "a backslash"}


def validate_device_path(path: str) -> str:
    """An absolute path to an existing regular file or block device, safe in any target format."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(field="device path", value=repr(path), reason="must be a non-empty path")
    for char, name in _DEVICE_PATH_FORBIDDEN.items():
        if char in path:
            raise InvalidInput(field="device path", value=repr(path)[:80],
                               reason=f"must not contain {name}")
    if any(c.isspace() for c in path):
        raise InvalidInput(field="device path", value=repr(path)[:80],
                           reason="must not contain whitespace")
    if not path.isascii() or not path.isprintable():
        # Target configuration files are read as bytes or ASCII (chiscsi refuses others).
        raise InvalidInput(field="device path", value=repr(path)[:80],
                           reason="must be printable ASCII")
    if not os.path.isabs(path):
        raise InvalidInput(field="device path", value=repr(path), reason="must be absolute")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InvalidInput(field="device path", value=repr(path), reason="does not exist") from None
    except OSError as err:
        raise InvalidInput(field="device path", value=repr(path), reason=err.strerror) from None
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise InvalidInput(field="device path", value=repr(path),
                           reason="is neither a regular file nor a block device")
    return path


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


class ISCSITarget(Target):
    """Shared iSCSI logic over a few helper-specific primitives."""

    #: LUN of the exported disk (chiscsi and IET count from 0; tgt from 1).
    lun: int = 0
    #: Whether the helper restricts logins to initiators given to initialize_connection.
    supports_acl: bool = False

    # ----------------------------------------------------------- primitives

    @abc.abstractmethod
    def _read_record(self, volume_name: str) -> ExportSpec | None:
        """The persisted export of ``volume_name``, or None; constant cost."""

    @abc.abstractmethod
    def _list_records(self) -> list[ExportSpec]:
        """Every persisted export (used by list and restart, never per operation)."""

    @abc.abstractmethod
    def _realise(self, spec: ExportSpec, previous: ExportSpec | None,
                 listing: Mapping[str, LiveTarget] | None = None) -> None:
        """Persist ``spec`` and start (or reload) its target.

        On failure it must leave persistence as ``previous`` and the live
        target as it was, then raise. ``listing`` is the live state a bulk
        path (restore) read moments ago, before taking the volume's lock: a
        helper may trust it to skip a lookup of its own, and must cope when
        it proves stale (another process acted in between).
        """

    @abc.abstractmethod
    def _lookup(self, iqn: str) -> LiveTarget | None:
        """One live target by exact IQN, or None; constant cost."""

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
    def _unrealise(self, volume_name: str, iqn: str) -> None:
        """Stop the target and drop its persisted record; quiet when either is gone."""

    @property
    @abc.abstractmethod
    def records_dir(self) -> Path:
        """Where this helper keeps its per-export records."""

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

    def _live_matches(self, spec: ExportSpec, live: LiveTarget) -> bool:
        """Whether the live target shows what ``spec`` asks for (where the tool shows it)."""
        if live.devices is not None and tuple(live.devices) != (spec.device_path,):
            return False
        if live.portals is not None and set(live.portals) != set(spec.portals):
            return False
        return True

    # ------------------------------------------------------------ building

    def _volume_id_from_name(self, volume_name: str) -> str:
        """The id inside a name built by ``volume_name_template`` (files Cinder wrote carry no id)."""
        head, _, tail = self.conf.volume_name_template.partition("%s")
        if (volume_name.startswith(head) and volume_name.endswith(tail)
                and len(volume_name) > len(head) + len(tail)):
            return volume_name[len(head):len(volume_name) - len(tail)]
        return volume_name

    def _records_in(self, directory: Path) -> list[ExportSpec]:
        """Every record file in ``directory``, read with ``_read_record``.

        Temp files of interrupted writes are not records; an unreadable
        record is logged and skipped so one bad file cannot block a restore.
        """
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            if name.startswith(".") or is_temp_file(name):
                continue
            try:
                record = self._read_record(name)
            except PersistenceError as err:
                LOG.error("Skipping %s", err)
                continue
            if record is not None:
                records.append(record)
        return records

    def iqn_for(self, volume_name: str) -> str:
        return validate_iscsi_name(f"{self.conf.target_prefix}{volume_name}", "target IQN")

    def _configured_chap(self) -> ChapCredentials | None:
        """The configured account when ``use_chap_auth`` asks for it, checked as the option names.

        An empty or unusable value is refused rather than silently replaced
        by generated credentials: the deployer asked for this account, and
        the error names the option to fix (never the secret itself).
        """
        if not self.conf.use_chap_auth:
            return None
        for option, value, secret in (("chap_username", self.conf.chap_username, False),
                                      ("chap_password", self.conf.chap_password, True)):
            try:
                validate_chap_credential(value, option, secret=secret)
            except InvalidInput as err:
                raise InvalidInput(field=f"{option} (use_chap_auth = True)",
                                   value=err.fields.get("value", "<secret>"),
                                   reason=err.fields.get("reason", "unusable")) from None
        return ChapCredentials(self.conf.chap_username, self.conf.chap_password)

    def _desired_spec(self, volume: Volume, volume_path: str,
                      record: ExportSpec | None) -> ExportSpec:
        """Validate every input and decide credentials; nothing is touched yet.

        Credentials come from the caller's provider_auth first (it is what
        Cinder stored and gave the initiator), then our own record (the CLI
        and restarts), then the configured account, and only then fresh
        random ones.
        """
        iqn = self.iqn_for(volume.name)
        device = validate_device_path(volume_path)
        portals = tuple(portals_from_config(self.conf.target_ip_address,
                                            list(self.conf.target_secondary_ip_addresses),
                                            self.conf.target_port))
        chap = (parse_provider_auth(volume.provider_auth)
                or (record.chap if record else None)
                or self._configured_chap()
                or ChapCredentials.generate())
        target_chap = None
        if self.conf.iscsi_mutual_chap:
            target_chap = (record.target_chap if record and record.target_chap
                           else ChapCredentials.generate())
        initiators = record.initiators if record else ()
        return ExportSpec(volume.id, volume.name, iqn, device, self.lun, portals,
                          chap, target_chap, initiators)

    def _location(self, spec: ExportSpec, tid: int) -> str:
        return str(ProviderLocation(spec.portals, tid, spec.iqn, spec.lun))

    # ---------------------------------------------------------- operations

    def create_export(self, context: Any, volume: Any, volume_path: str) -> dict[str, str]:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()):
                self._realise(spec, record)
                live = self._lookup(spec.iqn)
                problem = ("the target tool reported success but the target is not live"
                           if live is None else self._live_differs(spec, live))
                if problem is not None:
                    self._undo(spec, record)
                    raise TargetCreateFailed(volume_id=vol.id, reason=problem)
                assert live is not None
                LOG.info("Exported volume %s as %s (tid %s)", vol.id, spec.iqn, live.tid)
                assert spec.chap is not None
                return {"location": self._location(spec, live.tid),
                        "auth": format_provider_auth(spec.chap)}

    def _undo(self, spec: ExportSpec, previous: ExportSpec | None) -> None:
        """Best effort return to ``previous`` after a create that half-happened."""
        try:
            if previous is None:
                self._unrealise(spec.volume_name, spec.iqn)
            else:
                self._realise(previous, spec)
        except IscsiHelperError as err:
            LOG.error("Could not undo the export of %s: %s", spec.volume_id, err)

    def ensure_export(self, context: Any, volume: Any, volume_path: str) -> None:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            spec = self._desired_spec(vol, volume_path, record)
            with secretmask.handling_secrets(spec.secrets()):
                live = self._lookup(spec.iqn)
                if not self._in_place(spec, record, live):
                    self._realise(spec, record)

    def _in_place(self, spec: ExportSpec, record: ExportSpec | None,
                  live: LiveTarget | None) -> bool:
        return record == spec and live is not None and self._live_matches(spec, live)

    def _note_live(self, spec: ExportSpec, live: LiveTarget) -> None:
        """A bulk restore found ``spec`` live and right: keep what its listing says, tool untouched.

        The default keeps nothing. IET overrides it: after a reboot ietd
        renumbers the targets it loads from ietd.conf, and a record left
        with the old tid would send every later operation to the proc file.
        """

    def ensure_exports(self, context: Any, volumes: Iterable[tuple[Any, str]],
                       progress: Callable[[], None] | None = None) -> EnsureReport:
        """One listing of the target, then one realise per export that is missing or differs."""
        pairs = list(volumes)
        wanted = []
        for volume, _path in pairs:
            with contextlib.suppress(IscsiHelperError):  # reported per volume below
                wanted.append(self.iqn_for(Volume.coerce(volume).name))
        live_targets = self._live_view(wanted)
        report = EnsureReport()
        for volume, volume_path in pairs:
            self._ensure_one(volume, volume_path, live_targets, report, require_record=False)
            if progress:
                progress()
        return report

    def restore_exports(self, volume_names: Iterable[str] | None = None,
                        progress: Callable[[], None] | None = None) -> EnsureReport:
        """Bring persisted exports back live (service start, ``iscsi-helper ensure``).

        The record is the truth here: it is re-read under the volume's lock,
        so an export removed meanwhile by another process stays removed.
        """
        if volume_names is None:
            self.sweep_temp_files()
        records = (self._list_records() if volume_names is None
                   else [r for r in map(self._read_record, volume_names) if r is not None])
        live_targets = self._live_view([r.iqn for r in records])
        report = EnsureReport()
        for record in records:
            volume = Volume(record.volume_id, record.volume_name,
                            provider_auth=format_provider_auth(record.chap) if record.chap else None)
            self._ensure_one(volume, record.device_path, live_targets, report, require_record=True)
            if progress:
                progress()
        return report

    def _ensure_one(self, volume: Any, volume_path: str, live_targets: Mapping[str, LiveTarget],
                    report: EnsureReport, *, require_record: bool) -> None:
        volume_id = str(getattr(volume, "id", None) or (volume.get("id") if isinstance(volume, Mapping) else "?"))
        try:
            vol = Volume.coerce(volume)
            with locking.named_lock(self.conf, vol.name):
                record = self._read_record(vol.name)
                if record is None and require_record:
                    return  # removed by someone else since the listing
                spec = self._desired_spec(vol, volume_path, record)
                with secretmask.handling_secrets(spec.secrets()):
                    live = live_targets.get(spec.iqn)
                    if self._in_place(spec, record, live):
                        assert live is not None
                        self._note_live(spec, live)
                        report.unchanged.append(vol.id)
                        return
                    self._realise(spec, record, live_targets)
                    (report.started if live is None else report.updated).append(vol.id)
        except IscsiHelperError as err:
            LOG.error("Could not ensure the export of volume %s: %s", volume_id, err)
            report.failed[volume_id] = str(err)

    def remove_export(self, context: Any, volume: Any) -> None:
        vol = Volume.coerce(volume)
        iqn = self.iqn_for(vol.name)
        with locking.named_lock(self.conf, vol.name):
            self._unrealise(vol.name, iqn)
        LOG.info("Removed the export of volume %s (%s)", vol.id, iqn)

    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        connector_initiator(connector)
        return True

    def initialize_connection(self, volume: Any, connector: Mapping[str, Any]) -> dict[str, Any]:
        vol = Volume.coerce(volume)
        properties = iscsi_properties(vol, connector, discard=self.conf.report_discard_supported)
        if self.supports_acl:
            self._set_initiator(vol, connector_initiator(connector), allowed=True)
        return {"driver_volume_type": self.conf.target_protocol, "data": properties}

    def terminate_connection(self, volume: Any, connector: Mapping[str, Any],
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
            current = set(record.initiators)
            wanted = current | {initiator} if allowed else current - {initiator}
            if wanted == current:
                return
            with secretmask.handling_secrets(record.secrets()):
                self._realise(record.with_initiators(tuple(wanted)), record)

    def extend_target(self, volume: Any) -> None:
        vol = Volume.coerce(volume)
        with locking.named_lock(self.conf, vol.name):
            record = self._read_record(vol.name)
            if record is None:
                raise ExportNotFound(volume=vol.id)
            with secretmask.handling_secrets(record.secrets()):
                self._realise(record, record)

    def list_exports(self) -> list[ExportStatus]:
        records = sorted(self._list_records(), key=lambda r: r.volume_name)
        live_targets = self._live_view([r.iqn for r in records])
        return [ExportStatus(r, live_targets.get(r.iqn)) for r in records]

    def get_export(self, volume: Any) -> ExportStatus | None:
        vol = Volume.coerce(volume)
        record = self._read_record(vol.name)
        if record is None:
            return None
        return ExportStatus(record, self._lookup(record.iqn))

    def reconcile(self, fix: bool = False) -> list[Drift]:
        """Compare persisted exports with the live target; with ``fix``, repair the drift.

        Only targets named with our ``target_prefix`` are ever considered:
        other software's targets on the same node are not ours to touch.
        Every repair re-reads the state under the volume's lock, so a
        concurrent create or remove is never undone.
        """
        if fix:
            self.sweep_temp_files()
        records = {r.iqn: r for r in self._list_records()}
        live_targets = self._live_view(list(records))
        prefix = self.conf.target_prefix
        report: list[Drift] = []
        for iqn in sorted(set(records) | {i for i in live_targets if i.startswith(prefix)}):
            record, live = records.get(iqn), live_targets.get(iqn)
            name = record.volume_name if record else iqn[len(prefix):]
            if record is None:
                state = "orphan-live"
            elif live is None:
                state = "missing-live"
            else:
                state = "ok" if self._live_matches(record, live) else "differs"
            drift = Drift(name, iqn, state)
            if fix and state != "ok":
                drift = self._repair(drift)
            report.append(drift)
        return report

    def _repair(self, drift: Drift) -> Drift:
        try:
            with locking.named_lock(self.conf, drift.volume_name):
                record = self._read_record(drift.volume_name) if drift.state != "orphan-live" else None
                if drift.state == "orphan-live":
                    if self._read_record(drift.volume_name) is None:
                        self._unrealise(drift.volume_name, drift.iqn)
                elif record is not None:
                    with secretmask.handling_secrets(record.secrets()):
                        self._realise(record, record)
        except IscsiHelperError as err:
            return Drift(drift.volume_name, drift.iqn, drift.state, False, str(err))
        return Drift(drift.volume_name, drift.iqn, drift.state, True)
