"""Configuration options, under the names and defaults a Cinder deployer knows, read as Cinder reads them.

A ``cinder.conf`` can be read as it is: the options keep Cinder's names
(and its deprecated spellings), so moving a deployment to iscsi-helper is
a matter of pointing ``--config-file`` at the same file. Options Cinder
does not have are marked "iscsi-helper only" in their help.

Where an option is read follows Cinder 29.0.0. A backend's options
(:data:`BACKEND_OPTION_NAMES`: the target options) are read from the
backend's own section, then from ``[backend_defaults]``, then take their
default; ``[DEFAULT]`` is *not* consulted for them
(``cinder/volume/configuration.py``: ``SHARED_CONF_GROUP`` line 46, the
backend group's defaults set to None line 111, ``__getattr__`` lines
128-134; the volume manager builds that object for its backend,
``cinder/volume/manager.py`` lines 266-268). Host options (``my_ip``,
``state_path``, ...) are read from ``[DEFAULT]``, ``lock_path`` from
``[oslo_concurrency]``. The backend is the one ``--backend`` names, or the
only entry of ``enabled_backends``; a file without ``enabled_backends``
(cinder-volume refuses to start on one, ``cinder/cmd/volume.py`` lines
139-143) is read from ``[DEFAULT]`` alone, as iscsi-helper's own
configuration files are. An option written only where it is not read is
reported by :func:`load` as a warning, never silently ignored.
"""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg

from iscsi_helper import secretmask

LOG = secretmask.get_logger(__name__)


