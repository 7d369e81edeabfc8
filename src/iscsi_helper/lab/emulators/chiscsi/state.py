"""The emulated kernel's memory, kept in a directory between ``iscsictl`` runs.

The real tables live in the chiscsi kernel module; the emulator keeps them
under ``$CHISCSI_EMULATOR_STATE`` so that many short-lived ``iscsictl``
processes see one kernel. Layout (directories 0700, files 0600: node records
hold CHAP secrets)::

    kernel.lock            flock held by a command for its whole run (the ioctl mutex)
    iscsictl.pid           default location of iscsictl's own lock file (see pidlock.py)
    counter.json           next node id, and the id of the hidden discovery node
    settings.json          driver-wide settings (-G, global: blocks)
    nodes/<id>.json        one record per node in the kernel's queue (live or offline)
    names/<key>/<id>       indexes: one empty file per (name, node); likewise aliases/,
    luns/ rdevs/ portals/  device paths, block device numbers and portals of live nodes
    sessions/<name>        test hook: sessions that refuse to close (sessions.py)
    ramdisk/               backing files serving MEM LUNs on the data path
    wire/                  run directory of the optional data path

Records are written whole (temp file, fsync, rename). Every index entry is
checked against the node record it names before it is believed, and entries
are added before the record they describe is written and removed after, so a
command killed half-way leaves nothing that changes what later commands see.
Per-target commands read a fixed number of files whatever the number of
targets; only listing everything reads every record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from iscsi_helper.lab.emulators.chiscsi.kernel import portals as portal_mod
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node
from iscsi_helper.lab.emulators.chiscsi.kernel.settings import Settings
from iscsi_helper.lab.emulators.store import CorruptState, CounterFile, flocked, write_atomic

STATE_ENV = "CHISCSI_EMULATOR_STATE"
_MAX_PLAIN_NAME = 200
INDEXES = ("names", "aliases", "luns", "rdevs", "portals")


def key_file_name(text: str) -> str:
    """A file name that is a pure function of ``text``: one ``open`` finds it."""
    plain = quote(text, safe="")
    if len(plain) <= _MAX_PLAIN_NAME:
        return plain
    import hashlib

    return "h-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class StateError(Exception):
    """The emulator's own storage is unusable (not a problem of the caller's configuration)."""


class KernelState:
    """The emulated kernel's tables; callers hold :meth:`locked` around a command."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.nodes_dir = self.root / "nodes"
        self.sessions_dir = self.root / "sessions"
        self.ramdisk_dir = self.root / "ramdisk"
        self.wire_dir = self.root / "wire"
        self._cache: dict[int, Node | None] = {}
        self._counters = CounterFile(
            self.root / "counter.json", {"next_id": 1, "default_node": 0}, durable=True
        )

    # -- setup -------------------------------------------------------------

    def ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in ("nodes", "sessions", *INDEXES):
                (self.root / name).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.root}: {exc.strerror}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One command at a time inside the kernel (the ioctl mutex, iscsi_ioctl.c 26-47)."""
        with flocked(self.root / "kernel.lock"):
            self._cache.clear()
            self._counters.forget()
            try:
                yield
            finally:
                self._cache.clear()
                self._counters.forget()

    # -- counter and settings ------------------------------------------------

    def _counter(self, name: str) -> int:
        try:
            return self._counters.get(name)
        except CorruptState as exc:
            raise StateError(str(exc)) from None

    def allocate_id(self) -> int:
        """``iscsi_node_id++`` (iscsi_node.c 18, 56): one counter for every node allocated."""
        node_id = self._counter("next_id")
        self._counters.set("next_id", node_id + 1)
        return node_id

    def default_node_exists(self) -> bool:
        return bool(self._counter("default_node"))

    def create_default_node(self) -> None:
        """The hidden discovery target (iscsi_node.c 506-513): an id, never listed."""
        self._counters.set("default_node", self.allocate_id())

    def next_id(self) -> int:
        return self._counter("next_id")

    def settings(self) -> Settings:
        try:
            return Settings.from_dict(json.loads((self.root / "settings.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            return Settings()
        except ValueError:
            raise StateError(f"corrupt {self.root / 'settings.json'}") from None

    def save_settings(self, settings: Settings) -> None:
        write_atomic(
            self.root / "settings.json", json.dumps(settings.to_dict(), sort_keys=True) + "\n", durable=True
        )

    # -- node records --------------------------------------------------------

    def _node_path(self, node_id: int) -> Path:
        return self.nodes_dir / f"{node_id:010d}.json"

    def load_node(self, node_id: int) -> Node | None:
        if node_id in self._cache:
            return self._cache[node_id]
        try:
            text = self._node_path(node_id).read_text(encoding="utf-8")
            node: Node | None = Node.from_dict(json.loads(text))
        except FileNotFoundError:
            node = None
        except (ValueError, KeyError, TypeError):
            raise StateError(f"corrupt node record {self._node_path(node_id)}") from None
        self._cache[node_id] = node
        return node

    def _save_node(self, node: Node) -> None:
        write_atomic(self._node_path(node.id), json.dumps(node.to_dict()) + "\n", durable=True)
        self._cache[node.id] = node

    def node_ids(self) -> list[int]:
        """Every node in the kernel's queue, in queue order (ids grow with enqueueing)."""
        ids: list[int] = []
        if not self.nodes_dir.is_dir():
            return ids
        for entry in os.scandir(self.nodes_dir):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                with contextlib.suppress(ValueError):
                    ids.append(int(entry.name[:-5]))
        return sorted(ids)

    def all_nodes(self) -> list[Node]:
        return [n for n in (self.load_node(i) for i in self.node_ids()) if n is not None]

    # -- indexes -----------------------------------------------------------

    def _index_dir(self, index: str, key: str) -> Path:
        return self.root / index / key_file_name(key)

    def _index_ids(self, index: str, key: str) -> Iterator[int]:
        """Ids filed under ``key``, lazily: a lookup can stop at the first live one."""
        try:
            entries = os.scandir(self._index_dir(index, key))
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                if entry.name.isdigit():
                    yield int(entry.name)

    def _index_add(self, index: str, key: str, node_id: int) -> None:
        """One empty file per (key, node): adding and dropping cost the same at any size."""
        directory = self._index_dir(index, key)
        directory.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(directory / str(node_id), os.O_WRONLY | os.O_CREAT, 0o600))

    def _index_drop(self, index: str, key: str, node_id: int) -> None:
        directory = self._index_dir(index, key)
        with contextlib.suppress(FileNotFoundError):
            (directory / str(node_id)).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty

    def _live(self, index: str, key: str) -> Iterator[Node]:
        for node_id in self._index_ids(index, key):
            node = self.load_node(node_id)
            if node is not None and not node.offline:
                yield node

    @staticmethod
    def _keys(node: Node) -> dict[str, set[str]]:
        return {
            "names": {node.name},
            "aliases": {node.alias} if node.alias else set(),
            "luns": {lun.path for lun in node.luns},
            "rdevs": {str(lun.rdev) for lun in node.luns if lun.rdev is not None and lun.exclusive},
            "portals": {p.key for p in node.started_portals},
        }

    def _index_node(self, node: Node) -> None:
        for index, keys in self._keys(node).items():
            for key in keys:
                self._index_add(index, key, node.id)

    def _unindex(self, node: Node, keep: Node | None = None) -> None:
        kept = self._keys(keep) if keep is not None else {}
        for index, keys in self._keys(node).items():
            for key in keys - kept.get(index, set()):
                self._index_drop(index, key, node.id)

    # -- what node operations ask (kernel.node.Kernel) ------------------------

    def find_by_name(self, name: str) -> Node | None:
        """``iscsi_node_find_by_name``: exact name, offline nodes skipped."""
        return next((node for node in self._live("names", name) if node.name == name), None)

    def alias_in_use(self, alias: str) -> bool:
        return any(node.alias == alias for node in self._live("aliases", alias))

    def acquire_portal(self, ip: bytes, port: int) -> bool:
        """``it_portal_start``: share a listener a live target has, else bind one."""
        key = portal_mod.portal_key(ip, port)
        if any(p.key == key for node in self._live("portals", key) for p in node.started_portals):
            return True
        return portal_mod.can_listen(ip, port)

    def release_portals(self, portal_list: list[portal_mod.TargetPortal]) -> None:
        """Nothing to undo: a portal counts as taken only once its node is recorded."""

    def lun_holders(self, path: str) -> list[tuple[int, str, str]]:
        """Live nodes with a LUN on ``path``, in queue order (the order of it_lu_q)."""
        holders = []
        for node in self._live("luns", path):
            for lun in node.luns:
                if lun.path == path:
                    holders.append((node.id, node.name, lun.lclass))
                    break
        return sorted(holders)

    def device_held_exclusively(self, rdev: int) -> bool:
        return any(
            lun.rdev == rdev and lun.exclusive for node in self._live("rdevs", str(rdev)) for lun in node.luns
        )

    def commit_new(self, node: Node) -> None:
        self._index_node(node)
        self._save_node(node)

    def commit_update(self, old: Node, new: Node) -> None:
        self._index_node(new)
        self._save_node(new)
        self._unindex(old, keep=new)

    def commit_offline(self, node: Node) -> None:
        """Offline: invisible to lookups, LUNs and portals released (iscsi_node.c 186-199)."""
        offline = Node.from_dict(node.to_dict())
        offline.offline = True
        offline.luns = []
        offline.portals = [
            portal_mod.TargetPortal(p.ip, p.port, p.tag, p.timeout, False, list(p.flags), list(p.redirect_to))
            for p in node.portals
        ]
        self._save_node(offline)
        self._unindex(node)
        node.offline = True

    def commit_removed(self, node: Node) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._node_path(node.id).unlink()
        self._cache[node.id] = None
        self._unindex(node)

    def seed(self, nodes: list[Node]) -> None:
        """Put nodes in the queue as if started, without fsync: for fixtures needing thousands.

        Only the record and the name index are written (no device, portal or
        alias index), and the id counter moves past the last id.
        """
        self.ensure()
        for node in nodes:
            (self._node_path(node.id)).write_text(json.dumps(node.to_dict()) + "\n", encoding="utf-8")
            directory = self._index_dir("names", node.name)
            directory.mkdir(mode=0o700, exist_ok=True)
            (directory / str(node.id)).touch(mode=0o600)
        self._counters.forget()
        self._counters.set("next_id", max([self._counter("next_id")] + [n.id + 1 for n in nodes]))
        self._cache.clear()

    # -- reboot --------------------------------------------------------------

    def clear(self) -> None:
        """What a reboot loses: every node, the id counter, settings, sessions, RAM disks."""
        for name in ("nodes", "sessions", "ramdisk", *INDEXES):
            shutil.rmtree(self.root / name, ignore_errors=True)
        self._counters.remove()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "settings.json").unlink()
        self._cache.clear()
        self.ensure()
