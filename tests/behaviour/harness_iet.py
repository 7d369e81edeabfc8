"""The IET helper in the behaviour suite, on the ``ietadm`` emulator.

The emulator is found as ``ietadm`` on PATH, as the product would be. What
the target really holds is read from the emulator's own state: the proc
``volume`` file (tid, LUNs, paths) and its per-target state file (CHAP
accounts), never from the helper's records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from iscsi_helper.lab.emulators.iet.state import PROC_ENV, STATE_ENV, State
from iscsi_helper.lab.emulators.shims import install_shims

from .harness import Harness, LiveView, register


def _drop_conf_block(text: str, iqn: str) -> str:
    """ietd.conf without the block of exactly ``iqn`` (written independently of the helper)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        words = line.split()
        if words and words[0].lower() == "target":
            skipping = words[1:] == [iqn]
        elif skipping and (not words or words[0].startswith("#")):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)


def read_proc_volume(path: Path) -> dict[str, tuple[int, dict[int, str]]]:
    """iqn -> (tid, {lun: path}) from a proc ``volume`` file."""
    targets: dict[str, tuple[int, dict[int, str]]] = {}
    current: str | None = None
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        if line.startswith("tid:"):
            tid_field, name_field = line.split(" ", 1)
            current = name_field.removeprefix("name:")
            targets[current] = (int(tid_field.removeprefix("tid:")), {})
        elif current and line.startswith("\tlun:"):
            fields = dict(f.split(":", 1) for f in line.split())
            targets[current][1][int(fields["lun"])] = fields["path"]
    return targets


@register("iet")
class IetHarness(Harness):
    def setup(self) -> None:
        self.emulator_state = self.root / "iet-state"
        self.proc_dir = self.root / "proc-net-iet"
        self.bin_dir = install_shims(self.root / "bin")
        assert (self.bin_dir / "ietadm").exists()
        self.monkeypatch.setenv("PATH", f"{self.bin_dir}:{self.env()['PATH']}")
        self.monkeypatch.setenv(STATE_ENV, str(self.emulator_state))
        self.monkeypatch.setenv(PROC_ENV, str(self.proc_dir))
        self.monkeypatch.setenv("IET_EMULATOR_WIRE", "0")
        self.etc = self.root / "etc" / "iet"
        self.etc.mkdir(parents=True)
        self.iet_conf = self.etc / "ietd.conf"
        self.iet_conf.write_text("# ietd.conf of the test host\nIncomingUser discovery-user discoverysecret1\n")

    def overrides(self) -> dict[str, object]:
        return {"iet_conf": str(self.iet_conf), "iet_proc_dir": str(self.proc_dir)}

    def reboot(self) -> None:
        """The kernel module's state is gone; ietd.conf and our records stay."""
        shutil.rmtree(self.emulator_state, ignore_errors=True)
        shutil.rmtree(self.proc_dir, ignore_errors=True)

    def live(self, iqn: str) -> LiveView | None:
        entry = read_proc_volume(self.proc_dir / "volume").get(iqn)
        if entry is None:
            return None
        tid, luns = entry
        record = State(self.emulator_state, self.proc_dir).load_target(tid)
        assert record is not None and record["name"] == iqn, "proc file and state disagree"
        chap = tuple(record["incoming"][0]) if record["incoming"] else None
        return LiveView(iqn, luns, chap, frozenset())  # type: ignore[arg-type]

    def drop_record(self, volume_name: str) -> None:
        index = self.state_path / "volumes" / "iet" / volume_name
        iqn = json.loads(index.read_text())["iqn"]
        index.unlink()
        self.iet_conf.write_text(_drop_conf_block(self.iet_conf.read_text(), iqn))

    def state_dirs(self) -> list[Path]:
        return [self.state_path, self.emulator_state, self.proc_dir, self.etc]
