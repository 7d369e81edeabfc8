"""The emulated ietd's live state on disk, safe for many concurrent ietadm processes.

Layout of ``$IET_EMULATOR_STATE``::

    lock                 fcntl lock: exclusive for changes, shared for reads
    meta.json            counters: creation sequence, session ids
    targets/<tid>.json   one target: name, params, LUNs, CHAP accounts, sessions
    names/<sha256>       name index (IET compares target names case-blind)
    discovery.json       discovery CHAP accounts (--user without --tid)
    proc-dirty           present while the proc files may lag the state
    proc/volume, proc/session   unless $IET_EMULATOR_PROC names another directory

Everything under the state directory is 0600/0700: target files hold CHAP
secrets. Writes are atomic renames so a reader (or a crash) never sees half
a file. Nothing is fsynced: the emulated state is a kernel module's, which a
reboot wipes anyway; durability would only slow the benchmarks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from iscsi_helper.lab.emulators.iet import proc
from iscsi_helper.lab.emulators.iet.errors import EmulatorConfigError, IetError
from iscsi_helper.lab.emulators.iet.model import TargetRecord
from iscsi_helper.lab.emulators.store import (
    FILE_MODE,
    CounterFile,
    flocked,
    make_private_dir,
    read_or_none,
    write_atomic,
)

STATE_ENV = "IET_EMULATOR_STATE"
PROC_ENV = "IET_EMULATOR_PROC"

PROC_MODE = 0o644  # like /proc/net/iet/*: world-readable, and free of secrets


class State:
    """Handle on one state directory; open with :meth:`from_env`."""

    def __init__(self, root: Path, proc_dir: Path | None = None) -> None:
        self.root = root
        self.proc_dir = proc_dir if proc_dir is not None else root / "proc"
        self.targets_dir = root / "targets"
        self.names_dir = root / "names"
        self.counters = CounterFile(root / "meta.json", {"seq": 0, "sid": 0})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> State:
        env = os.environ if environ is None else environ
        root = env.get(STATE_ENV)
        if not root:
            raise EmulatorConfigError(
                f"{STATE_ENV} is not set: the ietadm emulator needs a state directory "
                "(the stand-in for a running ietd)"
            )
        proc_dir = env.get(PROC_ENV)
        state = cls(Path(root), Path(proc_dir) if proc_dir else None)
        state.prepare()
        return state

    def prepare(self) -> None:
        for directory in (self.root, self.targets_dir, self.names_dir):
            make_private_dir(directory)
        self.proc_dir.mkdir(parents=True, exist_ok=True)

    # -- locking ---------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, exclusive: bool = True) -> Iterator[None]:
        """Serialize changes across processes; reads share the lock."""
        with flocked(self.root / "lock", exclusive=exclusive):
            self.counters.forget()
            yield

    # -- counters --------------------------------------------------------

    def next_counter(self, name: str) -> int:
        """Creation sequence (``seq``) and session ids (``sid``): only ever counted up."""
        return self.counters.increment(name)

    # -- targets ---------------------------------------------------------

    def _target_path(self, tid: int) -> Path:
        return self.targets_dir / f"{tid}.json"

    def load_target(self, tid: int) -> TargetRecord | None:
        text = read_or_none(self._target_path(tid))
        return None if text is None else cast(TargetRecord, json.loads(text))

    def save_target(self, record: TargetRecord) -> None:
        write_atomic(self._target_path(record["tid"]), json.dumps(record))

    def remove_target(self, record: TargetRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._target_path(record["tid"]))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name_path(record["name"]))

    def tids(self) -> list[int]:
        result = []
        for entry in os.listdir(self.targets_dir):
            stem, dot, ext = entry.partition(".")
            if dot and ext == "json" and stem.isdigit():
                result.append(int(stem))
        return result

    def all_targets(self) -> list[TargetRecord]:
        records = [r for r in (self.load_target(t) for t in self.tids()) if r is not None]
        return sorted(records, key=lambda r: r["seq"], reverse=True)

    def lowest_free_tid(self) -> int:
        """The lowest free tid, as ``--tid=0`` promises (one directory listing)."""
        used = set(self.tids())
        tid = 1
        while tid in used:
            tid += 1
        return tid

    # -- name index ------------------------------------------------------

    def _name_path(self, name: str) -> Path:
        digest = hashlib.sha256(name.lower().encode("utf-8")).hexdigest()
        return self.names_dir / digest

    def tid_for_name(self, name: str) -> int | None:
        text = read_or_none(self._name_path(name))
        return int(text) if text else None

    def index_name(self, name: str, tid: int) -> None:
        write_atomic(self._name_path(name), str(tid))

    # -- discovery accounts ---------------------------------------------

    def load_discovery(self) -> dict[str, list[list[str]]]:
        text = read_or_none(self.root / "discovery.json")
        if not text:
            return {"incoming": [], "outgoing": []}
        return cast(dict[str, list[list[str]]], json.loads(text))

    def save_discovery(self, accounts: dict[str, list[list[str]]]) -> None:
        write_atomic(self.root / "discovery.json", json.dumps(accounts))

    # -- proc files ------------------------------------------------------

    def _dirty_path(self) -> Path:
        return self.root / "proc-dirty"

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Mark the proc files stale while state and proc are written one after the other.

        If the process dies between the two writes the marker stays, and the
        next change rebuilds the proc files from the target files.
        """
        if self._dirty_path().exists():
            self.rebuild_proc()
        fd = os.open(self._dirty_path(), os.O_WRONLY | os.O_CREAT, FILE_MODE)
        os.close(fd)
        try:
            yield
        except IetError:
            # Refusals are raised before anything is written (or after both
            # writes, for data-path failures): the proc files are in step.
            os.unlink(self._dirty_path())
            raise
        os.unlink(self._dirty_path())

    def update_proc(self, tid: int, record: TargetRecord | None, *, new: bool = False) -> None:
        """Replace, prepend (``new``) or cut (``record=None``) one target's block in both files."""
        blocks: dict[str, str | None] = {
            "volume": None if record is None else proc.volume_block(record),
            "session": None if record is None else proc.session_block(record),
        }
        for name, block in blocks.items():
            path = self.proc_dir / name
            text = read_or_none(path)
            updated = None if text is None else proc.splice(text, tid, block, new=new)
            if updated is None:
                self.rebuild_proc()
                return
            write_atomic(path, updated, mode=PROC_MODE)

    def rebuild_proc(self) -> None:
        """Regenerate both files from every target file: the slow, always-right path."""
        records = self.all_targets()
        write_atomic(self.proc_dir / "volume", "".join(map(proc.volume_block, records)), mode=PROC_MODE)
        write_atomic(self.proc_dir / "session", "".join(map(proc.session_block, records)), mode=PROC_MODE)

    def ensure_proc(self) -> None:
        """Create empty proc files on first use, so readers never meet a missing file."""
        if not (self.proc_dir / "volume").exists() or not (self.proc_dir / "session").exists():
            self.rebuild_proc()
