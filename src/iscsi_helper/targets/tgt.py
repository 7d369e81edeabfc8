"""Linux SCSI target framework (``tgtd``), driven with ``tgtadm``: Cinder's ``tgtadm`` helper.

Each export is one file ``<volumes_dir>/tgt/<volume name>`` in the
``<target ...>`` format Cinder's TgtAdm writes (so ``tgt-admin -e`` can load
it after a reboot), written atomically with mode 0600 because it carries
the CHAP secret; our own metadata (volume id, tid, portals) is a ``#``
comment line tgt-admin ignores.

The live target is built with ``tgtadm`` directly rather than through
``tgt-admin --update`` (Cinder's way): each step's result is known, so a
failure undoes exactly the steps that happened. tgt puts its controller at
LUN 0, so the disk is LUN 1.

Three facts of tgtd shape this module:

* ``tgtadm`` accepts a CHAP secret only on its command line
  (``--mode account --op new --password``). That single call is the
  documented exception to "no secret on a command line"; it is masked in
  every log and error through the executor's ``secrets=``.
* CHAP accounts are global to a tgtd, one secret per user name, and
  deleting an account unbinds it from *every* target. Exports that share
  a user name (Cinder's ``use_chap_auth``) therefore share one account, and
  a per-user index of the exports using it (one empty marker file per
  volume under ``.accounts/``) decides when the account may really be
  deleted: never while another export still relies on it, since that
  target would silently stop asking for CHAP.
* tgtd shows one target by tid only, and then only its iSCSI parameters
  (no name, LUNs, accounts or ACL). Finding a target by IQN is therefore one
  ``--op show`` of all targets: a constant number of calls whose output
  grows with the number of targets. A recorded tid cannot stand in for it:
  after ``tgt-admin`` reloads the files, tids are tgt-admin's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import locking, secretmask
from iscsi_helper.exception import (CommandError, CommandFailed, InvalidConfiguration,
                                    IscsiHelperError, PersistenceError, TargetCreateFailed,
                                    TargetRemoveFailed, ToolOutputError)
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.fileutil import (atomic_write, ensure_private_dir, fsync_dir, is_temp_file,
                                   read_text_or_none, remove_file)
from iscsi_helper.formats import (ChapCredentials, Portal, parse_portal, portals_from_config,
                                  validate_iscsi_name)
from iscsi_helper.model import ExportSpec, LiveTarget
from iscsi_helper.targets.iscsi import ISCSITarget

LOG = secretmask.get_logger(__name__)

TOOL = "tgtadm"
SUBDIR = "tgt"
ACCOUNTS_DIR = ".accounts"
TID_COUNTER = ".next-tid"
META_MARK = "# iscsi-helper"
DISK_LUN = 1
MAX_TID_ATTEMPTS = 64
# '_' cannot occur in a volume name, so these never collide with a volume's own lock.
TID_LOCK = "tgt_tid"
ACCOUNT_LOCK = "tgt_account_"
# What tgt-admin runs for "write-cache off": the caching mode page with WCE cleared.
WRITE_CACHE_OFF_MODE_PAGE = ("mode_page=8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:"
                             "0x80:0x14:0:0:0:0:0:0")
BSOFLAGS = frozenset({"sync", "direct", "sync:direct", "direct:sync"})

# tgtadm exits 22 for every refusal; the message tells them apart.
EXISTS = "already exists"
NO_TARGET = "can't find the target"
NO_ACCOUNT = "can't find the account"
NO_ACL = "access control rule does not exist"



# ------------------------------------------------------------------ records

@dataclass(frozen=True)
class Record:
    """One persisted export with the metadata only this helper needs."""

    spec: ExportSpec
    tid: int | None


def render_record(spec: ExportSpec, tid: int, *, driver: str, write_cache: str,
                  bsoflags: str) -> str:
    """Cinder's TgtAdm layout, plus our metadata comment and the initiator ACL."""
    meta = f"{META_MARK} volume_id={spec.volume_id} tid={tid} portals=" + ",".join(
        str(p) for p in spec.portals)
    lines = [meta, f"<target {spec.iqn}>",
             f"    backing-store {spec.device_path}",
             f"    driver {driver}"]
    if spec.chap:
        lines.append(f"    incominguser {spec.chap.username} {spec.chap.password}")
    if spec.target_chap:
        lines.append(f"    outgoinguser {spec.target_chap.username} {spec.target_chap.password}")
    lines += [f"    initiator-name {name}" for name in spec.initiators]
    if bsoflags:
        lines.append(f"    bsoflags {bsoflags}")
    lines += [f"    write-cache {write_cache}", "</target>"]
    return "\n".join(lines) + "\n"


