"""The Cinder adapter inside real Cinder 29.0.0: its configuration, its LVM driver, its objects.

Runs only where ``cinder`` imports (the venv of scripts/cinder-venv.sh;
tests/ecosystem/test_cinder_venv.py runs it from the main suite). The
cinder.conf is the one in docs/cinder.md, with temporary paths, loaded into
Cinder's own global CONF; volumes are Cinder's versioned objects from its
test utilities; the chiscsi helper runs on the iscsictl emulator. Only the
LVM volume group is Cinder's fake (no LVM here), so the logical volume
``/dev/<vg>/<name>`` that Cinder's driver passes is a file we create.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
from cinder import context as cinder_context
from cinder import exception as cinder_exception
from cinder.tests.unit import fake_volume
from cinder.tests.unit.brick import fake_lvm
from cinder.volume import configuration as cinder_configuration
from cinder.volume import manager as cinder_manager
from oslo_config import cfg

from iscsi_helper.cinder import driver as our_driver
from iscsi_helper.cinder.target import IscsiHelperTarget
from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.chiscsi import live as emulator_live
from iscsi_helper.targets.chiscsi import ChiscsiHelper
from tests.support.emulators import use_chiscsi_emulator

DOC = Path(__file__).resolve().parents[3] / "docs" / "cinder.md"
BACKEND = "lvm-chiscsi"
PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1993-08.org.debian:01:compute1"
CONNECTOR = {
    "initiator": INITIATOR,
    "host": "compute1",
    "ip": "192.0.2.50",
    "multipath": False,
    "platform": "x86_64",
    "os_type": "linux",
}


def test_cinder_imports_this_checkouts_iscsi_helper():
    """The venv's editable install points at one checkout: it must be the one under test."""
    import iscsi_helper

    ours = Path(__file__).resolve().parents[3] / "src" / "iscsi_helper" / "__init__.py"
    assert Path(iscsi_helper.__file__).resolve() == ours.resolve(), iscsi_helper.__file__


def documented_cinder_conf() -> str:
    """The ini block of docs/cinder.md, so the documentation is what is tested."""
    blocks = re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/cinder.md shows exactly one cinder.conf"
    return blocks[0]


@pytest.fixture
def env(tmp_path, monkeypatch):
    use_chiscsi_emulator(tmp_path, monkeypatch)
    (tmp_path / "chiscsi.conf").write_text("global:\n\tiscsi_offload_mode=AUTO\n")
    vg = f"ihtest-{uuid.uuid4().hex[:10]}"
    vg_dir = Path("/dev") / vg
    try:
        vg_dir.mkdir()
    except OSError as err:
        pytest.skip(f"cannot stand in for an LVM volume group under /dev: {err}")
    yield tmp_path, vg
    shutil.rmtree(vg_dir, ignore_errors=True)
    emulator.reset(tmp_path / "chiscsi-state")
    cfg.CONF.clear()


def load_cinder_conf(tmp_path: Path, text: str, vg: str) -> None:
    """Cinder's global CONF parses the file, as cinder-volume does at start."""
    # The documented addresses become loopback ones: chiscsi (and its emulator) starts a
    # target only on portals this host can listen on.
    text = (
        text.replace("/var/lib/cinder", str(tmp_path / "cinder"))
        .replace("192.0.2.10", "127.0.0.1")
        .replace("2001:db8::10", "::1")
        .replace("/etc/chelsio-iscsi/chiscsi.conf", str(tmp_path / "chiscsi.conf"))
        .replace("volume_group = cinder-volumes", f"volume_group = {vg}")
    )
    path = tmp_path / "cinder.conf"
    path.write_text(text)
    cfg.CONF(["--config-file", str(path)], project="cinder", default_config_files=[])


def make_driver(vg: str, backend: str = BACKEND) -> our_driver.LVMVolumeDriver:
    """What cinder-volume's manager does for the backend, minus the database."""
    configuration = cinder_configuration.Configuration(
        cinder_manager.volume_backend_opts, config_group=backend
    )
    assert configuration.volume_driver == "iscsi_helper.cinder.driver.LVMVolumeDriver"
    return our_driver.LVMVolumeDriver(
        configuration=configuration,
        host=f"node1@{backend}",
        vg_obj=fake_lvm.FakeBrickLVM(vg, False, None, "default"),
    )


