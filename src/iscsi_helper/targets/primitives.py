"""The primitives a helper implements, and the comparisons every helper shares over them.

:class:`~iscsi_helper.targets.iscsi.IscsiHelper` writes every public
operation once over these methods (docs/architecture.md states their
contract). Each is a fixed number of tool calls or file reads, so an
operation's cost does not depend on how many exports the node has. The
defaults here are what most targets need; a helper overrides one only
where its tool sees more or less than the default assumes.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Set

from oslo_config import cfg

from iscsi_helper.formats import iscsi_name_key
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget


class IscsiPrimitives(abc.ABC):
    """What a helper says about its own target; everything else is written once above it."""

    conf: cfg.ConfigOpts
    #: LUN of the exported disk (chiscsi and IET count from 0; tgt from 1).
    lun: int = 0

    @abc.abstractmethod
    def _read_record(self, volume_name: str) -> ExportRecord | None:
        """The persisted export of ``volume_name``, or None; constant cost."""

    @abc.abstractmethod
    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        """Persist ``spec`` and make its live target match it; returns the record now persisted.

        ``previous`` is the record read under the volume's lock moments
        before (None: nothing persisted). On failure the helper leaves its
        files as ``previous`` and the live target as it was, then raises.
        """

    def _apply_missing(
        self, spec: ExportSpec, previous: ExportRecord | None, tids_in_use: Set[int]
    ) -> ExportRecord:
        """``_apply`` when a restore's one listing (tids ``tids_in_use``) shows no ``spec.iqn``.

        A helper may trust the listing to skip a lookup of its own, and must
        cope when it proves stale (another process acted in between).
        """
        return self._apply(spec, previous)

    def _apply_seen(self, spec: ExportSpec, previous: ExportRecord | None, live: LiveTarget) -> ExportRecord:
        """``_apply`` when a fresh look at the target showed ``live`` (restore, reconcile --fix).

        A helper whose own lookups show less than ``live`` uses it (IET:
        which device the LUN is really on, which its records cannot prove
        after an interrupted device change).
        """
        return self._apply(spec, previous)

    @abc.abstractmethod
    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The live target ``iqn``, or None; constant cost (``record``: what is persisted for it)."""

    def _inspect(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The live target ``iqn`` with every field the tool can show, for reconcile's second look.

        Default: the lookup. A helper whose lookup proves only that the
        target exists (IET) reads its fuller view here.
        """
        return self._lookup(iqn, record)

    @abc.abstractmethod
    def _list_live(self) -> dict[str, LiveTarget]:
        """All live targets by IQN: one call of the target tool."""

    def _live_view(self, iqns: Collection[str]) -> Mapping[str, LiveTarget]:
        """The live targets a bulk operation needs: at least those of ``iqns`` that are live.

        One listing by default. A helper whose listing can miss targets
        (chiscsi's is cut at 128 KiB of names) also looks ``iqns`` up.
        """
        return self._list_live()

    def _live_differs(self, spec: ExportSpec, live: LiveTarget) -> str | None:
        """What the tool showed that differs from ``spec``, in its words, for an error message.

        Only asked when ``_live_differences`` found a difference; None: the
        field names say it all.
        """
        return None

    @abc.abstractmethod
    def _withdraw(self, volume_name: str, iqn: str) -> None:
        """Stop the target, check it is gone from the target's own state, then drop the record.

        Quiet when either is gone already; a target still there after the
        tool said it was removed is a TargetRemoveFailed, its record kept.
        """

    def _lookup_unrecorded(self, iqn: str) -> LiveTarget | None:
        """The live target ``iqn`` that has no record (an orphan); only rare paths ask.

        Default: the lookup without a record. A helper whose lookup needs the
        record (IET vouches for its recorded tid) looks wider.
        """
        return self._lookup(iqn, None)

    def _session_count(self, iqn: str, record: ExportRecord | None, live: LiveTarget) -> int | None:
        """Sessions logged in to the live target ``iqn``; None when the tool cannot show them.

        Asked only before a change that would disturb initiators (a device
        swap), so it may cost a tool call. Default: what the lookup showed.
        """
        return live.sessions

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:  # noqa: B027 - a hook
        """A restore found ``record`` live and right: keep what its listing says (IET: the tid)."""

    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """The fields in which ``live`` shows something other than ``spec`` (only fields it shows)."""
        differ = []
        paths = dict(live.lun_paths) if live.lun_paths is not None else None
        if paths is not None:
            if spec.lun not in paths:
                differ.append("lun")
            elif paths[spec.lun] != spec.device_path:
                differ.append("device")
        elif live.devices is not None and tuple(live.devices) != (spec.device_path,):
            differ.append("device")
        if live.portals is not None and set(live.portals) != set(spec.portals):
            differ.append("portals")
        if live.chap_users is not None and set(live.chap_users) != (
            {spec.chap.username} if spec.chap else set()
        ):
            differ.append("chap_user")
        if live.target_chap_users is not None and set(live.target_chap_users) != (
            {spec.target_chap.username} if spec.target_chap else set()
        ):
            differ.append("target_chap_user")
        if live.initiators is not None and {iscsi_name_key(n) for n in live.initiators} != {
            iscsi_name_key(n) for n in spec.initiators
        }:
            differ.append("acl")
        return tuple(differ)

    def _live_matches(self, spec: ExportSpec, live: LiveTarget) -> bool:
        """Whether the live target shows what ``spec`` asks for (where the tool shows it)."""
        return not self._live_differences(spec, live)

    def _already_applied(
        self, spec: ExportSpec, record: ExportRecord | None, live: LiveTarget | None
    ) -> bool:
        return (
            record is not None and record.spec == spec and live is not None and self._live_matches(spec, live)
        )
