"""The ietadm steps the IET helper converges with, each safe to retry.

Each step copes with what IET may already hold: a target created at a tid
another target took (ietd numbers ietd.conf's targets itself after a
reboot), a name that exists already (loaded from ietd.conf, or left by an
attempt that died half-way), an account under the same user with another
secret (ietd would keep both), a target that keeps getting sessions while
it is deleted. The order of the steps and their rollback are the helper's
(targets/iet.py).
"""

from __future__ import annotations

from contextlib import suppress
from functools import partial

from iscsi_helper import secretmask
from iscsi_helper.adapters.ietadm import Direction
from iscsi_helper.codecs import iet_proc
from iscsi_helper.exception import NameInUse, NotPresent, TargetCreateFailed, TargetHasSessions, TidInUse
from iscsi_helper.formats import ChapCredentials
from iscsi_helper.model import ExportSpec
from iscsi_helper.rollback import Rollback
from iscsi_helper.targets.iet_live import IetLiveState
from iscsi_helper.tids import TidCounter

LOG = secretmask.get_logger(__name__)

MAX_TID_ATTEMPTS = 16
MAX_BUSY_ROUNDS = 3


class IetSteps(IetLiveState):
    """The ietadm steps of the IET helper, over its adapter, its tid counter and its proc files."""

    tids: TidCounter

    def _new_target(self, spec: ExportSpec, tid: int) -> tuple[int, bool, tuple[str, ...] | None]:
        """Create the target at ``tid`` or find it: (tid, created, LUN paths if found).

        TidInUse: another target holds the tid (after a reboot ietd numbers
        ietd.conf's targets itself), take the next one. NameInUse: our name
        exists already (ietd loaded it from ietd.conf, or an earlier attempt
        died half-way), only then is the proc file read, to find its tid.
        """
        attempt = 0
        while True:
            try:
                self.ietadm.target_new(tid, spec.iqn)
                return tid, True, None
            except NameInUse:
                live = self._list_live().get(spec.iqn)
                if live is None:
                    raise TargetCreateFailed(
                        volume_id=spec.volume_id,
                        reason=f"ietadm refused target {spec.iqn} as a duplicate (EINVAL) but "
                        "it is not in the proc volume file",
                    ) from None
                return live.tid, False, live.devices
            except TidInUse:
                if attempt == MAX_TID_ATTEMPTS:
                    raise  # no free tid: the last refusal says why
            # The counter's tids keep being taken: before the last try, seed it past all live.
            tid = self.tids.allocate(live_tids=self._live_tids, reseed=attempt == MAX_TID_ATTEMPTS - 1)
            attempt += 1

    def _set_account(
        self,
        tid: int,
        direction: Direction,
        creds: ChapCredentials,
        created: bool,
        rollback: Rollback,
        old: ChapCredentials | None,
    ) -> None:
        """Add a CHAP account unless it is there (one with another secret is replaced)."""
        if not created:
            present = self.ietadm.account_matches(tid, direction, creds)
            if present:
                return
            if present is False:  # same user, other secret: ietd would keep both
                self._drop_account(tid, direction, creds.username)
        self.ietadm.account_new(tid, direction, creds)
        if not created:
            # Undo runs in reverse: drop the new account, then put the old one back.
            if old is not None:
                rollback.push(
                    f"{direction} {old.username}", partial(self.ietadm.account_new, tid, direction, old)
                )
            rollback.push(
                f"{direction} {creds.username}", partial(self._drop_account, tid, direction, creds.username)
            )

    def _drop_account(self, tid: int, direction: Direction, username: str) -> None:
        with suppress(NotPresent):
            self.ietadm.account_delete(tid, direction, username)

    def _readd_lun(self, tid: int, lun: int, path: str, iotype: str) -> None:
        with suppress(NotPresent):
            self.ietadm.lun_delete(tid, lun)
        self.ietadm.lun_new(tid, lun, path, iotype)

    def _delete_target(self, tid: int, volume: str) -> None:
        """Delete target ``tid``; sessions are force-closed; an absent target is success."""
        for round_ in range(1, MAX_BUSY_ROUNDS + 1):
            try:
                self.ietadm.target_delete(tid)
                return
            except NotPresent:
                return
            except TargetHasSessions:
                if round_ == MAX_BUSY_ROUNDS:
                    raise  # it kept getting new sessions
            for sid, cid in iet_proc.parse_sessions(self._proc_text("session"), tid):
                LOG.warning(
                    "Force-closing session %s (connection %s) of target %s to remove %s",
                    sid,
                    cid,
                    tid,
                    volume,
                )
                with suppress(NotPresent):
                    self.ietadm.connection_close(tid, sid, cid)