_TARGET_OPEN = re.compile(r"<target\s+(\S+)\s*>")
_RECORD_KEYS = frozenset({"backing-store", "driver", "incominguser", "outgoinguser",
                          "initiator-name", "bsoflags", "write-cache"})


def _credentials(value: str, path: Path, key: str) -> ChapCredentials:
    parts = value.split()
    if len(parts) != 2:
        raise PersistenceError(path=path, reason=f"{key} is not '<user> <secret>'")
    try:
        return ChapCredentials(parts[0], parts[1])
    except IscsiHelperError as err:
        raise PersistenceError(path=path, reason=str(err)) from None


def parse_record(text: str, path: Path, volume_name: str, default_volume_id: str,
                 default_portals: tuple[Portal, ...], lun: int) -> Record:
    """Read one of our files, or one Cinder's TgtAdm wrote (indented, blank lines, no metadata).

    Strict: a key we would not write means someone edited the file, and
    rewriting it on the next change would silently drop their edit.
    """
    meta: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    iqn: str | None = None
    closed = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(META_MARK):
            for item in line[len(META_MARK):].split():
                key, _, value = item.partition("=")
                meta[key] = value
            continue
        if not line or line.startswith("#"):
            continue
        opened = _TARGET_OPEN.fullmatch(line)
        if opened and iqn is None:
            iqn = opened[1]
            continue
        if line == "</target>" and iqn is not None and not closed:
            closed = True
            continue
        key, _, value = line.partition(" ")
        if iqn is None or closed or key not in _RECORD_KEYS:
            raise PersistenceError(path=path, reason=f"line {number}: unexpected {line[:60]!r}")
        values.setdefault(key, []).append(value.strip())
    if iqn is None or not closed or len(values.get("backing-store", [])) != 1:
        raise PersistenceError(path=path, reason="expected one <target> block with one backing-store")
    chap = _credentials(values["incominguser"][0], path, "incominguser") if values.get("incominguser") else None
    target_chap = (_credentials(values["outgoinguser"][0], path, "outgoinguser")
                   if values.get("outgoinguser") else None)
    portals = default_portals
    if meta.get("portals"):
        try:
            portals = tuple(parse_portal(p) for p in meta["portals"].split(","))
        except IscsiHelperError as err:
            raise PersistenceError(path=path, reason=str(err)) from None
    tid_text = meta.get("tid", "")
    tid = int(tid_text) if tid_text.isdigit() and int(tid_text) > 0 else None
    spec = ExportSpec(meta.get("volume_id") or default_volume_id, volume_name, iqn,
                      values["backing-store"][0], lun, portals, chap, target_chap,
                      tuple(sorted(set(values.get("initiator-name", [])))))
    return Record(spec, tid)


# -------------------------------------------------------------- live state

@dataclass(frozen=True)
class TgtLiveTarget(LiveTarget):
    """A target as ``tgtadm --op show`` lists it (tgtd shows no portals per target)."""

    luns: tuple[tuple[int, str], ...] = ()  # (LUN, backing path), controller LUN 0 excluded
    sizes: tuple[tuple[int, int], ...] = ()  # (LUN, size in MB as tgtd reports it)
    accounts: tuple[str, ...] = ()  # incoming CHAP users
    outgoing: tuple[str, ...] = ()  # outgoing (mutual CHAP) users
    acl: tuple[str, ...] = ()  # initiator addresses ("ALL") and names, as listed

    def lun_path(self, lun: int) -> str | None:
        return dict(self.luns).get(lun)