def _guess_my_ip() -> str:
    """Cinder's ``my_ip`` default: the address of the default route's interface."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


HOST_OPTS: list[cfg.Opt] = [
    cfg.ListOpt(
        "enabled_backends",
        default=None,
        help="A list of backend names to use. These backend names should be "
        "backed by a unique [CONFIG] group with its options. iscsi-helper "
        "reads the target options of one of them: the one given with "
        "--backend, or the only one listed. Unset: the target options "
        "are read from [DEFAULT].",
    ),
    cfg.StrOpt(
        "my_ip", default=_guess_my_ip(), sample_default="<host ipv4>", help="IP address of this host."
    ),
    cfg.StrOpt("state_path", default="/var/lib/cinder", help="Top-level directory for maintaining state."),
    cfg.StrOpt(
        "volume_name_template",
        default="volume-%s",
        help="Template string to be used to generate volume names.",
    ),
    cfg.StrOpt(
        "root_helper",
        default="",
        help="Command prefix used to run target tools as root, e.g. "
        "'sudo' or 'sudo cinder-rootwrap /etc/cinder/rootwrap.conf', and "
        "through which the IET helper writes ietd.conf as root (mktemp, dd, "
        "mv, sync: see the rootwrap filters). Empty: run them directly and "
        "write ietd.conf in-process (the process must be root, or own "
        "ietd.conf's directory). iscsi-helper only.",
    ),
]

TARGET_OPTS: list[cfg.Opt] = [
    cfg.StrOpt(
        "target_helper",
        default="tgtadm",
        deprecated_name="iscsi_helper",
        help="Target helper to use: chiscsi (aliases iscsictl, cxtadm), "
        "iet (alias ietadm), fake, or any helper registered in the "
        "iscsi_helper.target_helpers entry-point group.",
    ),
    cfg.StrOpt(
        "iscsi_helper_target",
        default=None,
        help="iscsi-helper target helper for this backend: chiscsi (aliases "
        "iscsictl, cxtadm), iet (alias ietadm), or any name in the "
        "iscsi_helper.target_helpers entry-point group; when set it is "
        "used instead of target_helper. Unset: target_helper. "
        "iscsi-helper only (Cinder's target_helper cannot name chiscsi "
        "or iet, so a cinder.conf backend names our helper here).",
    ),
    cfg.StrOpt(
        "target_prefix",
        default="iqn.2010-10.org.openstack:",
        deprecated_name="iscsi_target_prefix",
        help="Prefix for iSCSI volumes.",
    ),
    cfg.StrOpt(
        "target_ip_address",
        default="$my_ip",
        deprecated_name="iscsi_ip_address",
        help="The IP address that the iSCSI daemon is listening on.",
    ),
    cfg.ListOpt(
        "target_secondary_ip_addresses",
        default=[],
        deprecated_name="iscsi_secondary_ip_addresses",
        help="The list of secondary IP addresses of the iSCSI daemon.",
    ),
    cfg.PortOpt(
        "target_port",
        default=3260,
        deprecated_name="iscsi_port",
        help="The port that the iSCSI daemon is listening on.",
    ),
    cfg.StrOpt(
        "target_protocol",
        default="iscsi",
        choices=["iscsi", "iser"],
        deprecated_name="iscsi_protocol",
        help="Determines the target protocol for new volumes.",
    ),
    cfg.StrOpt(
        "volumes_dir", default="$state_path/volumes", help="Volume configuration file storage directory."
    ),
    cfg.StrOpt(
        "chiscsi_conf",
        default="/etc/chelsio-iscsi/chiscsi.conf",
        help="Chiscsi (CXT) global defaults configuration file.",
    ),
    cfg.FloatOpt(
        "chiscsi_lock_retry_timeout",
        default=40.0,
        min=0.0,
        help="Seconds an iscsictl call is retried while another program "
        "holds chiscsi's host lock (iscsictl exits with 'ERROR: unable "
        "to obtain exclusive lock, iscsictl already running?'); retries "
        "back off from 0.05 s to 1 s. The default outlasts chiscsi's "
        "own longest hold, the 30 s wait of 'iscsictl -s' on a busy "
        "target. iscsi-helper's own iscsictl calls never collide: they "
        "are serialised by a lock under lock_path. iscsi-helper only.",
    ),
    cfg.StrOpt("iet_conf", default="/etc/iet/ietd.conf", help="IET configuration file."),
    cfg.StrOpt(
        "iscsi_iotype",
        default="fileio",
        choices=["blockio", "fileio", "auto"],
        help="Sets the behavior of the iSCSI target to either perform "
        "blockio or fileio; auto detects block devices.",
    ),
    cfg.BoolOpt(
        "use_chap_auth",
        default=False,
        help="Use the CHAP credentials of chap_username/chap_password "
        "for new exports instead of generating them per volume.",
    ),
    cfg.StrOpt("chap_username", default="", help="CHAP user name."),
    cfg.StrOpt("chap_password", default="", secret=True, help="Password for specified CHAP account name."),
    cfg.StrOpt(
        "iscsi_write_cache",
        default="on",
        choices=["on", "off"],
        help="Sets the behavior of the iSCSI target to either perform write-back(on) or write-through(off).",
    ),
    cfg.StrOpt("iscsi_target_flags", default="", help="Sets the target-specific flags for the iSCSI target."),
    cfg.BoolOpt(
        "report_discard_supported",
        default=False,
        help="Report to clients that the backend supports discard (the 'discard' connection property).",
    ),
    cfg.BoolOpt(
        "iscsi_mutual_chap",
        default=False,
        help="Also authenticate the target to the initiator (mutual "
        "CHAP) on helpers that support it. iscsi-helper only.",
    ),
    cfg.FloatOpt(
        "target_tool_timeout",
        default=60.0,
        min=0.1,
        help="Seconds a target tool (iscsictl, ietadm, tgtadm) may "
        "run before it is killed. iscsi-helper only.",
    ),
    cfg.PortOpt(
        "tgt_control_port",
        default=None,
        help="Control port of the tgtd to manage (tgtadm -C), so several "
        "tgtd can run on one host. Unset: tgtadm's default. "
        "iscsi-helper only.",
    ),
    cfg.StrOpt(
        "iet_proc_dir",
        default="/proc/net/iet",
        help="Directory holding IET's volume and session files. iscsi-helper only.",
    ),
]

COORDINATION_OPTS: list[cfg.Opt] = [
    cfg.StrOpt(
        "coordination_url",
        default="",
        secret=True,
        help="tooz coordination backend URL (e.g. redis://host:6379) for locks "
        "shared by several hosts managing the same exports; empty uses "
        "local file locks under [oslo_concurrency] lock_path. "
        "iscsi-helper only.",
    ),
    cfg.FloatOpt(
        "lock_timeout",
        default=300.0,
        min=0.1,
        help="Seconds to wait for a lock another process holds (a volume's "
        "export, or a shared file such as ietd.conf) before giving up "
        "with an error naming the lock; nothing is changed then. It "
        "bounds how long a stuck or hostile holder can block an "
        "operation. iscsi-helper only.",
    ),
]

LOCK_OPTS: list[cfg.Opt] = [
    cfg.StrOpt(
        "lock_path",
        default="$state_path/lock",
        help="Directory for inter-process lock files (the [oslo_concurrency] lock_path of Cinder).",
    ),
]


#: Cinder's group of values shared by every backend (``SHARED_CONF_GROUP``).
SHARED_BACKEND_GROUP = "backend_defaults"
#: The group of ``lock_path``, as oslo.concurrency (and Cinder) read it.
LOCK_GROUP = "oslo_concurrency"
#: Options read per backend (its section, then ``[backend_defaults]``) when a
#: backend is selected; every other ``[DEFAULT]`` option is host-wide. The root
#: helper is per backend as the Cinder adapter reads it (cinder/config.py).
BACKEND_OPTION_NAMES: frozenset[str] = frozenset([opt.dest for opt in TARGET_OPTS] + ["root_helper"])


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every option on ``conf``; safe to call more than once."""
    conf.register_opts(HOST_OPTS)
    conf.register_opts(TARGET_OPTS)
    conf.register_opts(COORDINATION_OPTS)
    conf.register_opts(LOCK_OPTS, group=LOCK_GROUP)
    return conf


