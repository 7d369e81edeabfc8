"""Our helpers' configuration, read from Cinder's backend configuration.

Cinder gives a driver a ``Configuration`` object whose ``safe_get(name)``
answers from the backend section, then ``[backend_defaults]``; host-wide
values (``state_path``, ``my_ip``, ``volume_name_template``,
``[oslo_concurrency] lock_path``, ``rootwrap_config``) live on its global
CONF. :func:`config_from_cinder` copies what the deployer set into a fresh
``ConfigOpts`` of ours, so helpers keep reading typed, validated options
under the names they always use, and nothing of ours is registered where
Cinder already has an option of that name. Cinder has no hook for this
module itself, so nothing here imports Cinder.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from oslo_config import cfg

from iscsi_helper import options, registry
from iscsi_helper.exception import InvalidConfiguration

#: The backend-section option that selects one of our helpers by name (Cinder's
#: target_helper cannot name chiscsi or iet); defined once, with the others.
HELPER_OPT = next(opt for opt in options.TARGET_OPTS if opt.dest == "iscsi_helper_target")

#: In Cinder the default is Cinder's own root helper, not "run directly".
ROOT_HELPER_OPT = cfg.StrOpt(
    "root_helper",
    default=None,
    help="Command prefix that runs target tools as root. Unset: nothing when "
    "cinder-volume runs as root, else 'sudo cinder-rootwrap "
    "<rootwrap_config>' (install iscsi-helper.filters into "
    "/etc/cinder/rootwrap.d). iscsi-helper only.",
)

#: Options read through Cinder's global CONF rather than the backend section.
HOST_OPTION_NAMES = ("my_ip", "state_path", "volume_name_template")


class CinderConfiguration(Protocol):
    """What we use of ``cinder.volume.configuration.Configuration``."""

    def safe_get(self, value: str) -> Any: ...

    def append_config_values(self, volume_opts: list[cfg.Opt]) -> None: ...


def backend_opts() -> list[cfg.Opt]:
    """Options a backend section may carry for iscsi-helper (Cinder's own names included)."""
    return [HELPER_OPT, ROOT_HELPER_OPT] + [
        o for o in options.TARGET_OPTS if o.name not in ("target_helper", HELPER_OPT.name)
    ]


def register_backend_opts(configuration: CinderConfiguration) -> None:
    """Add our options to the backend section, skipping every name Cinder already defines.

    Cinder's definition wins for shared names (same meaning, same default);
    registering ours one by one keeps a clash on one name from hiding the rest.
    """
    for opt in backend_opts():
        try:
            configuration.append_config_values([opt])
        except cfg.DuplicateOptError:
            pass


def _global(conf: Any, name: str) -> Any:
    try:
        return getattr(conf, name)
    except (cfg.NoSuchOptError, AttributeError):
        return None


def helper_name(configuration: CinderConfiguration) -> str:
    """``iscsi_helper_target``, else Cinder's ``target_helper`` if we have that helper."""
    chosen = configuration.safe_get("iscsi_helper_target")
    if chosen:
        registry.helper_class(chosen)  # UnknownTargetHelper names the valid ones
        return str(chosen)
    cinders = configuration.safe_get("target_helper")
    if cinders and cinders in registry.helper_names():
        return str(cinders)
    raise InvalidConfiguration(
        reason=f"iscsi_helper_target is not set and Cinder's target_helper "
        f"{cinders!r} is not an iscsi-helper helper; set iscsi_helper_target "
        f"to one of: {', '.join(registry.helper_names())}"
    )


def root_helper(configuration: CinderConfiguration, global_conf: Any) -> str:
    explicit = configuration.safe_get("root_helper")
    if explicit is not None:
        return str(explicit)
    if os.geteuid() == 0:
        return ""
    rootwrap_config = _global(global_conf, "rootwrap_config") or "/etc/cinder/rootwrap.conf"
    return f"sudo cinder-rootwrap {rootwrap_config}"


def config_from_cinder(configuration: CinderConfiguration, global_conf: Any) -> cfg.ConfigOpts:
    """A private ConfigOpts holding what Cinder parsed for this backend.

    Unset values (None) keep our defaults, which are Cinder's defaults.
    """
    register_backend_opts(configuration)
    overrides: dict[str, object] = {}
    for opt in options.TARGET_OPTS:
        value = configuration.safe_get(opt.name)
        if value is not None:
            overrides[opt.name] = value
    overrides["target_helper"] = helper_name(configuration)
    for name in HOST_OPTION_NAMES:
        value = _global(global_conf, name)
        if value is not None:
            overrides[name] = value
    lock_path = _global(_global(global_conf, "oslo_concurrency"), "lock_path")
    if lock_path:
        overrides["oslo_concurrency.lock_path"] = lock_path
    overrides["root_helper"] = root_helper(configuration, global_conf)
    try:
        return options.new_config(overrides=overrides)
    except (cfg.Error, ValueError) as err:
        raise InvalidConfiguration(reason=str(err).strip()) from None
