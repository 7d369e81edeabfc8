"""IET (iSCSI Enterprise Target, ``ietadm``): Cinder's IetAdm, at constant cost per export.

Two things are persisted per export:

* a block in ``iet_conf`` (ietd.conf), in the layout Cinder's IetAdm wrote,
  so ietd itself brings the export back at boot::

      Target <iqn>
      \\tIncomingUser <user> <secret>
      \\tLun 0 Path=<path>,Type=<fileio|blockio>

  The file is shared with other software, so it is edited under the
  ``iet-conf`` lock, blocks are found by exact IQN, everything else is kept
  byte for byte, and the result replaces the file atomically (0600: it
  holds secrets);
* a small JSON index record ``<volumes_dir>/iet/<volume name>`` (volume id,
  IQN, tid, device and its size, credentials), so a single export is found
  without reading ietd.conf or IET's proc files, both of which grow with the
  number of exports.

Real ``ietadm --op new --tid=0`` does not print the tid it chose; Cinder
scanned ``/proc/net/iet/volume`` for it on every create. Here tids come from
a counter file under a lock and are passed explicitly. The proc files are
read only by the bulk paths (list, restore, reconcile) and by rare recovery
paths that must find a target by name (a stale or missing index record,
sessions to force-close). See ``docs/helpers/iet.md`` for call counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from iscsi_helper import locking, secretmask
from iscsi_helper.exception import (CommandError, CommandFailed, PersistenceError,
                                    TargetCreateFailed, TargetRemoveFailed)
from iscsi_helper.fileutil import atomic_write, is_temp_file, read_text_or_none, remove_file
from iscsi_helper.formats import (ChapCredentials, parse_portal, portals_from_config,
                                  validate_iscsi_name, validate_volume_name)
from iscsi_helper.model import ExportSpec, LiveTarget
from iscsi_helper.targets.iscsi import ISCSITarget, is_block_device

LOG = secretmask.get_logger(__name__)

TOOL = "ietadm"
SUBDIR = "iet"
TID_COUNTER = ".next-tid"  # volume names cannot start with '.', so never a record's name
CONF_LOCK = "iet-conf"
TID_LOCK = "iet-tid"
MAX_TID_ATTEMPTS = 16
MAX_BUSY_ROUNDS = 3

# ietadm returns -errno from main: the shell sees 256 - errno.
EXIT_EINVAL = 234  # target name in use (on --op new --tid --params Name=)
EXIT_EEXIST = 239  # LUN exists; or the tid is taken by another name
EXIT_ENOENT = 254  # no such target / LUN / session / account
EXIT_EBUSY = 240  # target still has sessions


# ------------------------------------------------------------------ ietd.conf


def render_block(spec: ExportSpec, iotype: str) -> str:
    """Our ietd.conf block: exactly what Cinder's IetAdm wrote, one tab of indent."""
    lines = [f"Target {spec.iqn}"]
    if spec.chap:
        lines.append(f"\tIncomingUser {spec.chap.username} {spec.chap.password}")
    if spec.target_chap:
        lines.append(f"\tOutgoingUser {spec.target_chap.username} {spec.target_chap.password}")
    lines.append(f"\tLun {spec.lun} Path={spec.device_path},Type={iotype}")
    return "\n".join(lines) + "\n"


def _target_name(line: str) -> str | None:
    """The name on a ``Target <name>`` line (keyword case-blind, as ietd reads it), else None."""
    words = line.split()
    if len(words) == 2 and words[0].lower() == "target":
        return words[1]
    return None


def _is_block_body(line: str) -> bool:
    """Whether a line continues the Target block above it.

    A blank line, a comment or the next ``Target`` ends a block, so comments
    and spacing around other software's blocks are never taken as ours.
    """
    words = line.split()
    return bool(words) and not words[0].startswith("#") and words[0].lower() != "target"


def iter_blocks(lines: list[str]) -> Iterator[tuple[str, int, int]]:
    """(name, start, end) of every Target block: ``lines[start:end]`` is the block."""
    i = 0
    while i < len(lines):
        name = _target_name(lines[i])
        if name is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and _is_block_body(lines[end]):
            end += 1
        yield name, i, end
        i = end


