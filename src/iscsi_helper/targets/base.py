"""The contract every target helper honours, in the shape a Cinder volume driver calls it.

The method names and signatures are Cinder's (``context`` is accepted and
passed through untouched; iscsi-helper needs none), so a driver can hold
one of our helpers where it held a Cinder target object. Bulk and
read-only operations that Cinder lacks (``ensure_exports``,
``list_exports``, ``get_export``) are what the command line and restart
paths are built on.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_config import cfg

from iscsi_helper.executor import Executor
from iscsi_helper.model import EnsureReport, ExportStatus


class Target(abc.ABC):
    """A target helper. Subclasses are found by name in the helper registry."""

    #: Names under which the registry offers this helper (first is canonical).
    names: tuple[str, ...] = ()
    #: Protocol reported as ``driver_volume_type``.
    protocol: str = "iscsi"

    def __init__(self, conf: cfg.ConfigOpts, executor: Executor | None = None) -> None:
        self.conf = conf
        self.executor = executor or Executor(root_helper=conf.root_helper,
                                             timeout=conf.target_tool_timeout)

    @abc.abstractmethod
    def create_export(self, context: Any, volume: Any, volume_path: str) -> dict[str, str]:
        """Export ``volume_path``; return ``{'location': ..., 'auth': ...}`` for the caller to store."""

    @abc.abstractmethod
    def ensure_export(self, context: Any, volume: Any, volume_path: str) -> None:
        """Make the export exist exactly as recorded (after a restart); a no-op when it does."""

    @abc.abstractmethod
    def ensure_exports(self, context: Any,
                       volumes: Iterable[tuple[Any, str]]) -> EnsureReport:
        """``ensure_export`` for many volumes at the cost of one listing plus the repairs."""

    @abc.abstractmethod
    def remove_export(self, context: Any, volume: Any) -> None:
        """Remove the target and its persisted configuration; quiet if already gone."""

    @abc.abstractmethod
    def initialize_connection(self, volume: Any, connector: Mapping[str, Any]) -> dict[str, Any]:
        """Connection properties for ``connector``, in os-brick's iSCSI format."""

    @abc.abstractmethod
    def terminate_connection(self, volume: Any, connector: Mapping[str, Any],
                             **kwargs: Any) -> None:
        """The initiator has detached."""

    @abc.abstractmethod
    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        """Raise InvalidConnector unless ``connector`` can be served."""

    @abc.abstractmethod
    def extend_target(self, volume: Any) -> None:
        """Make the live target report the backing device's new size."""

    @abc.abstractmethod
    def list_exports(self) -> list[ExportStatus]:
        """Every persisted export with its live state (one listing of the target)."""

    @abc.abstractmethod
    def get_export(self, volume: Any) -> ExportStatus | None:
        """One persisted export with its live state, at constant cost."""
