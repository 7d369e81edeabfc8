"""The emulated ``iscsictl``: command line, output layout, state, tids, concurrency.

Run in-process through ``main()`` for speed and through the installed shim
executable for the path a helper really takes (a subprocess found on PATH).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi import reset, serving
from iscsi_helper.lab.emulators.chiscsi.cli import main
from iscsi_helper.lab.emulators.chiscsi.confparse import parse_text
from iscsi_helper.lab.emulators.shims import install_shims

PREFIX = "iqn.2010-10.org.openstack:"


def iqn(n: int | str) -> str:
    return f"{PREFIX}volume-{n}"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("CHISCSI_EMULATOR_STATE", str(path))
    monkeypatch.delenv("CHISCSI_EMULATOR_WIRE", raising=False)
    return path


@pytest.fixture
def cxt(tmp_path: Path) -> CxtFiles:
    return CxtFiles(tmp_path)


class CxtFiles:
    """Writes per-volume files the way Cinder's CxtAdm does (indented, blank lines)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "volumes" / "cxt"
        self.dir.mkdir(parents=True)
        self.dev_dir = root / "dev"
        self.dev_dir.mkdir()
        self.main_conf = root / "chiscsi.conf"  # deliberately absent unless a test writes it

    def device(self, n: int | str) -> Path:
        path = self.dev_dir / f"volume-{n}"
        if not path.exists():
            path.write_bytes(b"")
            os.truncate(path, 1 << 20)
        return path

    def write(self, n: int | str, chap: tuple[str, str] | None = None, extra: str = "",
              portal: str = "10.9.8.7:3260", device: Path | None = None) -> Path:
        dev = device if device is not None else self.device(n)
        block = (f"\n              target:\n"
                 f"                       TargetName={iqn(n)}\n"
                 f"                       TargetDevice={dev}{extra}\n"
                 f"                       PortalGroup=1@{portal}\n")
        if chap:
            block += ("                       AuthMethod=CHAP\n"
                      "                       Auth_CHAP_Policy=Oneway\n"
                      f'                       Auth_CHAP_Initiator="{chap[0]}":"{chap[1]}"\n')
        block += "                 \n"
        path = self.dir / f"volume-{n}"
        path.write_text(block)
        return path

    def start_args(self, n: int | str) -> list[str]:
        return ["-S", f"target={iqn(n)}", "-f", str(self.dir / f"volume-{n}"), "-x", str(self.main_conf)]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tid_of(capsys: pytest.CaptureFixture[str], name: str) -> int:
    code, out, _ = run(capsys, "-c", f"target={name}")
    assert code == 0, out
    m = re.search(rf"^TARGET: {re.escape(name)}, id=(\d+), login_ip=0$", out, re.M)
    assert m, out
    return int(m.group(1))


# --------------------------------------------------------------------------
# -c layout
# --------------------------------------------------------------------------