def replace_block(text: str, iqn: str, block: str | None) -> str:
    """``text`` with the block of exactly ``iqn`` replaced by ``block`` (None: removed).

    The first block of that name is replaced in place; later duplicates
    (ietd would refuse a second target of one name) are dropped. Without a
    block, ``block`` is appended. Every other byte is kept.
    """
    first = text.find(iqn)
    if first < 0:
        # No line can name it: skip the line scan, the N-sized part of a create
        # (one substring search of the file instead of a split of every line).
        if block is None:
            return text
        return (text if not text or text.endswith("\n") else text + "\n") + block
    # A Target line always starts a block, whatever precedes it, so the file
    # before the line of the first mention is kept without being split.
    keep = text.rfind("\n", 0, first) + 1
    if keep:
        return text[:keep] + replace_block(text[keep:], iqn, block)
    lines = text.splitlines(keepends=True)
    spans = [(start, end) for name, start, end in iter_blocks(lines) if name == iqn]
    new_lines = [] if block is None else block.splitlines(keepends=True)
    if not spans:
        if block is None:
            return text
        prefix = text if not text or text.endswith("\n") else text + "\n"
        return prefix + block
    out: list[str] = []
    cursor = 0
    for index, (start, end) in enumerate(spans):
        out += lines[cursor:start]
        if index == 0:
            out += new_lines
        cursor = end
    out += lines[cursor:]
    return "".join(out)


@dataclass(frozen=True)
class ConfBlock:
    """What one ietd.conf Target block says (for adoption of Cinder's blocks)."""

    iqn: str
    incoming: ChapCredentials | None
    outgoing: ChapCredentials | None
    luns: dict[int, str]


def parse_block(lines: list[str], path: Path) -> ConfBlock:
    name = _target_name(lines[0])
    assert name is not None
    incoming = outgoing = None
    luns: dict[int, str] = {}
    for line in lines[1:]:
        words = line.split()
        keyword = words[0].lower()
        try:
            if keyword in ("incominguser", "outgoinguser") and len(words) == 3:
                creds = ChapCredentials(words[1], words[2])
                if keyword == "incominguser":
                    incoming = incoming or creds
                else:
                    outgoing = creds
            elif keyword == "lun" and len(words) >= 3 and words[1].isdigit():
                params = dict(item.partition("=")[::2]
                              for item in "".join(words[2:]).split(",") if item)
                if params.get("Path"):
                    luns[int(words[1])] = params["Path"]
        except Exception as err:  # noqa: BLE001 - a bad credential: name the file, not the secret
            raise PersistenceError(path=path, reason=f"block of {name}: {err}") from None
    return ConfBlock(name, incoming, outgoing, luns)


# ------------------------------------------------------------ proc files


def parse_volume_proc(text: str) -> dict[str, LiveTarget]:
    """``/proc/net/iet/volume``: ``tid:N name:IQN`` lines, each followed by ``\\tlun:`` lines."""
    targets: dict[str, LiveTarget] = {}
    current: tuple[str, int] | None = None
    devices: dict[int, str] = {}

    def close() -> None:
        if current is not None:
            targets[current[0]] = LiveTarget(current[0], current[1], None,
                                             tuple(devices[n] for n in sorted(devices)))

    for line in text.splitlines():
        if line.startswith("tid:"):
            close()
            tid_field, _, name_field = line.partition(" ")
            tid_text = tid_field[len("tid:"):]
            if not tid_text.isdigit() or not name_field.startswith("name:"):
                current = None
                continue
            current, devices = (name_field[len("name:"):].strip(), int(tid_text)), {}
        elif current is not None and line.strip().startswith("lun:"):
            fields = dict(f.partition(":")[::2] for f in line.split())
            if fields.get("lun", "").isdigit() and "path" in fields:
                devices[int(fields["lun"])] = line.split(" path:", 1)[1].strip()
    close()
    return targets


