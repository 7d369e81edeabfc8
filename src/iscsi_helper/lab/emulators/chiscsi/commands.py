"""What each ``iscsictl`` command does in user space, and what it prints.

Source: src/chiscsi/private/ulib/iscsictl_cmd.c: ``-c`` 1016-1134 (``ALL``
asks for the name list and prints each target's summary; named targets get
the detailed form; "target <name> NOT found." and the kernel's text go to
stdout, each followed by an extra newline), ``-S`` 876-966 (the ``global:``
blocks of the file first, then each named block, found by exact name among
the lower-cased ``TargetName`` values; "target <name> added." / "updated."
come back on stderr), ``-s`` 972-1010, ``-g``/``-G`` 717-762, ``-F`` 770-867,
``-r`` 1153-1236, ``-W`` 1246-1328, dispatch 1538-1653. Every command returns
the result of its last kernel request: that is the exit status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TextIO

from iscsi_helper.lab.emulators.chiscsi import conffile, kvargs
from iscsi_helper.lab.emulators.chiscsi.ioctl import ControlDevice

CONFIG_FILE_DEFAULT = "/etc/chelsio-iscsi/chiscsi.conf"  # user/common/iscsictl_private.h 9
CONF_ENV = "CHISCSI_EMULATOR_CONF"

# enum iscsi_control_opcode (private/include/iscsi_control_defs.h 17-53)
UNKNOWN, CONFIG_FILE_WRITE, CONFIG_GET, DBGDUMP, DRV_GET, DRV_SET = 0, 1, 2, 3, 4, 5
TARGET_FLUSH, TARGET_ADD, TARGET_RELOAD, TARGET_REMOVE, DROP_SESSION = 7, 11, 12, 13, 15
ENODEV = 19
EINVAL = 22


class Crash(Exception):
    """The real tool dereferences NULL here and dies by SIGSEGV."""


@dataclass
class Invocation:
    """What the command line set (iscsictl_cmd.c 111-127)."""

    cmd: int = UNKNOWN
    config_file: str | None = None
    entities: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    session_handle: str | None = None
    debug: bool = False


def default_config_file() -> str:
    return os.environ.get(CONF_ENV, "") or CONFIG_FILE_DEFAULT


class Commands:
    def __init__(self, device: ControlDevice, out: TextIO, err: TextIO) -> None:
        self.dev = device
        self.out = out
        self.err = err

    # -- -c ------------------------------------------------------------------

    def _get_one(self, name: str, detail: bool, outhndl: TextIO | None = None) -> int:
        """``iscsictl_config_get_one_target``."""
        reply = self.dev.get_config(name, detail)
        if reply.ok and outhndl is not None and reply.data:
            rest = reply.data.split("\n", 1)[1] if "\n" in reply.data else ""
            outhndl.write("#\n#iSCSI Target Configurations\n#\n")
            outhndl.write(f"\n{rest}\n")
        else:
            if reply.message:
                self.out.write(reply.message + "\n")
            if reply.data:
                self.out.write(reply.data + "\n")
        return 0 if reply.ok else -1

    def config_get(self, entities: list[str], outhndl: TextIO | None = None) -> int:
        parsed = kvargs.parse(entities, ("target",), allow_null=False, allow_all=True, allow_list=True)
        self.err.write(parsed.messages)
        if parsed.failed:
            return -1
        if not parsed.lists:
            raise Crash("config_get: empty name list")
        if parsed.lists[0].all:
            reply = self.dev.get_names()
            if reply.message:
                self.err.write(reply.message)
            if not reply.ok:
                return -1
            data = reply.data
            length = len(data) - 7
            if not length:
                return 0
            rv = 0
            name_start = 7
            # The split scans data[0:length], i.e. it stops 7 characters
            # before the end: a comma there is not seen (iscsictl_cmd.c 1113-1121).
            for i in range(length):
                if data[i] != ",":
                    continue
                rv = self._get_one(data[name_start:i], outhndl is not None, outhndl)
                name_start = i + 1
            return self._get_one(data[name_start:], outhndl is not None, outhndl)
        rv = 0
        for kv in parsed.lists:
            for name in kv.names if not kv.all else ["(null)"]:
                rv = self._get_one(name, True, outhndl)
        return rv

    def show(self, entities: list[str]) -> int:
        if not entities:
            stats = self.dev.stat_get()
            self.out.write(stats.message + "\n")
            entities = ["target=ALL"]
        return self.config_get(entities)

    # -- -S ------------------------------------------------------------------

    def _drv_set_one(self, request: str) -> None:
        reply = self.dev.drv_set(request)
        if reply.message:
            self.err.write(reply.message)
        if not reply.ok:
            self.err.write(f"ERROR: Failed to set {request}!\n")

    def _add_one(self, block: conffile.ConfigEntry, reload: bool) -> int:
        if block.name is None:
            self.err.write("ERROR: Missing target name\n")
            return -1
        reply = self.dev.add(block.name, block.entries, reload=reload)
        if reply.message:
            self.err.write(reply.message)
        if not reply.ok:
            self.err.write(f"ERROR: Failed to start target {block.name}!\n")
        return 0 if reply.ok else -1

    def start(self, inv: Invocation) -> int:
        entities = inv.entities
        reload = False
        if not entities:
            entities = ["target=ALL"]
            reload = True
        if inv.keys:
            self.err.write("-k option can not be used with -S option\n")
            return -1
        fname = inv.config_file if inv.config_file is not None else default_config_file()
        try:
            conf = conffile.read(fname)
        except OSError:
            self.err.write(f'Error: File "{fname}" cannot be opened!\n')
            return -1
        self.err.write(conf.messages)
        if conf.error:
            return -1
        for block in conf.blocks:
            if block.type == "global":
                for key, value in block.entries:
                    self._drv_set_one(f"{key}={value}")
        parsed = kvargs.parse(entities, ("target",), allow_null=False, allow_all=True, allow_list=True)
        self.err.write(parsed.messages)
        if parsed.failed:
            return -1
        rv = 0
        for kv in parsed.lists:
            if kv.all:
                for block in conf.blocks:
                    if block.type == "target":
                        rv = self._add_one(block, reload)
                continue
            for name in kv.names:
                found = next((b for b in conf.blocks if b.name is not None and b.name == name), None)
                if found is None:
                    self.err.write(f"ERROR: target name {name} NOT found.\n")
                    self.err.write(f"ERROR: Failed to find target {name}!\n")
                    rv = -ENODEV
                else:
                    rv = self._add_one(found, reload)
        return rv

    # -- -s ------------------------------------------------------------------

    def stop(self, inv: Invocation) -> int:
        if inv.keys:
            self.err.write("-k option can not be used with -s option\n")
            return -1
        parsed = kvargs.parse(inv.entities, ("target",), allow_null=False, allow_all=True, allow_list=True)
        self.err.write(parsed.messages)
        if parsed.failed:
            return -1
        rv = 0
        for kv in parsed.lists:
            for name in ["ALL"] if kv.all else kv.names:
                reply = self.dev.remove(name)
                if reply.message:
                    self.err.write(reply.message)
                if not reply.ok:
                    self.err.write(f"ERROR: Failed to remove target {'(null)' if kv.all else name}!\n")
                rv = 0 if reply.ok else -1
        return rv

    # -- -g / -G ---------------------------------------------------------------

    def drv_get(self, outhndl: TextIO | None = None) -> int:
        reply = self.dev.drv_get()
        if reply.message:
            target = (outhndl or self.out) if reply.ok else self.err
            target.write(reply.message + "\n")
        return 0 if reply.ok else -1

    def drv_set(self, entities: list[str]) -> int:
        for request in entities:
            self._drv_set_one(request)
        return 0

    # -- -F ------------------------------------------------------------------

    def flush(self, inv: Invocation) -> int:
        names = kvargs.parse(inv.entities, ("target",), True, True, True)
        self.err.write(names.messages)
        if names.failed:
            return -1
        luns = kvargs.parse(inv.keys, ("lun",), True, True, True)
        self.err.write(luns.messages)
        if luns.failed:
            return -1
        name_list = (
            [n for kv in names.lists for n in kv.names]
            if names.lists and not names.lists[0].all and names.lists[0].names
            else []
        )
        lun_list = (
            [n for kv in luns.lists for n in kv.names]
            if luns.lists and not luns.lists[0].all and luns.lists[0].names
            else []
        )
        rv = 0
        pairs: list[tuple[str, str, str]] = []
        if not name_list and not lun_list:
            pairs = [("", "", "ERROR: target flush failed.\n")]
        elif not name_list:
            pairs = [("", lun, f"ERROR: target flush lun {lun} failed.\n") for lun in lun_list]
        elif not lun_list:
            pairs = [(name, "", f"ERROR: target {name} flush lun failed.\n") for name in name_list]
        else:
            pairs = [
                (name, lun, f"ERROR: {name} flush lun {lun} failed.\n")
                for name in name_list
                for lun in lun_list
            ]
        for name, lun, failure in pairs:
            reply = self.dev.flush(name, lun)
            if reply.message:
                self.out.write(reply.message + "\n")
            if not reply.ok:
                self.err.write(failure)
            rv = 0 if reply.ok else -1
        return rv

    # -- -r ------------------------------------------------------------------

    def sessions(self, inv: Invocation) -> int:
        parsed = kvargs.parse(inv.entities, ("target",), False, False, True)
        self.err.write(parsed.messages)
        if parsed.failed:
            return -1
        if not parsed.lists:
            self.err.write("Missing initiator/target name.\n")
            return -EINVAL
        peers: list[str] = []
        if inv.keys:
            peer_parse = kvargs.parse(inv.keys, ("initiator",), False, False, True)
            self.err.write(peer_parse.messages)
            if peer_parse.failed:
                return -1
            peers = [n for kv in peer_parse.lists for n in kv.names]
        rv = 0
        for kv in parsed.lists:
            for name in kv.names:
                for peer in peers or [""]:
                    reply = self.dev.get_session(name, peer)
                    if reply.message:
                        self.err.write(reply.message + "\n")
                    if reply.data:
                        self.out.write(reply.data + "\n")
                    rv = 0 if reply.ok else -1
        return rv

    # -- -W ------------------------------------------------------------------

    def write_config(self, inv: Invocation) -> int:
        """``iscsictl_config_file_write``; written straight to the file (see assumptions)."""
        if not inv.config_file:
            self.err.write("ERROR: No configuration file is specified.\n")
            return -1
        import io

        buffer = io.StringIO()
        buffer.write("global:\n")
        rv = self.drv_get(buffer)
        if rv >= 0:
            names = self.dev.get_names()
            if names.message:
                self.err.write(names.message)
            rv = 0 if names.ok else -1
            if rv >= 0 and len(names.data):
                rv = self.config_get([names.data], buffer)
        try:
            with open(inv.config_file, "w", encoding="latin-1") as handle:
                handle.write(buffer.getvalue())
        except OSError:
            self.err.write(f"ERROR: unable to write {inv.config_file}.\n")
            return -1
        return rv

    # -- dispatch --------------------------------------------------------------

    def execute(self, inv: Invocation) -> int:
        """``iscsictl_cmd_execute``."""
        if inv.cmd == TARGET_FLUSH:
            return self.flush(inv)
        if inv.cmd == CONFIG_GET:
            return self.show(inv.entities)
        if inv.cmd == DRV_GET:
            return self.drv_get()
        if inv.cmd == DRV_SET:
            return self.drv_set(inv.entities)
        if inv.cmd == TARGET_ADD:
            return self.start(inv)
        if inv.cmd == TARGET_REMOVE:
            return self.stop(inv)
        if inv.cmd == DBGDUMP:
            return self.sessions(inv)
        if inv.cmd == CONFIG_FILE_WRITE:
            return self.write_config(inv)
        if inv.cmd == DROP_SESSION:
            self.err.write(
                "iscsictl (emulator): -D is not modelled (the kernel dereferences the handle given)\n"
            )
            return -1
        self.err.write(f"ERROR: UNKNOWN command {inv.cmd}.\n")
        return -1
