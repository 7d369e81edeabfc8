"""Linux SCSI target framework (``tgtd``), driven with ``tgtadm``: Cinder's ``tgtadm`` helper.

Each export is one file ``<volumes_dir>/tgt/<volume name>`` in the
``<target ...>`` format Cinder's TgtAdm writes (so ``tgt-admin -e`` can load
it after a reboot; :mod:`iscsi_helper.codecs.tgt_conf`), written atomically
with mode 0600 because it carries the CHAP secret.

The live target is built with ``tgtadm`` directly rather than through
``tgt-admin --update`` (Cinder's way): each step's result is known, so a
failure undoes exactly the steps that happened. tgt puts its controller at
LUN 0, so the disk is LUN 1.

Three facts of tgtd shape this module:

* ``tgtadm`` accepts a CHAP secret only on its command line. That single
  call is the documented exception to "no secret on a command line"; it is
  masked in every log and error (:mod:`iscsi_helper.adapters.tgtadm`).
* CHAP accounts are global to a tgtd, one secret per user name, so exports
  that share a user name share one account
  (:mod:`iscsi_helper.targets.tgt_accounts`).
* tgtd shows one target by tid only, and then only its iSCSI parameters
  (no name, LUNs, accounts or ACL). Finding a target by IQN is therefore one
  ``--op show`` of all targets: a constant number of calls whose output
  grows with the number of targets. A recorded tid cannot stand in for it:
  after ``tgt-admin`` reloads the files, tids are tgt-admin's.
"""

from __future__ import annotations

from collections.abc import Container, Set
from contextlib import suppress
from functools import partial

from oslo_config import cfg

from iscsi_helper import devices, secretmask, specs
from iscsi_helper.adapters.tgtadm import Tgtadm, TgtLiveTarget
from iscsi_helper.codecs import tgt_conf
from iscsi_helper.exception import (
    AlreadyPresent,
    CommandError,
    InvalidConfiguration,
    IscsiHelperError,
    NoSuchAclRule,
    NoSuchTarget,
    PersistenceError,
    TargetCreateFailed,
    TargetRemoveFailed,
)
from iscsi_helper.executor import Executor
from iscsi_helper.fileutil import atomic_write, put_back, read_text_or_none, remove_file
from iscsi_helper.formats import validate_iscsi_name
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.rollback import Rollback
from iscsi_helper.targets.iscsi import IscsiHelper
from iscsi_helper.targets.tgt_accounts import SharedAccounts
from iscsi_helper.tids import TidCounter

LOG = secretmask.get_logger(__name__)

DISK_LUN = 1
TID_COUNTER = ".next-tid"
TID_LOCK = "tgt_tid"  # internal namespace (locking.named_lock): never a volume's lock
MAX_TID_ATTEMPTS = 64
BSOFLAGS = frozenset({"sync", "direct", "sync:direct", "direct:sync"})


def _is_iscsi_name(value: str) -> bool:
    try:
        validate_iscsi_name(value)
    except IscsiHelperError:
        return False
    return True


