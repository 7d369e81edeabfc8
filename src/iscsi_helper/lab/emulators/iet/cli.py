"""``ietadm`` as the IET emulator answers it: same syntax, same exit codes.

Helpers drive IET only through this command and the two proc files, so
fidelity here is what makes helper tests meaningful: option parsing follows
ietadm's getopt_long table (long options, unique prefixes, ``-o/-t/...``
short forms), the handler is chosen in ietadm's order (``--user``, then
``--lun``, ``--cid``, ``--sid``, ``--tid``), and failures end with
``256 - errno`` as ietadm's ``return err`` does. Unlike ietadm, every
failure also says on stderr what went wrong, and unknown parameters are
refused instead of skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from iscsi_helper.lab.emulators.iet import params as iet_params
from iscsi_helper.lab.emulators.iet import serving
from iscsi_helper.lab.emulators.iet.errors import (
    USAGE_EXIT,
    EmulatorConfigError,
    IetadmUsageError,
    IetError,
    ebusy,
    eexist,
    einval,
    enoent,
)
from iscsi_helper.lab.emulators.iet.model import LunRecord, TargetRecord, new_target
from iscsi_helper.lab.emulators.iet.state import State

PROGRAM = "ietadm"
VERSION = "1.4.20 (iscsi-helper emulator)"
MAX_TID = 0xFFFFFFFF
MAX_LUN = 0x3FFF
NAME_MAX = 223  # RFC 3720: iSCSI names are at most 223 bytes
ACCOUNT_MAX = 255  # ietd keeps user and secret in ISCSI_NAME_LEN (256) buffers
SCSI_ID_MAX = 16
SCSI_SN_MAX = 16
BLOCK_SIZES = (512, 1024, 2048, 4096)

_LONG: dict[str, tuple[str, bool]] = {  # name -> (key, takes an argument)
    "op": ("op", True),
    "tid": ("tid", True),
    "sid": ("sid", True),
    "cid": ("cid", True),
    "lun": ("lun", True),
    "params": ("params", True),
    "user": ("user", False),
    "version": ("version", False),
    "help": ("help", False),
}
_SHORT: dict[str, str] = {
    "o": "op",
    "t": "tid",
    "s": "sid",
    "c": "cid",
    "l": "lun",
    "p": "params",
    "u": "user",
    "v": "version",
    "h": "help",
}
_OPS = ("new", "delete", "update", "show")

USAGE = f"""Usage: {PROGRAM} [OPTION]
iSCSI Enterprise Target Administration Utility (emulated).

  --op new --tid=[id] --params Name=[name]
  --op delete --tid=[id]
  --op update --tid=[id] --params=key1=value1,key2=value2,...
  --op show --tid=[id] [--sid=[sid]]
  --op new --tid=[id] --lun=[lun] --params Path=[path][,Type=fileio|blockio][,IOMode=wt|wb|ro]
                                           [,ScsiId=..][,ScsiSN=..][,BlockSize=..]
  --op delete --tid=[id] --lun=[lun]
  --op delete --tid=[id] --sid=[sid] --cid=[cid]
  --op delete           stop all activity.
  --op new --tid=[id] --user --params=[IncomingUser|OutgoingUser]=[name],Password=[pass]
  --op delete --tid=[id] --user --params=[IncomingUser|OutgoingUser]=[name]
  --op show --tid=[id] --user [--params=[IncomingUser|OutgoingUser]=[name]]
  --version             display version and exit
  --help                display this help and exit
