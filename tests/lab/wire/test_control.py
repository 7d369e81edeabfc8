"""Daemon lifecycle and the control API the emulators rely on.

Each test owns its run directory and daemon, so lifecycle operations (stop,
restart, concurrent start) cannot disturb the other test modules.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iscsi_helper.lab.rig import free_dual_stack_port
from iscsi_helper.lab.wire.control import WireService, WireServiceError, _alive
from iscsi_helper.lab.wire.daemon import socket_path, target_file
from iscsi_helper.lab.wire.model import WireLun, WireTarget

from .conftest import make_image, run


def _target(tmp_path: Path, name: str, port: int, **kwargs: object) -> WireTarget:
    image = tmp_path / "shared.img"
    if not image.exists():
        make_image(image, 2 << 20)
    return WireTarget(
        f"iqn.2024-01.org.example:{name}", [WireLun(str(image))], [("127.0.0.1", port)], **kwargs
    )  # type: ignore[arg-type]


def _daemons_for(run_dir: Path) -> list[int]:
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [
        int(line.split()[0])
        for line in out.splitlines()
        if "iscsi_helper.lab.wire" in line and str(run_dir) in line
    ]


def test_publish_starts_a_detached_daemon_and_stop_ends_it(own: WireService, tmp_path: Path) -> None:
    assert own.pid() is None and own.served() == []
    port = free_dual_stack_port()
    t = _target(tmp_path, "first", port)
    own.publish(t)
    pid = own.pid()
    assert pid is not None and _alive(pid)
    assert _daemons_for(own.run_dir) == [pid]
    assert int((own.run_dir / "wire.pid").read_text()) == pid
    assert own.served() == [t.iqn]
    assert run("iscsi-inq", f"iscsi://127.0.0.1:{port}/{t.iqn}/0").returncode == 0
    own.stop()
    assert not _alive(pid)
    assert own.pid() is None and own.served() == []
    assert not (own.run_dir / "control.sock").exists()
    assert run("iscsi-inq", f"iscsi://127.0.0.1:{port}/{t.iqn}/0").returncode != 0


def test_restarted_daemon_reloads_what_it_served(own: WireService, tmp_path: Path) -> None:
    port = free_dual_stack_port()
    a = _target(tmp_path, "reload-a", port)
    gone = _target(tmp_path, "reload-gone", port)
    own.publish(a)
    own.publish(gone)
    own.stop()
    own.withdraw(gone.iqn)  # no daemon: must still be forgotten
    assert not target_file(own.run_dir, gone.iqn).exists()
    b = _target(tmp_path, "reload-b", port)
    own.publish(b)  # starts a new daemon, which reloads a
    assert own.served() == sorted([a.iqn, b.iqn])
    assert run("iscsi-inq", f"iscsi://127.0.0.1:{port}/{a.iqn}/0").returncode == 0


def test_republishing_with_new_auth_takes_effect(own: WireService, tmp_path: Path) -> None:
    port = free_dual_stack_port()
    t = _target(tmp_path, "reauth", port)
    own.publish(t)
    url = f"iscsi://127.0.0.1:{port}/{t.iqn}/0"
    assert run("iscsi-inq", url).returncode == 0
    own.publish(t)  # identical: a no-op
    t.auth_method = "CHAP"
    t.initiator_credentials = [("erin", "erin-secret-99")]
    own.publish(t)
    assert run("iscsi-inq", url).returncode != 0
    assert run("iscsi-inq", url.replace("iscsi://", "iscsi://erin%erin-secret-99@")).returncode == 0


def test_concurrent_publishers_share_one_daemon(own: WireService, tmp_path: Path) -> None:
    port = free_dual_stack_port()
    make_image(tmp_path / "shared.img", 2 << 20)
    script = (
        "import sys\n"
        "from iscsi_helper.lab.wire.control import WireService\n"
        "from iscsi_helper.lab.wire.model import WireLun, WireTarget\n"
        "WireService(sys.argv[1]).publish(WireTarget(sys.argv[2], [WireLun(sys.argv[3])], "
        "[('127.0.0.1', int(sys.argv[4]))]))\n"
    )
    names = [f"iqn.2024-01.org.example:conc-{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(own.run_dir), name, str(tmp_path / "shared.img"), str(port)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert own.served() == sorted(names)
    assert len(_daemons_for(own.run_dir)) == 1
    listing = run("iscsi-ls", f"iscsi://127.0.0.1:{port}/").stdout
    assert all(name in listing for name in names)


def test_three_hundred_targets_are_served_and_listed(own: WireService, tmp_path: Path) -> None:
    """Many targets on one portal: each published, one withdrawn, the rest listed.

    How publish and withdraw cost grows with the number of targets is a
    benchmark question (benchmarks/run.py), not a timed test here.
    """
    port = free_dual_stack_port()
    for i in range(300):
        own.publish(_target(tmp_path, f"scale-{i}", port))
    own.withdraw("iqn.2024-01.org.example:scale-150")
    assert len(own.served()) == 299
    assert "iqn.2024-01.org.example:scale-150" not in own.served()
    # Discovery of ~300 targets is a text response far beyond 8 KiB.
    listing = run("iscsi-ls", f"iscsi://127.0.0.1:{port}/")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("Target:iqn.2024-01.org.example:scale-") == 299
    assert "scale-150 " not in listing.stdout


def test_bad_target_is_refused_with_a_clear_error(own: WireService, tmp_path: Path) -> None:
    port = free_dual_stack_port()
    t = WireTarget(
        "iqn.2024-01.org.example:missing", [WireLun(str(tmp_path / "nope.img"))], [("127.0.0.1", port)]
    )
    with pytest.raises(WireServiceError, match="nope.img"):
        own.publish(t)
    assert own.served() == []
    with pytest.raises(ValueError):
        own.publish(WireTarget("not-an-iqn", [], [("127.0.0.1", port)]))


def test_a_daemon_that_does_not_answer_times_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket_path(run_dir / "control.sock") as addr:
        listener.bind(addr)
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        svc = WireService(run_dir, timeout=0.5)
        with pytest.raises(WireServiceError, match="did not answer served within"):
            svc.served()
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_publish_that_needs_every_portal_fails_on_a_port_another_program_holds(
    own: WireService, tmp_path: Path
) -> None:
    """The emulators' case: nothing changes, and the other program keeps its port."""
    port = free_dual_stack_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        free = free_dual_stack_port()
        served = _target(tmp_path, "served", free)
        own.publish(served)
        taken = _target(tmp_path, "taken", free)
        taken = WireTarget(taken.iqn, taken.luns, [("127.0.0.1", free), ("127.0.0.1", port)])
        with pytest.raises(WireServiceError, match=rf"cannot listen on 127\.0\.0\.1:{port} \("):
            own.publish(taken, every_portal=True)
        assert own.served() == [served.iqn], "refused: not served on the portal it could bind"
        own.publish(taken)  # without every_portal: skipped with a warning, as for another node's
        assert own.served() == sorted([served.iqn, taken.iqn])
        holder.close()
        own.publish(_target(tmp_path, "later", port), every_portal=True)
        assert (
            run("iscsi-inq", f"iscsi://127.0.0.1:{port}/iqn.2024-01.org.example:later/0").returncode == 0
        ), "the refused publish left no listener behind on the port"
    finally:
        holder.close()
