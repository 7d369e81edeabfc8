"""Our connection properties, read by the real os-brick (7.1.1) iSCSI connector.

os-brick is what Nova and Cinder run on the initiator host; if it reads our
``initialize_connection`` output differently from what we meant, attaches
go to the wrong portal or LUN, or log in without CHAP. Each test builds the
properties with the chiscsi helper on its emulator and asks os-brick's own
parsing code what it will connect to: ``_get_ips_iqns_luns`` /
``_get_all_targets`` (the targets), ``_get_device_path`` (the udev paths it
waits for) and ``_connect_to_iscsi_portal`` (the iscsiadm calls that set up
and log in a node, CHAP included), with iscsiadm replaced by a recorder since
the kernel initiator cannot run here.

os-brick imports eventlet (through oslo.privsep), and eventlet warns on
every later fork of the process that imported it: each helper command run
through oslo.concurrency (which forks to reset SIGPIPE) would then warn, for
the rest of the test run. So this module runs in a process of its own
(tests/ecosystem/test_os_brick_process.py), and eventlet's two warnings are
filtered here, where eventlet comes in, and nowhere else.
"""

from __future__ import annotations

import warnings

import pytest
from oslo_config import cfg

from iscsi_helper import registry
from iscsi_helper.executor import Executor
from iscsi_helper.lab.emulators import chiscsi as emulator
from tests.support.emulators import chiscsi_config, use_chiscsi_emulator

#: eventlet's warning on fork, for each helper command these tests run (see above).
EVENTLET_FORK_WARNING = r"Using fork\(\) is a bad idea"

with warnings.catch_warnings():
    # eventlet's "Eventlet is deprecated" notice, raised as oslo.privsep imports it,
    # and its fork warning, as os-brick's import runs grep (initiator/utils.py).
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    warnings.filterwarnings("ignore", message=EVENTLET_FORK_WARNING, category=DeprecationWarning)
    from os_brick.initiator.connectors.iscsi import ISCSIConnector

pytestmark = pytest.mark.filterwarnings(f"ignore:{EVENTLET_FORK_WARNING}:DeprecationWarning")

PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1993-08.org.debian:01:compute1"


@pytest.fixture
def env(tmp_path, monkeypatch):
    state = use_chiscsi_emulator(tmp_path, monkeypatch)
    yield tmp_path
    emulator.reset(state)


def connection_info(tmp_path, device, *, multipath: bool, **overrides) -> dict:
    conf = chiscsi_config(tmp_path, **overrides)
    target = registry.get_helper(conf, Executor())
    volume = {"id": "7", "name": "volume-7"}
    model = target.create_export(None, volume, device)
    stored = {**volume, "provider_location": model["location"], "provider_auth": model["auth"]}
    return target.initialize_connection(stored, {"initiator": INITIATOR, "multipath": multipath})


