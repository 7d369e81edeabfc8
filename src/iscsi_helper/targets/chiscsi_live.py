"""What chiscsi shows of its live targets, and how that is compared with an export's spec.

A named lookup (``iscsictl -c target=<iqn>``) shows a target's whole
configuration; the ALL listing shows only devices and portals, and is cut
at 128 KiB of names, past which the rest are looked up by name in batches.
So CHAP users, AuthMethod and the ACL are compared only where the detailed
output was read (:class:`ChiscsiLive` carries it).
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from iscsi_helper import locking, secretmask
from iscsi_helper.adapters.iscsictl import Iscsictl
from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.codecs.iscsictl_output import TargetDetail, TargetSummary
from iscsi_helper.executor import Executor
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.targets.primitives import IscsiPrimitives

LOG = secretmask.get_logger(__name__)


@dataclass(frozen=True)
class ChiscsiLive(LiveTarget):
    """A live target; ``detail`` is what ``-c target=<iqn>`` showed (None: read from the summary).

    ``tid`` carries the portal group tag, which is what provider_location's
    number is in chiscsi's case (docs/helpers/chiscsi.md says why): chiscsi
    shows no target id for a named lookup, and no client reads it back.
    """

    detail: TargetDetail | None = None


class _Listing(dict[str, LiveTarget]):
    """The targets ``-c target=ALL`` showed, and whether its name buffer may have been cut."""

    may_be_cut: bool = False


def _live(iqn: str, shown: TargetSummary | TargetDetail) -> ChiscsiLive:
    portals = tuple(p for group in shown.portal_groups for p in group.portals)
    devices = tuple(d.path for d in shown.devices)
    detail = shown if isinstance(shown, TargetDetail) else None
    return ChiscsiLive(iqn, codec.PORTAL_GROUP_TAG, portals, devices, detail)


class ChiscsiLiveState(IscsiPrimitives):
    """The live-state primitives of the chiscsi helper, over ``iscsictl``."""

    executor: Executor

    @functools.cached_property
    def tool(self) -> Iscsictl:
        # The lock is per host: chiscsi's own is (its pid file), and a
        # coordination backend shared by several hosts must not serialise them.
        host_lock = f"iscsictl-{socket.gethostname()}"
        return Iscsictl(
            self.executor,
            lambda: locking.named_lock(self.conf, host_lock),
            self.conf.chiscsi_conf,
            self.conf.chiscsi_lock_retry_timeout,
        )

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        detail = self.tool.show([iqn])[iqn]
        return _live(iqn, detail) if detail is not None else None

    def _session_count(self, iqn: str, record: ExportRecord | None, live: LiveTarget) -> int | None:
        """``iscsictl -r``: one more call, made only before a device swap."""
        return self.tool.session_count(iqn)

    def _list_live(self) -> dict[str, LiveTarget]:
        listing = self.tool.list_all()
        live = _Listing((iqn, _live(iqn, shown)) for iqn, shown in listing.targets.items())
        live.may_be_cut = listing.may_be_cut
        return live

    def _live_view(self, iqns: Collection[str]) -> Mapping[str, LiveTarget]:
        """The ALL listing, and past its cut, named lookups (in batches) for what it could not show."""
        live = self._list_live()
        if not getattr(live, "may_be_cut", False):
            return live
        unseen = [iqn for iqn in iqns if iqn not in live]
        LOG.warning(
            "iscsictl -c target=ALL showed %d targets and was cut at its 128 KiB of names: "
            "looking %d more up by name; a target past the cut that has no export record "
            "cannot be seen",
            len(live),
            len(unseen),
        )
        merged = dict(live)
        for iqn, detail in self.tool.show(unseen).items():
            if detail is not None:
                merged[iqn] = _live(iqn, detail)
        return merged

    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """Devices and portals from any listing; CHAP users, AuthMethod and the ACL from the
        detailed ``-c target=<iqn>`` output, when that is what was read."""
        differ = list(super()._live_differences(spec, live))
        detail = live.detail if isinstance(live, ChiscsiLive) else None
        if detail is None:
            return tuple(differ)
        if detail.chap_initiator_users != ((spec.chap.username,) if spec.chap else ()):
            differ.append("chap_user")
        if detail.chap_target_users != ((spec.target_chap.username,) if spec.target_chap else ()):
            differ.append("target_chap_user")
        if spec.chap and detail.value("AuthMethod") != "CHAP":
            differ.append("auth_method")
        if detail.acl_enabled != bool(spec.initiators) or (
            spec.initiators and detail.acl_initiators != frozenset(spec.initiators)
        ):
            differ.append("acl")
        return tuple(differ)

    def _live_differs(self, spec: ExportSpec, live: LiveTarget) -> str | None:
        if super()._live_differences(spec, live):  # the fields any listing shows
            return (
                f"iscsictl -c shows the target with devices {list(live.devices or ())} and "
                f"portals {[str(p) for p in live.portals or ()]}, not the ones asked for"
            )
        return self._detail_problem(spec, live)

    @staticmethod
    def _detail_problem(spec: ExportSpec, live: LiveTarget) -> str | None:
        """What the detailed output shows differently from ``spec`` (CHAP names, ACL)."""
        detail = live.detail if isinstance(live, ChiscsiLive) else None
        if detail is None:
            return None
        wanted_users = (spec.chap.username,) if spec.chap else ()
        if detail.chap_initiator_users != wanted_users:
            return f"iscsictl -c shows initiator CHAP accounts {list(detail.chap_initiator_users)}"
        wanted_target = (spec.target_chap.username,) if spec.target_chap else ()
        if detail.chap_target_users != wanted_target:
            return f"iscsictl -c shows target CHAP accounts {list(detail.chap_target_users)}"
        if spec.chap and detail.value("AuthMethod") != "CHAP":
            return f"iscsictl -c shows AuthMethod={detail.value('AuthMethod')}, not CHAP"
        if detail.acl_enabled != bool(spec.initiators) or (
            spec.initiators and detail.acl_initiators != frozenset(spec.initiators)
        ):
            return (
                f"iscsictl -c shows ACL_Enable={detail.value('ACL_Enable')} for initiators "
                f"{sorted(detail.acl_initiators)}, not {list(spec.initiators) or 'any'}"
            )
        return None