@dataclass
class LoadedConfig:
    """A configuration as read, with what the reader should be told about it."""

    conf: cfg.ConfigOpts
    #: The backend section whose target options were read; None: ``[DEFAULT]``.
    backend: str | None = None
    #: Options written only where they are not read, and similar surprises.
    warnings: list[str] = field(default_factory=list)
    #: ``target_ip_address`` is set nowhere it is read: exports would publish
    #: ``my_ip``'s guess of this host's address.
    address_guessed: bool = False


def new_config(
    config_files: Sequence[str] | None = None,
    overrides: dict[str, object] | None = None,
    *,
    backend: str | None = None,
    config_dirs: Sequence[str] | None = None,
) -> cfg.ConfigOpts:
    """A fresh, fully registered ConfigOpts, independent of oslo's global CONF.

    A library must not mutate a process-wide singleton its host (Cinder)
    also owns, so every caller gets its own object. Options are resolved as
    Cinder resolves them (see the module docstring); each warning of
    :func:`load` is logged.
    """
    loaded = load(config_files, overrides, backend=backend, config_dirs=config_dirs)
    for warning in loaded.warnings:
        LOG.warning("%s", warning)
    return loaded.conf


def load(
    config_files: Sequence[str] | None = None,
    overrides: dict[str, object] | None = None,
    *,
    backend: str | None = None,
    config_dirs: Sequence[str] | None = None,
) -> LoadedConfig:
    """Read the files (and ``*.conf`` of the directories, in order) as Cinder would.

    ``overrides`` (name, or ``group.name``) win over every file. Raises
    :class:`cfg.Error` (an unreadable file, a bad value) or ValueError
    (no such backend, or a choice of backends to make).
    """
    conf = register_opts(cfg.ConfigOpts())
    args: list[str] = []
    for path in config_files or []:
        args += ["--config-file", path]
    for directory in config_dirs or []:
        args += ["--config-dir", directory]
    conf(args=args, project="iscsi-helper", default_config_files=[], default_config_dirs=[])
    for name, value in (overrides or {}).items():
        group, _, option = name.rpartition(".")
        conf.set_override(option, value, group=group or None)
    written = _written_sections(list(config_files or []), list(config_dirs or []))
    chosen = _choose_backend(conf, written, backend)
    loaded = LoadedConfig(conf, chosen)
    if chosen is None:
        _warn_default_style(written, loaded.warnings)
    else:
        _resolve_backend(conf, chosen, {n.rpartition(".")[2] for n in overrides or {}})
        _warn_backend_style(written, chosen, loaded.warnings)
    helper_opt = conf.iscsi_helper_target
    if helper_opt and "target_helper" not in (overrides or {}):
        conf.set_override("target_helper", helper_opt)
    loaded.address_guessed = _address_guessed(conf, chosen, overrides or {})
    return loaded