class TgtHelper(IscsiHelper):
    """``target_helper = tgtadm`` (Cinder's default; also ``tgt``)."""

    names = ("tgt", "tgtadm")
    lun = DISK_LUN  # tgt's LUN 0 is its controller
    supports_acl = True
    records_subdir = "tgt"

    def __init__(self, conf: cfg.ConfigOpts, executor: Executor | None = None) -> None:
        super().__init__(conf, executor)
        # "iscsi" or "iser": Cinder's target_protocol values are tgt's low-level driver names.
        self.tgtadm = Tgtadm(self.executor, lld=conf.target_protocol, control_port=conf.tgt_control_port)
        self.tids = TidCounter(conf, self.records_dir / TID_COUNTER, TID_LOCK)
        self.accounts = SharedAccounts(conf, self.tgtadm, self.records_dir, self._read_record)

    def _check_configuration(self) -> None:
        super()._check_configuration()
        self._bsoflags()

    def _bsoflags(self) -> str:
        flags = str(self.conf.iscsi_target_flags).strip()
        if flags and flags not in BSOFLAGS:
            raise InvalidConfiguration(
                reason=f"iscsi_target_flags {flags!r} is not a tgt bsoflags value "
                f"({', '.join(sorted(BSOFLAGS))})"
            )
        return flags

    # ------------------------------------------------------- records, live

    def _read_record(self, volume_name: str) -> ExportRecord | None:
        path = self._record_path(volume_name)
        text = read_text_or_none(path)
        if text is None:
            return None
        return tgt_conf.parse(
            text,
            path,
            volume_name,
            specs.volume_id_from_name(self.conf, volume_name),
            specs.configured_portals(self.conf),
            self.lun,
        )

    def _list_live(self) -> dict[str, LiveTarget]:
        return dict(self.tgtadm.show())

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """One full listing: tgtd offers no lookup by name (see the module docstring)."""
        return self.tgtadm.show().get(iqn)

    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """tgtd shows LUNs, accounts (both ways) and the ACL, but no portals (they are tgtd's)."""
        if not isinstance(live, TgtLiveTarget):
            return super()._live_differences(spec, live)
        differ = []
        path = live.lun_path(self.lun)
        if path is None:
            differ.append("lun")
        elif path != spec.device_path:
            differ.append("device")
        if set(live.accounts) != ({spec.chap.username} if spec.chap else set()):
            differ.append("chap_user")
        if set(live.outgoing) != ({spec.target_chap.username} if spec.target_chap else set()):
            differ.append("target_chap_user")
        if set(live.acl) != self._wanted_acl(spec):
            differ.append("acl")
        return tuple(differ)

    @staticmethod
    def _wanted_acl(spec: ExportSpec) -> set[str]:
        # tgtd admits an initiator if its address OR its name is listed, so a
        # name ACL only restricts anything without the "ALL" address rule.
        return set(spec.initiators) if spec.initiators else {"ALL"}

    # --------------------------------------------------------------- apply

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        return self._apply_listed(spec, previous, None)

    def _apply_missing(
        self, spec: ExportSpec, previous: ExportRecord | None, tids_in_use: Set[int]
    ) -> ExportRecord:
        # A restore's listing says it is missing: no full show per export (a
        # target present in it is looked at afresh, as its bindings may have changed).
        return self._apply_listed(spec, previous, tids_in_use)

    def _apply_listed(
        self, spec: ExportSpec, previous: ExportRecord | None, listed_tids: Set[int] | None
    ) -> ExportRecord:
        validate_iscsi_name(spec.iqn, "target IQN")
        bsoflags = self._bsoflags()
        path = self._record_path(spec.volume_name)
        old_text = previous.text if previous else None
        try:
            with Rollback(f"the export of {spec.volume_id}") as rollback:
                live = self._live_or_new(spec, previous.tid if previous else None, listed_tids, rollback)
                text = tgt_conf.render(
                    spec,
                    live.tid,
                    driver=self.conf.target_protocol,
                    write_cache=self.conf.iscsi_write_cache,
                    bsoflags=bsoflags,
                )
                if text != old_text:
                    atomic_write(path, text, mode=0o600)
                    rollback.push("the record", partial(put_back, path, old_text))
                before = previous.spec if previous else None
                self._apply_lun(spec, before, live, bsoflags, rollback)
                self._apply_accounts(spec, before, live, rollback)
                self._apply_acl(spec, live, rollback)
        except (CommandError, OSError, PersistenceError) as err:
            reason = err.strerror if isinstance(err, OSError) else str(err)
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=reason) from None
        return ExportRecord(spec, live.tid, text=text)

    def _live_or_new(
        self, spec: ExportSpec, recorded_tid: int | None, listed_tids: Set[int] | None, rollback: Rollback
    ) -> TgtLiveTarget:
        """The live target of ``spec``, created (at the recorded tid if it is free) when missing."""
        if listed_tids is not None:
            live, used, attempts = None, listed_tids, 1
        else:
            shown = self.tgtadm.show()
            live, used, attempts = shown.get(spec.iqn), {t.tid for t in shown.values()}, MAX_TID_ATTEMPTS
        if live is not None:
            return live
        tid = self._create_target(spec, used, recorded_tid, rollback, attempts)
        if tid is None:
            # Refused on the listing's word: another process made this
            # target, or took the tid, since. Look again.
            shown = self.tgtadm.show()
            live = shown.get(spec.iqn)
            if live is not None:
                return live
            tid = self._create_target(spec, {t.tid for t in shown.values()}, None, rollback, MAX_TID_ATTEMPTS)
            assert tid is not None  # with every attempt allowed it raises instead
        return TgtLiveTarget(spec.iqn, tid)

    def _create_target(
        self, spec: ExportSpec, used: Container[int], preferred: int | None, rollback: Rollback, attempts: int
    ) -> int | None:
        """``target new`` with a free tid: the recorded one if free, else the next of our counter.

        tgtd refuses a taken tid and a taken name alike; when the name is
        known not to be live (we hold the volume lock and just listed), a
        refusal means another process took the tid meanwhile. Returns None
        when fewer than the maximum attempts were allowed and all were
        refused (the caller's listing may be stale: it looks again).
        """
        refused: set[int] = set()
        candidate = preferred if preferred and preferred not in used else None
        for _attempt in range(attempts):
            tid = candidate or self.tids.allocate(skip=(used, refused))
            candidate = None
            try:
                self.tgtadm.target_new(tid, spec.iqn)
            except AlreadyPresent:
                refused.add(tid)
                continue
            rollback.push(f"target {tid}", partial(self._delete_target, tid))
            return tid
        if attempts < MAX_TID_ATTEMPTS:
            return None
        raise TargetCreateFailed(
            volume_id=spec.volume_id, reason=f"no free target id after {MAX_TID_ATTEMPTS} attempts"
        )

    def _delete_target(self, tid: int) -> None:
        with suppress(NoSuchTarget):
            self.tgtadm.target_delete(tid)

    def _apply_lun(
        self,
        spec: ExportSpec,
        before: ExportSpec | None,
        live: TgtLiveTarget,
        bsoflags: str,
        rollback: Rollback,
    ) -> None:
        """LUN 1 on the device; re-created when asked again for the same spec (extend, repair).

        tgtd reads a backing store's size once, when the LUN is created, so a
        grown device is only seen through a new LUN (tgtd reports MB of 10^6 bytes).
        """
        current = live.lun_path(self.lun)
        reported = dict(live.sizes).get(self.lun)
        size = devices.device_size(spec.device_path)
        stale = reported is not None and reported != (None if size is None else size // 1_000_000)
        if current == spec.device_path and spec != before and not stale:
            return
        if current is not None:
            self.tgtadm.lun_delete(live.tid, self.lun)
            rollback.push("the old LUN", partial(self._new_lun, live.tid, current, bsoflags))
        self._new_lun(live.tid, spec.device_path, bsoflags)
        rollback.push("the new LUN", partial(self.tgtadm.lun_delete, live.tid, self.lun))

    def _new_lun(self, tid: int, device: str, bsoflags: str) -> None:
        self.tgtadm.lun_new(tid, self.lun, device, bsoflags)
        if self.conf.iscsi_write_cache == "off":
            self.tgtadm.lun_write_cache_off(tid, self.lun)

    def _apply_accounts(
        self, spec: ExportSpec, before: ExportSpec | None, live: TgtLiveTarget, rollback: Rollback
    ) -> None:
        for outgoing, wanted, old, bound in (
            (False, spec.chap, before.chap if before else None, live.accounts),
            (True, spec.target_chap, before.target_chap if before else None, live.outgoing),
        ):
            if wanted is not None and (wanted.username not in bound or wanted != old):
                self.accounts.acquire(spec, wanted, old, live.tid, outgoing, rollback)
                self.accounts.bind(live.tid, wanted.username, outgoing, rollback)
            for user in bound:
                if wanted is None or user != wanted.username:
                    self.accounts.unbind(live.tid, user, outgoing, rollback)
            if old is not None and (wanted is None or old.username != wanted.username):
                self.accounts.release(spec.volume_name, old.username, rollback, old)

    def _apply_acl(self, spec: ExportSpec, live: TgtLiveTarget, rollback: Rollback) -> None:
        """Add what is missing before removing what is extra, so no allowed initiator is cut off."""
        wanted, current = self._wanted_acl(spec), set(live.acl)
        for entry in sorted(wanted - current):
            if self._admit(live.tid, entry):
                rollback.push(f"admission of {entry}", partial(self._unadmit, live.tid, entry))
        for entry in sorted(current - wanted):
            if self._unadmit(live.tid, entry):
                rollback.push(f"removal of {entry}", partial(self._admit, live.tid, entry))

    def _admit(self, tid: int, entry: str) -> bool:
        """Bind one ACL entry: iSCSI names by name (-Q), anything else by address (-I)."""
        try:
            self.tgtadm.initiator_bind(tid, entry, by_name=_is_iscsi_name(entry))
        except AlreadyPresent:
            return False
        return True

    def _unadmit(self, tid: int, entry: str) -> bool:
        """Unbind one ACL entry; ``show`` lists both kinds together, so a name is tried both ways."""
        for by_name in (True, False) if _is_iscsi_name(entry) else (False,):
            try:
                self.tgtadm.initiator_unbind(tid, entry, by_name=by_name)
            except NoSuchAclRule:
                continue
            return True
        return False

    # ------------------------------------------------------------ withdraw

    def _withdraw(self, volume_name: str, iqn: str) -> None:
        try:
            record = self._read_record(volume_name)
        except PersistenceError as err:
            LOG.warning("Removing %s despite an unreadable record: %s", iqn, err)
            record = None
        try:
            live = self.tgtadm.show().get(iqn)
            if live is not None:
                self._delete_target(live.tid)
                # tgtadm's exit code is not proof: the target must be gone from tgtd's own list.
                if iqn in self.tgtadm.show():
                    raise TargetRemoveFailed(
                        volume_id=volume_name,
                        reason=f"tgtadm --op delete --tid {live.tid} exited 0 but tgtd still "
                        f"shows {iqn}; its record is kept",
                    )
            # The live bindings count too: a record may be gone (an orphan) while
            # our marker for the account it used is still there.
            held = (record.spec.chap, record.spec.target_chap) if record else ()
            users = {c.username for c in held if c}
            if live is not None:
                users |= set(live.accounts) | set(live.outgoing)
            for user in sorted(users):
                self.accounts.release(volume_name, user, None)
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        remove_file(self._record_path(volume_name))
