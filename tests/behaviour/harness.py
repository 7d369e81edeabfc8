"""How the shared behaviour suite drives and inspects each helper.

A harness knows three things about its helper that the contract cannot
say: how to configure it in a sandbox, how to simulate a host reboot (live
state lost, persisted files kept), and how to read the target's *own*
state, so the suite checks what the target really holds rather than what
our helper believes. A new helper joins the suite with a module ``harness_<name>.py``
beside this one whose harness class is decorated with :func:`register`;
the suite fails for a registered helper that has none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from oslo_config import cfg

from iscsi_helper import options, registry
from iscsi_helper.exception import CommandFailed
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.targets.base import TargetHelper
from tests.support import devices

#: One tool call as it ended: (argv as given by the helper, exit code; None if it never exited).
CallResult = tuple[tuple[str, ...], int | None]


@dataclass(frozen=True)
class LiveView:
    """A target as its own admin interface shows it."""

    iqn: str
    luns: dict[int, str]  # LUN -> backing path
    chap: tuple[str, str] | None  # (user, secret) the target will accept
    initiators: frozenset[str] = frozenset()  # ACL; empty = any
    #: (user, secret) the target answers with under mutual CHAP; None: one-way.
    mutual: tuple[str, str] | None = None
    #: The target's id as the target numbers it. Not part of equality: a
    #: restore after a reboot may legitimately give another id.
    tid: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PersistedView:
    """An export as the helper's persisted configuration states it (what comes back at boot).

    Read by each harness with its own parser, never the helper's, from the
    file the target (or the helper's restore) loads: a helper that mangles a
    neighbour's block is caught here even while the live target is intact.
    """

    iqn: str
    device: str
    chap: tuple[str, str] | None
    mutual: tuple[str, str] | None = None  # the target's own account under mutual CHAP


@dataclass
class RecordingExecutor(Executor):
    """The real executor, also noting how each call ended (observers see argv only, up front)."""

    results: list[CallResult] = field(default_factory=list)

    def run(self, *argv: str, **options: Any) -> CommandResult:
        try:
            result = super().run(*argv, **options)
        except CommandFailed as err:
            self.results.append((tuple(argv), err.exit_code))
            raise
        except Exception:
            self.results.append((tuple(argv), None))
            raise
        self.results.append((tuple(argv), result.exit_code))
        return result


@dataclass
class Harness:
    root: Path
    monkeypatch: pytest.MonkeyPatch
    calls: list[tuple[str, ...]] = field(default_factory=list)
    name: str = ""
    #: Every tool call with its exit code, in order (see :class:`RecordingExecutor`).
    results: list[CallResult] = field(default_factory=list)
    #: Whether provider_location's number is the target's own id (distinct per target);
    #: chiscsi's is the portal group tag (docs/helpers/chiscsi.md says why).
    location_tid_is_target_id = True

    def __post_init__(self) -> None:
        self.state_path = self.root / "state"
        self.state_path.mkdir(parents=True, exist_ok=True)
        self.setup()

    # -- per helper
    def setup(self) -> None:
        """Prepare the environment (tools on PATH, emulator state)."""

    def overrides(self) -> dict[str, object]:
        return {}

    def reboot(self) -> None:
        raise NotImplementedError

    def live(self, iqn: str) -> LiveView | None:
        raise NotImplementedError

    def drop_record(self, volume_name: str) -> None:
        """Delete the persisted record only (the live target stays): makes an orphan."""
        raise NotImplementedError

    def persisted(self, volume_name: str, iqn: str) -> PersistedView | None:
        """What the helper's persisted configuration says of ``iqn`` (None: nothing)."""
        raise NotImplementedError

    def in_place_check(self, argv: tuple[str, ...], exit_code: int | None) -> bool:
        """Whether a call an in-place ``ensure_export`` made beyond its lookup is a documented check.

        None by default: an export already in place costs its lookup and
        nothing more. A helper whose tool cannot show part of a target may
        ask by trying, and the harness names exactly that call and answer.
        """
        return False

    def state_dirs(self) -> list[Path]:
        """Directories whose every byte must be unchanged after a rejected input."""
        return [self.state_path]

    # -- common
    def conf(self, **overrides: object) -> cfg.ConfigOpts:
        values: dict[str, object] = {
            "target_helper": self.name,
            "state_path": str(self.state_path),
            "target_ip_address": "127.0.0.1",
            "target_port": 3260,
            "oslo_concurrency.lock_path": str(self.root / "locks"),
        }
        values.update(self.overrides())
        values.update(overrides)
        return options.new_config(overrides=values)

    def target(self, **overrides: object) -> TargetHelper:
        conf = self.conf(**overrides)
        executor = RecordingExecutor(
            timeout=conf.target_tool_timeout, observers=[self.calls.append], results=self.results
        )
        return registry.get_helper(conf, executor)

    def config_file(self, **overrides: object) -> Path:
        conf = self.conf(**overrides)
        path = self.root / "iscsi-helper.conf"
        lines = ["[DEFAULT]"] + [
            f"{k} = {v}"
            for k, v in {
                "target_helper": conf.target_helper,
                "state_path": conf.state_path,
                "target_ip_address": conf.target_ip_address,
                "target_port": conf.target_port,
                **{k: v for k, v in self.overrides().items() if "." not in k},
                **{k: v for k, v in overrides.items() if "." not in k},
            }.items()
        ]
        lines += ["[oslo_concurrency]", f"lock_path = {self.root / 'locks'}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def snapshot(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for directory in self.state_dirs():
            for dirpath, _dirs, names in os.walk(directory):
                for name in names:
                    path = os.path.join(dirpath, name)
                    with open(path, "rb") as handle:
                        files[path] = handle.read()
        return files

    def identities(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file of :meth:`state_dirs` with its bytes, inode and mtime.

        An atomic rewrite with the same bytes still gets a new inode: this is
        what tells "left alone" from "rewritten identically".
        """
        return {
            path: (data, os.stat(path).st_ino, os.stat(path).st_mtime_ns)
            for path, data in self.snapshot().items()
        }

    def env(self) -> dict[str, str]:
        return dict(os.environ)


HARNESSES: dict[str, type[Harness]] = {}


def register(name: str):
    def wrap(cls: type[Harness]) -> type[Harness]:
        HARNESSES[name] = cls
        return cls

    return wrap


def load_all() -> dict[str, type[Harness]]:
    """Import every ``harness_*.py`` beside this file (each registers itself)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("harness_"):
            importlib.import_module(f"{__package__}.{info.name}")
    return HARNESSES


def harness_fixture() -> Any:
    """The ``h`` fixture: a harness per registered helper, torn down after the test.

    A conftest binds it (``h = harness_fixture()``), so the behaviour and the
    reliability suites share one fixture instead of a copy each.
    """

    @pytest.fixture(params=sorted(load_all()), name="h")
    def h(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[Harness]:
        harness = HARNESSES[request.param](tmp_path, monkeypatch, name=request.param)
        yield harness
        teardown = getattr(harness, "teardown", None)
        if teardown:
            teardown()

    return h


def make_device(h: Harness, name: str = "disk", size: int = 4 << 20) -> str:
    """A sparse backing file in the harness's sandbox."""
    return devices.make_device(h.root, name, size)


@register("fake")
class FakeHarness(Harness):
    def reboot(self) -> None:
        import shutil

        shutil.rmtree(self.state_path / "volumes" / "fake-live", ignore_errors=True)

    def drop_record(self, volume_name: str) -> None:
        (self.state_path / "volumes" / "fake" / volume_name).unlink()

    def live(self, iqn: str) -> LiveView | None:
        target = self.target()
        spec = target.live_spec(iqn)  # type: ignore[attr-defined]
        if spec is None:
            return None
        chap = (spec.chap.username, spec.chap.password) if spec.chap else None
        mutual = (spec.target_chap.username, spec.target_chap.password) if spec.target_chap else None
        tid = json.loads((self.state_path / "volumes" / "fake-live" / quote(iqn, safe="")).read_text())["tid"]
        return LiveView(spec.iqn, {spec.lun: spec.device_path}, chap, frozenset(spec.initiators), mutual, tid)

    def persisted(self, volume_name: str, iqn: str) -> PersistedView | None:
        path = self.state_path / "volumes" / "fake" / volume_name
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data["iqn"] != iqn:
            return None
        return PersistedView(
            data["iqn"],
            data["device_path"],
            tuple(data["chap"]) if data["chap"] else None,  # type: ignore[arg-type]
            tuple(data["target_chap"]) if data["target_chap"] else None,
        )
