"""What an operation is refused for, decided before its first change.

Everything that can be refused is refused before any lock, file or tool is
touched, so a refusal (:class:`~iscsi_helper.exception.Refused`) changed
nothing: the configuration when the helper is made, a volume's names and
device and CHAP values before its lock is taken, a connector before any
ACL is looked at, a path this process cannot write before a change, and a
device swap under connected initiators before the export is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iscsi_helper import access, confcheck, secretmask, specs
from iscsi_helper.connection import connector_initiator
from iscsi_helper.devices import validate_device_path
from iscsi_helper.exception import ExportInUse, InvalidConnector, IscsiHelperError, TargetCreateFailed
from iscsi_helper.formats import parse_provider_auth
from iscsi_helper.model import ExportRecord, ExportSpec, Volume, VolumeLike
from iscsi_helper.targets.primitives import IscsiPrimitives

LOG = secretmask.get_logger(__name__)


class Refusals(IscsiPrimitives):
    """The checks every operation runs before it changes anything."""

    names: tuple[str, ...]
    supports_acl: bool
    #: The kinds of initiator name the helper's ACL takes (chiscsi: iqn. and eui. only).
    acl_name_kinds: tuple[str, ...] = ("iqn.", "eui.", "naa.")
    #: Path options the helper uses beyond volumes_dir and lock_path, and what each must be.
    path_options: tuple[tuple[str, str | None, confcheck.PathKind], ...] = ()

    def _check_configuration(self) -> None:
        confcheck.check_configuration(self.conf, self.path_options)

    def _own_state(self) -> list[str]:
        """Paths no device may be: our records and locks, and every target's configuration.

        Whichever helper runs, ietd.conf and chiscsi.conf hold the node's
        CHAP secrets: exported as a disk, any initiator could read them.
        """
        conf = self.conf
        return [
            conf.volumes_dir,
            conf.oslo_concurrency.lock_path,
            conf.iet_conf,
            conf.chiscsi_conf,
            conf.iet_proc_dir,
        ]

    def _check_names(self, volume_name: str, iqn: str) -> None:
        """Refuse a name this helper's target cannot carry (a helper adds its own rules)."""

    def _check_volume(self, volume: VolumeLike) -> tuple[Volume, str]:
        """The volume and its target IQN, or a refusal; no lock, file or tool is touched."""
        vol = Volume.coerce(volume)
        iqn = specs.target_iqn(self.conf, vol.name)
        specs.check_template_name(self.conf, vol.name)
        self._check_names(vol.name, iqn)
        return vol, iqn

    def _check_export(self, volume: VolumeLike, volume_path: str) -> Volume:
        """Everything an export's input can be refused for, before its lock is taken."""
        vol, _iqn = self._check_volume(volume)
        validate_device_path(volume_path, self._own_state())
        parse_provider_auth(vol.provider_auth)
        return vol

    def _check_initiator(self, connector: Mapping[str, Any]) -> str:
        initiator = connector_initiator(connector)
        if self.supports_acl and not initiator.startswith(self.acl_name_kinds):
            raise InvalidConnector(
                reason=f"initiator name {initiator!r}: the {self.names[0]} "
                f"helper's ACL takes only "
                f"{' and '.join(self.acl_name_kinds)} names"
            )
        return initiator

    def _desired_spec(self, volume: Volume, volume_path: str, record: ExportRecord | None) -> ExportSpec:
        return specs.desired_spec(
            self.conf, volume, volume_path, record.spec if record else None, self.lun, self._own_state()
        )

    def _check_device_swap(self, volume: Volume, spec: ExportSpec, record: ExportRecord, force: bool) -> None:
        """Refuse (unless ``force``) to swap the device of an export initiators use."""
        connected = []
        if record.spec.initiators:
            connected.append("access granted to " + ", ".join(record.spec.initiators))
        try:
            live = self._lookup(record.spec.iqn, record)
            sessions = self._session_count(record.spec.iqn, record, live) if live else 0
        except IscsiHelperError as err:  # unknown is not "nobody": nothing is changed
            raise TargetCreateFailed(
                volume_id=volume.id,
                reason=(f"cannot tell whether initiators use it before changing its device: {err}"),
            ) from None
        if sessions:
            connected.append(f"{sessions} session(s) logged in")
        if not connected:
            return
        refusal = ExportInUse(
            volume_id=volume.id,
            connected="; ".join(connected),
            new=spec.device_path,
            old=record.spec.device_path,
        )
        if not force:
            raise refusal
        LOG.warning("Forced: %s", refusal)

    def _access_needs(self) -> list[access.Need]:
        """Paths this helper writes in-process (a helper adds its own, e.g. IET's ietd.conf)."""
        needs = [access.Need("volumes_dir", Path(self.conf.volumes_dir), "directory")]
        if not self.conf.coordination_url:
            needs.append(
                access.Need(
                    "[oslo_concurrency] lock_path", Path(self.conf.oslo_concurrency.lock_path), "directory"
                )
            )
        return needs

    def check_access(self) -> None:
        access.check(self._access_needs())
