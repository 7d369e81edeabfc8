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

from .harness import Harness, LiveView, PersistedView, register

EXIT_EEXIST = 239  # ietadm returns -EEXIST from main: "the LUN is there already"


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


def _conf_blocks(text: str) -> list[list[list[str]]]:
    """ietd.conf as ietd reads it: word lists per ``Target`` block, up to the next ``Target``.

    Blank lines and ``#`` comments are skipped, not block ends (ietd's own
    reading; the emulator's ``--start-ietd`` does the same).
    """
    blocks: list[list[list[str]]] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].lower() == "target":
            blocks.append([words])
        elif blocks:
            blocks[-1].append(words)
    return blocks


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
        self.iet_conf.write_text(
            "# ietd.conf of the test host\nIncomingUser discovery-user discoverysecret1\n"
        )

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
        mutual = tuple(record["outgoing"][0]) if record["outgoing"] else None
        return LiveView(iqn, luns, chap, frozenset(), mutual, tid)  # type: ignore[arg-type]

    def persisted(self, volume_name: str, iqn: str) -> PersistedView | None:
        """The ietd.conf block of exactly ``iqn``: what ietd itself loads at boot.

        The JSON index record beside it only speeds the helper up; a block
        lost from ietd.conf is an export lost at the next boot, whatever the
        index says.
        """
        blocks = [words for words in _conf_blocks(self.iet_conf.read_text()) if words[0][1:] == [iqn]]
        if not blocks:
            return None
        assert len(blocks) == 1, f"{iqn} has {len(blocks)} blocks in ietd.conf"
        chap = mutual = None
        device = ""
        for words in blocks[0][1:]:
            if words[0].lower() == "incominguser" and len(words) == 3:
                chap = (words[1], words[2])
            elif words[0].lower() == "outgoinguser" and len(words) == 3:
                mutual = (words[1], words[2])
            elif words[0].lower() == "lun" and words[1:2] == ["0"]:
                params = dict(p.partition("=")[::2] for p in "".join(words[2:]).split(","))
                device = params.get("Path", "")
        return PersistedView(iqn, device, chap, mutual)

    def in_place_check(self, argv: tuple[str, ...], exit_code: int | None) -> bool:
        """ietadm cannot show a LUN, so the helper asks by adding it: refused with EEXIST.

        Besides that, only the account probe (``--op show --user``) that
        proves the recorded tid is still this export's target.
        """
        if "--op" not in argv:
            return False
        op = argv[argv.index("--op") + 1]
        if op == "show":
            return exit_code == 0
        return op == "new" and any(a.startswith("--lun=") for a in argv) and exit_code == EXIT_EEXIST

    def drop_record(self, volume_name: str) -> None:
        index = self.state_path / "volumes" / "iet" / volume_name
        iqn = json.loads(index.read_text())["iqn"]
        index.unlink()
        self.iet_conf.write_text(_drop_conf_block(self.iet_conf.read_text(), iqn))

    def state_dirs(self) -> list[Path]:
        return [self.state_path, self.emulator_state, self.proc_dir, self.etc]