# ------------------------------------------------------------ what is written where

#: section -> the option names written in it (deprecated spellings as written)
Written = dict[str, set[str]]


def _written_sections(files: list[str], dirs: list[str]) -> Written:
    """Which keys each section of the files sets, as oslo.config would read them (in order)."""
    paths = list(files)
    for directory in dirs:
        paths += sorted(glob.glob(os.path.join(directory, "*.conf")))
    written: Written = {}
    for path in paths:
        sections: dict[str, dict[str, Any]] = {}
        cfg.ConfigParser(path, sections).parse()  # oslo already read it: it parses
        for section, keys in sections.items():
            written.setdefault(section, set()).update(keys)
    return written


def _names(opt: cfg.Opt) -> set[str]:
    """The names an option can be written under in a file: its own and its deprecated ones."""
    return {opt.dest, *(d.name for d in opt.deprecated_opts if d.name)}


def _default_opts() -> list[cfg.Opt]:
    return HOST_OPTS + TARGET_OPTS + COORDINATION_OPTS


def _sections_setting(written: Written, opt: cfg.Opt, skip: Iterable[str] = ()) -> list[str]:
    names, skipped = _names(opt), set(skip)
    return sorted(s for s, keys in written.items() if s not in skipped and keys & names)


# ------------------------------------------------------------------- backends


def _choose_backend(conf: cfg.ConfigOpts, written: Written, backend: str | None) -> str | None:
    enabled = [name for name in (conf.enabled_backends or []) if name]
    listed = ", ".join(enabled)
    if backend is None:
        if len(enabled) > 1:
            raise ValueError(
                f"enabled_backends lists {len(enabled)} backends ({listed}); choose one with --backend NAME"
            )
        return enabled[0] if enabled else None
    if backend in (SHARED_BACKEND_GROUP, "DEFAULT", LOCK_GROUP):
        raise ValueError(f"--backend {backend}: [{backend}] is not a backend section")
    if backend not in enabled and backend not in written:
        raise ValueError(
            f"no backend {backend!r}: no [{backend}] section in the configuration "
            f"files and enabled_backends is {listed or 'empty'}"
        )
    return backend


def _resolve_backend(conf: cfg.ConfigOpts, backend: str, overridden: set[str]) -> None:
    """Put each backend option's value as Cinder reads it for ``backend`` where helpers read it.

    Registered in the backend's group with a None default (so "not set" is
    visible) and in ``[backend_defaults]``, as Cinder registers them; the
    value found is then set over ``[DEFAULT]``'s, whose own value a backend
    never reads. Command-line overrides (``overridden``) stay as given.
    """
    opts = [opt for opt in _default_opts() if opt.dest in BACKEND_OPTION_NAMES]
    for opt in opts:
        conf.register_opt(opt, group=backend)
        conf.register_opt(opt, group=SHARED_BACKEND_GROUP)
        conf.set_default(opt.dest, None, group=backend)
    for opt in opts:
        if opt.dest in overridden:
            continue
        value = _read(conf, backend, opt)
        if value is None:
            value = _read(conf, SHARED_BACKEND_GROUP, opt)
        conf.set_override(opt.dest, _literal(value))


