"""Behaviour of the IET (ietadm) emulator: syntax, exit codes, proc layout, concurrency."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.iet import cli, proc, serving
from iscsi_helper.lab.emulators.iet.inject import inject_session
from iscsi_helper.lab.emulators.iet.state import State
from iscsi_helper.lab.emulators.shims import install_shims

IQN = "iqn.2010-10.org.openstack:volume-"
INITIATOR = "iqn.1994-05.com.redhat:5a6894679665"


@pytest.fixture()
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "disk0.img"
    with open(path, "wb") as handle:
        handle.truncate(8 * 1024 * 1024)
    return path


def run(*args: str) -> int:
    return cli.main(list(args))


def volume(state: Path) -> str:
    return (state / "proc" / "volume").read_text()


def session(state: Path) -> str:
    return (state / "proc" / "session").read_text()


def new_target(tid: int, name: str) -> int:
    return run("--op", "new", f"--tid={tid}", "--params", f"Name={IQN}{name}")


# -- targets ---------------------------------------------------------------


def test_new_target_with_tid_zero_takes_lowest_free_tid(env: Path) -> None:
    assert new_target(0, "a") == 0
    assert new_target(0, "b") == 0
    assert new_target(5, "c") == 0
    assert run("--op", "delete", "--tid=1") == 0
    assert new_target(0, "d") == 0  # reuses 1, the lowest free
    assert new_target(0, "e") == 0  # then 3
    text = volume(env)
    assert f"tid:1 name:{IQN}d\n" in text
    assert f"tid:3 name:{IQN}e\n" in text
    assert f"tid:1 name:{IQN}a" not in text


def test_duplicate_name_is_einval_234_even_case_blind(env: Path) -> None:
    assert new_target(0, "a") == 0
    assert new_target(0, "a") == 234
    assert run("--op", "new", "--tid=0", "--params", f"Name={IQN.upper()}A") == 234
    assert volume(env).count("tid:") == 1


def test_existing_tid_with_other_name_is_eexist_239(env: Path) -> None:
    assert new_target(7, "a") == 0
    assert new_target(7, "b") == 239


def test_new_target_needs_name_param(env: Path) -> None:
    assert run("--op", "new", "--tid=1") == 234
    assert run("--op", "new", "--tid=1", "--params", "Alias=x") == 234
    assert run("--op", "new", "--tid=1", "--params", f"Name={IQN}a,Foo=1") == 234


def test_delete_missing_target_is_enoent_254(env: Path) -> None:
    assert run("--op", "delete", "--tid=9") == 254
    assert run("--op", "show", "--tid=9") == 254


def test_delete_target_refused_while_sessions_exist(env: Path) -> None:
    assert new_target(0, "a") == 0
    sid = inject_session(State.from_env(), 1, INITIATOR, "192.0.2.7")
    assert run("--op", "delete", "--tid=1") == 240  # EBUSY
    assert run("--op", "delete", "--tid=1", f"--sid={sid}", "--cid=0") == 0
    assert run("--op", "delete", "--tid=1") == 0
    assert volume(env) == "" and session(env) == ""


def test_update_and_show_target_params(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_target(0, "a") == 0
    capsys.readouterr()
    assert (
        run(
            "--op",
            "update",
            "--tid=1",
            "--params=MaxRecvDataSegmentLength=65536,ImmediateData=No,HeaderDigest=CRC32C|None,Wthreads=4",
        )
        == 0
    )
    assert run("--op", "show", "--tid=1") == 0
    out = capsys.readouterr().out
    assert "MaxRecvDataSegmentLength=65536\n" in out
    assert "ImmediateData=No\n" in out
    assert "HeaderDigest=CRC32C,None\n" in out
    assert out.startswith("Wthreads=4\nType=0\nQueuedCommands=32\n")
    assert run("--op", "update", "--tid=1", "--params=NoSuchKey=1") == 234
    assert run("--op", "update", "--tid=1", "--params=MaxConnections=0") == 234
    assert run("--op", "update", "--tid=2", "--params=Wthreads=2") == 254


# -- logical units ---------------------------------------------------------


def test_new_lun_layout_and_239_when_it_exists(env: Path, disk: Path) -> None:
    assert new_target(0, "a") == 0
    assert (
        run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk},Type=fileio,ScsiId=abc,ScsiSN=sn1")
        == 0
    )
    assert run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk},Type=fileio") == 239
    assert (
        run(
            "--op",
            "new",
            "--tid=1",
            "--lun=1",
            "--params",
            f"Path={disk},Type=fileio,IOMode=ro,BlockSize=4096",
        )
        == 0
    )
    assert volume(env) == (
        f"tid:1 name:{IQN}a\n"
        f"\tlun:0 state:0 iotype:fileio iomode:wt blocks:16384 blocksize:512 path:{disk}\n"
        f"\tlun:1 state:0 iotype:fileio iomode:ro blocks:2048 blocksize:4096 path:{disk}\n"
    )


def test_new_lun_errors(env: Path, disk: Path, tmp_path: Path) -> None:
    assert new_target(0, "a") == 0
    lun = ("--op", "new", "--tid=1", "--lun=0", "--params")
    assert run(*lun, f"Path={tmp_path}/missing,Type=fileio") == 254  # ENOENT
    assert run(*lun, f"Path={disk},Type=blockio") == 241  # ENOTBLK: regular file
    assert run(*lun, f"Path={disk},Type=nullish") == 254  # no such iotype
    assert run(*lun, f"Path={disk},Colour=blue") == 234  # unknown parameter
    assert run(*lun, "Type=fileio") == 234  # no Path
    assert run(*lun, f"Path={disk},Path={disk}") == 234
    assert run(*lun, f"Path={disk},IOMode=xx") == 234
    assert run(*lun, f"Path={disk},ScsiSN=" + "x" * 17) == 234
    assert run("--op", "new", "--tid=1", "--lun=16384", "--params", f"Path={disk}") == 234
    assert run("--op", "new", "--tid=2", "--lun=0", "--params", f"Path={disk}") == 254
    assert "lun:" not in volume(env)


def test_delete_lun(env: Path, disk: Path) -> None:
    assert new_target(0, "a") == 0
    assert run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk}") == 0
    assert run("--op", "delete", "--tid=1", "--lun=0") == 0
    assert run("--op", "delete", "--tid=1", "--lun=0") == 254
    assert volume(env) == f"tid:1 name:{IQN}a\n"
    assert run("--op", "update", "--tid=1", "--lun=0", "--params", "x=y") == 234


# -- CHAP accounts ---------------------------------------------------------


def test_accounts_new_show_delete(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_target(0, "a") == 0
    assert run("--op", "new", "--tid=1", "--user", "--params=IncomingUser=alice,Password=secretAAAA1234") == 0
    assert run("--op", "new", "--tid=1", "--user", "--params=OutgoingUser=tgt,Password=secretBBBB1234") == 0
    assert (
        run("--op", "new", "--tid=1", "--user", "--params=OutgoingUser=tgt2,Password=secretCCCC1234") == 0
    )  # replaces
    capsys.readouterr()
    assert run("--op", "show", "--tid=1", "--user") == 0
    listing = capsys.readouterr().out
    assert listing == "IncomingUser alice\nOutgoingUser tgt2\n"
    assert "secret" not in listing
    assert run("--op", "show", "--tid=1", "--user", "--params=IncomingUser=alice") == 0
    assert capsys.readouterr().out == "IncomingUser alice secretAAAA1234\n"
    assert run("--op", "delete", "--tid=1", "--user", "--params=IncomingUser=alice") == 0
    assert run("--op", "delete", "--tid=1", "--user", "--params=IncomingUser=alice") == 254
    assert run("--op", "new", "--tid=1", "--user", "--params=IncomingUser=bob") == 234
    assert run("--op", "new", "--tid=1", "--user", "--params=IncomingUser=bob,Password=x,Realm=y") == 234
    assert run("--op", "new", "--tid=4", "--user", "--params=IncomingUser=bob,Password=secretDDDD1234") == 254


def test_discovery_accounts_without_tid(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--op", "new", "--user", "--params=IncomingUser=disc,Password=discsecret99") == 0
    capsys.readouterr()
    assert run("--op", "show", "--user") == 0
    assert capsys.readouterr().out == "IncomingUser disc\n"
    assert stat.S_IMODE(os.stat(env / "discovery.json").st_mode) == 0o600


def test_state_files_are_private_and_proc_has_no_secrets(env: Path, disk: Path) -> None:
    assert new_target(0, "a") == 0
    assert run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk}") == 0
    assert run("--op", "new", "--tid=1", "--user", "--params=IncomingUser=alice,Password=verysecret123") == 0
    for path in env.rglob("*"):
        if path.parent.name == "proc" or path.name == "proc":
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert "verysecret123" in (env / "targets" / "1.json").read_text()
    assert "verysecret123" not in volume(env) + session(env)


# -- sessions --------------------------------------------------------------


def test_session_layout_and_force_close(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_target(0, "a") == 0
    assert new_target(0, "b") == 0
    state = State.from_env()
    sid1 = inject_session(state, 2, INITIATOR, "192.168.122.1")
    sid2 = inject_session(state, 2, INITIATOR + "x", "2001:db8::5", cid=1)
    assert session(env) == (
        f"tid:2 name:{IQN}b\n"
        f"\tsid:{sid2} initiator:{INITIATOR}x\n"
        "\t\tcid:1 ip:[2001:0db8:0000:0000:0000:0000:0000:0005] state:active hd:none dd:none\n"
        f"\tsid:{sid1} initiator:{INITIATOR}\n"
        "\t\tcid:0 ip:192.168.122.1 state:active hd:none dd:none\n"
        f"tid:1 name:{IQN}a\n"
    )
    capsys.readouterr()
    assert run("--op", "show", "--tid=2", f"--sid={sid1}") == 0
    assert "MaxConnections=1\n" in capsys.readouterr().out
    assert run("--op", "show", "--tid=2", "--sid=12345") == 254
    assert run("--op", "delete", "--tid=2", f"--sid={sid1}") == 234  # needs --cid
    assert run("--op", "delete", "--tid=2", f"--sid={sid1}", "--cid=9") == 254
    assert run("--op", "delete", "--tid=2", f"--sid={sid1}", "--cid=0") == 0
    assert f"sid:{sid1}" not in session(env)
    assert f"sid:{sid2}" in session(env)


def test_cinder_style_regex_finds_tid_sid_cid(env: Path) -> None:
    """The session file must parse the way Cinder's IET helper parses it."""
    import re

    assert new_target(0, "a") == 0
    sid = inject_session(State.from_env(), 1, INITIATOR, "10.0.0.2")
    text = session(env)
    blocks = re.split(r"(?m)^tid:", text)[1:]
    m = re.match(r"(\d+) name:(\S+)\s+sid:(\d+).+\s+cid:(\d+)", blocks[0])
    assert m is not None
    assert (m.group(1), m.group(2), m.group(3), m.group(4)) == ("1", f"{IQN}a", str(sid), "0")


