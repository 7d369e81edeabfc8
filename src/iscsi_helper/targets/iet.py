"""IET (iSCSI Enterprise Target, ``ietadm``): Cinder's IetAdm, at constant cost per export.

Two things are persisted per export: our block in ietd.conf
(:mod:`iscsi_helper.targets.iet_conf`), so ietd itself brings the export
back at boot, and a JSON index record ``<volumes_dir>/iet/<volume name>``
(with the tid and the device size), so one export is found without
reading ietd.conf or IET's proc files, which grow with the number of
exports. ``ietadm --op new --tid=0`` does not say which tid it chose, so
tids come from a counter and are passed explicitly; the proc files are
read only by the bulk paths and by rare recovery paths that must find a
target by name. See ``docs/helpers/iet.md`` for call counts.
"""

from __future__ import annotations

from collections.abc import Set
from contextlib import suppress
from functools import partial
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import access, devices, secretmask
from iscsi_helper.adapters.ietadm import INCOMING, OUTGOING, Ietadm
from iscsi_helper.codecs import export_json
from iscsi_helper.codecs.ietd_conf import render_block
from iscsi_helper.exception import (
    AlreadyPresent,
    CommandError,
    NotPresent,
    TargetCreateFailed,
    TargetRemoveFailed,
)
from iscsi_helper.executor import Executor
from iscsi_helper.fileutil import atomic_write, put_back, read_text_or_none, remove_file
from iscsi_helper.formats import validate_iscsi_name
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.rollback import Rollback
from iscsi_helper.targets.iet_conf import IetdConf
from iscsi_helper.targets.iet_steps import IetSteps
from iscsi_helper.targets.iscsi import IscsiHelper
from iscsi_helper.tids import TidCounter

LOG = secretmask.get_logger(__name__)

TID_LOCK = "iet_tid"  # internal namespace (locking.named_lock): never a volume's lock
TID_COUNTER = ".next-tid"  # volume names cannot start with '.', so never a record's name