def _read(conf: cfg.ConfigOpts, group: str, opt: cfg.Opt) -> Any:
    try:
        return getattr(conf[group], opt.dest)
    except cfg.ConfigFileValueError as err:
        raise ValueError(f"option [{group}] {opt.dest}: {err}") from None
    except (cfg.TemplateSubstitutionError, cfg.NoSuchOptError) as err:
        raise ValueError(
            f"option [{group}] {opt.dest}: {err} ('$' starts a reference to "
            "another option; write '$$' for a literal '$')"
        ) from None


def _literal(value: Any) -> Any:
    """``value`` as an override oslo will not substitute again (it was substituted once)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


# ------------------------------------------------------------------- warnings


def _warn_default_style(written: Written, warnings: list[str]) -> None:
    """No backend: options written in any other section are not read."""
    for opt in _default_opts():
        setting = _sections_setting(written, opt)
        if setting and "DEFAULT" not in setting:
            where = ", ".join(f"[{s}]" for s in setting)
            warnings.append(
                f"{opt.dest} is set in {where}, which is not read: with no backend selected "
                "(enabled_backends is empty) options are read from [DEFAULT]; move it there "
                "or select the section with --backend NAME"
            )
    _warn_lock_path(written, warnings)


def _warn_backend_style(written: Written, backend: str, warnings: list[str]) -> None:
    """A backend: its options only in [DEFAULT], host options only in its sections, are not read."""
    read_for_backend = [backend, SHARED_BACKEND_GROUP]
    if backend not in written:
        warnings.append(
            f"there is no [{backend}] section: every option of backend {backend} "
            f"takes its [{SHARED_BACKEND_GROUP}] value or its default"
        )
    for opt in _default_opts():
        setting = _sections_setting(written, opt)
        if opt.dest in BACKEND_OPTION_NAMES:
            if "DEFAULT" in setting and not set(setting) & set(read_for_backend):
                warnings.append(
                    f"[DEFAULT] {opt.dest} is not read for backend {backend}: Cinder reads a "
                    f"backend's options from [{backend}], then [{SHARED_BACKEND_GROUP}]; "
                    f"move it to [{backend}]"
                )
        else:
            misplaced = [s for s in setting if s in read_for_backend]
            if misplaced and "DEFAULT" not in setting:
                where = " and ".join(f"[{s}]" for s in misplaced)
                warnings.append(
                    f"{opt.dest} in {where} is not read: it is a host option, "
                    "read from [DEFAULT]; move it there"
                )
    _warn_lock_path(written, warnings)


def _warn_lock_path(written: Written, warnings: list[str]) -> None:
    lock_path = LOCK_OPTS[0]
    setting = _sections_setting(written, lock_path)
    if setting and LOCK_GROUP not in setting:
        where = ", ".join(f"[{s}]" for s in setting)
        warnings.append(f"lock_path in {where} is not read: it is read from [{LOCK_GROUP}]; move it there")


def _address_guessed(conf: cfg.ConfigOpts, backend: str | None, overrides: dict[str, object]) -> bool:
    """Whether ``target_ip_address`` comes from no setting at all: ``my_ip``'s guess."""
    if overrides.keys() & {"target_ip_address", "my_ip"}:
        return False
    groups = [backend, SHARED_BACKEND_GROUP] if backend else [None]
    if any(_is_set(conf, "target_ip_address", group) for group in groups):
        return False
    return not _is_set(conf, "my_ip", None)


def _is_set(conf: cfg.ConfigOpts, name: str, group: str | None) -> bool:
    """Set in a file, the environment or an override: anything but a default."""
    found = conf.get_location(name, group)
    return found is not None and found.location not in (cfg.Locations.opt_default, cfg.Locations.set_default)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """For oslo-config-generator: every option with its group."""
    return [("DEFAULT", _default_opts()), (LOCK_GROUP, LOCK_OPTS)]