def test_stop_all_activity(env: Path) -> None:
    for name in "abc":
        assert new_target(0, name) == 0
    inject_session(State.from_env(), 2, INITIATOR, "10.0.0.2")
    assert run("--op", "delete") == 0
    assert volume(env) == "" and session(env) == ""
    assert new_target(0, "z") == 0 and volume(env) == f"tid:1 name:{IQN}z\n"


# -- syntax ----------------------------------------------------------------


def test_strict_syntax(env: Path) -> None:
    assert run("--op", "frobnicate", "--tid=1") == 234  # unknown op: EINVAL as in ietadm
    assert run("--tid=1") == 234  # no op
    assert run("--op", "show", "--tid=1", "--colour=red") == 255  # unknown option: usage
    assert run("--op", "show", "--tid=1", "stray") == 255
    assert run("--op", "show", "--tid=x1") == 234
    assert run("--op", "show", "--user=1") == 255
    assert run("--op", "new", "--tid=1", "--user", "--lun=0", "--params=IncomingUser=a,Password=b") == 234


def test_getopt_forms_short_prefix_and_separate(env: Path) -> None:
    assert run("-o", "new", "-t", "0", "-p", f"Name={IQN}a") == 0
    assert run("--op=new", "--ti=0", "--par", f"Name={IQN}b") == 0
    assert run("-onew", "-t0", f"-pName={IQN}c") == 0
    assert volume(env).count("tid:") == 3


