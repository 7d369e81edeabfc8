"""Chelsio chiscsi (``iscsictl``): IET's job, done with one target block file per volume.

Each export is one ``target:`` block in ``<volumes_dir>/cxt/<volume name>``
(codecs/chiscsi.py), the layout Cinder's CxtAdm used, so its files are
adopted as they are. The file is written atomically (0600: it holds the
CHAP secret) and loaded with ``iscsictl -S``; no secret is ever on a
command line. All ``iscsictl`` calls go through adapters/iscsictl.py, which
serialises them per host and retries while another program holds chiscsi's
own lock. What chiscsi would refuse is refused before anything is written:
the block's values (codecs/chiscsi.py), the device's class and size, and a
device another volume exports (targets/chiscsi_devices.py, one read per
check). How the live targets are read and compared with a spec is in
targets/chiscsi_live.py; this module decides what to write, when to start
and stop, and what to put back.

Costs: create is two calls (``-S``, then ``-c target=<iqn>`` to confirm from
the detailed output); remove is two (``-s``, then the same lookup, since
``-s`` exits 0 even when the target stays); bulk paths list once and, past
the 128 KiB cut of that listing, look the rest up by name in batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from iscsi_helper import secretmask, specs
from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.codecs.iscsictl_output import StopOutcome
from iscsi_helper.devices import device_size, is_block_device
from iscsi_helper.exception import (
    CommandError,
    CommandNotExecutable,
    CommandNotFound,
    InvalidConfiguration,
    InvalidInput,
    PersistenceError,
    TargetBusy,
    TargetCreateFailed,
    TargetRemoveFailed,
)
from iscsi_helper.fileutil import atomic_write, read_text_or_none, remove_file
from iscsi_helper.formats import parse_provider_auth
from iscsi_helper.model import ExportRecord, ExportSpec, Volume, VolumeLike
from iscsi_helper.targets.chiscsi_devices import ChiscsiDevices
from iscsi_helper.targets.chiscsi_live import ChiscsiLiveState
from iscsi_helper.targets.iscsi import IscsiHelper

LOG = secretmask.get_logger(__name__)

SUBDIR = "cxt"


@dataclass(frozen=True)
class ChiscsiRecord(ExportRecord):
    """A record, and what of its block the spec does not say (codecs/chiscsi.py)."""

    device_class: str = codec.DEFAULT_CLASS
    acl_enabled: bool = False


class ChiscsiHelper(ChiscsiLiveState, ChiscsiDevices, IscsiHelper):
    """``target_helper = chiscsi`` (also ``iscsictl``, ``cxtadm``)."""

    names = ("chiscsi", "iscsictl", "cxtadm")
    lun = 0  # chiscsi numbers LUNs from 0
    supports_acl = True
    records_subdir = SUBDIR
    #: ``ACL=iname=`` takes iqn. and eui. names only (private/klib/text/iscsi_config_keys.c,
    #: kv_decode_acl; the emulator's kernel/acl.py): a naa. initiator is refused up front.
    acl_name_kinds = ("iqn.", "eui.")
    path_options = (("chiscsi_conf", None, "file"),)

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        return [*super()._state_dirs(), (self.devices.directory, False, None)]

    # -- persistence

    def _parse(self, text: str, volume_name: str) -> ChiscsiRecord:
        block = codec.parse(
            text,
            self._record_path(volume_name),
            volume_name,
            specs.volume_id_from_name(self.conf, volume_name),
            self.lun,
        )
        return ChiscsiRecord(
            block.spec, text=text, device_class=block.device_class, acl_enabled=block.acl_enabled
        )

    def _read_record(self, volume_name: str) -> ChiscsiRecord | None:
        text = read_text_or_none(self._record_path(volume_name))
        return None if text is None else self._parse(text, volume_name)

    # -- what chiscsi would refuse, checked before anything is written

    def _check_configuration(self) -> None:
        super()._check_configuration()
        chap = specs.configured_chap(self.conf)
        if chap is not None:
            try:
                codec.check_chap(chap, "initiator")
            except InvalidInput as err:
                raise InvalidConfiguration(
                    reason=f"option chap_username / chap_password: {str(err).rstrip('.')}"
                ) from None

    def _check_names(self, volume_name: str, iqn: str) -> None:
        codec.check_target_name(iqn)

    def _check_export(self, volume: VolumeLike, volume_path: str) -> Volume:
        """chiscsi's own refusals of the input, before the lock: CHAP values, the device."""
        vol = super()._check_export(volume, volume_path)
        chap = parse_provider_auth(vol.provider_auth)
        if chap is not None:
            codec.check_chap(chap, "initiator")
        self._check_device(vol.name, volume_path)
        return vol

    def _check_device(self, volume_name: str, device_path: str) -> None:
        if device_size(device_path) == 0:
            raise InvalidInput(
                field="device path",
                value=repr(device_path),
                reason="is empty (size 0), which chiscsi refuses (base/target/lu_vfs.c ~86-92)",
            )
        codec.device_class_for(self.conf.iscsi_iotype, is_block_device(device_path), device_path)
        self._refuse_if_taken(volume_name, device_path)

    def _desired_spec(self, volume: Volume, volume_path: str, record: ExportRecord | None) -> ExportSpec:
        spec = super()._desired_spec(volume, volume_path, record)
        codec.check_values(spec)  # again, on what the record adds (kept or mutual CHAP)
        self._check_device(spec.volume_name, spec.device_path)
        return spec

    def _device_class(self, spec: ExportSpec, previous: ChiscsiRecord | None) -> str:
        """The recorded class while the device stays (chiscsi cannot change a live LU's class,
        lun.c ~347-356), unless that class cannot take the device; else from iscsi_iotype."""
        is_block = is_block_device(spec.device_path)
        if (
            previous is not None
            and previous.spec.device_path == spec.device_path
            and (is_block or previous.device_class == codec.FILE)
        ):
            return previous.device_class
        return codec.device_class_for(self.conf.iscsi_iotype, is_block, spec.device_path)

    # -- start and stop

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ChiscsiRecord:
        path = self._record_path(spec.volume_name)
        old_text = previous.text if previous is not None else None
        old_block = (
            previous
            if isinstance(previous, ChiscsiRecord)
            else (None if old_text is None else self._parse(old_text, spec.volume_name))
        )
        device_class = self._device_class(spec, old_block)
        # A file that already says the same (one CxtAdm wrote, say) is adopted as it is.
        adopt = (
            old_block is not None
            and old_block.spec == spec
            and old_block.device_class == device_class
            and old_block.acl_enabled == bool(spec.initiators)
        )
        serial = hashlib.sha256(spec.volume_id.encode()).hexdigest()[:16]
        new_text = old_text if adopt and old_text is not None else codec.render(spec, device_class, serial)
        with self._device_lock(spec.device_path):
            self._refuse_if_taken(spec.volume_name, spec.device_path)  # again, under the lock
            claimed = self.devices.claim(spec.device_path, spec.volume_name)
            if new_text != old_text:
                atomic_write(path, new_text, mode=0o600)
            try:
                self.tool.start(spec.iqn, path)
            except CommandError as err:
                if old_text is None:
                    remove_file(path)
                elif new_text != old_text:
                    atomic_write(path, old_text, mode=0o600)
                if claimed:
                    self.devices.release(spec.device_path, spec.volume_name)
                if isinstance(err, (CommandNotFound, CommandNotExecutable)):
                    raise  # the tool is missing: that is the whole story
                raise TargetCreateFailed(volume_id=spec.volume_id, reason=str(err)) from None
        if old_block is not None and old_block.spec.device_path != spec.device_path:
            self._release(old_block.spec.device_path, spec.volume_name)
        return ChiscsiRecord(
            spec, text=new_text, device_class=device_class, acl_enabled=bool(spec.initiators)
        )

    def _withdraw(self, volume_name: str, iqn: str) -> None:
        """Stop the target, check it is gone, then drop the record and the device's claim.

        ``-s`` exits 0 when initiators stay logged in, leaving the target
        offline but not removed (``<iqn> busy.``): that is an error here,
        and the export is put back as its record says (see _after_busy).
        """
        try:
            outcome = self.tool.stop(iqn)
            if outcome is StopOutcome.BUSY:
                raise TargetBusy(volume_id=volume_name, reason=self._after_busy(volume_name, iqn))
            if self.tool.show([iqn])[iqn] is not None:
                raise TargetRemoveFailed(
                    volume_id=volume_name,
                    reason=f"iscsictl -s said '{iqn} {outcome.value}.' but iscsictl -c still "
                    "shows the target; the export record is kept",
                )
        except (CommandNotFound, CommandNotExecutable):
            raise
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        if outcome is StopOutcome.NOT_FOUND:
            LOG.debug("Target %s was not running", iqn)
        try:
            block = self._read_record(volume_name)
        except PersistenceError:
            block = None  # removed all the same; its device's claim goes stale, which is harmless
        remove_file(self._record_path(volume_name))
        if block is not None:
            self._release(block.spec.device_path, volume_name)

    def _after_busy(self, volume_name: str, iqn: str) -> str:
        """Undo a stop that chiscsi could only half do, and say what state is left.

        chiscsi closed the target to new logins and took its portals and
        LUN away, but kept it because sessions stayed (private/klib/common/
        iscsi_node.c ~180-220). The remove failed, so the export goes back
        to what its record says: started again from the record (chiscsi
        adds a fresh target; the offline one goes with its last session).
        """
        said = f"initiators stayed logged in through chiscsi's 30 s wait ('iscsictl -s' said '{iqn} busy.')"
        path = self._record_path(volume_name)
        if not path.exists():
            return (
                f"{said}; chiscsi left the target offline (no portal, no LUN), not removed, "
                "and there is no export record to restart it from"
            )
        try:
            self.tool.start(iqn, path)
            back = self.tool.show([iqn])[iqn] is not None
        except CommandError as err:
            LOG.error("Could not restart %s after a busy stop: %s", iqn, err)
            back = False
        if back:
            return (
                f"{said}, so nothing was removed: the target is live again from the export "
                "record, which is kept. Log the initiators out, then remove again"
            )
        return (
            f"{said}; chiscsi left the target offline (no portal, no LUN), not removed, and "
            "starting it again failed; the export record is kept, so 'iscsi-helper ensure' "
            "can bring it back. Log the initiators out, then remove again"
        )
