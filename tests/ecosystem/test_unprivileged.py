"""iscsi-helper run as an unprivileged user, as cinder-volume runs: one line for each path it
cannot use, and IET's root-owned ietd.conf written through the root helper.

Run as root, the tests drop to user nobody with setpriv (root would pass
every permission check); run as another user, they are that user, and the
"root-owned" directories are made read-only instead. The root helper of the
IET test is a stand-in for sudo (tests/ecosystem/rootbroker.py): a broker
running as root, reached over a socket, logging every command it runs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.shims import install_shims
from tests.support.cli import NOBODY, Cli, one_line, unprivileged_prefix

BROKER = Path(__file__).with_name("rootbroker.py")
AS_ROOT = os.geteuid() == 0


@pytest.fixture
def base():
    """A directory every user can traverse (pytest's own are 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="iscsi-helper-unprivileged-"))
    path.chmod(0o755)
    yield path
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700)
    shutil.rmtree(path)


def not_ours(path: Path) -> Path:
    """A directory the unprivileged user may read but not write: root's 0755, or ours 0555."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755 if AS_ROOT else 0o555)
    return path


def ours(path: Path) -> Path:
    """A directory the unprivileged user owns."""
    path.mkdir(parents=True, exist_ok=True)
    if AS_ROOT:
        os.chown(path, NOBODY, NOBODY)
    path.chmod(0o700)
    return path


def device(base: Path) -> str:
    path = base / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(4 << 20)
    path.chmod(0o644)
    return str(path)


def user_cli(*flags: str, env: dict[str, str] | None = None) -> Cli:
    return Cli(["--target-ip-address", "127.0.0.1", *flags], env=env, cwd="/", user=unprivileged_prefix())


def test_a_state_directory_it_cannot_create_is_one_line_before_anything_is_touched(base):
    state = not_ours(base / "state")
    cli = user_cli(
        "--target-helper", "fake", "--state-path", str(state), "--lock-path", str(ours(base / "locks"))
    )
    line = one_line(cli.run("export", "1", device(base), expect=2))
    assert f"volumes_dir {state}/volumes:" in line and f"cannot create {state}/volumes" in line
    assert f"mode 0{oct(state.stat().st_mode & 0o777)[2:]}" in line
    if AS_ROOT:
        assert "nobody (uid 65534)" in line and "owned by root:root" in line
        assert f"install -d -o nobody -m 0700 {state}/volumes" in line
    assert list(state.iterdir()) == [], "nothing was created"
    error = json.loads(cli.run("export", "1", device(base), "--json", expect=2).stdout)["error"]
    assert error["type"] == "AccessDenied"


def test_a_lock_directory_it_cannot_write_is_one_line(base):
    locks = not_ours(base / "locks")
    cli = user_cli(
        "--target-helper", "fake", "--state-path", str(ours(base / "state")), "--lock-path", str(locks)
    )
    line = one_line(cli.run("export", "1", device(base), expect=2))
    assert f"[oslo_concurrency] lock_path {locks}: " in line and "cannot write" in line
    assert not (base / "state" / "volumes").exists()


def test_records_it_cannot_read_are_one_line_naming_the_path(base):
    state = ours(base / "state")
    Cli(
        [
            "--target-helper",
            "fake",
            "--state-path",
            str(state),
            "--target-ip-address",
            "127.0.0.1",
            "--lock-path",
            str(base / "root-locks"),
        ]
    ).run("export", "1", device(base))
    records = state / "volumes" / "fake"
    if AS_ROOT:
        for dirpath, _dirs, _files in os.walk(state):
            os.chown(dirpath, 0, 0)
    records.chmod(0o300)
    line = one_line(user_cli("--target-helper", "fake", "--state-path", str(state)).run("list", expect=1))
    assert f"permission denied on {records}" in line


def test_iet_without_a_root_helper_names_what_ietd_conf_needs(base):
    etc = not_ours(base / "etc-iet")
    cli = user_cli(
        "--target-helper",
        "iet",
        "--state-path",
        str(ours(base / "state")),
        "--lock-path",
        str(ours(base / "locks")),
        "--iet-conf",
        str(etc / "ietd.conf"),
        "--iet-proc-dir",
        str(not_ours(base / "proc")),
    )
    line = one_line(cli.run("export", "1", device(base), expect=2))
    assert f"iet_conf {etc}/ietd.conf: " in line and f"cannot write in {etc}" in line
    assert "set root_helper" in line or "run as root" in line
    assert not (etc / "ietd.conf").exists()


@pytest.fixture
def broker(base):
    """A root helper: the broker as root (its PATH has the emulated ietadm), and the client argv."""
    if not AS_ROOT:
        pytest.skip("needs root: the root helper's stand-in must run as root")
    bin_dir = install_shims(base / "root-bin")
    (base / "iet-state").mkdir(mode=0o700)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "IET_EMULATOR_STATE": str(base / "iet-state"),
        "IET_EMULATOR_PROC": str(base / "proc"),
        "IET_EMULATOR_WIRE": "0",
    }
    socket_path, log = base / "broker.sock", base / "root-commands.log"
    server = subprocess.Popen(
        [sys.executable, str(BROKER), "serve", str(socket_path), str(log)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        # The client runs as nobody: an interpreter nobody may execute (a venv's may point
        # into root's home), with nothing but the standard library.
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        yield f"{python} {shlex.quote(str(BROKER))} run {shlex.quote(str(socket_path))}", log
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_iet_as_nobody_writes_ietd_conf_as_root_through_the_root_helper(base, broker):
    root_helper, log = broker
    etc = not_ours(base / "etc-iet")
    conf = etc / "ietd.conf"
    foreign = "# ietd.conf of this node\nTarget iqn.2001-04.com.example:other\n\tLun 0 Path=/dev/sdz\n"
    conf.write_text(foreign)
    conf.chmod(0o600)
    not_ours(base / "proc")
    cli = user_cli(
        "--target-helper",
        "iet",
        "--state-path",
        str(ours(base / "state")),
        "--lock-path",
        str(ours(base / "locks")),
        "--iet-conf",
        str(conf),
        "--iet-proc-dir",
        str(base / "proc"),
        "--root-helper",
        root_helper,
    )
    disk = device(base)
    out = cli.json("export", "1", disk, "--show-secrets")
    user, secret = out["provider_auth"].split()[1:]
    text = conf.read_text()
    assert text.startswith(foreign), "the rest of ietd.conf is kept byte for byte"
    assert f"Target iqn.2010-10.org.openstack:volume-1\n\tIncomingUser {user} {secret}\n" in text
    info = conf.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), "root's, 0600: it holds secrets"
    assert [p.name for p in etc.iterdir()] == ["ietd.conf"], "no temp file left"
    rows = cli.json("list")
    assert [(r["volume_id"], r["live"], r["device"]) for r in rows] == [("1", True, disk)]

    commands = [json.loads(line) for line in log.read_text().splitlines()]
    tools = [argv[0] for argv in commands]
    assert tools[0] == "cat" and commands[0] == ["cat", str(conf)], "read as root: 0600 root's"
    write = commands[tools.index("mktemp") :][:4]
    assert [argv[0] for argv in write] == ["mktemp", "dd", "mv", "sync"], commands
    assert write[0][:3] == ["mktemp", "-p", str(etc)]
    assert write[1][1].startswith(f"of={etc}/.tmp-ietd.conf.") and write[1][2:] == [
        "conv=fsync",
        "status=none",
    ]
    assert write[2] == ["mv", "-f", write[1][1][3:], str(conf)]
    assert write[3] == ["sync", str(etc)]
    assert set(tools) <= {"mktemp", "dd", "mv", "sync", "cat", "ietadm"}
    assert not any(secret in " ".join(argv) for argv in commands if argv[0] != "ietadm"), (
        "ietd.conf's secret goes on dd's stdin, never on a command line"
    )

    assert cli.run("unexport", "1").stdout == "volume 1: export removed\n"
    assert conf.read_text() == foreign
    assert cli.json("list") == []


def test_a_dead_writers_temp_file_beside_ietd_conf_is_swept_as_root(base, broker):
    root_helper, log = broker
    etc = not_ours(base / "etc-iet")
    not_ours(base / "proc")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    host = __import__("socket").gethostname().replace(".", "_")[:48]
    left = etc / f".tmp-ietd.conf.{host}.{dead}.AbCdEfGh"
    left.write_text("Target half-written\n")
    left.chmod(0o600)
    old = time.time() - 10
    os.utime(left, (old, old))
    cli = user_cli(
        "--target-helper",
        "iet",
        "--state-path",
        str(ours(base / "state")),
        "--lock-path",
        str(ours(base / "locks")),
        "--iet-conf",
        str(etc / "ietd.conf"),
        "--iet-proc-dir",
        str(base / "proc"),
        "--root-helper",
        root_helper,
    )
    cli.run("reconcile", "--fix")
    assert not left.exists()
    assert ["rm", "-f", str(left)] in [json.loads(line) for line in log.read_text().splitlines()]


def test_a_cinder_conf_it_cannot_read_is_one_line(base):
    conf = base / "cinder.conf"
    conf.write_text("[DEFAULT]\ntarget_helper = fake\n")
    conf.chmod(0o600 if AS_ROOT else 0o000)
    line = one_line(user_cli("--config-file", str(conf)).run("list", expect=2))
    assert f"cannot read {conf}: permission denied" in line
