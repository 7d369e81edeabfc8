"""Shared pieces of the chiscsi emulator tests: an emulated host, files, devices, ports.

``Host`` runs ``iscsictl`` in-process (fast) through ``main``, or as the real
executable on PATH (``run_shim``) where the process matters: exit by signal,
the lock between processes, the path a helper takes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi import reset
from iscsi_helper.lab.emulators.chiscsi.cli import main
from iscsi_helper.lab.emulators.chiscsi.kernel.addr import IPV4_PREFIX
from iscsi_helper.lab.emulators.chiscsi.kernel.chap import ChapConfig
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf
from iscsi_helper.lab.emulators.chiscsi.kernel.luns import parse_lun
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node
from iscsi_helper.lab.emulators.chiscsi.kernel.portals import TargetPortal
from iscsi_helper.lab.emulators.chiscsi.state import KernelState
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.rig import free_port, run_main

PREFIX = "iqn.2010-10.org.openstack:"


def iqn(n: int | str) -> str:
    return f"{PREFIX}volume-{n}"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Host:
    """One emulated chiscsi host: its state directory and files for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._bin: Path | None = None

    def run(self, *args: str) -> Result:
        return Result(*run_main(main, args))

    def env(self) -> dict[str, str]:
        if self._bin is None:
            self._bin = install_shims(self.root / "bin")
        return dict(os.environ, PATH=f"{self._bin}{os.pathsep}{os.environ.get('PATH', '')}")

    def run_shim(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["iscsictl", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def disk(self, name: str = "disk", size: int = 4 << 20) -> Path:
        path = self.files / name
        if not path.exists():
            with open(path, "wb") as handle:
                handle.truncate(size)
        return path

    def file(self, name: str, text: str) -> Path:
        path = self.files / name
        path.write_text(text, encoding="latin-1")
        return path

    def block(self, name: str, body: str, header: str = "target:\n") -> Path:
        """A -f file holding one target block (``body``: key lines)."""
        return self.file(name, header + body)

    def simple(
        self, n: int | str, device: Path | None = None, extra: str = "", portal: str | None = None
    ) -> Path:
        """A plain FILE target named iqn(n) on a file of its own."""
        dev = device if device is not None else self.disk(f"disk-{n}")
        body = (
            f"\tTargetName={iqn(n)}\n\tTargetDevice={dev},FILE\n"
            f"\tPortalGroup=1@{portal or f'127.0.0.1:{self.port}'}\n{extra}"
        )
        return self.block(f"vol-{n}", body)

    def start(self, n: int | str, **kwargs: object) -> Result:
        path = self.simple(n, **kwargs)  # type: ignore[arg-type]
        return self.run("-S", f"target={iqn(n)}", "-f", str(path))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """A fresh host: no targets, the data path off, default lock file, short busy wait."""
    h = Host(tmp_path)
    monkeypatch.setenv("CHISCSI_EMULATOR_STATE", str(h.state))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "0")
    monkeypatch.delenv("CHISCSI_EMULATOR_PIDFILE", raising=False)
    monkeypatch.delenv("CHISCSI_EMULATOR_CONF", raising=False)
    yield h
    reset(h.state)


def seed_file_targets(state: Path, names: list[str], port: int, device_prefix: str) -> None:
    """Put thousands of live targets straight into the kernel state (no ``iscsictl -S`` each).

    Target i is ``names[i]`` on FILE ``<device_prefix>-<i>`` at 127.0.0.1:port,
    with chiscsi's default session keys; for listings past the 128 KiB cut.
    """
    nodes = []
    for i, name in enumerate(names):
        node = Node(id=i + 1, name=name)
        node.session = {
            "erl": 0,
            "initial_r2t": 1,
            "immediate_data": 1,
            "data_pdu_in_order": 1,
            "data_sequence_in_order": 1,
            "max_conns": 1,
            "max_r2t": 1,
            "first_burst": 65536,
            "max_burst": 262144,
            "time2wait": 2,
            "time2retain": 20,
        }
        node.chap = ChapConfig(["CHAP", "None"], False)
        node.portals = [TargetPortal(IPV4_PREFIX + bytes([127, 0, 0, 1]), port, 1, 0, True)]
        node.luns = [parse_lun(f"{device_prefix}-{i},FILE", 0, "", Ebuf())]
        nodes.append(node)
    KernelState(state).seed(nodes)


def can_make_loop_devices() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and Path("/dev/loop-control").exists()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A real block device (a loop device over an 8 MiB file), detached afterwards."""
    if not can_make_loop_devices():
        pytest.skip("needs root, losetup and /dev/loop-control for a block device")
    backing = tmp_path / "loop-backing.img"
    with open(backing, "wb") as handle:
        handle.truncate(8 << 20)
    made = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, timeout=30
    )
    if made.returncode != 0:
        pytest.skip(f"losetup failed: {made.stderr.strip()}")
    device = Path(made.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], capture_output=True, timeout=30)
