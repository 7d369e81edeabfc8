"""A cinder.conf read by the command line as Cinder reads it: backend sections, then [backend_defaults].

The issue's scenario first: a stock multi-backend cinder.conf (``enabled_backends
= lvm-cxt``, every target option in ``[lvm-cxt]``) and ``--target-helper
iscsictl`` on the chiscsi emulator must publish the section's address, not a
guess of this host's.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators import chiscsi as chiscsi_emulator
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.rig import free_port
from tests.support.cli import Cli, one_line

SECTION_ADDRESS = "127.0.0.1"


@pytest.fixture
def chiscsi_env(tmp_path):
    state = tmp_path / "chiscsi-state"
    bin_dir = install_shims(tmp_path / "bin")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        chiscsi_emulator.STATE_ENV: str(state),
        "CHISCSI_EMULATOR_WIRE": "0",
        "CHISCSI_EMULATOR_PIDFILE": str(tmp_path / "iscsictl.pid"),
    }
    yield env
    chiscsi_emulator.reset(state)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_scenario_multi_backend_cinder_conf(tmp_path, chiscsi_env, device):
    port = free_port()
    conf = write(
        tmp_path / "cinder.conf",
        f"""\
        [DEFAULT]
        enabled_backends = lvm-cxt
        state_path = {tmp_path / "state"}
        my_ip = 192.0.2.2

        [lvm-cxt]
        volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
        volume_group = cinder-volumes
        target_helper = iscsictl
        target_ip_address = {SECTION_ADDRESS}
        target_port = {port}
        chiscsi_conf = {tmp_path / "chiscsi.conf"}

        [oslo_concurrency]
        lock_path = {tmp_path / "locks"}
        """,
    )
    cli = Cli(["--config-file", str(conf)], env=chiscsi_env)
    # No --target-helper: the section's iscsictl, not the default tgtadm ("tgtadm not found").
    assert cli.json("list") == []
    done = cli.run("export", "1", device, "--target-helper", "iscsictl", "--json")
    out = __import__("json").loads(done.stdout)
    assert out["portals"] == [f"{SECTION_ADDRESS}:{port}"]
    assert out["provider_location"].startswith(f"{SECTION_ADDRESS}:{port},")
    assert "192.0.2.2" not in done.stdout and done.stderr == "", done.stderr
    assert (tmp_path / "state" / "volumes" / "cxt" / "volume-1").exists()
    cli.run("unexport", "1")


def test_several_backends_need_a_choice_and_backend_defaults_fill_in(tmp_path, device):
    conf = write(
        tmp_path / "cinder.conf",
        f"""\
        [DEFAULT]
        enabled_backends = alpha, beta
        state_path = {tmp_path / "state"}

        [backend_defaults]
        target_helper = fake
        target_port = 3270

        [alpha]
        target_ip_address = 127.0.0.1

        [beta]
        target_ip_address = 127.0.0.2
        target_port = 3271
        target_prefix = iqn.2000-01.com.example:beta-

        [oslo_concurrency]
        lock_path = {tmp_path / "locks"}
        """,
    )
    line = one_line(Cli(["--config-file", str(conf)]).run("list", expect=2))
    assert "enabled_backends lists 2 backends (alpha, beta); choose one with --backend NAME" in line
    alpha = Cli(["--config-file", str(conf), "--backend", "alpha"]).json("export", "1", device)
    assert alpha["portals"] == ["127.0.0.1:3270"], "the port from [backend_defaults]"
    assert alpha["iqn"] == "iqn.2010-10.org.openstack:volume-1"
    beta = Cli(["--config-file", str(conf)]).json("export", "2", device, "--backend", "beta")
    assert beta["portals"] == ["127.0.0.2:3271"]
    assert beta["iqn"] == "iqn.2000-01.com.example:beta-volume-2"
    line = one_line(Cli(["--config-file", str(conf), "--backend", "gamma"]).run("list", expect=2))
    assert "no backend 'gamma'" in line and "alpha, beta" in line


def test_options_written_only_where_they_are_not_read_are_warned_about(tmp_path, device):
    backend = write(
        tmp_path / "backend.conf",
        f"""\
        [DEFAULT]
        enabled_backends = lvm
        target_helper = fake
        target_ip_address = 127.0.0.9
        state_path = {tmp_path / "state"}

        [lvm]
        target_port = 3299
        my_ip = 127.0.0.8
        lock_path = {tmp_path / "locks"}
        """,
    )
    done = Cli(
        ["--config-file", str(backend), "--target-helper", "fake", "--lock-path", str(tmp_path / "locks")]
    ).run("export", "1", device, "--json")
    warnings = [line for line in done.stderr.splitlines()]
    assert (
        "iscsi-helper: warning: [DEFAULT] target_ip_address is not read for backend lvm: "
        "Cinder reads a backend's options from [lvm], then [backend_defaults]; move it to [lvm]" in warnings
    )
    assert (
        "iscsi-helper: warning: my_ip in [lvm] is not read: it is a host option, read from "
        "[DEFAULT]; move it there" in warnings
    )
    assert any(w.startswith("iscsi-helper: warning: lock_path in [lvm] is not read") for w in warnings)
    assert any("target_ip_address is set nowhere it is read" in w for w in warnings), (
        "the export publishes a guessed address, and says so"
    )
    assert "[DEFAULT] target_helper is not read for backend lvm" in done.stderr
    published = __import__("json").loads(done.stdout)["portals"][0]
    assert not published.startswith("127.0.0.9"), "[DEFAULT] is not read for a backend"

    plain = write(
        tmp_path / "plain.conf",
        f"""\
        [DEFAULT]
        target_helper = fake
        state_path = {tmp_path / "state2"}
        target_ip_address = 127.0.0.1

        [lvm]
        target_port = 3299
        """,
    )
    done = Cli(["--config-file", str(plain), "--lock-path", str(tmp_path / "locks")]).run("list")
    assert done.stderr == (
        "iscsi-helper: warning: target_port is set in [lvm], which is not read: "
        "with no backend selected (enabled_backends is empty) options are read "
        "from [DEFAULT]; move it there or select the section with --backend "
        "NAME\n"
    )
    selected = Cli(
        [
            "--config-file",
            str(plain),
            "--backend",
            "lvm",
            "--target-helper",
            "fake",
            "--lock-path",
            str(tmp_path / "locks"),
        ]
    ).run("list")
    assert "[DEFAULT] target_ip_address is not read for backend lvm" in selected.stderr


def test_a_bad_value_or_a_missing_file_is_one_line(tmp_path):
    conf = tmp_path / "cinder.conf"
    conf.write_text("[DEFAULT]\nenabled_backends = lvm\n[lvm]\ntarget_helper = fake\ntarget_port = nope\n")
    line = one_line(Cli(["--config-file", str(conf), "--state-path", str(tmp_path)]).run("list", expect=2))
    assert "option [lvm] target_port" in line and "nope" in line
    conf.write_text("[DEFAULT]\nenabled_backends = lvm\n[lvm]\nvolumes_dir = $nowhere/x\n")
    line = one_line(Cli(["--config-file", str(conf)]).run("list", expect=2))
    assert "option [lvm] volumes_dir" in line and "write '$$' for a literal '$'" in line
    missing = one_line(Cli(["--config-file", str(tmp_path / "nope.conf")]).run("list", expect=2))
    assert "nope.conf" in missing
