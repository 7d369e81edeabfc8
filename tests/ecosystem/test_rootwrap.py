"""Privileged execution: every target-tool call goes through the root helper, and our
rootwrap filters let exactly the target tools through.

Two proofs. A recording wrapper used as ``root_helper`` is the only way to
reach ``iscsictl`` (it is on the wrapper's PATH, not ours, like sudo's
secure_path), so a call that bypassed the root helper would fail, and the
wrapper's log lists each call. Then the real ``oslo-rootwrap`` (7.10.0)
with etc/iscsi-helper/rootwrap.d/iscsi-helper.filters runs a whole export
lifecycle, and its filter matcher is asked about our commands and others.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from oslo_rootwrap import filters as rw_filters
from oslo_rootwrap import wrapper

from iscsi_helper import registry
from iscsi_helper.exception import CommandNotFound
from iscsi_helper.executor import Executor
from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.shims import install_shims
from tests.support.emulators import chiscsi_config

REPO = Path(__file__).resolve().parents[2]
FILTERS_DIR = REPO / "etc" / "iscsi-helper" / "rootwrap.d"
PREFIX = "iqn.2010-10.org.openstack:"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Emulator shims in a directory that is NOT on this process's PATH."""
    bin_dir = install_shims(tmp_path / "root-bin")
    monkeypatch.setenv(emulator.STATE_ENV, str(tmp_path / "chiscsi-state"))
    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
    assert shutil.which("iscsictl") is None or Path(shutil.which("iscsictl")).parent != bin_dir
    yield tmp_path, bin_dir
    emulator.reset(tmp_path / "chiscsi-state")


def chiscsi(tmp_path: Path, root_helper: str, calls: list) -> object:
    conf = chiscsi_config(tmp_path, root_helper=root_helper)
    return registry.get_helper(conf, Executor(root_helper=conf.root_helper, observers=[calls.append]))


def lifecycle(target, device: str) -> str:
    """Create, connect, ensure, list, disconnect, remove; returns the CHAP secret used."""
    volume = {"id": "1", "name": "volume-1"}
    model = target.create_export(None, volume, device)
    stored = {**volume, "provider_location": model["location"], "provider_auth": model["auth"]}
    target.initialize_connection(stored, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.ensure_export(None, stored, device)
    assert [s.live is not None for s in target.list_exports()] == [True]
    target.terminate_connection(stored, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.remove_export(None, stored)
    assert target.list_exports() == []
    return model["auth"].split()[2]


def test_every_target_tool_call_goes_through_the_root_helper(env, device):
    tmp_path, bin_dir = env
    log = tmp_path / "root-helper.log"
    helper = tmp_path / "fake-sudo"
    helper.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n"
        f'PATH={shlex.quote(str(bin_dir))}:$PATH exec "$@"\n'
    )
    helper.chmod(0o755)

    calls: list[tuple[str, ...]] = []
    with pytest.raises(CommandNotFound):  # without the root helper the tool is unreachable
        chiscsi(tmp_path, "", []).create_export(None, {"id": "0", "name": "volume-0"}, device)
    secret = lifecycle(chiscsi(tmp_path, str(helper), calls), device)

    assert calls, "the lifecycle ran target-tool commands"
    assert all(argv[0] == str(helper) and argv[1] == "iscsictl" for argv in calls), calls
    logged = log.read_text().splitlines()
    assert logged == [" ".join(argv[1:]) for argv in calls]
    assert {line.split()[1] for line in logged} >= {"-S", "-c", "-s"}
    assert not any(secret in line for line in logged), "CHAP secrets never reach a command line"


def rootwrap_conf(tmp_path: Path, exec_dirs: list[Path]) -> Path:
    conf = tmp_path / "rootwrap.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"filters_path={FILTERS_DIR}\n"
        f"exec_dirs={','.join(str(d) for d in exec_dirs)}\n"
        "use_syslog=False\n"
    )
    return conf


def test_a_whole_export_lifecycle_runs_under_real_oslo_rootwrap(env, device):
    tmp_path, bin_dir = env
    conf = rootwrap_conf(tmp_path, [bin_dir, Path("/usr/sbin"), Path("/usr/bin"), Path("/bin")])
    root_helper = (
        f"{shlex.quote(sys.executable)} -c "
        f"{shlex.quote('import sys; from oslo_rootwrap.cmd import main; sys.exit(main())')} "
        f"{shlex.quote(str(conf))}"
    )
    calls: list[tuple[str, ...]] = []
    lifecycle(chiscsi(tmp_path, root_helper, calls), device)
    assert calls and all(argv[4] == "iscsictl" for argv in calls)


