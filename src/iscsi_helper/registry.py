"""Target helpers by name, through stevedore entry points (group ``iscsi_helper.target_helpers``).

Every accepted spelling of a helper, Cinder's aliases included, is its own
entry point, so a third-party helper joins (aliases and all) by declaring
entry points in its own package, without touching this one.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from oslo_config import cfg
from stevedore import driver

from iscsi_helper.exception import InvalidConfiguration, UnknownTargetHelper
from iscsi_helper.executor import Executor
from iscsi_helper.targets.base import TargetHelper

NAMESPACE = "iscsi_helper.target_helpers"


def helper_names() -> list[str]:
    """Every registered name (aliases included), without importing any helper."""
    return sorted({ep.name for ep in metadata.entry_points(group=NAMESPACE)})


def helper_class(name: str) -> type[TargetHelper]:
    if name not in helper_names():
        raise UnknownTargetHelper(name=name, valid=", ".join(helper_names()))
    manager: driver.DriverManager[Any] = driver.DriverManager(NAMESPACE, name, invoke_on_load=False)
    found = manager.driver
    if not (isinstance(found, type) and issubclass(found, TargetHelper)):
        raise InvalidConfiguration(
            reason=f"the {NAMESPACE} entry point {name!r} is {found!r}, not a TargetHelper class"
        )
    return found


def canonical_names() -> list[str]:
    """One name per helper class: the first of its ``names``."""
    seen: dict[str, str] = {}
    for name in helper_names():
        cls = helper_class(name)
        key = f"{cls.__module__}.{cls.__qualname__}"
        seen.setdefault(key, cls.names[0] if cls.names else name)
    return sorted(seen.values())


def get_helper(
    conf: cfg.ConfigOpts, executor: Executor | None = None, name: str | None = None
) -> TargetHelper:
    """The helper selected by ``target_helper`` (or ``name``), ready to use."""
    return helper_class(name or conf.target_helper)(conf, executor)
