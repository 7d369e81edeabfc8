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

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from oslo_config import cfg

from iscsi_helper import options, registry
from iscsi_helper.executor import Executor
from iscsi_helper.targets.base import TargetHelper


@dataclass(frozen=True)
class LiveView:
    """A target as its own admin interface shows it."""

    iqn: str
    luns: dict[int, str]  # LUN -> backing path
    chap: tuple[str, str] | None  # (user, secret) the target will accept
    initiators: frozenset[str] = frozenset()  # ACL; empty = any


@dataclass
class Harness:
    root: Path
    monkeypatch: pytest.MonkeyPatch
    calls: list[tuple[str, ...]] = field(default_factory=list)
    name: str = ""

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

    def state_dirs(self) -> list[Path]:
        """Directories whose every byte must be unchanged after a rejected input."""
        return [self.state_path]

    # -- common
    def conf(self, **overrides: object) -> cfg.ConfigOpts:
        values: dict[str, object] = {
            "target_helper": self.name, "state_path": str(self.state_path),
            "target_ip_address": "127.0.0.1", "target_port": 3260,
            "oslo_concurrency.lock_path": str(self.root / "locks"),
        }
        values.update(self.overrides())
        values.update(overrides)
        return options.new_config(overrides=values)

    def target(self, **overrides: object) -> TargetHelper:
        conf = self.conf(**overrides)
        executor = Executor(timeout=conf.target_tool_timeout, observers=[self.calls.append])
        return registry.get_helper(conf, executor)

    def config_file(self, **overrides: object) -> Path:
        conf = self.conf(**overrides)
        path = self.root / "iscsi-helper.conf"
        lines = ["[DEFAULT]"] + [f"{k} = {v}" for k, v in {
            "target_helper": conf.target_helper, "state_path": conf.state_path,
            "target_ip_address": conf.target_ip_address, "target_port": conf.target_port,
            **{k: v for k, v in self.overrides().items() if "." not in k},
            **{k: v for k, v in overrides.items() if "." not in k}}.items()]
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
        return LiveView(spec.iqn, {spec.lun: spec.device_path}, chap, frozenset(spec.initiators))

