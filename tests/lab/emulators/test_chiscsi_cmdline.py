"""iscsictl's command line, its lock and its exit statuses, as the process a helper runs.

Sources: src/chiscsi/user/cli/iscsictl.c 118-217 (arguments, device, lock),
user/common/iscsictl_private.h 9-11 (default file, two-character options),
private/ulib/iscsictl_cmd.c 1440-1535 (options), 1538-1653 (dispatch).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.chiscsi.usage import usage

from .chiscsi_support import Host, iqn

LOCKED = "ERROR: unable to obtain exclusive lock, iscsictl already running?\n"


# ---- the lock ------------------------------------------------------------------


def test_a_held_lock_fails_another_iscsictl_at_once(host: Host) -> None:
    assert host.start(1).code == 0
    pidfile = host.state / "iscsictl.pid"
    fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (("-c", "target=ALL"), ("-s", f"target={iqn(1)}"), ("-S", f"target={iqn(2)}", "-f", "x")):
            done = host.run_shim(*args, timeout=20)
            assert (done.returncode, done.stdout, done.stderr) == (3, "", LOCKED)
    finally:
        os.close(fd)
    done = host.run_shim("-c", f"target={iqn(1)}")
    assert done.returncode == 0 and "TargetName=" in done.stdout


def test_lock_holder_held_by_another_process(host: Host) -> None:
    """A second iscsictl-like process (not this one) holds the lock: no waiting, exit 3."""
    pidfile = host.state / "iscsictl.pid"
    host.state.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(pidfile)!r}, os.O_WRONLY | os.O_CREAT, 0o644)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        done = host.run_shim("-c", "target=ALL", timeout=20)
        assert (done.returncode, done.stderr) == (3, LOCKED)
    finally:
        holder.kill()
        holder.wait()
    assert host.run_shim("-c", "target=ALL").returncode == 0


def test_the_pid_file_holds_the_last_runs_pid(host: Host) -> None:
    done = host.run_shim("-c", "target=ALL")
    assert done.returncode == 0
    text = (host.state / "iscsictl.pid").read_text()
    assert text.endswith("\n") and int(text) > 0


def test_pid_file_location_comes_from_the_environment(
    host: Host, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere" / "iscsictl.pid"
    other.parent.mkdir()
    monkeypatch.setenv("CHISCSI_EMULATOR_PIDFILE", str(other))
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        assert host.run_shim("-c", "target=ALL").stderr == LOCKED
    finally:
        os.close(fd)


def test_unwritable_pid_file_location(host: Host, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHISCSI_EMULATOR_PIDFILE", str(tmp_path / "no" / "such" / "dir" / "iscsictl.pid"))
    res = host.run("-c", "target=ALL")
    assert (res.code, res.err) == (3, "ERROR: unable to create iscsictl pid file\n")


def test_help_and_bad_arguments_never_take_the_lock(host: Host) -> None:
    pidfile = host.state / "iscsictl.pid"
    host.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        assert host.run_shim("-h").returncode == 0
        assert host.run_shim("-ctarget=ALL").returncode == 255
    finally:
        os.close(fd)


# ---- arguments -----------------------------------------------------------------


def test_no_argument_prints_the_detailed_usage(host: Host) -> None:
    res = host.run()
    assert (res.code, res.out) == (0, usage("iscsictl", True))
    assert res.out.startswith(" Usage: iscsictl <option> [parameters]\n")
    assert "    -c [var=const]*\t\t\tGet iSCSI configuration\n" in res.out


def test_question_mark_prints_the_short_usage_and_v_the_version(host: Host) -> None:
    assert host.run("?").out == usage("iscsictl", False)
    assert host.run("-v").out == "iscsictl v2.12.0.3-1203\nCopyright (c) 2005-2016 Chelsio Communications\n"


def test_only_exact_two_character_options(host: Host) -> None:
    res = host.run("-ctarget=ALL")
    assert (res.code, res.err) == (255, "Invalid argument: -ctarget=ALL.\n")
    res = host.run("--c", "target=ALL")
    assert (res.code, res.err) == (255, "Invalid argument: --c.\n")


def test_unrecognised_and_conflicting_options(host: Host) -> None:
    assert host.run("-q").err == "ERROR: Unrecognized option -q.\n"
    res = host.run("-c", "target=ALL", "-s", "target=ALL")
    assert (res.code, res.err) == (255, "ERROR: too many command -s.\n")
    res = host.run("-s")
    assert (res.code, res.err) == (255, "-s: missing operand.\n")


def test_x_and_its_operand_are_ignored(host: Host) -> None:
    path = host.simple(1)
    res = host.run("-S", f"target={iqn(1)}", "-f", str(path), "-x", "/no/such/chiscsi.conf")
    assert (res.code, res.err) == (0, f"target {iqn(1)} added.\n")
    # -x swallows whatever follows it, even an option
    res = host.run("-x", "-c", "target=ALL")
    assert (res.code, res.err) == (255, "Invalid argument: target=ALL.\n")


def test_default_file_is_the_products_unless_the_test_overrides_it(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = host.run("-S", f"target={iqn(1)}")
    assert res.err == 'Error: File "/etc/chelsio-iscsi/chiscsi.conf" cannot be opened!\n'
    monkeypatch.setenv("CHISCSI_EMULATOR_CONF", str(host.simple(1)))
    assert host.run("-S", f"target={iqn(1)}").err == f"target {iqn(1)} added.\n"


def test_a_name_missing_from_the_file_exits_237(host: Host) -> None:
    res = host.run("-S", f"target={iqn(2)}", "-f", str(host.simple(1)))
    assert (res.code, res.err) == (
        237,
        f"ERROR: target name {iqn(2)} NOT found.\nERROR: Failed to find target {iqn(2)}!\n",
    )


def test_no_command_and_k_with_s(host: Host) -> None:
    assert host.run("-f", "x").err == "ERROR: UNKNOWN command 0.\n"
    res = host.run("-s", "target=ALL", "-k", "lun=0")
    assert (res.code, res.err) == (255, "-k option can not be used with -s option\n")


def test_names_need_target_and_a_value(host: Host) -> None:
    res = host.run("-s", "target=")
    assert (res.code, res.err) == (255, "WARN: target= has no value.\n")
    res = host.run("-s", "initiator=iqn.x")
    assert (res.code, res.err) == (255, "ERROR: initiator=iqn.x unknown keys.\n")
    assert host.run("-s", "TARGET=ALL").err == "All targets removed.\n"  # the key is case-blind


def test_junk_after_c_segfaults_like_the_product(host: Host) -> None:
    """No usable name: iscsictl dereferences NULL (iscsictl_cmd.c 1095-1096)."""
    done = host.run_shim("-c", "foo=bar")
    assert done.returncode == -signal.SIGSEGV
    assert done.stderr == "ERROR: unknown key foo=bar.\nfoo=bar INVALID.\n"


def test_module_not_loaded_without_a_state_directory(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHISCSI_EMULATOR_STATE")
    res = host.run("-c", "target=ALL")
    assert (res.code, res.err) == (
        255,
        "ERR! Unable to find chiscsi, is module loaded?\nERROR: cannot find iscsi device!\n",
    )


# ---- -g / -G / -F / -r / -W --------------------------------------------------------


def test_global_settings(host: Host) -> None:
    assert host.run("-G", "iscsi_auth_order=ACL").code == 0
    res = host.run("-G", "iscsi_offload_mode=TOE", "nonsense=1")
    assert (res.code, res.err) == (
        0,
        "Invalid TOE, must be AUTO/ULP.\nERROR: Failed to set iscsi_offload_mode=TOE!\n"
        "Unknown variable nonsense.\nERROR: Failed to set nonsense=1!\n",
    )
    res = host.run("-g")
    assert res.out == (
        "\tiscsi_auth_order=ACL\n\tiscsi_acl_order=CONFIG\n\tiscsi_login_complete_time=300\n"
        "\tDISC_AuthMethod=None\n\tDISC_Auth_CHAP_Policy=Oneway\n\tDISC_Auth_CHAP_Target=\n"
        "\tDISC_Auth_CHAP_Initiator=\n\tiscsi_chelsio_ini_idstr=cxgb4i\n\n"
    )


def test_global_block_of_the_file_is_applied_before_the_target(host: Host) -> None:
    path = host.file(
        "with-global",
        "global:\n\tiscsi_acl_order=ISNS\n\tiscsi_target_vendor_id=ACME\n" + host.simple(1).read_text(),
    )
    assert host.run("-S", f"target={iqn(1)}", "-f", str(path)).code == 0
    assert "\tiscsi_acl_order=ISNS\n\tiscsi_target_vendor_id=ACME\n" in host.run("-g").out
    # applied even when the named target is not in the file
    path = host.file("only-global", "global:\n\tiscsi_acl_order=CONFIG\n")
    assert host.run("-S", f"target={iqn(5)}", "-f", str(path)).code == 237
    assert "\tiscsi_acl_order=CONFIG\n" in host.run("-g").out


def test_flush_and_sessions(host: Host) -> None:
    assert host.start(1).code == 0
    assert host.run("-F").code == 0
    res = host.run("-F", f"target={iqn(9)}")
    assert (res.code, res.out, res.err) == (
        255,
        f"target {iqn(9)} NOT found.\n\n",
        f"ERROR: target {iqn(9)} flush lun failed.\n",
    )
    res = host.run("-r", f"target={iqn(1)}")
    assert (res.code, res.out, res.err) == (0, "", "")
    res = host.run("-r", f"target={iqn(9)}")
    assert (res.code, res.err) == (255, f"{iqn(9)} is not found.\n\n")


def test_write_masks_secrets(host: Host) -> None:
    assert host.start(1, extra='\tAuth_CHAP_Initiator="u":"secretsecret1"\n').code == 0
    out = host.files / "written.conf"
    assert host.run("-W", "-f", str(out)).code == 0
    text = out.read_text()
    assert text.startswith("global:\n\tiscsi_auth_order=CHAP\n")
    assert "#\n#iSCSI Target Configurations\n#\n\ntarget:\n\tTargetName=" in text
    assert '"u":"********"' in text and "secretsecret1" not in text


def test_shim_exit_statuses_as_a_helper_sees_them(host: Host) -> None:
    assert host.run_shim("-S", f"target={iqn(1)}", "-f", str(host.simple(1))).returncode == 0
    assert host.run_shim("-c", f"target={iqn(2)}").returncode == 255
    assert host.run_shim("-S", f"target={iqn(2)}", "-f", str(host.simple(1))).returncode == 237
