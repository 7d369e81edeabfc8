"""The command line, run as a user would (the installed console script), on the fake helper."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from iscsi_helper import cli as cli_module
from iscsi_helper import fileutil
from iscsi_helper.lab.rig import private_args
from tests.support.cli import Cli, console_script, one_line

INITIATOR = "iqn.1993-08.org.debian:01:a"


@pytest.fixture
def cli(tmp_path):
    return Cli(private_args(tmp_path, "fake"))


@pytest.fixture
def other_device(tmp_path):
    path = tmp_path / "disk1.img"
    with open(path, "wb") as handle:
        handle.truncate(4 << 20)
    return str(path)


def test_export_show_list_connection_info_unexport(cli, device):
    out = cli.json("export", "1", device)
    assert out["provider_location"] == "127.0.0.1:3260,1 iqn.2010-10.org.openstack:volume-1 0"
    user = out["provider_auth"].split()[1]
    assert out["provider_auth"] == f"CHAP {user} ***"
    secret = cli.json("show", "1", "--show-secrets")["provider_auth"].split()[2]
    assert len(secret) == 16 and secret not in cli.run("show", "1").stdout
    rows = cli.json("list")
    assert [(r["volume_id"], r["live"]) for r in rows] == [("1", True)]
    info = cli.json("connection-info", "1", "--initiator", INITIATOR, "--multipath")
    assert info["driver_volume_type"] == "iscsi"
    assert info["data"]["target_portals"] == ["127.0.0.1:3260"]
    assert info["data"]["auth_password"] == "***"
    shown = cli.json("connection-info", "1", "--initiator", INITIATOR, "--show-secrets")
    assert shown["data"]["auth_password"] == secret
    again = cli.json("export", "1", device, "--show-secrets")
    assert again["provider_auth"].split()[2] == secret, "re-export keeps the credentials"
    assert cli.run("unexport", "1").stdout == "volume 1: export removed\n"
    assert cli.json("list") == []


def test_unexport_of_a_volume_never_exported_says_so(cli, device):
    done = cli.run("unexport", "42")
    assert done.stdout == "volume 42: no export to remove (nothing was changed)\n"
    assert cli.json("unexport", "42") == {"volume_id": "42", "removed": False}
    cli.run("export", "42", device)
    assert cli.json("unexport", "42") == {"volume_id": "42", "removed": True}
    assert cli.json("unexport", "42") == {"volume_id": "42", "removed": False}


def test_ensure_all_and_by_id(cli, device, tmp_path):
    cli.run("export", "1", device)
    cli.run("export", "10", device)
    shutil.rmtree(tmp_path / "state" / "volumes" / "fake-live")
    assert [r["live"] for r in cli.json("list")] == [False, False]
    assert cli.json("ensure", "1")["started"] == ["1"]
    out = cli.json("ensure", "--all")
    assert out["started"] == ["10"] and out["unchanged"] == ["1"]


def test_connection_info_on_a_persisted_but_stopped_export_says_so(cli, device, tmp_path):
    cli.run("export", "1", device)
    shutil.rmtree(tmp_path / "state" / "volumes" / "fake-live")  # a reboot
    done = cli.run("connection-info", "1", "--initiator", INITIATOR, expect=1)
    line = one_line(done)
    assert "is persisted but its target is not live" in line
    assert "iscsi-helper ensure 1" in line and "No export found" not in line


def test_list_long_shows_device_and_portals(cli, device):
    cli.run("export", "7", device)
    lines = cli.run("list", "-l").stdout.splitlines()
    assert lines[0].split() == ["VOLUME", "LIVE", "TID", "IQN", "DEVICE", "PORTALS"]
    assert lines[1].split() == [
        "7",
        "yes",
        "1",
        "iqn.2010-10.org.openstack:volume-7",
        device,
        "127.0.0.1:3260",
    ]
    assert cli.run("list").stdout.splitlines()[0].split() == ["VOLUME", "LIVE", "TID", "IQN"]


def test_disconnect_revokes_what_connection_info_granted(cli, device):
    cli.run("export", "1", device)
    cli.run("connection-info", "1", "--initiator", INITIATOR)
    assert cli.json("show", "1")["initiators"] == [INITIATOR]
    assert (
        cli.run("disconnect", "1", "--initiator", INITIATOR).stdout
        == f"volume 1: access of {INITIATOR} revoked\n"
    )
    assert cli.json("show", "1")["initiators"] == []
    again = cli.json("disconnect", "1", "--initiator", INITIATOR)
    assert again == {"volume_id": "1", "initiator": INITIATOR, "revoked": False, "helper_keeps_acl": True}
    line = one_line(cli.run("disconnect", "2", "--initiator", INITIATOR, expect=3))
    assert line.endswith("No export found for volume 2.")


def test_export_refuses_to_swap_the_device_of_a_connected_export_without_force(cli, device, other_device):
    cli.run("export", "1", device)
    cli.run("export", "1", other_device)  # nobody connected: a plain change
    assert cli.json("show", "1")["device"] == other_device
    cli.run("connection-info", "1", "--initiator", INITIATOR)
    line = one_line(cli.run("export", "1", device, expect=2))
    assert "Volume 1 is connected (access granted to iqn.1993-08.org.debian:01:a)" in line
    assert f"exporting {device} instead of {other_device}" in line and "--force" in line
    assert cli.json("show", "1")["device"] == other_device, "refused: nothing changed"
    forced = cli.run("export", "1", device, "--force")
    assert "warning: Forced: Volume 1 is connected" in forced.stderr
    assert cli.json("show", "1")["device"] == device


def test_reconcile_names_volume_ids_and_fix_leaves_orphans_unless_asked(cli, device, tmp_path):
    for n in ("1", "2", "3"):
        cli.run("export", n, device)
    live_dir = tmp_path / "state" / "volumes" / "fake-live"
    records = tmp_path / "state" / "volumes" / "fake"
    (live_dir / "iqn.2010-10.org.openstack%3Avolume-1").unlink()  # lost behind our back
    (records / "volume-3").unlink()  # a live target we no longer know
    foreign = records / ".tmp-volume-2.otherhost.1.abcdefgh"  # another host's write, in flight?
    foreign.write_text("half")
    dead_writer = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    killed = records / f".tmp-volume-2.{fileutil._host()}.{dead_writer.stdout.strip()}.abcdefgh"
    killed.write_text("half")  # a write here whose process is gone

    rows = cli.json("reconcile", expect=1)
    assert {r["volume_id"]: (r["volume_name"], r["state"], r["action"]) for r in rows} == {
        "1": ("volume-1", "missing-live", None),
        "2": ("volume-2", "ok", None),
        "3": ("volume-3", "orphan-live", None),
    }
    assert cli.run("reconcile", expect=1).stdout.splitlines() == [
        "missing-live  1",
        "ok            2",
        "orphan-live   3",
    ]

    planned = cli.run("reconcile", "--fix", "--dry-run", "--stop-orphans", expect=1)
    assert planned.stdout.splitlines() == [
        "missing-live  1 (would start)",
        "ok            2",
        "orphan-live   3 (would stop)",
    ]
    assert killed.exists(), "a dry run sweeps nothing either"
    assert [(r["volume_id"], r["live"]) for r in cli.json("list")] == [("1", False), ("2", True)]

    fixed = cli.json("reconcile", "--fix", expect=1)  # the orphan is left: exit 1
    assert {r["volume_id"]: (r["action"], r["fixed"]) for r in fixed} == {
        "1": ("start", True),
        "2": (None, False),
        "3": (None, False),
    }
    assert (
        "orphan-live   3 (left running: add --stop-orphans to stop it)"
        in cli.run("reconcile", "--fix", expect=1).stdout
    )
    assert (live_dir / "iqn.2010-10.org.openstack%3Avolume-3").exists()

    stopped = cli.json("reconcile", "--fix", "--stop-orphans")
    assert [(r["volume_id"], r["action"], r["fixed"]) for r in stopped] == [
        ("1", None, False),
        ("2", None, False),
        ("3", "stop", True),
    ]
    assert not (live_dir / "iqn.2010-10.org.openstack%3Avolume-3").exists()
    assert [r["state"] for r in cli.json("reconcile")] == ["ok", "ok"]
    assert not killed.exists()
    assert foreign.exists(), "another host's fresh temp file is not ours to judge"


@pytest.mark.parametrize(
    "args,expect,message",
    [
        (("show", "7"), 3, "No export found for volume 7."),
        (("ensure", "7"), 3, "No export found for volume 7."),
        (("ensure", "7", "8"), 3, "No export found for volume 7, 8."),
        (("connection-info", "7", "--initiator", INITIATOR), 3, "No export found for volume 7."),
        (("disconnect", "7", "--initiator", INITIATOR), 3, "No export found for volume 7."),
        (("export", "1", "/nonexistent/disk"), 2, "Invalid device path '/nonexistent/disk': does not exist"),
        (("export", "Bad/Id", "/dev/null"), 2, "Invalid volume id"),
        (("ensure",), 2, "give VOLUME_ID... or --all"),
        (("frobnicate",), 2, "invalid choice"),
        (("connection-info", "1"), 2, "--initiator"),
        (("reconcile", "--dry-run"), 2, "--dry-run and --stop-orphans go with --fix"),
        (("list", "--log-file", "/nonexistent/dir/log"), 2, "--log-file /nonexistent/dir/log: cannot open"),
    ],
)
def test_failures_are_one_line_with_their_exit_code_and_a_json_object(cli, args, expect, message):
    line = one_line(cli.run(*args, expect=expect))
    assert message in line, line
    if "volume 7" in message:
        assert "volume-7" not in line, "named by its id, like every other command"
    done = cli.run(*args, "--json", expect=expect)
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == expect and message in error["message"]
    assert set(error) == {"type", "message", "exit_code", "state_left"}


def test_every_command_prints_json(cli, device):
    """--json is accepted by every command of the table, before or after it, and gives JSON."""
    cli.run("export", "1", device)
    runs = {
        "export": ["export", "2", device],
        "unexport": ["unexport", "2"],
        "ensure": ["ensure", "--all"],
        "list": ["list"],
        "show": ["show", "1"],
        "connection-info": ["connection-info", "1", "--initiator", INITIATOR],
        "disconnect": ["disconnect", "1", "--initiator", INITIATOR],
        "reconcile": ["reconcile"],
        "helpers": ["helpers"],
    }
    assert set(runs) == {c.name for c in cli_module.COMMANDS}
    for name, args in runs.items():
        after = cli.run(*args, "--json")
        before = Cli(["--json", *cli.base]).run(*args)
        assert json.loads(after.stdout) is not None and json.loads(before.stdout) is not None, name


def test_logging_options_anywhere_with_timestamps_and_without_plugin_noise(cli, device, tmp_path):
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ (DEBUG|INFO) ")
    for args in (
        ["--debug", "export", "1", device],
        ["export", "1", device, "--debug"],
        ["export", "1", device, "-vv"],
    ):
        done = cli.run(*args)
        lines = done.stderr.splitlines()
        assert any("Exported volume 1" in line for line in lines), done.stderr
        assert all(stamp.match(line) for line in lines), done.stderr
        assert not any("stevedore" in line or "Acquiring lock" in line for line in lines)
    info = cli.run("unexport", "1", "-v").stderr.splitlines()
    assert info and all(" INFO " in line for line in info), info
    log = tmp_path / "cli.log"
    cli.run("export", "1", device, "--log-file", str(log))
    cli.run("--log-file", str(log), "unexport", "1")
    logged = log.read_text().splitlines()
    assert [line.split(" INFO ", 1)[1].split(":")[0] for line in logged] == ["iscsi_helper.targets.iscsi"] * 2
    assert all(stamp.match(line) for line in logged)
    assert cli.run("list", "--log-file", str(log)).stderr == "", "the log file, not the terminal"


def test_a_reader_that_stops_early_ends_the_command_quietly(cli, device, tmp_path):
    # More than a pipe holds (64 KiB): the command is still writing when head leaves.
    from iscsi_helper import options, registry

    helper = registry.get_helper(
        options.new_config(
            overrides={
                "target_helper": "fake",
                "state_path": str(tmp_path / "state"),
                "oslo_concurrency.lock_path": str(tmp_path / "locks"),
                "target_ip_address": "127.0.0.1",
            }
        )
    )
    for n in range(1200):
        helper.export({"id": str(n), "name": f"volume-{n}"}, device)
    script = f"{' '.join(map(repr, [console_script(), *cli.base]))} list -l | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["VOLUME", "LIVE", "TID", "IQN", "DEVICE", "PORTALS"]
    assert done.stderr == "", "no BrokenPipeError traceback, no message"
    assert done.returncode == 141, "the shell's code for a writer whose reader left"


def test_unknown_helper_exit_code_and_message(tmp_path):
    done = Cli(["--target-helper", "nope", "--state-path", str(tmp_path)]).run("list", expect=2)
    assert "Unknown target_helper 'nope'; valid helpers are:" in one_line(done)


def test_help_lists_every_command_and_the_exit_codes():
    done = Cli([]).run("--help")
    for command in cli_module.COMMANDS:
        assert f"    {command.name} " in done.stdout
    assert "3 no such export" in done.stdout
    sub = Cli([]).run("list", "--help").stdout
    assert "--json" in sub and "--debug" in sub and "--log-file" in sub


@pytest.mark.parametrize(
    "line,message",
    [
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
    ],
)
def test_configuration_mistakes_are_one_line_exit_2_and_touch_nothing(tmp_path, device, line, message):
    config = tmp_path / "bad.conf"
    config.write_text(
        f"[DEFAULT]\ntarget_helper = fake\nstate_path = {tmp_path / 'state'}\n"
        f"target_ip_address = 127.0.0.1\n{line}\n"
        f"[oslo_concurrency]\nlock_path = {tmp_path / 'locks'}\n"
    )
    for argv in (["export", "1", device], ["show", "1"], ["list"]):
        done = Cli(["--config-file", str(config)]).run(*argv, expect=2)
        assert message in one_line(done), done.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "locks").exists()


def test_a_file_where_volumes_dir_should_be_is_refused(tmp_path, device):
    (tmp_path / "volumes").write_text("")
    done = Cli(
        [
            "--target-helper",
            "fake",
            "--volumes-dir",
            str(tmp_path / "volumes"),
            "--lock-path",
            str(tmp_path / "locks"),
            "--target-ip-address",
            "127.0.0.1",
        ]
    ).run("export", "1", device, expect=2)
    assert "is not a directory" in one_line(done), done.stderr
    assert not (tmp_path / "locks").exists()


def test_connection_info_with_an_initiator_the_acl_cannot_take_touches_nothing(tmp_path, device):
    """chiscsi's ACL takes iqn./eui. names: a naa. initiator is refused first, exit 2,
    before the export is even looked up (and before any lock or tool)."""
    cli = Cli(
        private_args(tmp_path, "chiscsi"),
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )  # no iscsictl at all
    done = cli.run("connection-info", "1", "--initiator", "naa.52004567BA64678D", expect=2)
    assert "ACL takes only iqn. and eui. names" in one_line(done)
    assert not (tmp_path / "state").exists() and not (tmp_path / "locks").exists()


def test_reconcile_names_the_fields_that_differ(cli, device, other_device, tmp_path):
    cli.run("export", "1", device)
    live = tmp_path / "state" / "volumes" / "fake-live" / "iqn.2010-10.org.openstack%3Avolume-1"
    shown = json.loads(live.read_text())
    shown["device_path"] = other_device  # the target now serves another disk
    live.write_text(json.dumps(shown))
    rows = cli.json("reconcile", expect=1)
    assert [(r["volume_id"], r["state"], r["fields"]) for r in rows] == [("1", "differs", ["device"])]
    assert cli.run("reconcile", expect=1).stdout == "differs       1 [device]\n"
    assert (
        cli.run("reconcile", "--fix", "--dry-run", expect=1).stdout
        == "differs       1 [device] (would reload)\n"
    )
    assert cli.run("reconcile", "--fix").stdout == "differs       1 [device] (fixed: reload)\n"
    assert cli.json("reconcile")[0]["state"] == "ok"