def make_lv(vg: str, name: str) -> str:
    path = Path("/dev") / vg / name
    with open(path, "wb") as handle:
        handle.truncate(4 << 20)
    return str(path)


def live(tmp_path: Path, iqn: str):
    """The live target in the emulated kernel, with its devices, CHAP users and (enabled) ACL."""
    from types import SimpleNamespace

    target = emulator_live.live_target(tmp_path / "chiscsi-state", iqn)
    if target is None:
        return None
    return SimpleNamespace(
        devices=[SimpleNamespace(path=lun.path) for lun in target.luns],
        chap_initiators=[SimpleNamespace(user=u, secret=s) for u, s in target.initiator_credentials],
        acls=[SimpleNamespace(iname=name) for name in sorted(target.acl_initiators)],
    )


def test_cinder_itself_rejects_chiscsi_as_target_helper(env):
    """Why the adapter has iscsi_helper_target: Cinder validates target_helper against its list."""
    tmp_path, vg = env
    load_cinder_conf(
        tmp_path,
        documented_cinder_conf().replace("iscsi_helper_target = chiscsi", "target_helper = chiscsi"),
        vg,
    )
    with pytest.raises(cfg.ConfigFileValueError):
        make_driver(vg)


def test_export_lifecycle_through_cinders_lvm_driver(env):
    tmp_path, vg = env
    load_cinder_conf(tmp_path, documented_cinder_conf(), vg)
    driver = make_driver(vg)
    assert isinstance(driver.target_driver, IscsiHelperTarget)
    assert isinstance(driver.target_driver.helper, ChiscsiHelper)
    assert driver.protocol == "iSCSI"

    ctxt = cinder_context.get_admin_context()
    volume_id = str(uuid.uuid4())
    volume = fake_volume.fake_volume_obj(ctxt, id=volume_id, size=1)
    assert volume.name == f"volume-{volume_id}"  # Cinder's volume_name_template
    device = make_lv(vg, volume.name)
    iqn = f"{PREFIX}volume-{volume_id}"

    model_update = driver.create_export(ctxt, volume, CONNECTOR)

    assert set(model_update) == {"provider_location", "provider_auth"}
    match = re.fullmatch(r"127\.0\.0\.1:3260;\[::1\]:3260,(\d+) (\S+) 0", model_update["provider_location"])
    assert match and match[2] == iqn
    _chap, user, secret = model_update["provider_auth"].split(" ")
    assert _chap == "CHAP" and user and len(secret) >= 12
    target = live(tmp_path, iqn)
    assert target is not None and [d.path for d in target.devices] == [device]
    assert (target.chap_initiators[0].user, target.chap_initiators[0].secret) == (user, secret)
    record_file = tmp_path / "cinder" / "volumes" / "cxt" / volume.name
    assert record_file.exists(), "volumes_dir defaults to $state_path/volumes as in Cinder"

    # The volume manager applies the model update to its Volume object and saves it.
    volume.obj_reset_changes()
    volume.update(model_update)
    assert {"provider_location", "provider_auth"} <= volume.obj_what_changed()

    assert driver.validate_connector(CONNECTOR)
    info = driver.initialize_connection(volume, CONNECTOR)
    portals = ["127.0.0.1:3260", "[::1]:3260"]
    assert info == {
        "driver_volume_type": "iscsi",
        "data": {
            "target_discovered": False,
            "target_portal": portals[0],
            "target_iqn": iqn,
            "target_lun": 0,
            "target_portals": portals,
            "target_iqns": [iqn, iqn],
            "target_luns": [0, 0],
            "volume_id": volume_id,
            "auth_method": "CHAP",
            "auth_username": user,
            "auth_password": secret,
            "discard": False,
            "encrypted": False,
        },
    }
    assert {a.iname for a in live(tmp_path, iqn).acls} == {INITIATOR}

    # Host reboot, then cinder-volume starts and ensures every export.
    before = record_file.read_bytes()
    emulator.reset(tmp_path / "chiscsi-state")
    assert live(tmp_path, iqn) is None
    assert driver.ensure_export(ctxt, volume) is None
    restored = live(tmp_path, iqn)
    assert restored is not None
    assert (restored.chap_initiators[0].user, restored.chap_initiators[0].secret) == (user, secret)
    assert record_file.read_bytes() == before

    assert driver.terminate_connection(volume, CONNECTOR) is False  # no other attachment
    assert {a.iname for a in live(tmp_path, iqn).acls} == set()

    driver.remove_export(ctxt, volume)
    assert live(tmp_path, iqn) is None and not record_file.exists()
    driver.remove_export(ctxt, volume)  # already gone: quiet


