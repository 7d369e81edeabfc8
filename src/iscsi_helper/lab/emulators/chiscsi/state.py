"""The emulated kernel state of chiscsi: which targets are live, with which tid.

The real product keeps this in the kernel; the emulator keeps it in a
directory so that many short-lived ``iscsictl`` processes see one target
table. Layout (all files 0600, directories 0700):

    <state>/lock              fcntl lock; every command holds it (shared to read)
    <state>/next_tid          the next tid to hand out (missing: 1)
    <state>/globals.json      values set with ``iscsictl -G``
    <state>/targets/<name>.json   one record per live target, keyed by IQN
    <state>/wire/             run directory of the optional data path

One file per target keeps every per-target command O(1) however many
targets exist (Cinder's CxtAdm re-listed everything on each call and
start-up went quadratic); only ``-c target=ALL`` reads the whole directory.
Records hold CHAP secrets, hence 0600 and atomic replace.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from iscsi_helper.lab.emulators.chiscsi.confparse import Entry, TargetBlock, build_target

STATE_ENV = "CHISCSI_EMULATOR_STATE"
TEMP_PREFIX = ".tmp-"
RECORD_SUFFIX = ".json"
_MAX_PLAIN_NAME = 200  # leave room under NAME_MAX (255) for the suffix and temp prefix


class StateError(Exception):
    """The emulator's own environment is unusable (not a problem of the caller's config)."""


@dataclass(frozen=True)
class Record:
    """A live target: its tid plus the block it was started from, kept verbatim."""

    iqn: str
    tid: int
    source: str
    line: int
    entries: tuple[Entry, ...]

    def target(self) -> TargetBlock:
        """Re-validate the stored block so display and data path see parsed values."""
        return build_target(self.entries, self.source, self.line)

    def to_json(self) -> str:
        return json.dumps({
            "iqn": self.iqn, "tid": self.tid, "source": self.source, "line": self.line,
            "entries": [[e.key, e.value, e.line] for e in self.entries],
        }) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(data["iqn"], int(data["tid"]), data["source"], int(data["line"]),
                   tuple(Entry(k, v, int(n)) for k, v, n in data["entries"]))


def record_file_name(iqn: str) -> str:
    """A file name that is a pure function of the IQN, so lookup is one open().

    Percent-encoding keeps names readable and collision-free; names too long
    for the file system fall back to a hash (the record holds the IQN, and a
    reader checks it, so a hash collision could only ever read as "not found").
    """
    plain = quote(iqn, safe="")
    if len(plain) <= _MAX_PLAIN_NAME:
        return plain + RECORD_SUFFIX
    return "h-" + hashlib.sha256(iqn.encode("utf-8")).hexdigest() + RECORD_SUFFIX


def atomic_write(path: Path, data: str, mode: int = 0o600) -> None:
    """Readers (other iscsictl processes, a crash) see the old file or the new, never half."""
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _decode(text: str, path: Path) -> Record:
    try:
        return Record.from_json(text)
    except (ValueError, KeyError, TypeError):
        raise StateError(f"corrupt state record {path}") from None


class State:
    """Access to one state directory; callers hold :meth:`locked` around any sequence."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets_dir = root / "targets"
        self.wire_dir = root / "wire"
        self._lock_path = root / "lock"
        self._counter_path = root / "next_tid"
        self._globals_path = root / "globals.json"

    @classmethod
    def from_env(cls) -> State:
        value = os.environ.get(STATE_ENV, "")
        if not value:
            raise StateError(f"{STATE_ENV} is not set; point it at a directory for the "
                             "emulated chiscsi state")
        root = Path(value)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            (root / "targets").mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {root}: {exc.strerror}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise StateError(f"state directory {root} is not writable")
        return cls(root)

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Serialise iscsictl processes: the real product has one kernel table, so do we."""
        self.targets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # -- targets ---------------------------------------------------------

    def _record_path(self, iqn: str) -> Path:
        return self.targets_dir / record_file_name(iqn)

    def load(self, iqn: str) -> Record | None:
        try:
            text = self._record_path(iqn).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        record = _decode(text, self._record_path(iqn))
        return record if record.iqn == iqn else None

    def save(self, record: Record) -> None:
        atomic_write(self._record_path(record.iqn), record.to_json())

    def delete(self, iqn: str) -> bool:
        path = self._record_path(iqn)
        record = self.load(iqn)
        if record is None:
            return False
        os.unlink(path)
        _fsync_dir(self.targets_dir)
        return True

    def all_records(self) -> list[Record]:
        """Every live target by tid; the one O(n) operation, used only for ALL."""
        records = []
        for entry in os.scandir(self.targets_dir):
            if entry.name.startswith(".") or not entry.name.endswith(RECORD_SUFFIX):
                continue
            try:
                with open(entry.path, encoding="utf-8") as handle:
                    records.append(_decode(handle.read(), Path(entry.path)))
            except FileNotFoundError:  # pragma: no cover - only without the lock
                continue
        records.sort(key=lambda r: r.tid)
        return records

    def allocate_tid(self) -> int:
        """tids are handed out 1, 2, 3, ... and never reused until a reset (host reboot).

        Monotonic allocation needs no scan of live targets (O(1)) and means a
        stale tid in some caller's record can never name a different, newer
        target by accident.
        """
        try:
            tid = int(self._counter_path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            tid = 1
        except ValueError:
            raise StateError(f"corrupt tid counter {self._counter_path}") from None
        atomic_write(self._counter_path, f"{tid + 1}\n")
        return tid

    # -- globals ---------------------------------------------------------

    def globals(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._globals_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}

    def set_global(self, key: str, value: str) -> None:
        values = self.globals()
        values[key] = value
        atomic_write(self._globals_path, json.dumps(values, sort_keys=True) + "\n")

    # -- reboot ----------------------------------------------------------

    def clear(self) -> None:
        """Forget all live targets, the tid counter and runtime globals (what a reboot loses)."""
        for entry in os.scandir(self.targets_dir):
            os.unlink(entry.path)
        for path in (self._counter_path, self._globals_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        _fsync_dir(self.targets_dir)
        _fsync_dir(self.root)