def test_missing_state_env_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IET_EMULATOR_STATE", raising=False)
    assert run("--op", "show", "--tid=1") == 255
    assert "IET_EMULATOR_STATE" in capsys.readouterr().err


def test_proc_dir_override(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "procnet"
    monkeypatch.setenv("IET_EMULATOR_PROC", str(other))
    assert new_target(0, "a") == 0
    assert (other / "volume").read_text() == f"tid:1 name:{IQN}a\n"
    assert not (env / "proc" / "volume").exists()


def test_proc_files_heal_after_interrupted_change(env: Path) -> None:
    assert new_target(0, "a") == 0
    assert new_target(0, "b") == 0
    (env / "proc" / "volume").write_text("garbage\n")
    (env / "proc-dirty").touch()  # as if a process died between state and proc writes
    assert new_target(0, "c") == 0
    assert volume(env) == f"tid:3 name:{IQN}c\ntid:2 name:{IQN}b\ntid:1 name:{IQN}a\n"
    assert not (env / "proc-dirty").exists()


def test_splice_detects_drift() -> None:
    text = "tid:2 name:b\n\tlun:0 x\ntid:1 name:a\n"
    assert proc.splice(text, 1, None, new=False) == "tid:2 name:b\n\tlun:0 x\n"
    assert proc.splice(text, 2, "tid:2 name:b\n", new=False) == "tid:2 name:b\ntid:1 name:a\n"
    assert proc.splice(text, 3, None, new=False) is None
    assert proc.splice(text, 1, "tid:1 name:a\n", new=True) is None
    assert proc.find_block("tid:12 name:x\n", 1) is None


# -- through a real process ------------------------------------------------


def _ietadm(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, IET_EMULATOR_STATE=str(state))
    bin_dir = install_shims(state.parent / "bin")
    environ["PATH"] = f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run(["ietadm", *args], env=environ, capture_output=True, text=True, check=False)


def test_executable_named_ietadm_on_path(tmp_path: Path, disk: Path) -> None:
    state = tmp_path / "s"
    assert _ietadm(state, "--op", "new", "--tid=0", "--params", f"Name={IQN}a").returncode == 0
    dup = _ietadm(state, "--op", "new", "--tid=0", "--params", f"Name={IQN}a")
    assert dup.returncode == 234 and "duplicated target" in dup.stderr
    lun = ("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk},Type=fileio")
    assert _ietadm(state, *lun).returncode == 0
    assert _ietadm(state, *lun).returncode == 239
    assert _ietadm(state, "--version").stdout.startswith("ietadm version")


def test_module_entry_and_inject_session(tmp_path: Path) -> None:
    state = tmp_path / "s"
    environ = dict(os.environ, IET_EMULATOR_STATE=str(state))
    module = [sys.executable, "-m", "iscsi_helper.lab.emulators.iet"]
    done = subprocess.run(
        [*module, "--op", "new", "--tid=0", "--params", f"Name={IQN}a"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    injected = subprocess.run(
        [*module, "--inject-session", "--tid=1", f"--initiator={INITIATOR}", "--ip=127.0.0.1"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert injected.returncode == 0, injected.stderr
    sid = int(injected.stdout)
    assert f"\tsid:{sid} initiator:{INITIATOR}\n" in (state / "proc" / "session").read_text()
    missing = subprocess.run(
        [*module, "--inject-session", "--tid=9", f"--initiator={INITIATOR}", "--ip=127.0.0.1"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 254


def _make_targets(args: tuple[str, int, int]) -> list[int]:
    state, worker, count = args
    codes = []
    for i in range(count):
        done = _ietadm(Path(state), "--op", "new", "--tid=0", "--params", f"Name={IQN}w{worker}-{i}")
        codes.append(done.returncode)
    return codes


def test_concurrent_processes_get_distinct_tids(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with ProcessPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_make_targets, [(str(state), w, 20) for w in range(4)]))
    assert all(code == 0 for codes in results for code in codes)
    text = (state / "proc" / "volume").read_text()
    tids = [int(line.split()[0][4:]) for line in text.splitlines() if line.startswith("tid:")]
    assert sorted(tids) == list(range(1, 81))
    assert len(set(text.splitlines())) == 80
    assert sorted(p.name for p in (state / "targets").iterdir()) == sorted(f"{t}.json" for t in range(1, 81))


# -- data path hook (no wire daemon needed) --------------------------------


def test_serving_maps_target_to_wire_arguments() -> None:
    record = {
        "tid": 1,
        "name": f"{IQN}a",
        "seq": 1,
        "params": {},
        "sessions": [],
        "luns": [
            {
                "lun": 0,
                "path": "/d0",
                "type": "fileio",
                "iomode": "ro",
                "blocks": 1,
                "blocksize": 4096,
                "scsi_id": "id0",
                "scsi_sn": "sn0",
            },
            {
                "lun": 2,
                "path": "/d2",
                "type": "fileio",
                "iomode": "wt",
                "blocks": 1,
                "blocksize": 512,
                "scsi_id": None,
                "scsi_sn": None,
            },
        ],
        "incoming": [["alice", "secretA"]],
        "outgoing": [["tgt", "secretT"]],
    }
    luns = serving.served_luns(record)  # type: ignore[arg-type]
    assert luns == [
        {
            "path": "/d0",
            "read_only": True,
            "serial": "sn0",
            "device_id": "id0",
            "wwn": None,
            "block_size": 4096,
        }
    ]
    portals = serving.parse_portals("127.0.0.1:3260,[::1]:3261")
    assert portals == [("127.0.0.1", 3260), ("::1", 3261)]
    kwargs = serving.wire_target_args(record, portals)  # type: ignore[arg-type]
    assert kwargs["auth_method"] == "CHAP" and kwargs["chap_policy"] == "Mutual"
    assert kwargs["initiator_credentials"] == [("alice", "secretA")]
    assert kwargs["target_credential"] == ("tgt", "secretT")
    with pytest.raises(ValueError):
        serving.parse_portals("::1:3260")


def test_wire_disabled_means_no_import(env: Path, disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "iscsi_helper.lab.wire.control", None)  # import would fail
    assert new_target(0, "a") == 0
    assert run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk}") == 0


def test_wire_enabled_without_wire_module_fails_loudly(
    env: Path, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "iscsi_helper.lab.wire.control", None)
    monkeypatch.setenv("IET_EMULATOR_WIRE", "1")
    assert new_target(0, "a") == 0  # no LUN: nothing to serve, nothing imported
    assert run("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={disk}") == 251  # EIO
