"""Chelsio chiscsi (``iscsictl``): IET's job, done with one target block file per volume.

Each export is one ``target:`` block in ``<volumes_dir>/cxt/<volume name>``
(codecs/chiscsi.py), the layout Cinder's CxtAdm used, so its files are
adopted as they are. The file is written atomically (0600: it holds the
CHAP secret) and loaded with ``iscsictl -S``; no secret is ever on a
command line. All ``iscsictl`` calls go through adapters/iscsictl.py, which
serialises them per host and retries while another program holds chiscsi's
own lock. What chiscsi would refuse is refused before anything is written:
the block's values (codecs/chiscsi.py), the device's class and size, and a
device another volume exports (deviceindex.py, one read per check).

Costs: create is two calls (``-S``, then ``-c target=<iqn>`` to confirm from
the detailed output); remove is two (``-s``, then the same lookup, since
``-s`` exits 0 even when the target stays); bulk paths list once and, past
the 128 KiB cut of that listing, look the rest up by name in batches.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from iscsi_helper import locking, secretmask, specs
from iscsi_helper.adapters.iscsictl import Iscsictl
from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.codecs.iscsictl_output import StopOutcome, TargetDetail, TargetSummary
from iscsi_helper.deviceindex import DeviceIndex
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
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget, Volume, VolumeLike
from iscsi_helper.targets.iscsi import IscsiHelper

LOG = secretmask.get_logger(__name__)

SUBDIR = "cxt"
DEVICES_SUBDIR = "cxt-devices"


@dataclass(frozen=True)
class ChiscsiLive(LiveTarget):
    """A live target; ``detail`` is what ``-c target=<iqn>`` showed (None: read from the summary).

    ``tid`` carries the portal group tag, which is what provider_location's
    number is in chiscsi's case (docs/helpers/chiscsi.md says why): chiscsi
    shows no target id for a named lookup, and no client reads it back.
    """

    detail: TargetDetail | None = None


@dataclass(frozen=True)
class ChiscsiRecord(ExportRecord):
    """A record, and what of its block the spec does not say (codecs/chiscsi.py)."""

    device_class: str = codec.DEFAULT_CLASS
    acl_enabled: bool = False


class _Listing(dict[str, LiveTarget]):
    """The targets ``-c target=ALL`` showed, and whether its name buffer may have been cut."""

    may_be_cut: bool = False


def _live(iqn: str, shown: TargetSummary | TargetDetail) -> ChiscsiLive:
    portals = tuple(p for group in shown.portal_groups for p in group.portals)
    devices = tuple(d.path for d in shown.devices)
    detail = shown if isinstance(shown, TargetDetail) else None
    return ChiscsiLive(iqn, codec.PORTAL_GROUP_TAG, portals, devices, detail)


class ChiscsiHelper(IscsiHelper):
    """``target_helper = chiscsi`` (also ``iscsictl``, ``cxtadm``)."""

    names = ("chiscsi", "iscsictl", "cxtadm")
    lun = 0  # chiscsi numbers LUNs from 0
    supports_acl = True
    records_subdir = SUBDIR
    #: ``ACL=iname=`` takes iqn. and eui. names only (private/klib/text/iscsi_config_keys.c,
    #: kv_decode_acl; the emulator's kernel/acl.py): a naa. initiator is refused up front.
    acl_name_kinds = ("iqn.", "eui.")
    path_options = (("chiscsi_conf", None, "file"),)

    @functools.cached_property
    def tool(self) -> Iscsictl:
        # The lock is per host: chiscsi's own is (its pid file), and a
        # coordination backend shared by several hosts must not serialise them.
        host_lock = f"iscsictl-{socket.gethostname()}"
        return Iscsictl(self.executor, lambda: locking.named_lock(self.conf, host_lock),
                        self.conf.chiscsi_conf, self.conf.chiscsi_lock_retry_timeout)

    @functools.cached_property
    def devices(self) -> DeviceIndex:
        return DeviceIndex(Path(self.conf.volumes_dir) / DEVICES_SUBDIR)

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        return [*super()._state_dirs(), (self.devices.directory, False, None)]

    # -- persistence

    def _parse(self, text: str, volume_name: str) -> ChiscsiRecord:
        block = codec.parse(text, self._record_path(volume_name), volume_name,
                            specs.volume_id_from_name(self.conf, volume_name), self.lun)
        return ChiscsiRecord(block.spec, text=text, device_class=block.device_class,
                             acl_enabled=block.acl_enabled)

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
                raise InvalidConfiguration(reason=f"option chap_username / chap_password: "
                                                  f"{str(err).rstrip('.')}") from None

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
            raise InvalidInput(field="device path", value=repr(device_path),
                               reason="is empty (size 0), which chiscsi refuses "
                                      "(base/target/lu_vfs.c ~86-92)")
        codec.device_class_for(self.conf.iscsi_iotype, is_block_device(device_path), device_path)
        self._refuse_if_taken(volume_name, device_path)

    def _desired_spec(self, volume: Volume, volume_path: str,
                      record: ExportRecord | None) -> ExportSpec:
        spec = super()._desired_spec(volume, volume_path, record)
        codec.check_values(spec)  # again, on what the record adds (kept or mutual CHAP)
        self._check_device(spec.volume_name, spec.device_path)
        return spec

    def _refuse_if_taken(self, volume_name: str, device_path: str) -> None:
        """One device, one target: chiscsi refuses a path already in another live target
        (private/klib/target/lun.c ~274-310). The index answers in one read, and its
        claim is believed only if the claiming volume's record still names the device."""
        owner = self.devices.owner(device_path)
        if owner is None or owner == volume_name:
            return
        try:
            other = self._read_record(owner)
        except PersistenceError:
            taken = True  # an unreadable record still stands for an export: be safe
        else:
            taken = other is not None and other.spec.device_path == device_path
        if taken:
            raise InvalidInput(field="device path", value=repr(device_path),
                               reason=f"is already exported by {owner}; chiscsi puts a device "
                                      "in one target only (private/klib/target/lun.c ~274-310)")

    def _device_lock(self, device_path: str) -> contextlib.AbstractContextManager[None]:
        """Claims of one device are checked and changed under this lock, so two volumes
        cannot both find it free."""
        digest = hashlib.sha256(device_path.encode()).hexdigest()[:32]
        return locking.named_lock(self.conf, f"chiscsi-device-{digest}")

    def _release(self, device_path: str, volume_name: str) -> None:
        with self._device_lock(device_path):
            self.devices.release(device_path, volume_name)

    def _device_class(self, spec: ExportSpec, previous: ChiscsiRecord | None) -> str:
        """The recorded class while the device stays (chiscsi cannot change a live LU's class,
        lun.c ~347-356), unless that class cannot take the device; else from iscsi_iotype."""
        is_block = is_block_device(spec.device_path)
        if (previous is not None and previous.spec.device_path == spec.device_path
                and (is_block or previous.device_class == codec.FILE)):
            return previous.device_class
        return codec.device_class_for(self.conf.iscsi_iotype, is_block, spec.device_path)

    # -- live target

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ChiscsiRecord:
        path = self._record_path(spec.volume_name)
        old_text = previous.text if previous is not None else None
        old_block = previous if isinstance(previous, ChiscsiRecord) else (
            None if old_text is None else self._parse(old_text, spec.volume_name))
        device_class = self._device_class(spec, old_block)
        # A file that already says the same (one CxtAdm wrote, say) is adopted as it is.
        adopt = (old_block is not None and old_block.spec == spec
                 and old_block.device_class == device_class
                 and old_block.acl_enabled == bool(spec.initiators))
        serial = hashlib.sha256(spec.volume_id.encode()).hexdigest()[:16]
        new_text = (old_text if adopt and old_text is not None
                    else codec.render(spec, device_class, serial))
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
        return ChiscsiRecord(spec, text=new_text, device_class=device_class,
                             acl_enabled=bool(spec.initiators))

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:
        """Records from before the index (or CxtAdm's) get their claim on the next restore."""
        spec = record.spec
        with self._device_lock(spec.device_path):
            try:
                self._refuse_if_taken(spec.volume_name, spec.device_path)
            except InvalidInput as err:  # live all the same: chiscsi let it be; say so
                LOG.warning("Export of %s: %s", spec.volume_name, err)
                return
            self.devices.claim(spec.device_path, spec.volume_name)

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        detail = self.tool.show([iqn])[iqn]
        return _live(iqn, detail) if detail is not None else None

    def _session_count(self, iqn: str, record: ExportRecord | None,
                       live: LiveTarget) -> int | None:
        """``iscsictl -r``: one more call, made only before a device swap."""
        return self.tool.session_count(iqn)

    def _list_live(self) -> dict[str, LiveTarget]:
        listing = self.tool.list_all()
        live = _Listing((iqn, _live(iqn, shown)) for iqn, shown in listing.targets.items())
        live.may_be_cut = listing.may_be_cut
        return live

    def _live_view(self, iqns: Collection[str]) -> Mapping[str, LiveTarget]:
        """The ALL listing, and past its cut, named lookups (in batches) for what it could not show."""
        live = self._list_live()
        if not getattr(live, "may_be_cut", False):
            return live
        unseen = [iqn for iqn in iqns if iqn not in live]
        LOG.warning("iscsictl -c target=ALL showed %d targets and was cut at its 128 KiB of names: "
                    "looking %d more up by name; a target past the cut that has no export record "
                    "cannot be seen", len(live), len(unseen))
        merged = dict(live)
        for iqn, detail in self.tool.show(unseen).items():
            if detail is not None:
                merged[iqn] = _live(iqn, detail)
        return merged

    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """Devices and portals from any listing; CHAP users, AuthMethod and the ACL from the
        detailed ``-c target=<iqn>`` output, when that is what was read."""
        differ = list(super()._live_differences(spec, live))
        detail = live.detail if isinstance(live, ChiscsiLive) else None
        if detail is None:
            return tuple(differ)
        if detail.chap_initiator_users != ((spec.chap.username,) if spec.chap else ()):
            differ.append("chap_user")
        if detail.chap_target_users != ((spec.target_chap.username,) if spec.target_chap else ()):
            differ.append("target_chap_user")
        if spec.chap and detail.value("AuthMethod") != "CHAP":
            differ.append("auth_method")
        if detail.acl_enabled != bool(spec.initiators) or (
                spec.initiators and detail.acl_initiators != frozenset(spec.initiators)):
            differ.append("acl")
        return tuple(differ)

    def _live_differs(self, spec: ExportSpec, live: LiveTarget) -> str | None:
        if super()._live_differences(spec, live):  # the fields any listing shows
            return (f"iscsictl -c shows the target with devices {list(live.devices or ())} and "
                    f"portals {[str(p) for p in live.portals or ()]}, not the ones asked for")
        return self._detail_problem(spec, live)

    @staticmethod
    def _detail_problem(spec: ExportSpec, live: LiveTarget) -> str | None:
        """What the detailed output shows differently from ``spec`` (CHAP names, ACL)."""
        detail = live.detail if isinstance(live, ChiscsiLive) else None
        if detail is None:
            return None
        wanted_users = (spec.chap.username,) if spec.chap else ()
        if detail.chap_initiator_users != wanted_users:
            return f"iscsictl -c shows initiator CHAP accounts {list(detail.chap_initiator_users)}"
        wanted_target = (spec.target_chap.username,) if spec.target_chap else ()
        if detail.chap_target_users != wanted_target:
            return f"iscsictl -c shows target CHAP accounts {list(detail.chap_target_users)}"
        if spec.chap and detail.value("AuthMethod") != "CHAP":
            return f"iscsictl -c shows AuthMethod={detail.value('AuthMethod')}, not CHAP"
        if detail.acl_enabled != bool(spec.initiators) or (
                spec.initiators and detail.acl_initiators != frozenset(spec.initiators)):
            return (f"iscsictl -c shows ACL_Enable={detail.value('ACL_Enable')} for initiators "
                    f"{sorted(detail.acl_initiators)}, not {list(spec.initiators) or 'any'}")
        return None

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
                           "shows the target; the export record is kept")
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
        said = (f"initiators stayed logged in through chiscsi's 30 s wait ('iscsictl -s' said "
                f"'{iqn} busy.')")
        path = self._record_path(volume_name)
        if not path.exists():
            return (f"{said}; chiscsi left the target offline (no portal, no LUN), not removed, "
                    "and there is no export record to restart it from")
        try:
            self.tool.start(iqn, path)
            back = self.tool.show([iqn])[iqn] is not None
        except CommandError as err:
            LOG.error("Could not restart %s after a busy stop: %s", iqn, err)
            back = False
        if back:
            return (f"{said}, so nothing was removed: the target is live again from the export "
                    "record, which is kept. Log the initiators out, then remove again")
        return (f"{said}; chiscsi left the target offline (no portal, no LUN), not removed, and "
                "starting it again failed; the export record is kept, so 'iscsi-helper ensure' "
                "can bring it back. Log the initiators out, then remove again")