def test_show_layout_is_exact(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    dev = cxt.device(1)
    cxt.write(1, extra=",BLK,SN=0N0743000000000,ID=0D074300000000000000000,WWN=:W00743000000000")
    assert run(capsys, *cxt.start_args(1)) == (0, "", "")
    code, out, err = run(capsys, "-c", f"target={iqn(1)}")
    assert (code, err) == (0, "")
    assert out == (
        "\n"
        f"TARGET: {iqn(1)}, id=1, login_ip=0\n"
        "        PortalGroup=1@10.9.8.7:3260,timeout=0\n"
        f"        TargetDevice={dev},BLK,PROD=CHISCSI Target,SN=0N0743000000000,"
        "ID=0D074300000000000000000,WWN=:W00743000000000\n")


def test_show_generates_stable_identifiers_and_lists_all(state_dir: Path, cxt: CxtFiles,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1, chap=("user1", "secret1"))
    cxt.write(2, portal="[fd00::1]:3260")
    run(capsys, *cxt.start_args(1))
    run(capsys, *cxt.start_args(2))
    code, out, _ = run(capsys, "-c", "target=ALL")
    assert code == 0
    lines = out.split("\n")
    assert lines[0] == "" and lines[1] == f"TARGET: {iqn(1)}, id=1, login_ip=0"
    assert f"TARGET: {iqn(2)}, id=2, login_ip=0" in lines
    assert "        PortalGroup=1@[fd00::1]:3260,timeout=0" in lines
    devices = [line for line in lines if line.startswith("        TargetDevice=")]
    assert len(devices) == 2
    for line in devices:
        assert re.fullmatch(r" {8}TargetDevice=\S+,FILE,PROD=CHISCSI Target,SN=0N[0-9A-F]{13},"
                            r"ID=0D[0-9A-F]{21},WWN=:W0[0-9A-F]{13}", line), line
    assert devices[0] != devices[1].replace("volume-2", "volume-1")
    assert "secret1" not in out and "user1" not in out
    # identifiers survive a reboot: multipath relies on them
    reset(state_dir)
    run(capsys, *cxt.start_args(1))
    run(capsys, *cxt.start_args(2))
    assert run(capsys, "-c", "target=ALL")[1] == out


def test_show_all_with_no_targets_prints_nothing(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-c", "target=ALL") == (0, "", "")


# --------------------------------------------------------------------------
# exact names, not-found messages
# --------------------------------------------------------------------------


def test_volume_1_never_matches_volume_10(state_dir: Path, cxt: CxtFiles,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(10)
    assert run(capsys, *cxt.start_args(10))[0] == 0
    assert run(capsys, "-c", f"target={iqn(1)}") == (1, f"target {iqn(1)} NOT found.\n", "")
    code, out, err = run(capsys, "-s", f"target={iqn(1)}")
    assert (code, out) == (1, "")
    assert err == f"iscsictl: target {iqn(1)} is not found.\n"
    # -S must not take volume-10's block for volume-1 either
    both = cxt.dir / "both"
    both.write_text((cxt.dir / "volume-10").read_text())
    code, _, err = run(capsys, "-S", f"target={iqn(1)}", "-f", str(both))
    assert code == 1 and f"target {iqn(1)} is not found in {both}." in err
    cxt.write(1)
    run(capsys, *cxt.start_args(1))
    _, out, _ = run(capsys, "-c", f"target={iqn(1)}")
    assert out.count("TARGET:") == 1 and f"TARGET: {iqn(1)}, id=2," in out
    assert run(capsys, "-s", f"target={iqn(1)}")[0] == 0
    assert tid_of(capsys, iqn(10)) == 1  # untouched


def test_stop_removes_target(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1)
    run(capsys, *cxt.start_args(1))
    assert run(capsys, "-s", f"target={iqn(1)}") == (0, "", "")
    assert run(capsys, "-c", f"target={iqn(1)}")[0] == 1
    assert run(capsys, "-s", f"target={iqn(1)}")[0] == 1


# --------------------------------------------------------------------------
# tids
# --------------------------------------------------------------------------


def test_tids_are_stable_fresh_and_kept_on_reload(state_dir: Path, cxt: CxtFiles,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for n in (1, 2, 3):
        cxt.write(n)
        run(capsys, *cxt.start_args(n))
    assert [tid_of(capsys, iqn(n)) for n in (1, 2, 3)] == [1, 2, 3]
    run(capsys, "-s", f"target={iqn(2)}")
    cxt.write(4)
    run(capsys, *cxt.start_args(4))
    assert tid_of(capsys, iqn(4)) == 4  # never reuses 2
    # reload with a changed block: same tid, new configuration live
    cxt.write(1, chap=("u", "s"), portal="10.0.0.99:3261")
    assert run(capsys, *cxt.start_args(1))[0] == 0
    assert tid_of(capsys, iqn(1)) == 1
    assert "PortalGroup=1@10.0.0.99:3261,timeout=0" in run(capsys, "-c", f"target={iqn(1)}")[1]
    # stop + start is a new target
    run(capsys, "-s", f"target={iqn(2)}")
    cxt.write(2)
    run(capsys, *cxt.start_args(2))
    assert tid_of(capsys, iqn(2)) == 5


def test_failed_reload_keeps_running_config(state_dir: Path, cxt: CxtFiles,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1)
    run(capsys, *cxt.start_args(1))
    before = run(capsys, "-c", f"target={iqn(1)}")[1]
    cxt.write(1, extra=",BOGUS")
    code, _, err = run(capsys, *cxt.start_args(1))
    assert code == 3 and "unknown TargetDevice option 'BOGUS'" in err
    assert run(capsys, "-c", f"target={iqn(1)}")[1] == before


# --------------------------------------------------------------------------
# -S validation and files
# --------------------------------------------------------------------------


def test_start_rejects_missing_device_with_location(state_dir: Path, cxt: CxtFiles,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = cxt.write(1, device=cxt.dev_dir / "nope")
    code, out, err = run(capsys, *cxt.start_args(1))
    assert (code, out) == (3, "")
    assert err == f"iscsictl: {path}:4: TargetDevice: {cxt.dev_dir / 'nope'} does not exist\n"
    assert run(capsys, "-c", f"target={iqn(1)}")[0] == 1  # nothing went live
    # a directory is not a device either
    cxt.write(1, device=cxt.dev_dir)
    code, _, err = run(capsys, *cxt.start_args(1))
    assert code == 3 and "neither a regular file nor a block device" in err


def test_mem_device_needs_no_path(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    f = cxt.dir / "mem"
    f.write_text(f"target:\nTargetName={iqn('m')}\nTargetDevice=ram0,MEM,RO\nPortalGroup=1@127.0.0.1:3260\n")
    assert run(capsys, "-S", f"target={iqn('m')}", "-f", str(f))[0] == 0
    assert ",MEM,RO,PROD=CHISCSI Target," in run(capsys, "-c", f"target={iqn('m')}")[1]


def test_main_conf_missing_is_empty_but_malformed_is_fatal(state_dir: Path, cxt: CxtFiles,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1)
    assert not cxt.main_conf.exists()
    assert run(capsys, *cxt.start_args(1))[0] == 0
    cxt.main_conf.write_text("global:\n  iscsi_offload_mode=AUTO\n  bogus=1\n")
    code, _, err = run(capsys, *cxt.start_args(1))
    assert code == 3 and err == f"iscsictl: {cxt.main_conf}:3: unknown global key 'bogus' (known: iscsi_offload_mode)\n"
    # a target defined in both files is ambiguous
    cxt.main_conf.write_text((cxt.dir / "volume-1").read_text())
    code, _, err = run(capsys, *cxt.start_args(1))
    assert code == 3 and f"duplicate TargetName {iqn(1)} (also defined at {cxt.main_conf}:2)" in err


def test_missing_target_file(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *cxt.start_args(7))
    assert code == 3 and err == f"iscsictl: {cxt.dir / 'volume-7'}: no such file\n"


def test_start_and_stop_all(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1)
    cxt.write(2)
    cxt.main_conf.write_text("global:\niscsi_offload_mode=TOE\n" + (cxt.dir / "volume-1").read_text())
    code, _, err = run(capsys, "-S", "target=ALL", "-f", str(cxt.dir / "volume-2"), "-x", str(cxt.main_conf))
    assert (code, err) == (0, "")
    assert {tid_of(capsys, iqn(1)), tid_of(capsys, iqn(2))} == {1, 2}
    assert run(capsys, "-s", "target=ALL")[0] == 0
    assert run(capsys, "-c", "target=ALL") == (0, "", "")


def test_per_target_commands_touch_only_their_record(state_dir: Path, cxt: CxtFiles,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """O(1) per call: a corrupt unrelated record must not matter unless ALL is asked for."""
    for n in (1, 2):
        cxt.write(n)
        run(capsys, *cxt.start_args(n))
    other = next(p for p in (state_dir / "targets").iterdir() if "volume-2" in p.name)
    other.write_text("garbage")
    cxt.write(3)
    assert run(capsys, *cxt.start_args(3))[0] == 0
    assert tid_of(capsys, iqn(3)) == 3
    assert run(capsys, *cxt.start_args(1))[0] == 0
    assert run(capsys, "-s", f"target={iqn(1)}")[0] == 0
    code, out, err = run(capsys, "-c", "target=ALL")  # only the ALL listing reads every record
    assert (code, out, err) == (4, "", f"iscsictl: corrupt state record {other}\n")


# --------------------------------------------------------------------------
# state files, env, globals, usage
# --------------------------------------------------------------------------


def test_state_files_are_private(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1, chap=("user1", "secret1"))
    run(capsys, *cxt.start_args(1))
    run(capsys, "-G", "iscsi_offload_mode=ULP")
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"lock", "next_tid", "globals.json",
                                       "iqn.2010-10.org.openstack%3Avolume-1.json"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (state_dir, state_dir / "targets"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    record = state_dir / "targets" / "iqn.2010-10.org.openstack%3Avolume-1.json"
    assert "secret1" in record.read_text()  # why it must be 0600
    assert not [p for p in files if p.name.startswith(".tmp-")]


def test_state_env_unset(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CHISCSI_EMULATOR_STATE", raising=False)
    code, out, err = run(capsys, "-c", "target=ALL")
    assert (code, out) == (4, "")
    assert err == ("iscsictl: CHISCSI_EMULATOR_STATE is not set; point it at a directory "
                   "for the emulated chiscsi state\n")


def test_global_offload_mode(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-G", "iscsi_offload_mode") == (0, "iscsi_offload_mode=AUTO\n", "")
    assert run(capsys, "-G", "iscsi_offload_mode=TOE") == (0, "", "")
    assert run(capsys, "-G", "iscsi_offload_mode") == (0, "iscsi_offload_mode=TOE\n", "")
    code, _, err = run(capsys, "-G", "iscsi_offload_mode=FAST")
    assert code == 3 and "must be one of AUTO, TOE, ULP" in err
    assert run(capsys, "-G", "nope=1")[0] == 3
    reset(state_dir)
    assert run(capsys, "-G", "iscsi_offload_mode")[1] == "iscsi_offload_mode=AUTO\n"


@pytest.mark.parametrize("argv", [
    [], ["-c"], ["-c", "ALL"], ["-c", "target="], ["-c", "target=ALL", "-s", "target=ALL"],
    ["-c", "target=ALL", "-f", "x"], ["-S", "target=ALL"], ["-c", "target=ALL", "extra"], ["-Z"],
    ["-S", "target=ALL", "-f", "a", "-f", "b"],
])
def test_bad_usage(state_dir: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("iscsictl: ") and "\nusage: iscsictl -c target=<ALL|iqn>" in err


def test_help(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-h")
    assert code == 0 and out.startswith("usage: iscsictl ")


# --------------------------------------------------------------------------
# reset
# --------------------------------------------------------------------------


def test_reset_is_a_reboot(state_dir: Path, cxt: CxtFiles, capsys: pytest.CaptureFixture[str]) -> None:
    for n in (1, 2):
        cxt.write(n, chap=("u", "s"))
        run(capsys, *cxt.start_args(n))
    cxt.main_conf.write_text("global:\niscsi_offload_mode=AUTO\n")
    before = {p: p.read_bytes() for p in cxt.dir.iterdir()}
    reset(state_dir)
    assert run(capsys, "-c", "target=ALL") == (0, "", "")
    assert {p: p.read_bytes() for p in cxt.dir.iterdir()} == before
    assert cxt.main_conf.read_text() == "global:\niscsi_offload_mode=AUTO\n"
    run(capsys, *cxt.start_args(2))  # ensure_export after the reboot
    assert tid_of(capsys, iqn(2)) == 1


# --------------------------------------------------------------------------
# data path hook
# --------------------------------------------------------------------------


class FakeWireService:
    calls: list[tuple[str, object]] = []

    def __init__(self, run_dir: Path) -> None:
        self.calls.append(("init", run_dir))

    def publish(self, target: object) -> None:
        self.calls.append(("publish", target))

    def withdraw(self, iqn: str) -> None:
        self.calls.append(("withdraw", iqn))

    def stop(self) -> None:
        self.calls.append(("stop", None))


@pytest.fixture
def fake_wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    module = types.ModuleType("iscsi_helper.lab.wire.control")
    module.WireService = FakeWireService  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "iscsi_helper.lab.wire.control", module)
    FakeWireService.calls = []
    return FakeWireService.calls


def test_wire_spec_from_documented_block() -> None:
    text = """target:
    TargetName=iqn.2006-02.com.chelsio.diskarray.san1
    TargetDevice=/dev/sda,BLK,SN=S1
    TargetDevice=/dev/sdb,RO
    PortalGroup=3@102.50.50.25:3260
    PortalGroup=2@[fd00::1]:3261
    AuthMethod=CHAP
    Auth_CHAP_Policy=Mutual
    Auth_CHAP_Initiator="remoteuser1":"remoteuser1_secret"
    Auth_CHAP_Target="targetid1":"target1_secret"
    ACL=iname=iqn.2006-02.com.chelsio.san1
    ACL=sip=10.0.0.1
"""
    (target,) = parse_text(text).targets
    spec = serving.wire_spec(target)
    assert [(lun["path"], lun["read_only"], lun["serial"]) for lun in spec["luns"]] == [
        ("/dev/sda", False, "S1"), ("/dev/sdb", True, serving.device_ids(target.name, 1, target.devices[1])[0])]
    assert spec["portals"] == [("102.50.50.25", 3260), ("fd00::1", 3261)]
    assert spec["tpgt"] == 3
    assert (spec["auth_method"], spec["chap_policy"]) == ("CHAP", "Mutual")
    assert spec["initiator_credentials"] == [("remoteuser1", "remoteuser1_secret")]
    assert spec["target_credential"] == ("targetid1", "target1_secret")
    assert spec["acl"] == ["iqn.2006-02.com.chelsio.san1"]
    wire = serving.to_wire_target(target)  # the real model accepts it
    assert wire.iqn == target.name and wire.luns[1].read_only


def test_wire_hook_follows_start_stop_and_reset(state_dir: Path, cxt: CxtFiles, fake_wire: list,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cxt.write(1, chap=("user1", "secret1"))
    run(capsys, *cxt.start_args(1))
    assert fake_wire == []  # off by default
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
    assert run(capsys, *cxt.start_args(1))[0] == 0
    assert fake_wire[0] == ("init", state_dir / "wire")
    published = fake_wire[1][1]
    assert fake_wire[1][0] == "publish" and published.iqn == iqn(1)  # type: ignore[attr-defined]
    assert published.initiator_credentials == [("user1", "secret1")]  # type: ignore[attr-defined]
    assert run(capsys, "-s", f"target={iqn(1)}")[0] == 0
    assert fake_wire[-1] == ("withdraw", iqn(1))
    (state_dir / "wire" / "targets").mkdir(parents=True)  # what a daemon would reload on start
    reset(state_dir)
    assert fake_wire[-1] == ("stop", None)
    assert not (state_dir / "wire").exists()


def test_wire_failure_fails_the_start(state_dir: Path, cxt: CxtFiles, fake_wire: list,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(self: FakeWireService, target: object) -> None:
        raise OSError("port in use")

    monkeypatch.setattr(FakeWireService, "publish", broken)
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
    cxt.write(1)
    code, _, err = run(capsys, *cxt.start_args(1))
    assert code == 5 and f"cannot serve {iqn(1)}: port in use" in err
    assert run(capsys, "-c", f"target={iqn(1)}")[0] == 1


# --------------------------------------------------------------------------
# through the shim, as a helper sees it
# --------------------------------------------------------------------------


@pytest.fixture
def shim_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = install_shims(tmp_path / "bin")
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["CHISCSI_EMULATOR_STATE"] = str(tmp_path / "shim-state")
    env.pop("CHISCSI_EMULATOR_WIRE", None)
    yield env


def iscsictl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iscsictl", *args], env=env, capture_output=True, text=True, timeout=60)


def test_shims_are_executables_on_path(tmp_path: Path, shim_env: dict[str, str]) -> None:
    for name in ("iscsictl", "ietadm"):
        path = tmp_path / "bin" / name
        assert os.access(path, os.X_OK)
        assert path.read_text().startswith(f"#!{sys.executable}\n")
    assert "iscsi_helper.lab.emulators.iet.cli" in (tmp_path / "bin" / "ietadm").read_text()


def test_cxtadm_flow_through_shim(shim_env: dict[str, str], cxt: CxtFiles) -> None:
    cxt.write(1, chap=("user1", "secret1"))
    cxt.write(10)
    for n in (10, 1):
        res = iscsictl(shim_env, *cxt.start_args(n))
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    res = iscsictl(shim_env, "-c", f"target={iqn(1)}")
    assert res.returncode == 0
    assert res.stdout.startswith(f"\nTARGET: {iqn(1)}, id=2, login_ip=0\n        PortalGroup=1@10.9.8.7:3260,timeout=0\n")
    assert "secret1" not in res.stdout
    res = iscsictl(shim_env, "-s", f"target={iqn(1)}")
    assert res.returncode == 0
    res = iscsictl(shim_env, "-s", f"target={iqn(1)}")
    assert res.returncode == 1 and "is not found" in res.stderr
    res = iscsictl(shim_env, "-c", f"target={iqn(1)}")
    assert res.returncode == 1 and "NOT found" in res.stdout
    res = subprocess.run([sys.executable, "-m", "iscsi_helper.lab.emulators.chiscsi", "-c", f"target={iqn(10)}"],
                         env=shim_env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and f"TARGET: {iqn(10)}, id=1, login_ip=0" in res.stdout
    res = iscsictl(shim_env, "-S", "target=x")
    assert res.returncode == 2 and "usage: iscsictl" in res.stderr


def test_concurrent_starts_get_distinct_tids(shim_env: dict[str, str], cxt: CxtFiles) -> None:
    """4 workers x 25 starts, each its own iscsictl process: no lost or duplicated tid."""
    names = list(range(100))
    for n in names:
        cxt.write(n)

    def worker(chunk: list[int]) -> list[int]:
        codes = []
        for n in chunk:
            res = iscsictl(shim_env, *cxt.start_args(n))
            codes.append(res.returncode)
            assert res.returncode == 0, res.stderr
        return codes

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, [names[i::4] for i in range(4)]))
    assert all(code == 0 for codes in results for code in codes)
    res = iscsictl(shim_env, "-c", "target=ALL")
    tids = dict(re.findall(r"^TARGET: (\S+), id=(\d+), login_ip=0$", res.stdout, re.M))
    assert set(tids) == {iqn(n) for n in names}
    assert sorted(int(t) for t in tids.values()) == list(range(1, 101))
    state = Path(shim_env["CHISCSI_EMULATOR_STATE"])
    assert (state / "next_tid").read_text() == "101\n"
    assert not [p for p in (state / "targets").iterdir() if p.name.startswith(".")]


def test_shim_with_interpreter_path_too_long_for_shebang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    # The whole environment under a long path, not the interpreter alone: a venv's
    # python away from its pyvenv.cfg is the base Python, without this package.
    (deep / "env").symlink_to(sys.prefix, target_is_directory=True)
    python = deep / "env" / "bin" / Path(sys.executable).name
    monkeypatch.setattr(sys, "executable", str(python))
    bin_dir = install_shims(tmp_path / "bin")
    script = (bin_dir / "iscsictl").read_text()
    assert script.startswith("#!/bin/sh\n")
    env = dict(os.environ, CHISCSI_EMULATOR_STATE=str(tmp_path / "s"))
    res = subprocess.run([str(bin_dir / "iscsictl"), "-c", "target=nope"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout) == (1, "target nope NOT found.\n")
