"""The iSCSI behaviour shared by every helper; a helper only says how to talk to its target.

The contract (which credentials to use, what to persist, when a live target
is "right", locking, idempotency, masking secrets) is decided once here and
in the modules this class is made of: the primitives a helper implements
(targets/primitives.py), the refusals decided before the first change
(targets/refusals.py), the second look after a change and the state a
failure left (targets/verification.py), the bulk operations
(targets/bulk.py), the records (targets/records.py) and reconcile
(targets/reconciling.py). This module keeps the flow of each single-export
operation: refuse, lock, read the record once, decide the spec, apply,
confirm, and undo what half-happened. Every public operation is a fixed
number of primitives, so its cost does not depend on how many exports the
node has.

Three rules hold for every operation:

* everything that can be refused is refused before any lock, file or tool
  is touched (``_check_volume`` and the configuration check when the helper
  is made), so a refusal changed nothing;
* after a change, the target's own state is looked at again, and the
  operation succeeds only if it shows what was asked: a tool's exit code
  alone is never believed;
* a failure after the first change says, on its one line, what state it
  left (``_changing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iscsi_helper import locking, secretmask
from iscsi_helper.connection import iscsi_properties
from iscsi_helper.exception import ExportNotFound, IscsiHelperError, PersistenceError
from iscsi_helper.formats import format_provider_auth, iscsi_name_key
from iscsi_helper.model import ExportRecord, ExportSpec, ExportStatus, Volume, VolumeLike
from iscsi_helper.targets.base import TargetHelper
from iscsi_helper.targets.bulk import BulkOperations
from iscsi_helper.targets.reconciling import Reconciling

LOG = secretmask.get_logger(__name__)


class IscsiHelper(BulkOperations, Reconciling, TargetHelper):
    """Shared iSCSI logic over a few helper-specific primitives (targets/primitives.py)."""

    def create_export(self, context: Any, volume: VolumeLike, volume_path: str) -> dict[str, str]:
        status = self.export(volume, volume_path)
        assert status.provider_location is not None and status.spec.chap is not None
        return {"location": status.provider_location, "auth": format_provider_auth(status.spec.chap)}

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

    def _undo(self, spec: ExportSpec, previous: ExportRecord | None, applied: ExportRecord) -> None:
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
            with (
                secretmask.handling_secrets(spec.secrets()),
                self._changing("ensure", spec.volume_name, spec.iqn),
            ):
                live = self._lookup(spec.iqn, record)
                if not self._already_applied(spec, record, live):
                    applied = (
                        self._apply(spec, record) if live is None else self._apply_seen(spec, record, live)
                    )
                    self._confirm(spec, applied)

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

    def terminate_connection(self, volume: VolumeLike, connector: Mapping[str, Any], **kwargs: Any) -> None:
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
            wanted = (
                (*current, initiator) if allowed else tuple(n for n in current if iscsi_name_key(n) != key)
            )
            spec = record.spec.with_initiators(wanted)
            with (
                secretmask.handling_secrets(record.spec.secrets()),
                self._changing("ACL change", volume.name, spec.iqn),
            ):
                self._confirm(spec, self._apply(spec, record))

    def extend_target(self, volume: VolumeLike) -> None:
        vol, iqn = self._check_volume(volume)
        with locking.volume_lock(self.conf, vol.name):
            record = self._own_record(vol.name)
            if record is None:
                raise ExportNotFound(volume=vol.id)
            with secretmask.handling_secrets(record.spec.secrets()), self._changing("extend", vol.name, iqn):
                self._confirm(record.spec, self._apply(record.spec, record))

    def get_export(self, volume: VolumeLike) -> ExportStatus | None:
        vol, _iqn = self._check_volume(volume)
        record = self._own_record(vol.name)
        if record is None:
            return None
        return ExportStatus(record.spec, self._lookup(record.spec.iqn, record))