class IetHelper(IetSteps, IscsiHelper):
    """``target_helper = iet`` (also ``ietadm``).

    How it reads IET's live state: targets/iet_live.py; the ietadm steps it
    converges with (create or find, accounts, LUN, delete): targets/iet_steps.py.
    """

    names = ("iet", "ietadm")
    lun = 0
    records_subdir = "iet"
    path_options = (("iet_conf", None, "file"), ("iet_proc_dir", None, "directory"))

    def __init__(self, conf: cfg.ConfigOpts, executor: Executor | None = None) -> None:
        super().__init__(conf, executor)
        self.ietadm = Ietadm(self.executor)
        self.tids = TidCounter(conf, self.records_dir / TID_COUNTER, TID_LOCK)
        self.ietd_conf = IetdConf(conf, Path(conf.iet_conf), self.executor)

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        # ietd.conf's directory is shared with other software: only our file's temp files,
        # and only when this process writes it (else root does: sweep_temp_files).
        path = self.ietd_conf.path
        own = [] if self.ietd_conf.as_root else [(path.parent, False, path.name)]
        return [*super()._state_dirs(), *own]

    def sweep_temp_files(self) -> list[Path]:
        return [*super().sweep_temp_files(), *self.ietd_conf.sweep_as_root()]

    def _access_needs(self) -> list[access.Need]:
        return [*super()._access_needs(), *self.ietd_conf.access_needs()]

    # ------------------------------------------------------------ records

    def _read_index(self, volume_name: str) -> ExportRecord | None:
        path = self._record_path(volume_name)
        text = read_text_or_none(path)
        return None if text is None else export_json.parse_record(text, path, volume_name)

    def _read_record(self, volume_name: str) -> ExportRecord | None:
        record = self._read_index(volume_name)
        if record is not None:
            return record
        # Not ours yet: a block Cinder's IetAdm wrote is adopted with its credentials.
        # Only a miss reads ietd.conf, and a create then rewrites it anyway.
        return self.ietd_conf.adopted_one(volume_name, self.lun)

    def _scan_records(self) -> tuple[list[ExportRecord], list[tuple[str, str]]]:
        """Our index records, then the blocks of ietd.conf that have none (Cinder's)."""
        indexed, foreign = super()._scan_records()
        taken = {r.spec.volume_name for r in indexed} | {name for name, _why in foreign}
        return [*indexed, *self.ietd_conf.adopted_all(self._ours, taken, self.lun)], foreign

    def _already_applied(
        self, spec: ExportSpec, record: ExportRecord | None, live: LiveTarget | None
    ) -> bool:
        """A target found by its account alone may still lack its LUN: let apply make sure.

        ietadm cannot show a LUN, and the account is added before the LUN
        (so a crash never leaves a disk open to every initiator). Applying
        on our own target costs two calls: the account probe and ``new
        --lun`` answered 239 when the LUN is there.
        """
        if live is not None and live.devices is None:
            return False
        return super()._already_applied(spec, record, live)

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:
        """Record the tid ietd gave our target when it loaded ietd.conf at boot (no ietadm call).

        The listing names the target and its LUN path, and the restore holds
        the volume's lock, so the live tid is this export's; every later
        operation then vouches for it with one account probe.
        """
        if record.text is None or record.tid == live.tid:
            return
        LOG.info(
            "Volume %s is live at tid %s (recorded: %s); noting it",
            record.spec.volume_id,
            live.tid,
            record.tid,
        )
        atomic_write(
            self._record_path(record.spec.volume_name),
            export_json.render_record(ExportRecord(record.spec, live.tid, record.device_size)),
            mode=0o600,
        )

    # --------------------------------------------------------------- apply

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        return self._apply_probing(spec, previous, probe=True)

    def _apply_seen(self, spec: ExportSpec, previous: ExportRecord | None, live: LiveTarget) -> ExportRecord:
        # The listing shows the tid and where LUN 0 really is: a device change
        # killed before its LUN swap is finished from this, whatever the index says.
        return self._apply_probing(
            spec, previous, probe=True, seen=live if live.devices is not None else None
        )

    def _apply_missing(
        self, spec: ExportSpec, previous: ExportRecord | None, tids_in_use: Set[int]
    ) -> ExportRecord:
        # Absent from a fresh proc listing: no need to probe the recorded tid
        # (if a racing process made it meanwhile, "new" answers 234 and the
        # target is found by name).
        return self._apply_probing(spec, previous, probe=False)

    def _apply_probing(
        self, spec: ExportSpec, previous: ExportRecord | None, *, probe: bool, seen: LiveTarget | None = None
    ) -> ExportRecord:
        validate_iscsi_name(spec.iqn, "target IQN")
        iotype = devices.iotype(self.conf.iscsi_iotype, spec.device_path)
        size = devices.device_size(spec.device_path)
        path = self._record_path(spec.volume_name)
        indexed = previous if previous is not None and previous.text is not None else None
        tid = (
            (seen.tid if seen else None)
            or (indexed.tid if indexed else None)
            or self.tids.allocate(live_tids=self._live_tids)
        )
        # A LUN swap ahead (new device, grown device, or the listing shows another one):
        # the index first says the LUN's size is unknown, so a process killed before
        # the swap is done leaves a record that the next apply swaps again.
        swap_ahead = (
            seen is not None and seen.devices is not None and tuple(seen.devices[:1]) != (spec.device_path,)
        ) or (
            indexed is not None
            and (indexed.spec.device_path != spec.device_path or indexed.device_size != size)
        )
        try:
            with Rollback(f"the export of {spec.volume_id}") as rollback:
                # Persist first, so a crash mid-way leaves a record that ensure can finish.
                if not (indexed is not None and indexed.spec == spec):
                    conf_old = self.ietd_conf.put_block(spec.iqn, render_block(spec, iotype))
                    rollback.push("ietd.conf", partial(self.ietd_conf.put_back, spec.iqn, conf_old))
                text = export_json.render_record(ExportRecord(spec, tid, None if swap_ahead else size))
                if indexed is None or text != indexed.text:
                    atomic_write(path, text, mode=0o600)
                    rollback.push(
                        "the index record", partial(put_back, path, indexed.text if indexed else None)
                    )
                live_tid, swapped = self._apply_live(
                    spec, previous, indexed is not None, tid, iotype, size, rollback, probe=probe, seen=seen
                )
                if swapped:
                    self._confirm_lun(spec, live_tid)
        except CommandError as err:
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=str(err)) from None
        if live_tid != tid or swap_ahead:
            text = export_json.render_record(ExportRecord(spec, live_tid, size))
            atomic_write(path, text, mode=0o600)
        return ExportRecord(spec, live_tid, size, text)

    def _apply_live(
        self,
        spec: ExportSpec,
        previous: ExportRecord | None,
        indexed: bool,
        tid: int,
        iotype: str,
        size: int | None,
        rollback: Rollback,
        *,
        probe: bool,
        seen: LiveTarget | None,
    ) -> tuple[int, bool]:
        """Make target, accounts and LUN live as ``spec`` says: (the target's tid, LUN swapped)."""
        before = previous.spec if previous else None
        known_devices: tuple[str, ...] | None = seen.devices if seen else None
        # Our target already at the recorded tid? (Its account proves it, cheaply.)
        ours = bool(
            probe
            and seen is None
            and indexed
            and before is not None
            and before.chap is not None
            and self.ietadm.account_matches(tid, INCOMING, before.chap)
        )
        created = False
        if not ours and seen is None:
            tid, created, known_devices = self._new_target(spec, tid)
            if created:
                rollback.push(f"target {tid}", partial(self._delete_target, tid, spec.volume_id))

        # CHAP accounts before the LUN: a process killed in between leaves a
        # target with nothing behind it (no LUN), never a disk open to any
        # initiator; the LUN-less target reads as "differs" and is repaired.
        old_out = before.target_chap if before else None
        if spec.target_chap != old_out or (spec.target_chap and not ours):
            if spec.target_chap:
                self._set_account(tid, OUTGOING, spec.target_chap, created, rollback, old_out)
            elif old_out and not created:
                self._drop_account(tid, OUTGOING, old_out.username)
        old_in = before.chap if before else None
        if spec.chap and not (ours and old_in == spec.chap):
            if old_in and old_in.username != spec.chap.username and not created:
                self._drop_account(tid, INCOMING, old_in.username)
            self._set_account(tid, INCOMING, spec.chap, created, rollback, old_in)

        if created:
            self.ietadm.lun_new(tid, spec.lun, spec.device_path, iotype)
            return tid, False
        old_device = before.device_path if before else None
        old_size = previous.device_size if previous else None
        if known_devices is not None:
            # The listing shows the path; the record alone says whether it has grown.
            stale = known_devices[:1] != (spec.device_path,) or (
                old_device == spec.device_path and old_size is not None and old_size != size
            )
        else:
            stale = old_device != spec.device_path or old_size != size
        if not stale:
            # Restores a LUN lost behind our back; AlreadyPresent says it is there.
            with suppress(AlreadyPresent):
                self.ietadm.lun_new(tid, spec.lun, spec.device_path, iotype)
            return tid, False
        # A new path, or a grown device: IET reads the size only when a LUN is added.
        try:
            self.ietadm.lun_delete(tid, spec.lun)
        except NotPresent:
            pass
        else:
            if old_device:
                rollback.push(
                    "the old LUN",
                    partial(
                        self._readd_lun,
                        tid,
                        spec.lun,
                        old_device,
                        devices.iotype(self.conf.iscsi_iotype, old_device),
                    ),
                )
        self.ietadm.lun_new(tid, spec.lun, spec.device_path, iotype)
        return tid, True

    # ------------------------------------------------------------ withdraw

    def _withdraw(self, volume_name: str, iqn: str) -> None:
        record = self._read_index(volume_name)
        tid = self._vouched_tid(record, iqn)
        vouched = tid is not None
        if tid is None:
            # No record (an orphan, or Cinder's), or the recorded tid now holds
            # another target: never delete by a tid we cannot vouch for.
            live = self._list_live().get(iqn)
            tid = live.tid if live else None
        try:
            if tid is not None:
                with suppress(NotPresent):
                    self.ietadm.lun_delete(tid, self.lun)
                self._delete_target(tid, volume_name)
                # ietadm's exit code is not proof: look again, the same way the target was found.
                if self._vouched_tid(record, iqn) is not None if vouched else iqn in self._list_live():
                    raise TargetRemoveFailed(
                        volume_id=volume_name,
                        reason=f"ietadm --op delete --tid={tid} exited 0 but target {tid} "
                        f"({iqn}) is still there; its records are kept",
                    )
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        self.ietd_conf.put_block(iqn, None)
        remove_file(self._record_path(volume_name))