def parse_session_proc(text: str, tid: int) -> list[tuple[int, int]]:
    """(sid, cid) of every connection of target ``tid`` in ``/proc/net/iet/session``."""
    result: list[tuple[int, int]] = []
    inside = False
    sid: int | None = None
    for line in text.splitlines():
        if line.startswith("tid:"):
            inside = line.split()[0] == f"tid:{tid}"
            sid = None
            continue
        if not inside:
            continue
        fields = dict(f.partition(":")[::2] for f in line.split())
        if "sid" in fields and fields["sid"].isdigit():
            sid = int(fields["sid"])
        elif "cid" in fields and fields["cid"].isdigit() and sid is not None:
            result.append((sid, int(fields["cid"])))
    return result


# ------------------------------------------------------------ index records


def _chap_json(creds: ChapCredentials | None) -> list[str] | None:
    return [creds.username, creds.password] if creds else None


def _device_size(path: str) -> int | None:
    """Bytes behind ``path``: a grown device is what makes a LUN need re-adding."""
    try:
        if is_block_device(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.lseek(fd, 0, os.SEEK_END)
            finally:
                os.close(fd)
        return os.stat(path).st_size
    except OSError:
        return None


class IetTarget(ISCSITarget):
    """``target_helper = iet`` (also ``ietadm``)."""

    names = ("iet", "ietadm")
    lun = 0

    # -- paths and small helpers

    @property
    def records_dir(self) -> Path:
        return Path(self.conf.volumes_dir) / SUBDIR

    @property
    def conf_path(self) -> Path:
        return Path(self.conf.iet_conf)

    def _record_path(self, volume_name: str) -> Path:
        return self.records_dir / volume_name

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        # ietd.conf's directory is shared with other software: only our file's temp files.
        return [*super()._state_dirs(), (self.conf_path.parent, False, self.conf_path.name)]


    def _iotype(self, path: str) -> str:
        iotype = self.conf.iscsi_iotype
        if iotype == "auto":
            return "blockio" if is_block_device(path) else "fileio"
        return str(iotype)

    def _ietadm(self, *args: str, ok: tuple[int, ...] = (0,),
                secrets: tuple[str, ...] = ()) -> int:
        return self.executor.run(TOOL, *args, ok_codes=ok, secrets=secrets).exit_code

    # -- index records

    def _load_index(self, volume_name: str) -> dict | None:
        path = self._record_path(volume_name)
        text = read_text_or_none(path)
        if text is None:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("volume_name") != volume_name:
                raise ValueError("names another volume")
            return data
        except ValueError as err:
            raise PersistenceError(path=path, reason=f"not an IET export record ({err})") from None

    def _spec_from_index(self, data: dict, path: Path) -> ExportSpec:
        try:
            return ExportSpec(
                data["volume_id"], data["volume_name"], data["iqn"], data["device_path"],
                data["lun"], tuple(parse_portal(p) for p in data["portals"]),
                ChapCredentials(*data["chap"]) if data["chap"] else None,
                ChapCredentials(*data["target_chap"]) if data["target_chap"] else None)
        except (KeyError, TypeError, ValueError) as err:
            raise PersistenceError(path=path, reason=f"not an IET export record ({err})") from None
        except Exception as err:  # noqa: BLE001 - invalid stored values (InvalidInput)
            raise PersistenceError(path=path, reason=str(err)) from None

    def _index_text(self, spec: ExportSpec, tid: int, size: int | None) -> str:
        return json.dumps({
            "volume_id": spec.volume_id, "volume_name": spec.volume_name, "iqn": spec.iqn,
            "tid": tid, "device_path": spec.device_path, "device_size": size, "lun": spec.lun,
            "portals": [str(p) for p in spec.portals], "chap": _chap_json(spec.chap),
            "target_chap": _chap_json(spec.target_chap)}, sort_keys=True) + "\n"

    # -- ietd.conf

    def _read_conf(self) -> str:
        return read_text_or_none(self.conf_path) or ""

    def _conf_spec(self, lines: list[str], start: int, end: int, volume_name: str) -> ExportSpec | None:
        block = parse_block(lines[start:end], self.conf_path)
        if self.lun not in block.luns:
            return None
        portals = tuple(portals_from_config(self.conf.target_ip_address,
                                            list(self.conf.target_secondary_ip_addresses),
                                            self.conf.target_port))
        return ExportSpec(self._volume_id_from_name(volume_name), volume_name, block.iqn,
                          block.luns[self.lun], self.lun, portals, block.incoming, block.outgoing)

    def _write_conf_block(self, iqn: str, block: str | None) -> str | None:
        """Put (or drop) our block under the file's lock; returns the old text for rollback."""
        with locking.named_lock(self.conf, CONF_LOCK):
            old = read_text_or_none(self.conf_path)
            new = replace_block(old or "", iqn, block)
            if new != (old or ""):
                atomic_write(self.conf_path, new, mode=0o600)
            return old

    def _restore_conf_block(self, iqn: str, old_text: str | None) -> None:
        """Put back only our block as it was: other exports may have changed the file meanwhile."""
        previous_block = None
        if old_text:
            lines = old_text.splitlines(keepends=True)
            for name, start, end in iter_blocks(lines):
                if name == iqn:
                    previous_block = "".join(lines[start:end])
                    break
        self._write_conf_block(iqn, previous_block)

    # -- tids

    def _allocate_tid(self, reseed: bool = False) -> int:
        """Next tid from our counter; seeded past every live tid on first use (or ``reseed``)."""
        counter = self.records_dir / TID_COUNTER
        with locking.named_lock(self.conf, TID_LOCK):
            text = read_text_or_none(counter)
            tid = int(text) if text and text.strip().isdigit() else 0
            if tid < 1 or reseed:
                live = self._list_live()
                tid = max([tid, 1] + [t.tid + 1 for t in live.values()])
            atomic_write(counter, f"{tid + 1}\n", mode=0o600)
        return tid

    # -- primitives: persistence

    def _read_record(self, volume_name: str) -> ExportSpec | None:
        data = self._load_index(volume_name)
        if data is not None:
            return self._spec_from_index(data, self._record_path(volume_name))
        # Not ours yet: a block Cinder's IetAdm wrote is adopted with its credentials.
        # Only a miss reads ietd.conf, and a create then rewrites it anyway.
        iqn = f"{self.conf.target_prefix}{volume_name}"
        text = self._read_conf()
        if iqn not in text:
            return None  # the usual miss (a new export): no line scan
        lines = text.splitlines(keepends=True)
        for name, start, end in iter_blocks(lines):
            if name == iqn:
                return self._conf_spec(lines, start, end, volume_name)
        return None

    def _list_records(self) -> list[ExportSpec]:
        records: dict[str, ExportSpec] = {}
        try:
            names = os.listdir(self.records_dir)
        except FileNotFoundError:
            names = []
        for name in names:
            if name.startswith(".") or is_temp_file(name):
                continue
            try:
                data = self._load_index(name)
                if data is not None:
                    records[name] = self._spec_from_index(data, self._record_path(name))
            except PersistenceError as err:
                LOG.error("Skipping %s", err)
        prefix = self.conf.target_prefix
        lines = self._read_conf().splitlines(keepends=True)
        for iqn, start, end in iter_blocks(lines):
            name = iqn[len(prefix):]
            if not iqn.startswith(prefix) or name in records:
                continue
            try:
                validate_volume_name(name)
                spec = self._conf_spec(lines, start, end, name)
            except Exception as err:  # noqa: BLE001 - one bad block must not hide the others
                LOG.error("Skipping ietd.conf block %s: %s", iqn, err)
                continue
            if spec is not None:
                records[name] = spec
        return list(records.values())

    # -- primitives: live target

    def _probe_account(self, tid: int, direction: str, creds: ChapCredentials) -> bool | None:
        """Whether target ``tid`` holds exactly this account: True, False (other secret), None (absent).

        ietd answers a query for one named account with its secret (on
        stdout, never argv). A random per-volume user and secret at the tid
        our record names is how we recognise our own target without
        reading the proc file, which lists every target.
        """
        result = self.executor.run(TOOL, "--op", "show", f"--tid={tid}", "--user",
                                   f"--params={direction}={creds.username}",
                                   ok_codes=(0, EXIT_ENOENT), secrets=(creds.password,))
        if result.exit_code != 0:
            return None
        return result.stdout.split() == [direction, creds.username, creds.password]

    def _vouched_tid(self, volume_name: str, iqn: str) -> int | None:
        """The recorded tid, if the target there is provably this export's (one ietadm call)."""
        data = self._load_index(volume_name)
        if data is None or data.get("iqn") != iqn or not data.get("chap") or not data.get("tid"):
            return None
        tid = int(data["tid"])
        return tid if self._probe_account(tid, "IncomingUser", ChapCredentials(*data["chap"])) else None

    def _lookup(self, iqn: str) -> LiveTarget | None:
        prefix = self.conf.target_prefix
        if not iqn.startswith(prefix):
            return None
        tid = self._vouched_tid(iqn[len(prefix):], iqn)
        return None if tid is None else LiveTarget(iqn, tid)

    def _in_place(self, spec: ExportSpec, record: ExportSpec | None,
                  live: LiveTarget | None) -> bool:
        """A target found by its account alone may still lack its LUN: let realise make sure.

        ietadm cannot show a LUN, and the account is added before the LUN
        (so a crash never leaves a disk open to every initiator). Realise on
        our own target costs two calls: the account probe and ``new --lun``
        answered 239 when the LUN is there.
        """
        if live is not None and live.devices is None:
            return False
        return super()._in_place(spec, record, live)

    def _note_live(self, spec: ExportSpec, live: LiveTarget) -> None:
        """Record the tid ietd gave our target when it loaded ietd.conf at boot (no ietadm call).

        The listing names the target and its LUN path, and the restore holds
        the volume's lock, so the live tid is this export's; every later
        operation then vouches for it with one account probe.
        """
        data = self._load_index(spec.volume_name)
        if data is None or data.get("tid") == live.tid:
            return
        LOG.info("Volume %s is live at tid %s (recorded: %s); noting it", spec.volume_id,
                 live.tid, data.get("tid"))
        atomic_write(self._record_path(spec.volume_name),
                     self._index_text(spec, live.tid, data.get("device_size")), mode=0o600)

    def _proc_text(self, name: str) -> str:
        return read_text_or_none(Path(self.conf.iet_proc_dir) / name) or ""

    def _list_live(self) -> dict[str, LiveTarget]:
        return parse_volume_proc(self._proc_text("volume"))

    def _find_live(self, iqn: str) -> LiveTarget | None:
        """A target by name from the proc file: only for recovery (no or stale index record)."""
        return self._list_live().get(iqn)

    def _realise(self, spec: ExportSpec, previous: ExportSpec | None,
                 listing: Mapping[str, LiveTarget] | None = None) -> None:
        validate_iscsi_name(spec.iqn, "target IQN")
        iotype = self._iotype(spec.device_path)
        size = _device_size(spec.device_path)
        index_path = self._record_path(spec.volume_name)
        old_index = read_text_or_none(index_path)
        old_data = self._load_index(spec.volume_name)
        known_tid = int(old_data["tid"]) if old_data and old_data.get("tid") else None
        tid = known_tid or self._allocate_tid()

        # Persist first, so a crash mid-way leaves a record that ensure can finish.
        conf_old: str | None = None
        conf_touched = not (old_data is not None and previous == spec)
        if conf_touched:
            conf_old = self._write_conf_block(spec.iqn, render_block(spec, iotype))
        new_index = self._index_text(spec, tid, size)
        if new_index != old_index:
            atomic_write(index_path, new_index, mode=0o600)
        undo: list[Callable[[], None]] = []
        try:
            # Absent from a fresh proc listing: no need to probe the recorded tid
            # (if a racing process made it meanwhile, "new" answers 234 and the
            # target is found by name).
            absent = listing is not None and spec.iqn not in listing
            live_tid = self._start(spec, previous, old_data, tid, iotype, size, undo,
                                   probe=not absent)
        except CommandError as err:
            for step in reversed(undo):
                try:
                    step()
                except CommandError as undo_err:
                    LOG.error("Could not roll back part of the export of %s: %s",
                              spec.volume_id, undo_err)
            if old_index is None:
                remove_file(index_path)
            else:
                atomic_write(index_path, old_index, mode=0o600)
            if conf_touched:
                self._restore_conf_block(spec.iqn, conf_old)
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=str(err)) from None
        if live_tid != tid:
            atomic_write(index_path, self._index_text(spec, live_tid, size), mode=0o600)

    def _start(self, spec: ExportSpec, previous: ExportSpec | None, old_data: dict | None,
               tid: int, iotype: str, size: int | None, undo: list[Callable[[], None]],
               probe: bool = True) -> int:
        """Make target, LUN and accounts live as ``spec`` says; returns the target's tid.

        ``undo`` collects the inverse of each change made, for the caller's rollback.
        """
        lun_params = f"Path={spec.device_path},Type={iotype}"
        known_devices: tuple[str, ...] | None = None
        ours = False
        # Our target already at the recorded tid? (Its account proves it, cheaply.)
        if probe and previous is not None and previous.chap is not None and old_data is not None:
            ours = bool(self._probe_account(tid, "IncomingUser", previous.chap))
        created = False
        if not ours:
            tid, created, known_devices = self._new_target(spec.iqn, tid)
            if created:
                undo.append(lambda t=tid: self._delete_target(t, spec.volume_id))

        # CHAP accounts before the LUN: a process killed in between leaves a
        # target with nothing behind it (no LUN), never a disk open to any
        # initiator; the LUN-less target reads as "differs" and is repaired.
        old_out = previous.target_chap if previous else None
        if spec.target_chap != old_out or (spec.target_chap and not ours):
            if spec.target_chap:
                self._set_account(tid, "OutgoingUser", spec.target_chap, created, undo, old_out)
            elif old_out and not created:
                self._ietadm("--op", "delete", f"--tid={tid}", "--user",
                             f"--params=OutgoingUser={old_out.username}", ok=(0, EXIT_ENOENT))
        old_in = previous.chap if previous else None
        if spec.chap and not (ours and old_in == spec.chap):
            if old_in and old_in.username != spec.chap.username and not created:
                self._ietadm("--op", "delete", f"--tid={tid}", "--user",
                             f"--params=IncomingUser={old_in.username}", ok=(0, EXIT_ENOENT))
            self._set_account(tid, "IncomingUser", spec.chap, created, undo, old_in)
        # LUN 0
        if created:
            self._ietadm("--op", "new", f"--tid={tid}", f"--lun={spec.lun}", "--params", lun_params)
        else:
            old_device = previous.device_path if previous else None
            old_size = old_data.get("device_size") if old_data else None
            stale = (known_devices is not None and known_devices[:1] != (spec.device_path,)) \
                or (known_devices is None and (old_device != spec.device_path or old_size != size))
            if stale:
                # A new path, or a grown device: IET reads the size only when a LUN is added.
                gone = self._ietadm("--op", "delete", f"--tid={tid}", f"--lun={spec.lun}",
                                    ok=(0, EXIT_ENOENT))
                if gone == 0 and old_device:
                    old_params = f"Path={old_device},Type={self._iotype(old_device)}"
                    undo.append(lambda: self._readd_lun(tid, spec.lun, old_params))
                self._ietadm("--op", "new", f"--tid={tid}", f"--lun={spec.lun}",
                             "--params", lun_params)
            else:
                # Restores a LUN lost behind our back; 239 says it is there already.
                self._ietadm("--op", "new", f"--tid={tid}", f"--lun={spec.lun}",
                             "--params", lun_params, ok=(0, EXIT_EEXIST))

        return tid

    def _new_target(self, iqn: str, tid: int) -> tuple[int, bool, tuple[str, ...] | None]:
        """Create the target at ``tid`` or find it: (tid, created, LUN paths if found).

        239 means another target holds the tid (after a reboot ietd numbers
        ietd.conf's targets itself): take the next one. 234 means our name
        exists already (ietd loaded it from ietd.conf, or an earlier attempt
        died half-way): only then is the proc file read, to find its tid.
        """
        for attempt in range(MAX_TID_ATTEMPTS + 1):
            code = self._ietadm("--op", "new", f"--tid={tid}", "--params", f"Name={iqn}",
                                ok=(0, EXIT_EINVAL, EXIT_EEXIST))
            if code == 0:
                return tid, True, None
            if code == EXIT_EINVAL:
                live = self._find_live(iqn)
                if live is None:
                    raise CommandFailed(command=f"{TOOL} --op", exit_code=code, stdout="",
                                        stderr=f"{TOOL} refused target {iqn} (EINVAL) but "
                                               "it is not in the proc volume file")
                return live.tid, False, live.devices
            tid = self._allocate_tid(reseed=attempt == MAX_TID_ATTEMPTS - 1)
        raise CommandFailed(command=f"{TOOL} --op", exit_code=EXIT_EEXIST, stdout="",
                            stderr=f"no free tid after {MAX_TID_ATTEMPTS + 1} attempts")

    def _set_account(self, tid: int, direction: str, creds: ChapCredentials, created: bool,
                     undo: list[Callable[[], None]], old: ChapCredentials | None) -> None:
        """Add a CHAP account unless it is there; the one call that carries a secret on argv.

        IET takes the secret only on its command line (no stdin, no file),
        so it is passed as ``secrets`` to be masked wherever it could be logged.
        """
        if not created:
            present = self._probe_account(tid, direction, creds)
            if present:
                return
            if present is False:  # same user, other secret: ietd would keep both
                self._ietadm("--op", "delete", f"--tid={tid}", "--user",
                             f"--params={direction}={creds.username}", ok=(0, EXIT_ENOENT))
        self._ietadm("--op", "new", f"--tid={tid}", "--user",
                     f"--params={direction}={creds.username},Password={creds.password}",
                     secrets=(creds.password,))
        if not created:
            # Undo runs in reverse: drop the new account, then put the old one back.
            if old is not None:
                undo.append(lambda: self._ietadm(
                    "--op", "new", f"--tid={tid}", "--user",
                    f"--params={direction}={old.username},Password={old.password}",
                    secrets=(old.password,)))
            undo.append(lambda: self._ietadm("--op", "delete", f"--tid={tid}", "--user",
                                             f"--params={direction}={creds.username}",
                                             ok=(0, EXIT_ENOENT)))

    def _readd_lun(self, tid: int, lun: int, params: str) -> None:
        self._ietadm("--op", "delete", f"--tid={tid}", f"--lun={lun}", ok=(0, EXIT_ENOENT))
        self._ietadm("--op", "new", f"--tid={tid}", f"--lun={lun}", "--params", params)

    def _delete_target(self, tid: int, volume: str) -> None:
        """Delete target ``tid``; sessions are force-closed; an absent target is success."""
        for _round in range(MAX_BUSY_ROUNDS):
            code = self._ietadm("--op", "delete", f"--tid={tid}",
                                ok=(0, EXIT_ENOENT, EXIT_EBUSY))
            if code != EXIT_EBUSY:
                return
            for sid, cid in parse_session_proc(self._proc_text("session"), tid):
                LOG.warning("Force-closing session %s (connection %s) of target %s to remove %s",
                            sid, cid, tid, volume)
                self._ietadm("--op", "delete", f"--tid={tid}", f"--sid={sid}", f"--cid={cid}",
                             ok=(0, EXIT_ENOENT))
        raise CommandFailed(command=f"{TOOL} --op", exit_code=EXIT_EBUSY, stdout="",
                            stderr=f"target {tid} kept getting new sessions")

    def _unrealise(self, volume_name: str, iqn: str) -> None:
        tid = self._vouched_tid(volume_name, iqn)
        if tid is None:
            # No record (an orphan, or Cinder's), or the recorded tid now holds
            # another target: never delete by a tid we cannot vouch for.
            live = self._find_live(iqn)
            tid = live.tid if live else None
        try:
            if tid is not None:
                self._ietadm("--op", "delete", f"--tid={tid}", f"--lun={self.lun}",
                             ok=(0, EXIT_ENOENT))
                self._delete_target(tid, volume_name)
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        self._write_conf_block(iqn, None)
        remove_file(self._record_path(volume_name))
