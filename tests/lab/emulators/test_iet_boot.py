"""The emulator's ietd start-up: ietd.conf loaded as ietd loads it at boot (emulator-only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iscsi_helper.lab.emulators.iet import boot, cli
from iscsi_helper.lab.emulators.iet.state import State

IQN = "iqn.2010-10.org.openstack:volume-"


def _disk(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    with open(path, "wb") as handle:
        handle.truncate(4 * 1024 * 1024)
    return path


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ietd.conf"
    path.write_text(text)
    return path


def test_start_loads_every_block_in_file_order_with_accounts_luns_and_keys(env, tmp_path, capsys):
    a, b = _disk(tmp_path, "a.img"), _disk(tmp_path, "b.img")
    conf = _conf(
        tmp_path,
        f"""# ietd.conf of the host
IncomingUser discovery-user discoverysecret1
iSNSServer 192.0.2.1

Target {IQN}b
\tIncomingUser user-b secret-b-12345
\tOutgoingUser target-b tsecret-b-12345
\tLun 0 Path={b},Type=fileio
\tMaxRecvDataSegmentLength 65536
# a comment between blocks
target {IQN}a
    incominguser user-a secret-a-12345
    lun 0 Path={a},Type=fileio,IOMode=wb
""",
    )
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 0
    assert capsys.readouterr().out == f"ietd: 2 targets loaded from {conf}\n"
    state = State(env)
    first, second = state.load_target(1), state.load_target(2)
    assert first["name"] == f"{IQN}b" and second["name"] == f"{IQN}a", "numbered in file order"
    assert first["incoming"] == [["user-b", "secret-b-12345"]]
    assert first["outgoing"] == [["target-b", "tsecret-b-12345"]]
    assert [(u["lun"], u["path"], u["type"]) for u in first["luns"]] == [(0, str(b), "fileio")]
    assert first["params"]["MaxRecvDataSegmentLength"] == 65536
    assert second["luns"][0]["iomode"] == "wb" and second["incoming"] == [["user-a", "secret-a-12345"]]
    assert state.load_discovery()["incoming"] == [["discovery-user", "discoverysecret1"]]
    volume = (env / "proc" / "volume").read_text()
    assert f"tid:1 name:{IQN}b\n" in volume and f"tid:2 name:{IQN}a\n" in volume
    assert f"path:{a}" in volume and "secret" not in volume
    # ietd is then an ordinary running target: ietadm works on what it loaded.
    assert cli.main(["--op", "delete", "--tid=2", "--lun=0"]) == 0


def test_a_line_ietd_cannot_parse_refuses_the_file_and_loads_nothing(env, tmp_path, capsys):
    a = _disk(tmp_path, "a.img")
    conf = _conf(tmp_path, f"Target {IQN}a\n\tLun 0 Path={a},Type=fileio\n\tIncomingUser only-a-user\n")
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 1
    err = capsys.readouterr().err
    assert f"{conf}:3:" in err and "takes a user and a secret" in err
    assert State(env).tids() == []


def test_keys_outside_a_block_other_than_accounts_are_refused(env, tmp_path, capsys):
    conf = _conf(tmp_path, "Lun 0 Path=/dev/null\n")
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 1
    assert "outside a Target block" in capsys.readouterr().err


def test_a_refused_lun_is_reported_with_its_line_and_the_rest_is_loaded(env, tmp_path, capsys):
    b = _disk(tmp_path, "b.img")
    conf = _conf(
        tmp_path,
        f"Target {IQN}a\n\tLun 0 Path={tmp_path}/gone.img,Type=fileio\n"
        f"Target {IQN}b\n\tLun 0 Path={b},Type=fileio\n",
    )
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 1
    captured = capsys.readouterr()
    assert f"{conf}:2:" in captured.err and "2 targets loaded" in captured.out
    state = State(env)
    assert state.load_target(1)["luns"] == [] and state.load_target(2)["luns"][0]["path"] == str(b)


def test_a_refused_target_skips_its_block_only(env, tmp_path, capsys):
    b = _disk(tmp_path, "b.img")
    conf = _conf(
        tmp_path,
        f"Target {IQN}a\nTarget {IQN}A\n\tLun 0 Path={b},Type=fileio\n"
        f"Target {IQN}c\n\tLun 0 Path={b},Type=fileio\n",
    )
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 1
    assert f"{conf}:2: duplicated target" in capsys.readouterr().err
    state = State(env)
    assert sorted(state.tids()) == [1, 3]
    assert state.load_target(1)["luns"] == [], "the refused block's LUN went nowhere"
    assert state.load_target(3)["luns"][0]["path"] == str(b)


def test_start_is_refused_while_targets_are_live(env, tmp_path, capsys):
    assert cli.main(["--op", "new", "--tid=0", "--params", f"Name={IQN}x"]) == 0
    conf = _conf(tmp_path, f"Target {IQN}a\n")
    assert boot.main(["--start-ietd", f"--config={conf}"]) == 1
    assert "already running" in capsys.readouterr().err
    assert State(env).tids() == [1]


def test_an_absent_conf_starts_ietd_with_no_targets(env, tmp_path, capsys):
    assert boot.main(["--start-ietd", f"--config={tmp_path}/none.conf"]) == 0
    assert (env / "proc" / "volume").read_text() == ""


def test_module_entry_point(tmp_path):
    a = _disk(tmp_path, "a.img")
    conf = _conf(tmp_path, f"Target {IQN}a\n\tLun 0 Path={a},Type=fileio\n")
    environ = dict(os.environ, IET_EMULATOR_STATE=str(tmp_path / "s"))
    done = subprocess.run(
        [sys.executable, "-m", "iscsi_helper.lab.emulators.iet", "--start-ietd", f"--config={conf}"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"tid:1 name:{IQN}a" in (tmp_path / "s" / "proc" / "volume").read_text()
