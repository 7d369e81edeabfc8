"""The contract every target helper honours: Cinder's calls, plus what operators need.

The first group of methods has Cinder's names and signatures (``context``
is accepted and passed through untouched; iscsi-helper needs none), so a
Cinder volume driver can hold one of our helpers where it held a Cinder
target object. The second group is what Cinder lacks and the command line,
service start and monitoring are built on: bulk restore, read-only views
and reconciliation. The command line calls nothing else, so a helper that
implements this class is complete.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from oslo_config import cfg

from iscsi_helper import confcheck
from iscsi_helper.executor import Executor
from iscsi_helper.model import Drift, EnsureReport, ExportStatus, VolumeLike

#: Called as ``progress(done, total)`` by bulk operations: once with 0 before
#: the first export, then after each one.
Progress = Callable[[int, int], None]


class TargetHelper(abc.ABC):
    """A target helper. Subclasses are found by name in the helper registry."""

    #: Names under which the registry offers this helper (first is canonical).
    names: tuple[str, ...] = ()
    #: Whether the helper restricts logins to the initiators given to
    #: initialize_connection (an ACL), so terminate_connection revokes access.
    supports_acl: bool = False

    def __init__(self, conf: cfg.ConfigOpts, executor: Executor | None = None) -> None:
        self.conf = conf
        # Before anything else reads an option: a bad value is one clear line
        # (InvalidConfiguration) now, not a traceback halfway through an operation.
        self._check_configuration()
        self.executor = executor or Executor(root_helper=conf.root_helper, timeout=conf.target_tool_timeout)

    def _check_configuration(self) -> None:
        """Refuse a configuration this helper cannot work with (InvalidConfiguration)."""
        confcheck.check_configuration(self.conf)

    # ------------------------------------------------------------ Cinder's

    @abc.abstractmethod
    def create_export(self, context: Any, volume: VolumeLike, volume_path: str) -> dict[str, str]:
        """Export ``volume_path``; return ``{'location': ..., 'auth': ...}`` for the caller to store."""

    @abc.abstractmethod
    def ensure_export(self, context: Any, volume: VolumeLike, volume_path: str) -> None:
        """Make the export exist exactly as recorded (after a restart); a no-op when it does."""

    @abc.abstractmethod
    def ensure_exports(
        self, context: Any, volumes: Iterable[tuple[VolumeLike, str]], progress: Progress | None = None
    ) -> EnsureReport:
        """``ensure_export`` for many volumes at the cost of one listing plus the repairs."""

    @abc.abstractmethod
    def remove_export(self, context: Any, volume: VolumeLike) -> None:
        """Remove the target and its persisted configuration; quiet if already gone."""

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeLike, connector: Mapping[str, Any]) -> dict[str, Any]:
        """Connection properties for ``connector``, in os-brick's iSCSI format."""

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeLike, connector: Mapping[str, Any], **kwargs: Any) -> None:
        """The initiator has detached."""

    @abc.abstractmethod
    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        """Raise InvalidConnector unless ``connector`` can be served."""

    @abc.abstractmethod
    def extend_target(self, volume: VolumeLike) -> None:
        """Make the live target report the backing device's new size."""

    # -------------------------------------------------------------- ours

    @abc.abstractmethod
    def export(self, volume: VolumeLike, volume_path: str, *, force: bool = False) -> ExportStatus:
        """``create_export``, answered with the export's status rather than Cinder's model update.

        Re-exporting a *connected* export (initiators in its ACL, or sessions
        the target shows) with another device would swap the disk under
        them: that is refused with ExportInUse unless ``force``.
        """

    @abc.abstractmethod
    def unexport(self, volume: VolumeLike) -> bool:
        """``remove_export``, saying whether there was anything to remove (a record or a live target)."""

    @abc.abstractmethod
    def restore_exports(
        self,
        volume_names: Iterable[str] | None = None,
        progress: Progress | None = None,
        *,
        missing_ok: bool = True,
    ) -> EnsureReport:
        """Bring persisted exports back live (service start); all of them when no names are given.

        With ``missing_ok=False`` a named volume without a persisted export
        is an ExportNotFound before anything is touched.
        """

    @abc.abstractmethod
    def list_exports(self) -> list[ExportStatus]:
        """Every persisted export with its live state (one listing of the target)."""

    @abc.abstractmethod
    def get_export(self, volume: VolumeLike) -> ExportStatus | None:
        """One persisted export with its live state, at constant cost."""

    @abc.abstractmethod
    def reconcile(self, fix: bool = False, *, stop_orphans: bool = False) -> list[Drift]:
        """Compare persisted exports with the live target; with ``fix``, repair the drift.

        A live target without a record (``orphan-live``) is stopped only
        with ``stop_orphans`` as well: it may be an export another tool or
        host still serves, and stopping it cuts its initiators off.
        """

    @abc.abstractmethod
    def check_access(self) -> None:
        """Raise AccessDenied (naming path, owner, mode and fix) if this process cannot write
        what the helper writes itself; called before a change, so nothing is half done."""

    @abc.abstractmethod
    def sweep_temp_files(self) -> list[Path]:
        """Remove what writes killed before their rename left behind; returns what was removed."""
