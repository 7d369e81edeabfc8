"""The command line, run as a user would (a subprocess), on the fake helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from iscsi_helper import fileutil


@pytest.fixture
def cli(tmp_path):
    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "iscsi_helper", "--target-helper", "fake",
                "--state-path", str(tmp_path / "state"), "--lock-path", str(tmp_path / "locks"),
                "--target-ip-address", "127.0.0.1", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == expect, (done.stdout, done.stderr)
        return done
    return run


def test_export_show_list_connection_info_unexport(cli, device):
    out = json.loads(cli("export", "1", device, "--json").stdout)
    assert out["provider_location"] == "127.0.0.1:3260,1 iqn.2010-10.org.openstack:volume-1 0"
    user = out["provider_auth"].split()[1]
    assert out["provider_auth"] == f"CHAP {user} ***"
    secret = json.loads(cli("show", "1", "--json", "--show-secrets").stdout)["provider_auth"].split()[2]
    assert len(secret) == 16 and secret not in cli("show", "1").stdout
    rows = json.loads(cli("list", "--json").stdout)
    assert [(r["volume_id"], r["live"]) for r in rows] == [("1", True)]
    info = json.loads(cli("connection-info", "1", "--initiator", "iqn.1993-08.org.debian:01:a",
                          "--multipath", "--json").stdout)
    assert info["driver_volume_type"] == "iscsi"
    assert info["data"]["target_portals"] == ["127.0.0.1:3260"]
    assert info["data"]["auth_password"] == "***"
    shown = json.loads(cli("connection-info", "1", "--initiator", "iqn.1993-08.org.debian:01:a",
                           "--json", "--show-secrets").stdout)
    assert shown["data"]["auth_password"] == secret
    again = json.loads(cli("export", "1", device, "--json", "--show-secrets").stdout)
    assert again["provider_auth"].split()[2] == secret, "re-export keeps the credentials"
    assert "export removed" in cli("unexport", "1").stdout
    cli("unexport", "1")
    assert json.loads(cli("list", "--json").stdout) == []


def test_ensure_all_and_by_id(cli, device, tmp_path):
    cli("export", "1", device)
    cli("export", "10", device)
    import shutil
    shutil.rmtree(tmp_path / "state" / "volumes" / "fake-live")
    assert [r["live"] for r in json.loads(cli("list", "--json").stdout)] == [False, False]
    out = json.loads(cli("ensure", "1", "--json").stdout)
    assert out["started"] == ["1"]
    out = json.loads(cli("ensure", "--all", "--json").stdout)
    assert out["started"] == ["10"] and out["unchanged"] == ["1"]


def test_reconcile_reports_drift_exits_1_and_fix_repairs_it(cli, device, tmp_path):
    cli("export", "1", device)
    cli("export", "2", device)
    cli("export", "3", device)
    live_dir = tmp_path / "state" / "volumes" / "fake-live"
    records = tmp_path / "state" / "volumes" / "fake"
    (live_dir / "iqn.2010-10.org.openstack%3Avolume-1").unlink()  # lost behind our back
    (records / "volume-3").unlink()  # a live target we no longer know
    foreign = records / ".tmp-volume-2.otherhost.1.abcdefgh"  # another host's write, in flight?
    foreign.write_text("half")
    dead_writer = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                 capture_output=True, text=True, check=True)
    killed = records / f".tmp-volume-2.{fileutil._host()}.{dead_writer.stdout.strip()}.abcdefgh"
    killed.write_text("half")  # a write here whose process is gone
    report = {r["volume_name"]: r["state"]
              for r in json.loads(cli("reconcile", "--json", expect=1).stdout)}
    assert report == {"volume-1": "missing-live", "volume-2": "ok", "volume-3": "orphan-live"}
    assert "missing-live  volume-1" in cli("reconcile", expect=1).stdout
    fixed = json.loads(cli("reconcile", "--fix", "--json").stdout)
    assert all(r["fixed"] for r in fixed if r["state"] != "ok")
    assert [r["state"] for r in json.loads(cli("reconcile", "--json").stdout)] == ["ok", "ok"]
    assert [(r["volume_id"], r["live"]) for r in json.loads(cli("list", "--json").stdout)] \
        == [("1", True), ("2", True)]
    assert not killed.exists()
    assert foreign.exists(), "another host's fresh temp file is not ours to judge"


@pytest.mark.parametrize("args,expect,message", [
    (("show", "7"), 1, "No export found for volume 7"),
    (("ensure", "7"), 1, "No export found for volume volume-7"),
    (("export", "1", "/nonexistent/disk"), 2, "Invalid device path '/nonexistent/disk': does not exist"),
    (("export", "Bad/Id", "/dev/null"), 2, "Invalid volume id"),
    (("ensure",), 2, "give VOLUME_ID... or --all"),
    (("frobnicate",), 2, "invalid choice"),
    (("connection-info", "1"), 2, "--initiator"),
])
def test_failures_are_one_clear_line_with_the_right_exit_code(cli, args, expect, message):
    done = cli(*args, expect=expect)
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_helper_exit_code_and_message(tmp_path):
    done = subprocess.run([sys.executable, "-m", "iscsi_helper", "--target-helper", "nope",
                           "--state-path", str(tmp_path), "list"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Unknown target_helper 'nope'; valid helpers are:" in done.stderr


def test_help_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "iscsi_helper", "--help"], capture_output=True, text=True)
    for command in ("export", "unexport", "ensure", "list", "show", "connection-info"):
        assert command in done.stdout


@pytest.mark.parametrize("line,message", [
    ("target_port = 65536", "option target_port: '65536': Should be less than or equal to 65535"),
    ("target_port = abc", "option target_port: 'abc': not a number"),
    ("target_tool_timeout = nan", "option target_tool_timeout: nan is not a finite number"),
    ("target_tool_timeout = inf", "option target_tool_timeout: inf is not a finite number"),
    ("target_tool_timeout = 0", "option target_tool_timeout: '0': Should be greater than or equal"),
    ("iscsi_iotype = bogus", "option iscsi_iotype: 'bogus': Valid values are"),
    ("use_chap_auth = maybe", "option use_chap_auth: 'maybe': Unexpected boolean value"),
    ("volumes_dir = $HOME/volumes", "option volumes_dir: '$HOME/volumes': '$HOME' names no option"),
    ("volume_name_template = volume", "must contain '%s' exactly once"),
    ("volume_name_template = ../../../x/%s", "which are not valid volume names"),
    ("target_ip_address = 0.0.0.0", "is the unspecified address"),
])
def test_configuration_mistakes_are_one_line_exit_2_and_touch_nothing(tmp_path, device, line,
                                                                      message):
    config = tmp_path / "bad.conf"
    config.write_text(f"[DEFAULT]\ntarget_helper = fake\nstate_path = {tmp_path / 'state'}\n"
                      f"target_ip_address = 127.0.0.1\n{line}\n"
                      f"[oslo_concurrency]\nlock_path = {tmp_path / 'locks'}\n")
    for argv in (["export", "1", device], ["show", "1"], ["list"]):
        done = subprocess.run([sys.executable, "-m", "iscsi_helper", "--config-file", str(config),
                               *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert message in done.stderr, done.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "locks").exists()


def test_a_file_where_volumes_dir_should_be_is_refused(tmp_path, device):
    (tmp_path / "volumes").write_text("")
    done = subprocess.run([sys.executable, "-m", "iscsi_helper", "--target-helper", "fake",
                           "--volumes-dir", str(tmp_path / "volumes"), "--lock-path",
                           str(tmp_path / "locks"), "--target-ip-address", "127.0.0.1",
                           "export", "1", device], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a directory" in done.stderr, done.stderr
    assert not (tmp_path / "locks").exists()


def test_connection_info_with_an_initiator_the_acl_cannot_take_touches_nothing(tmp_path, device):
    """chiscsi's ACL takes iqn./eui. names: a naa. initiator is refused first, exit 2,
    before the export is even looked up (and before any lock or tool)."""
    base = [sys.executable, "-m", "iscsi_helper", "--target-helper", "chiscsi",
            "--state-path", str(tmp_path / "state"), "--lock-path", str(tmp_path / "locks"),
            "--target-ip-address", "127.0.0.1"]
    done = subprocess.run([*base, "connection-info", "1", "--initiator", "naa.52004567BA64678D"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})  # no iscsictl at all
    assert done.returncode == 2, done.stderr
    assert "ACL takes only iqn. and eui. names" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "state").exists() and not (tmp_path / "locks").exists()