_TARGET_LINE = re.compile(r"Target (\d+): (\S+)")
_SIZE = re.compile(r"Size: (\d+) MB")


def parse_show(text: str) -> dict[str, TgtLiveTarget]:
    """``tgtadm --mode target --op show``: indentation is the structure (4 spaces a level)."""
    targets: dict[str, TgtLiveTarget] = {}
    current: dict[str, object] | None = None
    section = ""
    lun: int | None = None

    def close() -> None:
        if current is None:
            return
        luns = tuple(sorted(current["luns"].items()))  # type: ignore[union-attr]
        targets[str(current["iqn"])] = TgtLiveTarget(
            str(current["iqn"]), int(str(current["tid"])), None,
            tuple(path for _n, path in luns), luns,
            tuple(sorted(current["sizes"].items())),  # type: ignore[union-attr]
            tuple(current["accounts"]), tuple(current["outgoing"]),  # type: ignore[arg-type]
            tuple(current["acl"]))  # type: ignore[arg-type]

    for raw in text.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if indent == 0:
            match = _TARGET_LINE.fullmatch(line)
            if not match:
                raise ToolOutputError(command=f"{TOOL} --op show",
                                      reason=f"unreadable line {line[:80]!r}")
            close()
            current = {"tid": match[1], "iqn": match[2], "luns": {}, "sizes": {},
                       "accounts": [], "outgoing": [], "acl": []}
            section, lun = "", None
            continue
        if current is None:
            raise ToolOutputError(command=f"{TOOL} --op show", reason=f"unreadable line {line[:80]!r}")
        if indent == 4:
            section, lun = line.rstrip(":"), None
        elif section == "LUN information":
            if indent == 8 and line.startswith("LUN: "):
                lun = int(line[5:])
            elif lun is not None and line.startswith("Backing store path: "):
                path = line[len("Backing store path: "):]
                if path != "None":
                    current["luns"][lun] = path  # type: ignore[index]
            elif lun is not None and (size := _SIZE.match(line)):
                current["sizes"][lun] = int(size[1])  # type: ignore[index]
        elif section == "Account information" and indent == 8:
            if line.endswith(" (outgoing)"):
                current["outgoing"].append(line[:-len(" (outgoing)")])  # type: ignore[union-attr]
            else:
                current["accounts"].append(line)  # type: ignore[union-attr]
        elif section == "ACL information" and indent == 8:
            current["acl"].append(line)  # type: ignore[union-attr]
    close()
    return targets


def _is_iscsi_name(value: str) -> bool:
    try:
        validate_iscsi_name(value)
    except IscsiHelperError:
        return False
    return True


def _device_size_mb(path: str) -> int | None:
    """The size tgtd would report now (it divides bytes by 10^6); works for block devices too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.lseek(fd, 0, os.SEEK_END) // 1_000_000
    finally:
        os.close(fd)


class _Undo:
    """Inverse steps of what a realise already did, run newest first on failure."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, step: Callable[[], None]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        for what, step in reversed(self.steps):
            try:
                step()
            except (IscsiHelperError, OSError) as err:
                LOG.error("Rollback step %r failed: %s", what, err)


# ------------------------------------------------------------------ helper

