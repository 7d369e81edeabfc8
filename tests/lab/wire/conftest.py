"""Fixtures for the wire target: a daemon per test module, real libiscsi tools.

The daemon is always stopped by PID in teardown, and the teardown asserts it
really exited, so a failing test cannot leave a target process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from iscsi_helper.lab.rig import free_dual_stack_port
from iscsi_helper.lab.wire.control import WireService, _alive
from iscsi_helper.lab.wire.model import WireLun, WireTarget

LIBISCSI_TOOLS = ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "iscsi-test-cu")
# Modules that test the wire target's pure parts and need no initiator.
TOOL_FREE_MODULES = {"test_model.py", "test_units.py"}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every initiator-driven wire test when libiscsi's tools are missing.

    (A ``pytestmark`` in a conftest applies to nothing, hence this hook.) The
    reason starts with the Debian package's name, which is how CI tells a
    skip for a tool it installs from an expected one.
    """
    missing = [t for t in LIBISCSI_TOOLS if shutil.which(t) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"libiscsi-bin not installed: {', '.join(missing)} not on PATH")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == HERE and path.name not in TOOL_FREE_MODULES:
            item.add_marker(skip)


def run(
    *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )


def make_image(path: Path, size: int) -> str:
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def stop_and_check(service: WireService) -> None:
    pid = service.pid()
    service.stop()
    if pid is not None:
        assert not _alive(pid), f"wire daemon {pid} survived stop()"


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wire")


def serving(run_dir: Path) -> Iterator[WireService]:
    """A wire service on ``run_dir`` for a fixture's life; its daemon is checked gone afterwards."""
    svc = WireService(run_dir, timeout=15.0)
    try:
        yield svc
    finally:
        stop_and_check(svc)


@pytest.fixture(scope="module")
def service(module_dir: Path) -> Iterator[WireService]:
    """One daemon shared by a module's tests."""
    yield from serving(module_dir / "run")


@pytest.fixture
def own(tmp_path: Path) -> Iterator[WireService]:
    """A daemon of the test's own, for tests that start, stop or break it."""
    yield from serving(tmp_path / "run")


@pytest.fixture(scope="module")
def port() -> int:
    return free_dual_stack_port()


class Targets:
    """Publishes uniquely named targets on the module's daemon and withdraws them afterwards."""

    def __init__(self, service: WireService, directory: Path, port: int, name: str) -> None:
        self.service = service
        self.directory = directory
        self.port = port
        self.name = name
        self.published: list[str] = []

    def add(
        self,
        suffix: str = "t",
        size: int = 8 << 20,
        portals: list[tuple[str, int]] | None = None,
        luns: list[WireLun] | None = None,
        **kwargs: object,
    ) -> WireTarget:
        iqn = f"iqn.2024-01.org.example:{self.name}-{suffix}".lower().replace("_", "-")
        if luns is None:
            luns = [WireLun(make_image(self.directory / f"{self.name}-{suffix}.img", size))]
        target = WireTarget(iqn, luns, portals or [("127.0.0.1", self.port)], **kwargs)  # type: ignore[arg-type]
        self.service.publish(target)
        self.published.append(iqn)
        return target

    def url(self, target: WireTarget, lun: int = 0, host: str = "127.0.0.1", cred: str = "") -> str:
        h = f"[{host}]" if ":" in host else host
        return f"iscsi://{cred + '@' if cred else ''}{h}:{self.port}/{target.iqn}/{lun}"

    def cleanup(self) -> None:
        for iqn in self.published:
            self.service.withdraw(iqn)


@pytest.fixture
def targets(
    service: WireService, tmp_path: Path, port: int, request: pytest.FixtureRequest
) -> Iterator[Targets]:
    t = Targets(service, tmp_path, port, request.node.name[:40])
    try:
        yield t
    finally:
        t.cleanup()
