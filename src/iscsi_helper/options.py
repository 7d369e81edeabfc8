"""Configuration options, under the names and defaults a Cinder deployer knows.

A ``cinder.conf`` backend section can be read as it is: the options keep
Cinder's names (and its deprecated spellings), so moving a deployment to
iscsi-helper is a matter of pointing ``--config-file`` at the same file.
Options Cinder does not have are marked "iscsi-helper only" in their help.
"""

from __future__ import annotations

import socket

from oslo_config import cfg


def _guess_my_ip() -> str:
    """Cinder's ``my_ip`` default: the address of the default route's interface."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


HOST_OPTS: list[cfg.Opt] = [
    cfg.StrOpt("my_ip", default=_guess_my_ip(), sample_default="<host ipv4>",
               help="IP address of this host."),
    cfg.StrOpt("state_path", default="/var/lib/cinder",
               help="Top-level directory for maintaining state."),
    cfg.StrOpt("volume_name_template", default="volume-%s",
               help="Template string to be used to generate volume names."),
    cfg.StrOpt("root_helper", default="",
               help="Command prefix used to run target tools as root, e.g. "
                    "'sudo' or 'sudo cinder-rootwrap /etc/cinder/rootwrap.conf'. "
                    "Empty: run them directly (the process is root). "
                    "iscsi-helper only."),
]

TARGET_OPTS: list[cfg.Opt] = [
    cfg.StrOpt("target_helper", default="tgtadm",
               deprecated_name="iscsi_helper",
               help="Target helper to use: chiscsi (aliases iscsictl, cxtadm), "
                    "iet (alias ietadm), fake, or any helper registered in the "
                    "iscsi_helper.target_helpers entry-point group."),
    cfg.StrOpt("target_prefix", default="iqn.2010-10.org.openstack:",
               deprecated_name="iscsi_target_prefix",
               help="Prefix for iSCSI volumes."),
    cfg.StrOpt("target_ip_address", default="$my_ip",
               deprecated_name="iscsi_ip_address",
               help="The IP address that the iSCSI daemon is listening on."),
    cfg.ListOpt("target_secondary_ip_addresses", default=[],
                deprecated_name="iscsi_secondary_ip_addresses",
                help="The list of secondary IP addresses of the iSCSI daemon."),
    cfg.PortOpt("target_port", default=3260, deprecated_name="iscsi_port",
                help="The port that the iSCSI daemon is listening on."),
    cfg.StrOpt("target_protocol", default="iscsi", choices=["iscsi", "iser"],
               deprecated_name="iscsi_protocol",
               help="Determines the target protocol for new volumes."),
    cfg.StrOpt("volumes_dir", default="$state_path/volumes",
               help="Volume configuration file storage directory."),
    cfg.StrOpt("chiscsi_conf", default="/etc/chelsio-iscsi/chiscsi.conf",
               help="Chiscsi (CXT) global defaults configuration file."),
    cfg.FloatOpt("chiscsi_lock_retry_timeout", default=40.0, min=0.0,
                 help="Seconds an iscsictl call is retried while another program "
                      "holds chiscsi's host lock (iscsictl exits with 'ERROR: unable "
                      "to obtain exclusive lock, iscsictl already running?'); retries "
                      "back off from 0.05 s to 1 s. The default outlasts chiscsi's "
                      "own longest hold, the 30 s wait of 'iscsictl -s' on a busy "
                      "target. iscsi-helper's own iscsictl calls never collide: they "
                      "are serialised by a lock under lock_path. iscsi-helper only."),
    cfg.StrOpt("iet_conf", default="/etc/iet/ietd.conf",
               help="IET configuration file."),
    cfg.StrOpt("iscsi_iotype", default="fileio",
               choices=["blockio", "fileio", "auto"],
               help="Sets the behavior of the iSCSI target to either perform "
                    "blockio or fileio; auto detects block devices."),
    cfg.BoolOpt("use_chap_auth", default=False,
                help="Use the CHAP credentials of chap_username/chap_password "
                     "for new exports instead of generating them per volume."),
    cfg.StrOpt("chap_username", default="", help="CHAP user name."),
    cfg.StrOpt("chap_password", default="", secret=True,
               help="Password for specified CHAP account name."),
    cfg.StrOpt("iscsi_write_cache", default="on", choices=["on", "off"],
               help="Sets the behavior of the iSCSI target to either perform "
                    "write-back(on) or write-through(off)."),
    cfg.StrOpt("iscsi_target_flags", default="",
               help="Sets the target-specific flags for the iSCSI target."),
    cfg.BoolOpt("report_discard_supported", default=False,
                help="Report to clients that the backend supports discard "
                     "(the 'discard' connection property)."),
    cfg.BoolOpt("iscsi_mutual_chap", default=False,
                help="Also authenticate the target to the initiator (mutual "
                     "CHAP) on helpers that support it. iscsi-helper only."),
    cfg.FloatOpt("target_tool_timeout", default=60.0, min=0.1,
                 help="Seconds a target tool (iscsictl, ietadm, tgtadm) may "
                      "run before it is killed. iscsi-helper only."),
    cfg.PortOpt("tgt_control_port", default=None,
                help="Control port of the tgtd to manage (tgtadm -C), so several "
                     "tgtd can run on one host. Unset: tgtadm's default. "
                     "iscsi-helper only."),
    cfg.StrOpt("iet_proc_dir", default="/proc/net/iet",
               help="Directory holding IET's volume and session files. "
                    "iscsi-helper only."),
]

COORDINATION_OPTS: list[cfg.Opt] = [
    cfg.StrOpt("coordination_url", default="", secret=True,
               help="tooz coordination backend URL (e.g. redis://host:6379) for locks "
                    "shared by several hosts managing the same exports; empty uses "
                    "local file locks under [oslo_concurrency] lock_path. "
                    "iscsi-helper only."),
    cfg.FloatOpt("lock_timeout", default=300.0, min=0.1,
                 help="Seconds to wait for a lock another process holds (a volume's "
                      "export, or a shared file such as ietd.conf) before giving up "
                      "with an error naming the lock; nothing is changed then. It "
                      "bounds how long a stuck or hostile holder can block an "
                      "operation. iscsi-helper only."),
]

LOCK_OPTS: list[cfg.Opt] = [
    cfg.StrOpt("lock_path", default="$state_path/lock",
               help="Directory for inter-process lock files (the "
                    "[oslo_concurrency] lock_path of Cinder)."),
]


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every option on ``conf``; safe to call more than once."""
    conf.register_opts(HOST_OPTS)
    conf.register_opts(TARGET_OPTS)
    conf.register_opts(COORDINATION_OPTS)
    conf.register_opts(LOCK_OPTS, group="oslo_concurrency")
    return conf


def new_config(config_files: list[str] | None = None,
               overrides: dict[str, object] | None = None) -> cfg.ConfigOpts:
    """A fresh, fully registered ConfigOpts, independent of oslo's global CONF.

    A library must not mutate a process-wide singleton its host (Cinder)
    also owns, so every caller gets its own object.
    """
    conf = register_opts(cfg.ConfigOpts())
    args: list[str] = []
    for path in config_files or []:
        args += ["--config-file", path]
    conf(args=args, project="iscsi-helper", default_config_files=[])
    for name, value in (overrides or {}).items():
        group = None
        if "." in name:
            group, name = name.split(".", 1)
        conf.set_override(name, value, group=group)
    return conf


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """For oslo-config-generator: every option with its group."""
    return [("DEFAULT", HOST_OPTS + TARGET_OPTS + COORDINATION_OPTS), ("oslo_concurrency", LOCK_OPTS)]
