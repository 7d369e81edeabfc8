"""What an export should be: its spec, decided from the configuration and the caller's input.

Every helper exports the same thing for the same input: the IQN from
``target_prefix``, the portals from ``target_ip_address`` and the
secondaries, the credentials by one order of preference. Deciding it in
one place, before anything is touched, is what lets a bad input be
refused with nothing changed, whichever helper is configured.
"""

from __future__ import annotations

from collections.abc import Iterable

from oslo_config import cfg

from iscsi_helper.devices import validate_device_path
from iscsi_helper.exception import InvalidInput
from iscsi_helper.formats import (
    ChapCredentials,
    Portal,
    parse_provider_auth,
    portals_from_config,
    validate_chap_credential,
    validate_iscsi_name,
    validate_volume_id,
)
from iscsi_helper.model import ExportSpec, Volume


def configured_portals(conf: cfg.ConfigOpts) -> tuple[Portal, ...]:
    """The portals every export is served on: ``target_ip_address``, then the secondaries."""
    return tuple(
        portals_from_config(
            conf.target_ip_address, list(conf.target_secondary_ip_addresses), conf.target_port
        )
    )


def target_iqn(conf: cfg.ConfigOpts, volume_name: str) -> str:
    return validate_iscsi_name(f"{conf.target_prefix}{volume_name}", "target IQN")


def volume_id_from_name(conf: cfg.ConfigOpts, volume_name: str) -> str:
    """The id inside a name built by ``volume_name_template`` (files Cinder wrote carry no id)."""
    return template_id(conf, volume_name) or volume_name


def template_id(conf: cfg.ConfigOpts, name: str) -> str | None:
    """The volume id ``volume_name_template`` would turn into ``name``; None if it never would.

    Records are adopted only under names our template produces: anything
    else in a records directory (``volume-1~``, ``notes``) is not ours.
    """
    head, _, tail = conf.volume_name_template.partition("%s")
    if not (name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)):
        return None
    volume_id = name[len(head) : len(name) - len(tail)]
    try:
        validate_volume_id(volume_id)
    except InvalidInput:
        return None
    return volume_id


def check_template_name(conf: cfg.ConfigOpts, name: str) -> None:
    """Refuse a volume name our template cannot produce: its record could never be adopted back."""
    if template_id(conf, name) is None:
        raise InvalidInput(
            field="volume name",
            value=repr(name)[:80],
            reason=f"is not a name volume_name_template {conf.volume_name_template!r} produces",
        )


def configured_chap(conf: cfg.ConfigOpts) -> ChapCredentials | None:
    """The configured account when ``use_chap_auth`` asks for it, checked as the option names.

    An empty or unusable value is refused rather than silently replaced
    by generated credentials: the deployer asked for this account, and
    the error names the option to fix (never the secret itself).
    """
    if not conf.use_chap_auth:
        return None
    for option, value, secret in (
        ("chap_username", conf.chap_username, False),
        ("chap_password", conf.chap_password, True),
    ):
        try:
            validate_chap_credential(value, option, secret=secret)
        except InvalidInput as err:
            raise InvalidInput(
                field=f"{option} (use_chap_auth = True)",
                value=err.fields.get("value", "<secret>"),
                reason=err.fields.get("reason", "unusable"),
            ) from None
    return ChapCredentials(conf.chap_username, conf.chap_password)


def desired_spec(
    conf: cfg.ConfigOpts,
    volume: Volume,
    volume_path: str,
    kept: ExportSpec | None,
    lun: int,
    own_state: Iterable[str] = (),
) -> ExportSpec:
    """Validate every input and decide credentials; nothing is touched yet.

    ``kept`` is what is persisted for the volume already. Credentials come
    from the caller's provider_auth first (it is what Cinder stored and gave
    the initiator), then ``kept`` (the CLI and restarts), then the
    configured account, and only then fresh random ones. The initiator ACL
    is kept as it was.
    """
    iqn = target_iqn(conf, volume.name)
    device = validate_device_path(volume_path, own_state)
    portals = configured_portals(conf)
    chap = (
        parse_provider_auth(volume.provider_auth)
        or (kept.chap if kept else None)
        or configured_chap(conf)
        or ChapCredentials.generate()
    )
    target_chap = None
    if conf.iscsi_mutual_chap:
        target_chap = kept.target_chap if kept and kept.target_chap else ChapCredentials.generate()
    initiators = kept.initiators if kept else ()
    return ExportSpec(volume.id, volume.name, iqn, device, lun, portals, chap, target_chap, initiators)