def test_failures_surface_as_cinders_exceptions(env):
    tmp_path, vg = env
    load_cinder_conf(tmp_path, documented_cinder_conf(), vg)
    driver = make_driver(vg)
    ctxt = cinder_context.get_admin_context()
    with pytest.raises(cinder_exception.InvalidConnectorException, match="initiator"):
        driver.validate_connector({"host": "compute1"})
    volume = fake_volume.fake_volume_obj(ctxt, id=str(uuid.uuid4()))
    with pytest.raises(cinder_exception.InvalidInput, match="does not exist"):
        driver.create_export(ctxt, volume, CONNECTOR)  # its logical volume is missing
    assert live(tmp_path, f"{PREFIX}{volume.name}") is None


def test_unknown_helper_stops_the_backend_with_the_valid_names(env):
    tmp_path, vg = env
    load_cinder_conf(
        tmp_path,
        documented_cinder_conf().replace("iscsi_helper_target = chiscsi", "iscsi_helper_target = nope"),
        vg,
    )
    with pytest.raises(cinder_exception.InvalidConfigurationValue, match="chiscsi"):
        make_driver(vg)


CXTADM_FILE = """
              target:
                       TargetName={iqn}
                       TargetDevice={device}
                       PortalGroup=1@127.0.0.1:3260
                       AuthMethod=CHAP
                       Auth_CHAP_Policy=Oneway
                       Auth_CHAP_Initiator="cxtuser":"cxtsecret0123456"
                 """


def test_cinders_own_iscsictl_name_adopts_a_cxtadm_backend_as_it_is(env):
    """A CxtAdm backend moves by changing volume_driver only: its files are taken over."""
    tmp_path, vg = env
    conf = (
        documented_cinder_conf()
        .replace("iscsi_helper_target = chiscsi\n", "target_helper = iscsictl\n")
        .replace("target_secondary_ip_addresses = 2001:db8::10\n", "")
    )
    load_cinder_conf(tmp_path, conf, vg)
    ctxt = cinder_context.get_admin_context()
    volume_id = str(uuid.uuid4())
    volume = fake_volume.fake_volume_obj(
        ctxt,
        id=volume_id,
        provider_location=f"127.0.0.1:3260,1 {PREFIX}volume-{volume_id} 0",
        provider_auth="CHAP cxtuser cxtsecret0123456",
    )
    device = make_lv(vg, volume.name)
    record_file = tmp_path / "cinder" / "volumes" / "cxt" / volume.name
    record_file.parent.mkdir(parents=True)
    record_file.write_text(CXTADM_FILE.format(iqn=f"{PREFIX}{volume.name}", device=device))
    before = record_file.read_bytes()

    driver = make_driver(vg)
    assert isinstance(driver.target_driver.helper, ChiscsiHelper)
    driver.ensure_export(ctxt, volume)

    target = live(tmp_path, f"{PREFIX}{volume.name}")
    assert target is not None and [d.path for d in target.devices] == [device]
    assert (target.chap_initiators[0].user, target.chap_initiators[0].secret) == (
        "cxtuser",
        "cxtsecret0123456",
    )
    # The stand-in LV is a regular file, which chiscsi's default class (BLK, all CxtAdm wrote)
    # refuses: the block is rewritten with FILE, its credentials kept. A block on a real LV is
    # adopted untouched (tests/unit/targets/test_chiscsi_convergence.py).
    after = record_file.read_text()
    assert before != after.encode() and f"\tTargetDevice={device},FILE," in after
    assert '"cxtuser":"cxtsecret0123456"' in after