class TgtTarget(ISCSITarget):
    """``target_helper = tgtadm`` (Cinder's default; also ``tgt``)."""

    names = ("tgt", "tgtadm")
    lun = DISK_LUN  # tgt's LUN 0 is its controller
    supports_acl = True

    def __init__(self, conf: cfg.ConfigOpts, executor: Executor | None = None) -> None:
        super().__init__(conf, executor)

    # -- paths and small helpers

    @property
    def records_dir(self) -> Path:
        return Path(self.conf.volumes_dir) / SUBDIR

    def _record_path(self, volume_name: str) -> Path:
        return self.records_dir / volume_name

    def _account_dir(self, user: str) -> Path:
        return self.records_dir / ACCOUNTS_DIR / self._account_key(user)

    @staticmethod
    def _account_key(user: str) -> str:
        # CHAP user names may hold '/' or '.', so they are hashed into file and lock names.
        return hashlib.sha256(user.encode()).hexdigest()[:32]

    @property
    def _lld(self) -> str:
        return self.conf.target_protocol  # "iscsi" or "iser": tgt's low-level driver names

    def _bsoflags(self) -> str:
        flags = self.conf.iscsi_target_flags.strip()
        if flags and flags not in BSOFLAGS:
            raise InvalidConfiguration(
                reason=f"iscsi_target_flags {flags!r} is not a tgt bsoflags value "
                       f"({', '.join(sorted(BSOFLAGS))})")
        return flags


    def _tgtadm(self, *args: str, ok_codes: tuple[int, ...] = (0,),
                secrets: tuple[str, ...] = ()) -> CommandResult:
        argv = [TOOL]
        if self.conf.tgt_control_port is not None:
            argv += ["-C", str(self.conf.tgt_control_port)]
        return self.executor.run(*argv, "--lld", self._lld, *args, ok_codes=ok_codes,
                                 secrets=secrets)

    def _tgtadm_quiet(self, message: str, *args: str, secrets: tuple[str, ...] = ()) -> bool:
        """Run; True if done, False if tgtadm refused with ``message`` (already so)."""
        try:
            self._tgtadm(*args, secrets=secrets)
        except CommandFailed as err:
            if message in err.stderr:
                return False
            raise
        return True

    # -- persistence

    def _read(self, volume_name: str) -> Record | None:
        path = self._record_path(volume_name)
        text = read_text_or_none(path)
        if text is None:
            return None
        portals = tuple(portals_from_config(self.conf.target_ip_address,
                                            list(self.conf.target_secondary_ip_addresses),
                                            self.conf.target_port))
        return parse_record(text, path, volume_name, self._volume_id_from_name(volume_name),
                            portals, self.lun)

    def _read_record(self, volume_name: str) -> ExportSpec | None:
        record = self._read(volume_name)
        return None if record is None else record.spec

    def _list_records(self) -> list[ExportSpec]:
        return self._records_in(self.records_dir)

    # -- live state

    def _list_live(self) -> dict[str, LiveTarget]:
        return dict(self._show())

    def _show(self) -> dict[str, TgtLiveTarget]:
        return parse_show(self._tgtadm("--mode", "target", "--op", "show").stdout)

    def _lookup(self, iqn: str) -> LiveTarget | None:
        """One full listing: tgtd offers no lookup by name (see the module docstring)."""
        return self._show().get(iqn)

    def _live_matches(self, spec: ExportSpec, live: LiveTarget) -> bool:
        if not super()._live_matches(spec, live):
            return False
        if not isinstance(live, TgtLiveTarget):
            return True
        return (live.lun_path(self.lun) == spec.device_path
                and set(live.accounts) == ({spec.chap.username} if spec.chap else set())
                and set(live.outgoing) == ({spec.target_chap.username} if spec.target_chap else set())
                and set(live.acl) == self._wanted_acl(spec))

    @staticmethod
    def _wanted_acl(spec: ExportSpec) -> set[str]:
        # tgtd admits an initiator if its address OR its name is listed, so a
        # name ACL only restricts anything without the "ALL" address rule.
        return set(spec.initiators) if spec.initiators else {"ALL"}

    # -- realise

    def _realise(self, spec: ExportSpec, previous: ExportSpec | None,
                 listing: Mapping[str, LiveTarget] | None = None) -> None:
        validate_iscsi_name(spec.iqn, "target IQN")
        bsoflags = self._bsoflags()
        path = self._record_path(spec.volume_name)
        old_text = read_text_or_none(path)
        old_record = self._read(spec.volume_name) if old_text is not None else None
        preferred = old_record.tid if old_record else None
        undo = _Undo()
        try:
            live: TgtLiveTarget | None
            if listing is not None and spec.iqn not in listing:
                # A restore's listing says it is missing: no full show per
                # export. (A target present in it is looked at afresh, as its
                # bindings may have changed.)
                live, used, attempts = None, {t.tid for t in listing.values()}, 1
            else:
                live_all = self._show()
                live, used = live_all.get(spec.iqn), {t.tid for t in live_all.values()}
                attempts = MAX_TID_ATTEMPTS
            if live is None:
                tid = self._create_target(spec, used, preferred, undo, attempts=attempts)
                if tid is None:
                    # Refused on the listing's word: another process made this
                    # target, or took the tid, since. Look again.
                    live_all = self._show()
                    live = live_all.get(spec.iqn)
                    if live is None:
                        tid = self._create_target(spec, {t.tid for t in live_all.values()},
                                                  None, undo)
                if live is None:
                    assert tid is not None  # with every attempt allowed it raises instead
                    live = TgtLiveTarget(spec.iqn, tid)
            tid = live.tid
            new_text = render_record(spec, tid, driver=self._lld,
                                     write_cache=self.conf.iscsi_write_cache, bsoflags=bsoflags)
            if new_text != old_text:
                atomic_write(path, new_text, mode=0o600)
                undo.push("restore the record", lambda: self._restore_file(path, old_text))
            self._converge_lun(spec, previous, live, bsoflags, undo)
            self._converge_accounts(spec, previous, live, undo)
            self._converge_acl(spec, live, undo)
        except (CommandError, OSError, PersistenceError) as err:
            undo.run()
            reason = err.strerror if isinstance(err, OSError) else str(err)
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=reason) from None
        except BaseException:
            undo.run()
            raise

    def _restore_file(self, path: Path, old_text: str | None) -> None:
        if old_text is None:
            remove_file(path)
        else:
            atomic_write(path, old_text, mode=0o600)

    def _create_target(self, spec: ExportSpec, used: set[int], preferred: int | None,
                       undo: _Undo, attempts: int = MAX_TID_ATTEMPTS) -> int | None:
        """``target new`` with a free tid: the recorded one if free, else the next of our counter.

        tgtd refuses a taken tid and a taken name with the same message; when
        the name is known not to be live (we hold the volume lock and just
        listed), a refusal means another process took the tid meanwhile.
        Returns None when only ``attempts`` < the maximum were allowed and all
        were refused (the caller's listing may be stale: it looks again).
        """
        candidate = preferred if preferred and preferred not in used else None
        for _attempt in range(attempts):
            tid = candidate or self._next_tid(used)
            candidate = None
            if self._tgtadm_quiet(EXISTS, "--mode", "target", "--op", "new", "--tid", str(tid),
                                  "-T", spec.iqn):
                undo.push(f"delete target {tid}", lambda: self._delete_target(tid))
                return tid
            used.add(tid)
        if attempts < MAX_TID_ATTEMPTS:
            return None
        raise TargetCreateFailed(volume_id=spec.volume_id,
                                 reason=f"no free target id after {MAX_TID_ATTEMPTS} attempts")

    def _next_tid(self, used: set[int]) -> int:
        counter = self.records_dir / TID_COUNTER
        with locking.named_lock(self.conf, TID_LOCK):
            text = (read_text_or_none(counter) or "").strip()
            tid = int(text) if text.isdigit() and int(text) > 0 else 1
            while tid in used:
                tid += 1
            atomic_write(counter, f"{tid + 1}\n", mode=0o600)
        return tid

    def _delete_target(self, tid: int) -> None:
        self._tgtadm_quiet(NO_TARGET, "--mode", "target", "--op", "delete", "--force",
                           "--tid", str(tid))

    def _converge_lun(self, spec: ExportSpec, previous: ExportSpec | None, live: TgtLiveTarget,
                      bsoflags: str, undo: _Undo) -> None:
        """LUN 1 on the device; re-created when asked again for the same spec (extend, repair).

        tgtd reads a backing store's size once, when the LUN is created, so a
        grown device is only seen through a new LUN.
        """
        current = live.lun_path(self.lun)
        reported = dict(live.sizes).get(self.lun)
        stale = reported is not None and reported != _device_size_mb(spec.device_path)
        if current == spec.device_path and spec != previous and not stale:
            return
        tid = str(live.tid)
        if current is not None:
            self._tgtadm("--mode", "logicalunit", "--op", "delete", "--tid", tid,
                         "--lun", str(self.lun))
            undo.push("re-add the old LUN", lambda: self._new_lun(tid, current, bsoflags))
        self._new_lun(tid, spec.device_path, bsoflags)
        undo.push("delete the new LUN", lambda: self._tgtadm(
            "--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun", str(self.lun)))

    def _new_lun(self, tid: str, device: str, bsoflags: str) -> None:
        args = ["--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", str(self.lun),
                "-b", device]
        if bsoflags:
            args += ["--bsoflags", bsoflags]
        self._tgtadm(*args)
        if self.conf.iscsi_write_cache == "off":
            self._tgtadm("--mode", "logicalunit", "--op", "update", "--tid", tid,
                         "--lun", str(self.lun), "--params", WRITE_CACHE_OFF_MODE_PAGE)

    def _converge_accounts(self, spec: ExportSpec, previous: ExportSpec | None,
                           live: TgtLiveTarget, undo: _Undo) -> None:
        for outgoing, wanted, before, bound in (
                (False, spec.chap, previous.chap if previous else None, live.accounts),
                (True, spec.target_chap, previous.target_chap if previous else None, live.outgoing)):
            if wanted is not None and (wanted.username not in bound or wanted != before):
                self._acquire_account(spec, wanted, before, live.tid, outgoing, undo)
                self._bind_account(live.tid, wanted.username, outgoing, undo)
            for user in bound:
                if wanted is None or user != wanted.username:
                    self._unbind_account(live.tid, user, outgoing, undo)
            if before is not None and (wanted is None or before.username != wanted.username):
                self._release_account(spec.volume_name, before.username, undo, before)

    def _bind_account(self, tid: int, user: str, outgoing: bool, undo: _Undo) -> None:
        extra = ("--outgoing",) if outgoing else ()
        if self._tgtadm_quiet(EXISTS, "--mode", "account", "--op", "bind", "--tid", str(tid),
                              "--user", user, *extra):
            undo.push(f"unbind account {user}", lambda: self._tgtadm_quiet(
                NO_ACCOUNT, "--mode", "account", "--op", "unbind", "--tid", str(tid),
                "--user", user, *extra))

    def _unbind_account(self, tid: int, user: str, outgoing: bool, undo: _Undo) -> None:
        extra = ("--outgoing",) if outgoing else ()
        if self._tgtadm_quiet(NO_ACCOUNT, "--mode", "account", "--op", "unbind", "--tid", str(tid),
                              "--user", user, *extra):
            undo.push(f"re-bind account {user}", lambda: self._tgtadm(
                "--mode", "account", "--op", "bind", "--tid", str(tid), "--user", user, *extra))

    def _new_account(self, credentials: ChapCredentials) -> bool:
        """The one tgtadm call with a secret on its command line (tgtadm offers no other way)."""
        return self._tgtadm_quiet(EXISTS, "--mode", "account", "--op", "new",
                                  "--user", credentials.username,
                                  "--password", credentials.password,
                                  secrets=(credentials.password,))

    def _delete_account(self, user: str) -> None:
        self._tgtadm_quiet(NO_ACCOUNT, "--mode", "account", "--op", "delete", "--user", user)

    def _acquire_account(self, spec: ExportSpec, wanted: ChapCredentials,
                         before: ChapCredentials | None, tid: int, outgoing: bool,
                         undo: _Undo) -> None:
        """Make tgtd hold ``wanted`` for this export without changing another export's secret."""
        directory = self._account_dir(wanted.username)
        marker = directory / spec.volume_name
        with locking.named_lock(self.conf, ACCOUNT_LOCK + self._account_key(wanted.username)):
            if not marker.exists():
                ensure_private_dir(directory)
                marker.touch(mode=0o600)
                fsync_dir(directory)
                undo.push("drop the account marker", lambda: self._drop_marker(marker))
            if self._new_account(wanted):
                undo.push(f"delete account {wanted.username}",
                          lambda: self._delete_account(wanted.username))
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
                           "with a different secret; tgtd keeps one secret per user name")
            # Only this export uses the name: replace the account (a leftover or our old secret).
            self._delete_account(wanted.username)
            self._new_account(wanted)
            if before is not None and before.username == wanted.username:
                undo.push("restore the old secret",
                          lambda: self._replace_account(before, tid, outgoing))

    def _replace_account(self, credentials: ChapCredentials, tid: int, outgoing: bool) -> None:
        """Put an old secret back; deleting the account unbound it, so bind it again."""
        self._delete_account(credentials.username)
        self._new_account(credentials)
        self._tgtadm_quiet(EXISTS, "--mode", "account", "--op", "bind", "--tid", str(tid),
                           "--user", credentials.username, *(("--outgoing",) if outgoing else ()))

    def _other_user_of(self, directory: Path, volume_name: str) -> ChapCredentials | None:
        """The credentials another export of ours holds for this user name, if any (first found)."""
        user_key = directory.name
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name == volume_name or is_temp_file(entry.name):
                    continue
                try:
                    other = self._read_record(entry.name)
                except PersistenceError:
                    continue
                for credentials in (other.chap, other.target_chap) if other else ():
                    if credentials and self._account_key(credentials.username) == user_key:
                        return credentials
        return None

    def _release_account(self, volume_name: str, user: str, undo: _Undo | None,
                         credentials: ChapCredentials | None = None) -> None:
        """Forget this export's use of ``user``; delete the account once no export uses it."""
        directory = self._account_dir(user)
        with locking.named_lock(self.conf, ACCOUNT_LOCK + self._account_key(user)):
            if not self._drop_marker(directory / volume_name):
                return
            if undo is not None:
                undo.push("restore the account marker",
                          lambda: (directory / volume_name).touch(mode=0o600))
            try:
                directory.rmdir()
            except OSError:
                return  # another export still uses this user name: keep the account
            self._delete_account(user)
            if undo is not None and credentials is not None:
                undo.push(f"re-create account {user}", lambda: self._new_account(credentials))

    @staticmethod
    def _drop_marker(marker: Path) -> bool:
        return remove_file(marker)

    def _converge_acl(self, spec: ExportSpec, live: TgtLiveTarget, undo: _Undo) -> None:
        """Add what is missing before removing what is extra, so no allowed initiator is cut off."""
        wanted, current = self._wanted_acl(spec), set(live.acl)
        for entry in sorted(wanted - current):
            if self._acl(live.tid, "bind", entry):
                undo.push(f"unbind {entry}", lambda e=entry: self._acl(live.tid, "unbind", e))
        for entry in sorted(current - wanted):
            if self._acl(live.tid, "unbind", entry):
                undo.push(f"re-bind {entry}", lambda e=entry: self._acl(live.tid, "bind", e))

    def _acl(self, tid: int, op: str, entry: str) -> bool:
        """Bind or unbind one ACL entry: iSCSI names with -Q (by name), anything else with -I.

        ``show`` lists both kinds together, so an unbind that finds no rule of
        the guessed kind tries the other before concluding it is gone.
        """
        kinds = ["-Q", "-I"] if _is_iscsi_name(entry) else ["-I"]
        quiet = EXISTS if op == "bind" else NO_ACL
        done = False
        for flag in kinds if op == "unbind" else kinds[:1]:
            done = self._tgtadm_quiet(quiet, "--mode", "target", "--op", op, "--tid", str(tid),
                                      flag, entry)
            if done:
                break
        return done

    # -- unrealise

    def _unrealise(self, volume_name: str, iqn: str) -> None:
        try:
            record = self._read(volume_name)
        except PersistenceError as err:
            LOG.warning("Removing %s despite an unreadable record: %s", iqn, err)
            record = None
        try:
            live = self._show().get(iqn)
            if live is not None:
                self._delete_target(live.tid)
            # The live bindings count too: a record may be gone (an orphan) while
            # our marker for the account it used is still there.
            held = (record.spec.chap, record.spec.target_chap) if record else ()
            users = {c.username for c in held if c}
            if live is not None:
                users |= set(live.accounts) | set(live.outgoing)
            for user in sorted(users):
                self._release_account(volume_name, user, None)
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        remove_file(self._record_path(volume_name))