"""


@dataclass
class Args:
    op: str | None = None
    tid: int | None = None
    sid: int | None = None
    cid: int | None = None
    lun: int | None = None
    params: str | None = None
    user: bool = False
    version: bool = False
    help: bool = False
    positional: list[str] = field(default_factory=list)


def _number(option: str, text: str, maximum: int) -> int:
    # ietadm uses strtoul, which turns junk into 0 and can hit the wrong target;
    # the emulator refuses it instead.
    if not text.isdigit() or not text.isascii():
        raise einval(f"--{option}: {text!r} is not a decimal number")
    value = int(text)
    if value > maximum:
        raise einval(f"--{option}: {value} is too large")
    return value


def parse_args(argv: Sequence[str]) -> Args:
    """getopt_long-compatible parsing; syntax errors raise IetadmUsageError, bad values IetError."""
    raw: list[tuple[str, str | None]] = []
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.positional.extend(argv[i + 1 :])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            candidates = [n for n in _LONG if n.startswith(name)] if name else []
            if name in _LONG:
                candidates = [name]
            if len(candidates) != 1:
                kind = "ambiguous" if candidates else "unrecognized"
                raise IetadmUsageError(f"{kind} option '--{name}'")
            key, takes_arg = _LONG[candidates[0]]
            if takes_arg:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise IetadmUsageError(f"option '--{candidates[0]}' requires an argument")
                    value = argv[i]
                raw.append((key, value))
            else:
                if eq:
                    raise IetadmUsageError(f"option '--{candidates[0]}' doesn't allow an argument")
                raw.append((key, None))
        elif arg.startswith("-") and arg != "-":
            chars = arg[1:]
            j = 0
            while j < len(chars):
                short = _SHORT.get(chars[j])
                if short is None:
                    raise IetadmUsageError(f"invalid option -- '{chars[j]}'")
                if _LONG[short][1]:
                    value = chars[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(argv):
                            raise IetadmUsageError(f"option requires an argument -- '{chars[j]}'")
                        value = argv[i]
                    raw.append((short, value))
                    break
                raw.append((short, None))
                j += 1
        else:
            args.positional.append(arg)
        i += 1

    for option, _argument in raw:
        if option == "version" or option == "help":
            setattr(args, option, True)
            return args  # ietadm acts on these the moment getopt sees them
    for option, argument in raw:
        assert option not in ("version", "help")
        if option == "op":
            args.op = argument
        elif option == "params":
            args.params = argument
        elif option == "user":
            args.user = True
        elif option in ("tid", "cid"):
            setattr(args, option, _number(option, argument or "", MAX_TID))
        elif option == "sid":
            args.sid = _number(option, argument or "", 2**64 - 1)
        elif option == "lun":
            args.lun = _number(option, argument or "", MAX_TID)
    return args


# -- handlers ---------------------------------------------------------------


class Ietadm:
    """One ietadm invocation against the emulator state; output goes to ``out``."""

    def __init__(self, state: State, out: Callable[[str], None]) -> None:
        self.state = state
        self.out = out

    def run(self, args: Args) -> None:
        if args.op is None:
            raise einval("You must specify the operation type")
        if args.op not in _OPS:
            raise einval(f"unknown operation {args.op!r} (new, delete, update, show)")
        if args.positional:
            raise IetadmUsageError("unrecognized: " + " ".join(args.positional))
        exclusive = args.op != "show"
        with self.state.locked(exclusive=exclusive):
            if exclusive:
                self.state.ensure_proc()  # readers should find the files after any change
                with self.state.changing():
                    self._dispatch(args)
            else:
                self._dispatch(args)

    def _dispatch(self, args: Args) -> None:
        if args.user:
            self.user(args)
        elif args.lun is not None:
            self.lunit(args)
        elif args.cid is not None:
            self.conn(args)
        elif args.sid is not None:
            self.session(args)
        elif args.tid is not None:
            self.target(args)
        else:
            self.system(args)

    def _target(self, tid: int | None) -> TargetRecord:
        if tid is None:
            raise einval("--tid is required")
        record = self.state.load_target(tid)
        if record is None:
            raise enoent(f"no target with tid {tid}")
        return record

    def _commit(self, before: TargetRecord | None, after: TargetRecord, *, proc_changed: bool = True) -> None:
        # The data path first: when it cannot serve the target, the command fails unchanged.
        serving.on_change(self.state.root, before, after)
        self.state.save_target(after)
        if proc_changed:
            self.state.update_proc(after["tid"], after)

    # -- targets

    def target(self, args: Args) -> None:
        op = args.op
        if op == "new":
            self._target_new(args.tid or 0, args.params)
        elif op == "delete":
            record = self._target(args.tid)
            if record["sessions"]:
                raise ebusy(
                    f"target {record['tid']} still has sessions; close them first "
                    "(--op delete --tid --sid --cid)"
                )
            self.state.remove_target(record)
            self.state.update_proc(record["tid"], None)
            serving.on_change(self.state.root, record, None)
        elif op == "update":
            values = iet_params.parse_update(args.params)
            record = self._target(args.tid)
            before = _copy(record)
            record["params"].update(values)
            self._commit(before, record, proc_changed=False)
        else:
            record = self._target(args.tid)
            values = iet_params.effective(record["params"])
            self.out(
                iet_params.render(iet_params.TARGET_KEYS, values)
                + iet_params.render(iet_params.SESSION_KEYS, values)
            )

    def _target_new(self, tid: int, params: str | None) -> None:
        key, sep, name = (params or "").partition("=")
        if not sep or key != "Name":
            raise einval("--op new --tid needs --params Name=<iqn>")
        if not name or len(name.encode("utf-8")) > NAME_MAX:
            raise einval(f"target name must be 1..{NAME_MAX} bytes")
        if any(c.isspace() or c == "," for c in name):
            raise einval(f"target name {name!r} holds whitespace or ',' (unknown parameter?)")
        if self.state.tid_for_name(name) is not None:
            # ietd's own check, before the kernel's: a duplicate name is EINVAL (exit 234).
            raise einval(f"duplicated target {name}")
        if tid:
            if self.state.load_target(tid) is not None:
                raise eexist(f"tid {tid} is in use by another target")
        else:
            tid = self.state.lowest_free_tid()
        record = new_target(tid, name, self.state.next_counter("seq"))
        self.state.save_target(record)
        self.state.index_name(name, tid)
        self.state.update_proc(tid, record, new=True)

    # -- logical units

    def lunit(self, args: Args) -> None:
        if args.op == "update":
            raise einval("Unsupported.")
        record = self._target(args.tid)
        lun = args.lun
        assert lun is not None
        existing = next((u for u in record["luns"] if u["lun"] == lun), None)
        if args.op == "new":
            if existing is not None:
                raise eexist(f"LUN {lun} exists on target {record['tid']}")
            if lun > MAX_LUN:
                raise einval(f"LUN {lun} is above {MAX_LUN}")
            before = _copy(record)
            record["luns"].append(_parse_lun(lun, args.params))
            self._commit(before, record)
        elif args.op == "delete":
            if existing is None:
                raise enoent(f"no LUN {lun} on target {record['tid']}")
            before = _copy(record)
            record["luns"].remove(existing)
            self._commit(before, record)
        elif existing is None:  # show: ietd accepts it and prints nothing
            raise enoent(f"no LUN {lun} on target {record['tid']}")

    # -- sessions and connections

    def session(self, args: Args) -> None:
        if args.op in ("new", "update"):
            raise einval("Unsupported.")
        if args.tid is None:
            raise einval("--sid needs --tid")
        if args.op == "delete":
            raise einval("a session is closed through its connections: add --cid")
        record = self._target(args.tid)
        if args.sid and not any(s["sid"] == args.sid for s in record["sessions"]):
            raise enoent(f"no session {args.sid} on target {record['tid']}")
        values = iet_params.effective(record["params"])
        self.out(iet_params.render(iet_params.SESSION_KEYS, values))

    def conn(self, args: Args) -> None:
        if args.op in ("new", "update"):
            raise einval("Unsupported.")
        if args.tid is None or args.sid is None:
            raise einval("--cid needs --tid and --sid")
        record = self._target(args.tid)
        session = next((s for s in record["sessions"] if s["sid"] == args.sid), None)
        if session is None:
            raise enoent(f"no session {args.sid} on target {record['tid']}")
        conn = next((c for c in session["conns"] if c["cid"] == args.cid), None)
        if conn is None:
            raise enoent(f"no connection {args.cid} in session {args.sid}")
        if args.op == "show":
            return
        before = _copy(record)
        session["conns"].remove(conn)
        if not session["conns"]:
            record["sessions"].remove(session)
        self._commit(before, record)

    # -- CHAP accounts

    def user(self, args: Args) -> None:
        if args.lun is not None or args.sid is not None or args.cid is not None:
            raise einval("--user takes only --tid and --params")
        if args.op == "update":
            raise einval("Unsupported.")
        direction, name, password = _parse_account(args.params)
        tid = args.tid or 0
        record: TargetRecord | None = None
        before: TargetRecord | None = None
        if tid:
            record = self._target(tid)
            before = _copy(record)
            accounts = {"incoming": record["incoming"], "outgoing": record["outgoing"]}
        else:
            accounts = self.state.load_discovery()
        table = accounts[direction] if direction else []
        label = "IncomingUser" if direction == "incoming" else "OutgoingUser"

        if args.op == "show":
            if name is None:
                for key, title in (("incoming", "IncomingUser"), ("outgoing", "OutgoingUser")):
                    for user, _secret in accounts[key]:
                        self.out(f"{title} {user}\n")
                return
            match = next((a for a in table if a[0] == name), None)
            if match is None:
                raise enoent(f"no {label} {name}")
            self.out(f"{label} {match[0]} {match[1]}\n")
            return
        if name is None:
            raise einval("You need to specify a user and its password")
        if args.op == "new":
            if password is None:
                raise einval("You need to specify a user and its password")
            if direction == "outgoing":
                table.clear()  # ietd keeps one outgoing account and replaces the old one
            table[:] = [a for a in table if a[0] != name]
            table.append([name, password])
        else:
            if not any(a[0] == name for a in table):
                raise enoent(f"no {label} {name}")
            table[:] = [a for a in table if a[0] != name]
        if record is not None:
            self._commit(before, record, proc_changed=False)
        else:
            self.state.save_discovery(accounts)

    # -- the whole daemon

    def system(self, args: Args) -> None:
        if args.op != "delete":
            raise einval("--tid is required")
        # "stop all activity": close every connection, then drop every target.
        for record in self.state.all_targets():
            self.state.remove_target(record)
            serving.on_change(self.state.root, record, None)
        self.state.rebuild_proc()


def _copy(record: TargetRecord) -> TargetRecord:
    import copy

    return copy.deepcopy(record)


def _parse_account(params: str | None) -> tuple[str | None, str | None, str | None]:
    direction: str | None = None
    name: str | None = None
    password: str | None = None
    for item in (params or "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise einval(f"parameter {item!r} has no '='")
        if value[:1].isspace():  # ietadm skips one blank after '='
            value = value[1:]
        lowered = key.lower()
        if lowered in ("incominguser", "outgoinguser"):
            if name is not None:
                raise einval(f"user given twice ({name!r} and {value!r})")
            direction = "incoming" if lowered == "incominguser" else "outgoing"
            name = value
        elif lowered == "password":
            if password is not None:
                raise einval("Password given twice")
            password = value
        else:
            raise einval(f"Unknown parameter {key!r} (IncomingUser, OutgoingUser, Password)")
        if not value or len(value) > ACCOUNT_MAX or any(c.isspace() for c in value):
            raise einval(f"{key} must be 1..{ACCOUNT_MAX} characters without whitespace")
    if password is not None and name is None:
        raise einval("You need to specify a user and its password")
    return direction, name, password


def _parse_lun(lun: int, params: str | None) -> LunRecord:
    path: str | None = None
    iotype = "fileio"
    iomode = "wt"
    scsi_id: str | None = None
    scsi_sn: str | None = None
    block_size = 512
    for item in (params or "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise einval(f"LUN parameter {item!r} has no '='")
        if key == "Path":
            if path is not None:
                raise einval('duplicate "Path" param')
            path = value
        elif key == "Type":
            if value not in ("fileio", "blockio"):
                raise IetError(errno.ENOENT, f"no such iotype {value!r} (fileio, blockio)")
            iotype = value
        elif key == "IOMode":
            if value not in ("wt", "wb", "ro"):
                raise einval(f"IOMode {value!r} is not wt, wb or ro")
            iomode = value
        elif key == "ScsiId":
            if len(value) > SCSI_ID_MAX:
                raise einval(f"ScsiId is longer than {SCSI_ID_MAX}")
            scsi_id = value
        elif key == "ScsiSN":
            if len(value) > SCSI_SN_MAX:
                raise einval(f"ScsiSN is longer than {SCSI_SN_MAX}")
            scsi_sn = value
        elif key == "BlockSize":
            if not value.isdigit() or int(value) not in BLOCK_SIZES:
                raise einval(f"BlockSize must be one of {BLOCK_SIZES}")
            block_size = int(value)
        else:
            raise einval(f"unknown LUN parameter {key!r}")
    if not path:
        raise einval('missing "Path" param')
    size = _backing_size(path, iotype, read_only=iomode == "ro")
    return LunRecord(
        lun=lun,
        path=path,
        type=iotype,
        iomode=iomode,
        blocks=size // block_size,
        blocksize=block_size,
        scsi_id=scsi_id,
        scsi_sn=scsi_sn,
    )


def _backing_size(path: str, iotype: str, *, read_only: bool) -> int:
    """Open the backing store as the kernel would, and report its size in bytes."""
    try:
        fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
    except OSError as exc:
        raise IetError(exc.errno or errno.EIO, f"can't open {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if iotype == "blockio" and not stat.S_ISBLK(mode):
            raise IetError(errno.ENOTBLK, f"blockio needs a block device; {path} is not one")
        if stat.S_ISREG(mode):
            return os.fstat(fd).st_size
        if stat.S_ISBLK(mode):
            return os.lseek(fd, 0, os.SEEK_END)
        raise einval(f"{path} is neither a regular file nor a block device")
    finally:
        os.close(fd)


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)


def main(argv: list[str] | None = None) -> int:
    """Run one ietadm command; returns the exit status real ietadm would give."""
    arguments = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(arguments)
        if args.help:
            sys.stdout.write(USAGE)
            return 0
        if args.version:
            sys.stdout.write(f"{PROGRAM} version {VERSION}\n")
            return 0
        Ietadm(State.from_env(), _write_stdout).run(args)
        sys.stdout.flush()
        return 0
    except IetadmUsageError as exc:
        sys.stderr.write(f"{PROGRAM}: {exc}\nTry `{PROGRAM} --help' for more information.\n")
        return USAGE_EXIT
    except EmulatorConfigError as exc:
        sys.stderr.write(f"{PROGRAM}: {exc}\n")
        return USAGE_EXIT
    except IetError as exc:
        sys.stderr.write(
            f"{PROGRAM}: {exc.message} ({errno.errorcode.get(exc.errno, '?')}, exit {exc.exit_status})\n"
        )
        return exc.exit_status
