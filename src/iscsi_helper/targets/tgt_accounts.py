"""tgtd's CHAP accounts, which exports of one user name share, and the index of who uses which.

CHAP accounts are global to a tgtd, one secret per user name, and
deleting an account unbinds it from *every* target. Exports that share a
user name (Cinder's ``use_chap_auth``) therefore share one account. One
empty marker file per volume, ``<records>/.accounts/<hash of user>/<volume
name>``, says which exports rely on an account: it is deleted only when
the last marker goes, since a target that lost its account would silently
stop asking for CHAP. Markers are changed under a lock per user name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import locking
from iscsi_helper.adapters.tgtadm import Tgtadm
from iscsi_helper.exception import AlreadyPresent, NoSuchAccount, PersistenceError, TargetCreateFailed
from iscsi_helper.fileutil import ensure_private_dir, fsync_dir, is_temp_file, remove_file
from iscsi_helper.formats import ChapCredentials
from iscsi_helper.model import ExportRecord, ExportSpec
from iscsi_helper.rollback import Rollback

ACCOUNTS_DIR = ".accounts"
# Internal locks (locking.named_lock): their namespace is not the volumes'.
ACCOUNT_LOCK = "tgt_account_"


def account_key(user: str) -> str:
    """CHAP user names may hold '/' or '.', so they are hashed into file and lock names."""
    return hashlib.sha256(user.encode()).hexdigest()[:32]


class SharedAccounts:
    """The accounts of one tgtd as the exports recorded in ``records_dir`` use them."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        tgtadm: Tgtadm,
        records_dir: Path,
        read_record: Callable[[str], ExportRecord | None],
    ) -> None:
        self.conf = conf
        self.tgtadm = tgtadm
        self.index = records_dir / ACCOUNTS_DIR
        self.read_record = read_record

    def _users_of(self, user: str) -> Path:
        return self.index / account_key(user)

    # -- accounts

    def _new(self, credentials: ChapCredentials) -> bool:
        """Create the account; False if tgtd holds that user name already."""
        try:
            self.tgtadm.account_new(credentials)
        except AlreadyPresent:
            return False
        return True

    def _delete(self, user: str) -> None:
        with suppress(NoSuchAccount):
            self.tgtadm.account_delete(user)

    def acquire(
        self,
        spec: ExportSpec,
        wanted: ChapCredentials,
        before: ChapCredentials | None,
        tid: int,
        outgoing: bool,
        rollback: Rollback,
    ) -> None:
        """Make tgtd hold ``wanted`` for this export without changing another export's secret."""
        directory = self._users_of(wanted.username)
        marker = directory / spec.volume_name
        with locking.named_lock(self.conf, ACCOUNT_LOCK + account_key(wanted.username)):
            if not marker.exists():
                ensure_private_dir(directory)
                marker.touch(mode=0o600)
                fsync_dir(directory)
                rollback.push("the account marker", partial(remove_file, marker))
            if self._new(wanted):
                rollback.push(f"account {wanted.username}", partial(self._delete, wanted.username))
                return
            if before == wanted:
                return  # ours already, same secret
            sharer = self._other_user_of(directory, spec.volume_name)
            if sharer is not None:
                if sharer == wanted:
                    return
                raise TargetCreateFailed(
                    volume_id=spec.volume_id,
                    reason=f"CHAP user {wanted.username!r} is already used by another export "
                    "with a different secret; tgtd keeps one secret per user name",
                )
            # Only this export uses the name: replace the account (a leftover or our old secret).
            self._delete(wanted.username)
            self._new(wanted)
            if before is not None and before.username == wanted.username:
                rollback.push("the old secret", partial(self._put_back, before, tid, outgoing))

    def _put_back(self, credentials: ChapCredentials, tid: int, outgoing: bool) -> None:
        """Put an old secret back; deleting the account unbound it, so bind it again."""
        self._delete(credentials.username)
        self._new(credentials)
        with suppress(AlreadyPresent):
            self.tgtadm.account_bind(tid, credentials.username, outgoing=outgoing)

    def _other_user_of(self, directory: Path, volume_name: str) -> ChapCredentials | None:
        """The credentials another export of ours holds for this user name, if any (first found)."""
        user_key = directory.name
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name == volume_name or is_temp_file(entry.name):
                    continue
                try:
                    other = self.read_record(entry.name)
                except PersistenceError:
                    continue
                for credentials in (other.spec.chap, other.spec.target_chap) if other else ():
                    if credentials and account_key(credentials.username) == user_key:
                        return credentials
        return None

    def release(
        self,
        volume_name: str,
        user: str,
        rollback: Rollback | None,
        credentials: ChapCredentials | None = None,
    ) -> None:
        """Forget this export's use of ``user``; delete the account once no export uses it."""
        directory = self._users_of(user)
        with locking.named_lock(self.conf, ACCOUNT_LOCK + account_key(user)):
            if not remove_file(directory / volume_name):
                return
            if rollback is not None:
                rollback.push("the account marker", partial((directory / volume_name).touch, mode=0o600))
            try:
                directory.rmdir()
            except OSError:
                return  # another export still uses this user name: keep the account
            self._delete(user)
            if rollback is not None and credentials is not None:
                rollback.push(f"account {user}", partial(self._new, credentials))

    # -- bindings to one target

    def bind(self, tid: int, user: str, outgoing: bool, rollback: Rollback) -> None:
        try:
            self.tgtadm.account_bind(tid, user, outgoing=outgoing)
        except AlreadyPresent:
            return
        rollback.push(f"binding of {user}", partial(self._unbind_quietly, tid, user, outgoing))

    def _unbind_quietly(self, tid: int, user: str, outgoing: bool) -> None:
        with suppress(NoSuchAccount):
            self.tgtadm.account_unbind(tid, user, outgoing=outgoing)

    def unbind(self, tid: int, user: str, outgoing: bool, rollback: Rollback) -> None:
        try:
            self.tgtadm.account_unbind(tid, user, outgoing=outgoing)
        except NoSuchAccount:
            return
        rollback.push(f"unbinding of {user}", partial(self.tgtadm.account_bind, tid, user, outgoing=outgoing))