class IscsiadmRecorder:
    """Stands in for ``iscsiadm``: records argv; a login creates the session os-brick then finds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.sessions: list[str] = []

    def __call__(self, *argv: str, **kwargs: object) -> tuple[str, str]:
        assert argv[0] == "iscsiadm" and kwargs.get("run_as_root") is True
        self.calls.append(argv)
        if argv[1:3] == ("-m", "session"):
            return "\n".join(self.sessions), ""
        if "--login" in argv:
            portal, iqn = argv[argv.index("-p") + 1], argv[argv.index("-T") + 1]
            self.sessions.append(f"tcp: [1] {portal},1 {iqn} (non-flash)")
        if argv[1:3] == ("-m", "node") and len(argv) == 7:  # the bare node lookup
            assert kwargs.get("check_exit_code") == (0, 21, 255)
            return "", "iscsiadm: No records found"
        return "", ""

    def updates(self) -> dict[str, str]:
        return {
            argv[argv.index("-n") + 1]: argv[argv.index("-v") + 1] for argv in self.calls if "update" in argv
        }


def test_single_path_is_one_target_portal_lun_and_device(env, device):
    info = connection_info(env, device, multipath=False)
    assert info["driver_volume_type"] == "iscsi"
    props = info["data"]
    connector = ISCSIConnector(root_helper="", execute=IscsiadmRecorder())
    iqn = f"{PREFIX}volume-7"
    assert connector._get_all_targets(props) == [("127.0.0.1:3260", iqn, 0)]
    assert connector._get_device_path(props) == [f"/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-{iqn}-lun-0"]


def test_multipath_over_ipv4_and_ipv6_portals(env, device):
    info = connection_info(env, device, multipath=True, target_secondary_ip_addresses=["::1", "127.0.0.2"])
    props = info["data"]
    connector = ISCSIConnector(root_helper="", execute=IscsiadmRecorder(), use_multipath=True)
    iqn = f"{PREFIX}volume-7"
    expected = [("127.0.0.1:3260", iqn, 0), ("[::1]:3260", iqn, 0), ("127.0.0.2:3260", iqn, 0)]
    # With target_portals and target_iqns present os-brick needs no discovery at all.
    assert connector._get_ips_iqns_luns(props, discover=False) == expected
    assert connector._get_device_path(props) == [
        f"/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-{iqn}-lun-0",
        f"/dev/disk/by-path/ip-::1:3260-iscsi-{iqn}-lun-0",
        f"/dev/disk/by-path/ip-127.0.0.2:3260-iscsi-{iqn}-lun-0",
    ]
    # Each per-path property set os-brick iterates over is a complete single path.
    paths = list(connector._iterate_all_targets(props))
    assert [(p["target_portal"], p["target_iqn"], p["target_lun"]) for p in paths] == expected
    assert all(p["auth_method"] == "CHAP" for p in paths)


def test_chap_credentials_reach_iscsiadm_before_login(env, device, tmp_path):
    info = connection_info(env, device, multipath=False)
    props = info["data"]
    iqn = f"{PREFIX}volume-7"
    recorder = IscsiadmRecorder()
    connector = ISCSIConnector(root_helper="", execute=recorder)
    cfg.CONF.set_override("lock_path", str(tmp_path / "brick-locks"), group="os_brick")
    try:
        session_id, _manual_scan = connector._connect_to_iscsi_portal(props)
    finally:
        cfg.CONF.clear_override("lock_path", group="os_brick")
    assert session_id == "1"
    assert recorder.updates() == {
        "node.session.scan": "manual",
        "node.session.auth.authmethod": "CHAP",
        "node.session.auth.username": props["auth_username"],
        "node.session.auth.password": props["auth_password"],
        "node.startup": "automatic",
    }
    user, secret = props["auth_username"], props["auth_password"]
    assert props["auth_method"] == "CHAP" and len(secret) >= 12 and user
    # Every call addressed our node: -T <our iqn> -p <our portal>.
    for argv in recorder.calls:
        if argv[1:3] == ("-m", "node"):
            assert argv[3:7] == ("-T", iqn, "-p", "127.0.0.1:3260")
    login = [i for i, argv in enumerate(recorder.calls) if "--login" in argv]
    secret_set = [i for i, argv in enumerate(recorder.calls) if "node.session.auth.password" in argv]
    assert login and secret_set and secret_set[0] < login[0]


def test_a_volume_without_chap_logs_in_without_auth_settings(env, device):
    info = connection_info(env, device, multipath=False)
    props = {k: v for k, v in info["data"].items() if not k.startswith("auth_")}
    recorder = IscsiadmRecorder()
    connector = ISCSIConnector(root_helper="", execute=recorder)
    cfg.CONF.set_override("lock_path", str(env / "brick-locks"), group="os_brick")
    try:
        connector._connect_to_iscsi_portal(props)
    finally:
        cfg.CONF.clear_override("lock_path", group="os_brick")
    assert not any(k.startswith("node.session.auth") for k in recorder.updates())