@pytest.mark.parametrize(
    "argv",
    [
        (
            "iscsictl",
            "-S",
            f"target={PREFIX}volume-1",
            "-f",
            "/var/lib/cinder/volumes/cxt/volume-1",
            "-x",
            "/etc/chelsio-iscsi/chiscsi.conf",
        ),
        ("iscsictl", "-c", f"target={PREFIX}volume-1"),
        ("iscsictl", "-c", "target=ALL"),
        ("iscsictl", "-s", f"target={PREFIX}volume-1"),
        ("ietadm", "--op", "new", "--tid=1", "--params", f"Name={PREFIX}volume-1"),
        ("ietadm", "--op", "delete", "--tid=1", "--lun=0"),
        (
            "tgtadm",
            "--lld",
            "iscsi",
            "--mode",
            "target",
            "--op",
            "new",
            "--tid",
            "1",
            "-T",
            f"{PREFIX}volume-1",
        ),
        ("tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"),
    ],
)
def test_our_filters_allow_our_commands(tmp_path, argv):
    exec_dir = tmp_path / "sbin"
    exec_dir.mkdir()
    for tool in ("iscsictl", "ietadm", "tgtadm"):
        (exec_dir / tool).write_text("#!/bin/sh\n")
        (exec_dir / tool).chmod(0o755)
    matched = wrapper.match_filter(
        wrapper.load_filters([str(FILTERS_DIR)]), list(argv), exec_dirs=[str(exec_dir)]
    )
    assert isinstance(matched, rw_filters.CommandFilter) and matched.run_as == "root"
    assert matched.get_command(list(argv), exec_dirs=[str(exec_dir)]) == [str(exec_dir / argv[0]), *argv[1:]]


@pytest.mark.parametrize(
    "argv",
    [
        ("sh", "-c", "iscsictl -c target=ALL"),
        ("rm", "-rf", "/var/lib/cinder"),
        ("/tmp/evil/iscsictl", "-c", "target=ALL"),  # a path of the caller's choosing
        ("iscsiadm", "-m", "session"),  # initiator side: not ours
        ("tee", "/etc/iet/ietd.conf"),  # ietd.conf only through the atomic steps
        ("cat", "/etc/shadow"),  # the file steps name ietd.conf alone
        ("dd", "of=/etc/passwd", "conv=fsync", "status=none"),
        ("dd", "of=/etc/iet/ietd.conf", "conv=fsync", "status=none"),  # in place: not atomic
        ("mv", "-f", "/etc/iet/.tmp-ietd.conf.h.1.abcdefgh", "/etc/passwd"),
        ("mv", "-f", "/etc/iet/.tmp-ietd.conf.h.1.abcdefgh/../../passwd", "/etc/iet/ietd.conf"),
        ("rm", "-f", "/etc/iet/ietd.conf"),
        ("rm", "-f", "/etc/iet/.tmp-ietd.conf./../../shadow"),
        ("mktemp", "-p", "/etc", ".tmp-ietd.conf.h.1.XXXXXXXX"),
    ],
)
def test_our_filters_deny_everything_else(tmp_path, argv):
    with pytest.raises(wrapper.NoFilterMatched):
        wrapper.match_filter(
            wrapper.load_filters([str(FILTERS_DIR)]), list(argv), exec_dirs=["/usr/sbin", "/usr/bin"]
        )


def test_a_tool_missing_from_exec_dirs_is_refused(tmp_path):
    with pytest.raises(wrapper.FilterMatchNotExecutable):
        wrapper.match_filter(
            wrapper.load_filters([str(FILTERS_DIR)]), ["iscsictl", "-c"], exec_dirs=[str(tmp_path)]
        )


def test_the_filters_file_names_exactly_the_tools_the_executor_knows():
    from iscsi_helper.executor import INSTALL_HINTS

    loaded = [
        f for f in wrapper.load_filters([str(FILTERS_DIR)]) if f.name != "privsep-helper"
    ]  # oslo.rootwrap adds its own privsep filter
    tools = {f.exec_path for f in loaded if not isinstance(f, rw_filters.RegExpFilter)}
    assert tools == set(INSTALL_HINTS)
    files = [f for f in loaded if isinstance(f, rw_filters.RegExpFilter)]
    assert {f.exec_path for f in files} == {"cat", "mktemp", "dd", "mv", "sync", "rm"}
    for file_filter in files:  # each names ietd.conf's directory, nothing wider
        paths = [re.sub(r"^of=", "", arg) for arg in file_filter.args if arg.startswith(("/", "of="))]
        assert paths and all(p.startswith("/etc/iet") for p in paths), file_filter.args


def test_the_commands_that_write_ietd_conf_as_root_are_the_ones_the_filters_allow(tmp_path):
    """RootFile's argv, recorded for /etc/iet/ietd.conf, each matched by one of our filters."""
    from iscsi_helper.executor import CommandResult
    from iscsi_helper.rootfiles import RootFile

    class Recording(Executor):
        def run(self, *argv, ok_codes=(0,), stdin=None, secrets=()):
            recorded.append((argv, stdin))
            out = "/etc/iet/.tmp-ietd.conf.host.1.AbCdEfGh\n" if argv[0] == "mktemp" else ""
            return CommandResult(argv, 0, out, "")

    recorded: list = []
    RootFile(Path("/etc/iet/ietd.conf"), Recording(root_helper="sudo")).write("Target x\n")
    assert [argv[0] for argv, _stdin in recorded] == ["mktemp", "dd", "mv", "sync"]
    assert [stdin for _argv, stdin in recorded] == [None, "Target x\n", None, None]
    filters = wrapper.load_filters([str(FILTERS_DIR)])
    for argv, _stdin in recorded:
        matched = wrapper.match_filter(filters, list(argv), exec_dirs=["/usr/bin", "/bin"])
        assert isinstance(matched, rw_filters.RegExpFilter) and matched.run_as == "root", argv
    assert os.path.basename(str(FILTERS_DIR)) == "rootwrap.d"
