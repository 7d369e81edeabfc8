"""What only the chiscsi helper does: its file, its iscsictl calls, CxtAdm compatibility.

The shared contract is tested in tests/behaviour; these tests cover the
behaviour that is chiscsi's own, against the ``iscsictl`` emulator.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import subprocess
import sys

import pytest

from iscsi_helper import options, registry
from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.chiscsi import cli as emulator_cli
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.exception import TargetCreateFailed
from iscsi_helper.executor import Executor
from iscsi_helper.formats import ChapCredentials, Portal
from iscsi_helper.model import ExportSpec
from iscsi_helper.targets.chiscsi import render_block

PREFIX = "iqn.2010-10.org.openstack:"

CXTADM_BLOCK = """
              target:
                       TargetName=iqn.2010-10.org.openstack:volume-{id}
                       TargetDevice={device}
                       PortalGroup=1@127.0.0.1:3260
                       AuthMethod=CHAP
                       Auth_CHAP_Policy=Oneway
                       Auth_CHAP_Initiator="cxtuser{id}":"cxtsecret{id}xyz"
                 """


@pytest.fixture
def env(tmp_path, monkeypatch):
    bin_dir = install_shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv(emulator.STATE_ENV, str(tmp_path / "chiscsi-state"))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
    yield tmp_path
    emulator.reset(tmp_path / "chiscsi-state")


def make_target(tmp_path, calls=None, **overrides):
    conf = options.new_config(overrides={
        "target_helper": "chiscsi", "state_path": str(tmp_path / "state"),
        "target_ip_address": "127.0.0.1", "chiscsi_conf": str(tmp_path / "chiscsi.conf"),
        "oslo_concurrency.lock_path": str(tmp_path / "locks"), **overrides})
    return registry.get_helper(conf, Executor(observers=[calls.append] if calls is not None else []))


def iscsictl(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = emulator_cli.main(list(args))
    return code, out.getvalue()


def test_the_persisted_file_is_one_target_block_and_private(env, device):
    target = make_target(env)
    result = target.create_export(None, {"id": "1", "name": "volume-1"}, device)
    path = env / "state" / "volumes" / "cxt" / "volume-1"
    user, secret = result["auth"].split()[1:]
    serial = __import__("hashlib").sha256(b"1").hexdigest()[:16]
    assert path.read_text() == (
        "# Export record written by iscsi-helper; loaded with iscsictl -S.\n"
        "# iscsi-helper volume_id=1\n"
        "target:\n"
        f"\tTargetName={PREFIX}volume-1\n"
        f"\tTargetDevice={device},FILE,SN={serial}\n"
        "\tPortalGroup=1@127.0.0.1:3260\n"
        "\tAuthMethod=CHAP\n"
        "\tAuth_CHAP_Policy=Oneway\n"
        f'\tAuth_CHAP_Initiator="{user}":"{secret}"\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [n for n in os.listdir(path.parent) if n != "volume-1"], "no temp file left"


def test_mutual_chap_and_ipv6_portals_are_written_for_the_target(env, device):
    target = make_target(env, iscsi_mutual_chap=True, target_secondary_ip_addresses=["::1"])
    target.create_export(None, {"id": "2", "name": "volume-2"}, device)
    text = (env / "state" / "volumes" / "cxt" / "volume-2").read_text()
    assert "\tPortalGroup=1@127.0.0.1:3260,[::1]:3260\n" in text
    assert "\tAuth_CHAP_Policy=Mutual\n" in text and "\tAuth_CHAP_Target=" in text
    code, listing = iscsictl("-c", f"target={PREFIX}volume-2")
    assert code == 0 and "PortalGroup=1@127.0.0.1:3260,[::1]:3260" in listing


def test_a_failed_start_leaves_no_file_and_no_target(env, device, monkeypatch):
    failing = env / "failbin"
    failing.mkdir()
    (failing / "iscsictl").write_text(
        "#!/bin/sh\ncase \"$1\" in -S) echo 'iscsictl: cannot start' >&2; exit 3;; esac\n"
        f"exec {env / 'bin' / 'iscsictl'} \"$@\"\n")
    (failing / "iscsictl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{failing}:{os.environ['PATH']}")
    target = make_target(env)
    with pytest.raises(TargetCreateFailed, match="cannot start"):
        target.create_export(None, {"id": "1", "name": "volume-1"}, device)
    assert not (env / "state" / "volumes" / "cxt" / "volume-1").exists()
    assert iscsictl("-c", f"target={PREFIX}volume-1")[0] != 0


def test_a_failed_reload_restores_the_previous_file_byte_for_byte(env, device, monkeypatch, tmp_path):
    target = make_target(env)
    target.create_export(None, {"id": "1", "name": "volume-1"}, device)
    path = env / "state" / "volumes" / "cxt" / "volume-1"
    before = path.read_bytes()
    failing = env / "failbin"
    failing.mkdir()
    (failing / "iscsictl").write_text("#!/bin/sh\necho 'iscsictl: busy' >&2; exit 3\n")
    (failing / "iscsictl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{failing}:{os.environ['PATH']}")
    other = tmp_path / "other.img"
    other.write_bytes(b"\0" * 4096)
    with pytest.raises(TargetCreateFailed):
        make_target(env).create_export(None, {"id": "1", "name": "volume-1"}, str(other))
    assert path.read_bytes() == before


@pytest.mark.parametrize("existing", [1, 500])
def test_iscsictl_calls_per_create_and_remove_do_not_grow_with_exports(env, tmp_path, existing):
    dev = tmp_path / "shared.img"
    dev.write_bytes(b"\0" * 4096)
    conf_file = str(tmp_path / "chiscsi.conf")
    records = env / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    chap = ChapCredentials("populateuser", "populate-secret-1")
    for n in range(existing):  # populated in-process: only the measured calls below spawn iscsictl
        spec = ExportSpec(str(1000 + n), f"volume-{1000 + n}", f"{PREFIX}volume-{1000 + n}", str(dev),
                          0, (Portal("127.0.0.1", 3260),), chap)
        path = records / spec.volume_name
        path.write_text(render_block(spec))
        assert iscsictl("-S", f"target={spec.iqn}", "-f", str(path), "-x", conf_file)[0] == 0
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls)
    target.create_export(None, {"id": "1", "name": "volume-1"}, str(dev))
    assert [c[1:3] for c in calls] == [("-S", f"target={PREFIX}volume-1"),
                                       ("-c", f"target={PREFIX}volume-1")]
    calls.clear()
    target.remove_export(None, {"id": "1", "name": "volume-1"})
    assert [c[1:] for c in calls] == [("-s", f"target={PREFIX}volume-1")]
    stopped = [f"volume-{1000 + n}" for n in range(min(existing, 3))]
    for name in stopped:  # a partial outage: a few targets lost, the rest live
        assert iscsictl("-s", f"target={PREFIX}{name}")[0] == 0
    calls.clear()
    report = target.restore_exports()
    assert sorted(report.started) == sorted(n.removeprefix("volume-") for n in stopped)
    assert len(report.unchanged) == existing - len(stopped)
    assert calls[0][1:] == ("-c", "target=ALL")
    assert calls[-1][1:] == ("-c", "target=ALL")
    assert len(calls) == len(stopped) + 2, ("one listing, one start per missing export, and one "
                                            "listing to confirm they are live")


def test_the_block_cinder_cxtadm_writes_is_accepted_by_the_emulator(env, device):
    block = env / "cxt-volume-7"
    block.write_text(CXTADM_BLOCK.format(id=7, device=device))
    code, _ = iscsictl("-S", f"target={PREFIX}volume-7", "-f", str(block), "-x", str(env / "c.conf"))
    assert code == 0
    code, listing = iscsictl("-c", f"target={PREFIX}volume-7")
    assert code == 0
    assert f"TARGET: {PREFIX}volume-7, id=1, login_ip=0" in listing
    assert f"TargetDevice={device}," in listing


def test_a_cxtadm_written_file_is_adopted_not_clobbered(env, device):
    records = env / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    (records / "volume-7").write_text(CXTADM_BLOCK.format(id=7, device=device))
    original = (records / "volume-7").read_bytes()
    target = make_target(env)
    status = target.get_export({"id": "7", "name": "volume-7"})
    assert status.spec.volume_id == "7" and status.spec.chap.username == "cxtuser7"
    report = target.restore_exports()
    assert report.started == ["7"]
    assert (records / "volume-7").read_bytes() == original, "a matching file is left as CxtAdm wrote it"
    again = target.create_export(None, {"id": "7", "name": "volume-7"}, device)
    assert again["auth"] == "CHAP cxtuser7 cxtsecret7xyz"


def test_no_secret_on_any_command_line_or_log_line(env, device, caplog):
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls, iscsi_mutual_chap=True)
    caplog.set_level(logging.DEBUG)
    result = target.create_export(None, {"id": "1", "name": "volume-1"}, device)
    vol = {"id": "1", "name": "volume-1", "provider_auth": result["auth"],
           "provider_location": result["location"]}
    target.ensure_export(None, vol, device)
    target.initialize_connection(vol, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.terminate_connection(vol, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.extend_target(vol)
    emulator.reset(env / "chiscsi-state")
    target.restore_exports()
    target.remove_export(None, vol)
    record = target.get_export(vol)
    assert record is None
    secret = result["auth"].split()[2]
    assert calls and not any(secret in arg for argv in calls for arg in argv)
    assert secret not in caplog.text
    assert "iscsictl" in caplog.text or calls


def test_cli_main_job_on_the_emulator(env, device):
    base = [sys.executable, "-m", "iscsi_helper", "--target-helper", "chiscsi",
            "--state-path", str(env / "state"), "--lock-path", str(env / "locks"),
            "--target-ip-address", "127.0.0.1", "--chiscsi-conf", str(env / "chiscsi.conf")]
    done = subprocess.run(base + ["export", "1", device], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:3260,1 iqn.2010-10.org.openstack:volume-1 0" in done.stdout
    done = subprocess.run(base + ["export", "10", device], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(base + ["list"], capture_output=True, text=True).stdout
    assert "volume-1\n" in listing and "volume-10\n" in listing
    subprocess.run(base + ["unexport", "1"], check=True, capture_output=True)
    listing = subprocess.run(base + ["list", "--json"], capture_output=True, text=True).stdout
    assert '"volume_id": "10"' in listing and '"volume_id": "1"' not in listing


def test_missing_iscsictl_is_one_clear_line(tmp_path, device):
    done = subprocess.run([sys.executable, "-m", "iscsi_helper", "--target-helper", "chiscsi",
                           "--state-path", str(tmp_path / "s"), "--lock-path", str(tmp_path / "l"),
                           "--target-ip-address", "127.0.0.1", "export", "1", device],
                          capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert done.stderr.strip() == ("iscsi-helper: error: iscsictl not found on PATH; install Chelsio's "
                                   "chiscsi target (or put its emulator first on PATH)")
    assert not (tmp_path / "s" / "volumes" / "cxt" / "volume-1").exists()
