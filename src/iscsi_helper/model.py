"""The objects helpers exchange: a volume as the caller gives it, an export as we build it.

A caller may hand us a Cinder volume object or a plain mapping;
:meth:`Volume.coerce` reads either once, so no helper code ever needs to
know which. :class:`ExportSpec` is the complete, validated description of
one export: helpers render it into their target's format and compare it
with what they find live, which is what makes create, ensure and
reconcile the same operation seen from different sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from iscsi_helper.exception import InvalidInput
from iscsi_helper.formats import (
    ChapCredentials,
    Portal,
    ProviderLocation,
    validate_volume_id,
    validate_volume_name,
)


class VolumeProtocol(Protocol):
    """A volume as a caller may hand it over: anything with an ``id`` and a ``name``.

    Cinder's ``Volume`` objects qualify, and so does :class:`Volume`.
    ``provider_location``, ``provider_auth``, ``provider_geometry`` and
    ``encryption_key_id`` are read too when present (Cinder sets them).
    """

    @property
    def id(self) -> Any: ...  # Cinder: a UUID string

    @property
    def name(self) -> str: ...


#: What every ``volume`` parameter of the helper contract accepts: an object
#: with the attributes of :class:`VolumeProtocol`, or a mapping with those keys.
VolumeLike: TypeAlias = VolumeProtocol | Mapping[str, Any]

_VOLUME_FIELDS = (
    "id",
    "name",
    "provider_location",
    "provider_auth",
    "provider_geometry",
    "encryption_key_id",
)


def _read_field(volume: Any, name: str) -> Any:
    """Attribute first (Cinder objects), then mapping access; absent means None.

    Cinder's versioned objects raise on unset lazy fields, so any failure
    to read an optional field is treated as "not set".
    """
    try:
        value = getattr(volume, name)
    except Exception:  # noqa: BLE001 - lazy-load failures of optional fields
        value = None
    if value is None and isinstance(volume, Mapping):
        value = volume.get(name)
    return value


@dataclass(frozen=True)
class Volume:
    """A volume read once from whatever the caller gave (:meth:`coerce`); helpers use only this."""

    id: str
    name: str
    provider_location: str | None = None
    provider_auth: str | None = None
    provider_geometry: str | None = None
    encryption_key_id: str | None = None

    def __post_init__(self) -> None:
        # Built directly (the CLI does) or coerced: either way the name becomes a
        # file name and an IQN tail, so it is checked before anything uses it.
        validate_volume_id(self.id)
        validate_volume_name(self.name)

    def __repr__(self) -> str:  # provider_auth carries a secret
        auth = "'***'" if self.provider_auth else "None"
        return (
            f"Volume(id={self.id!r}, name={self.name!r}, "
            f"provider_location={self.provider_location!r}, provider_auth={auth})"
        )

    @classmethod
    def coerce(cls, volume: VolumeLike) -> Volume:
        if isinstance(volume, Volume):
            return volume
        values = {name: _read_field(volume, name) for name in _VOLUME_FIELDS}
        if values["id"] is None or values["name"] is None:
            raise InvalidInput(
                field="volume", value=repr(type(volume).__name__), reason="needs at least 'id' and 'name'"
            )
        values["id"] = validate_volume_id(str(values["id"]))
        values["name"] = validate_volume_name(str(values["name"]))
        for key in _VOLUME_FIELDS[2:]:
            if values[key] is not None:
                values[key] = str(values[key])
        return cls(**values)


@dataclass(frozen=True)
class ExportSpec:
    """Everything that defines one export; two equal specs are the same export."""

    volume_id: str
    volume_name: str
    iqn: str
    device_path: str
    lun: int
    portals: tuple[Portal, ...]
    chap: ChapCredentials | None
    target_chap: ChapCredentials | None = None
    initiators: tuple[str, ...] = ()  # ACL; empty means any initiator may log in

    def secrets(self) -> tuple[str, ...]:
        return tuple(c.password for c in (self.chap, self.target_chap) if c)

    def with_initiators(self, initiators: tuple[str, ...]) -> ExportSpec:
        return ExportSpec(
            self.volume_id,
            self.volume_name,
            self.iqn,
            self.device_path,
            self.lun,
            self.portals,
            self.chap,
            self.target_chap,
            tuple(sorted(set(initiators))),
        )


@dataclass(frozen=True)
class ExportRecord:
    """A persisted export as its helper read it: the spec, and what only that helper needs.

    The shared base reads the record once per operation and hands it to the
    helper, so the helper never reads its own files a second time: the tid
    it recorded, the device size its LUN was added with, and the text of
    its file exactly as read (kept as it is when nothing changed, and
    written back if the operation has to be rolled back).
    """

    spec: ExportSpec
    #: The target id the helper recorded (IET, tgt); None when it keeps none.
    tid: int | None = None
    #: Bytes behind the device when its LUN was added (IET re-adds a grown one).
    device_size: int | None = None
    #: The helper's own record file as read; None when there is none (yet).
    text: str | None = None


@dataclass(frozen=True)
class LiveTarget:
    """What a target's own state says about one target (as far as it shows).

    Every field after ``tid`` is None when the target's tool does not show
    it (reconcile then compares what it does show, and says which fields it
    compared in docs/reliability.md).
    """

    iqn: str
    tid: int
    portals: tuple[Portal, ...] | None = None
    devices: tuple[str, ...] | None = None  # backing paths in LUN order
    #: (LUN, backing path) pairs, when the tool numbers its LUNs.
    lun_paths: tuple[tuple[int, str], ...] | None = field(default=None, kw_only=True)
    #: Incoming (initiator) CHAP user names bound to the target.
    chap_users: tuple[str, ...] | None = field(default=None, kw_only=True)
    #: Outgoing (mutual CHAP) user names.
    target_chap_users: tuple[str, ...] | None = field(default=None, kw_only=True)
    #: Initiator names admitted by the target's ACL (empty: any initiator).
    initiators: tuple[str, ...] | None = field(default=None, kw_only=True)
    #: Sessions logged in, where the lookup shows them (None: it does not).
    sessions: int | None = field(default=None, kw_only=True)


@dataclass
class ExportStatus:
    """A persisted export seen together with the live target, for list/show/reconcile."""

    spec: ExportSpec
    live: LiveTarget | None

    @property
    def provider_location(self) -> str | None:
        if self.live is None:
            return None
        return str(ProviderLocation(self.spec.portals, self.live.tid, self.spec.iqn, self.spec.lun))


@dataclass(frozen=True)
class Drift:
    """One line of a reconcile report.

    ``state`` is ``ok``, ``missing-live`` (persisted, not live), ``differs``
    (live, but not as persisted; ``fields`` names what differs: ``device``,
    ``lun``, ``portals``, ``chap_user``, ``target_chap_user``, ``acl``),
    ``orphan-live`` (live, named with our prefix and template, no record) or
    ``foreign-file`` (a file in our records directory that is no record of
    ours, such as a copy; never started, moved or deleted; ``error`` says
    why). ``fixed`` says whether ``--fix`` repaired it, which it claims only
    after looking at the target again.
    """

    volume_name: str
    iqn: str
    state: str
    fixed: bool = False
    error: str | None = None
    fields: tuple[str, ...] = ()


@dataclass
class EnsureReport:
    """What a bulk ensure did, per volume id."""

    started: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed
