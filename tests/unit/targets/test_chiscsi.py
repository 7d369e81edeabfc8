"""What only the chiscsi helper does, on the ``iscsictl`` emulator rebuilt from chiscsi's source.

The shared contract is tested in tests/behaviour; these tests cover what is
chiscsi's own: its file, its ``iscsictl`` calls and their cost, the host
lock and its refusals, what chiscsi refuses, ACL_Enable, a busy remove,
and restores past the 128 KiB cut of ``iscsictl -c target=ALL``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from iscsi_helper import registry
from iscsi_helper.adapters.iscsictl import LOCK_REFUSAL, parse_details, parse_summaries
from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.exception import InvalidInput, Refused, TargetCreateFailed
from iscsi_helper.executor import Executor
from iscsi_helper.formats import ChapCredentials, Portal
from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.chiscsi import cli as emulator_cli
from iscsi_helper.lab.rig import InProcessExecutor, run_main
from iscsi_helper.model import ExportSpec
from tests.support.devices import make_device
from tests.support.emulators import chiscsi_config, use_chiscsi_emulator

PREFIX = "iqn.2010-10.org.openstack:"

CXTADM_BLOCK = """
              target:
                       TargetName=iqn.2010-10.org.openstack:volume-{id}
                       TargetDevice={device}
                       PortalGroup=1@127.0.0.1:3260
                       AuthMethod=CHAP
                       Auth_CHAP_Policy=Oneway
                       Auth_CHAP_Initiator="cxtuser{id}":"cxtsecret{id}xyz"
                 """


@pytest.fixture
def env(tmp_path, monkeypatch):
    state = use_chiscsi_emulator(tmp_path, monkeypatch)
    yield tmp_path
    emulator.reset(state)


def conf_of(tmp_path, **overrides):
    return chiscsi_config(tmp_path, **overrides)


def make_target(tmp_path, calls=None, executor=None, **overrides):
    conf = conf_of(tmp_path, **overrides)
    return registry.get_helper(
        conf, executor or Executor(observers=[calls.append] if calls is not None else [])
    )


def iscsictl(*args: str) -> tuple[int, str, str]:
    return run_main(emulator_cli.main, args)


def shown(iqn: str):
    """The target as the emulator's ``-c target=<iqn>`` shows it, or None."""
    return parse_details(iscsictl("-c", f"target={iqn}")[1])[iqn]


def disk(tmp_path, name: str, size: int = 1 << 20) -> str:
    return make_device(tmp_path, name, size)


def vol(n, **extra):
    return {"id": str(n), "name": f"volume-{n}", **extra}


# ------------------------------------------------------------------ the file


def test_the_persisted_file_is_one_target_block_and_private(env, device):
    target = make_target(env)
    result = target.create_export(None, vol(1), device)
    path = env / "state" / "volumes" / "cxt" / "volume-1"
    user, secret = result["auth"].split()[1:]
    serial = hashlib.sha256(b"1").hexdigest()[:16]
    assert path.read_text() == (
        "# Export record written by iscsi-helper; loaded with iscsictl -S.\n"
        "# iscsi-helper volume_id=1\n"
        "target:\n"
        f"\tTargetName={PREFIX}volume-1\n"
        f"\tTargetDevice={device},FILE,SN={serial}\n"
        "\tPortalGroup=1@127.0.0.1:3260\n"
        "\tAuthMethod=CHAP\n"
        "\tAuth_CHAP_Policy=Oneway\n"
        f'\tAuth_CHAP_Initiator="{user}":"{secret}"\n'
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [n for n in os.listdir(path.parent) if n != "volume-1"], "no temp file left"


def test_provider_location_carries_the_portal_group_tag(env, device):
    """chiscsi shows no target id for a named target; the number is the tag we write (1)."""
    target = make_target(env)
    one = target.create_export(None, vol(1), device)
    two = target.create_export(None, vol(2), disk(env, "d2"))
    assert one["location"] == f"127.0.0.1:3260,1 {PREFIX}volume-1 0"
    assert two["location"] == f"127.0.0.1:3260,1 {PREFIX}volume-2 0"
    assert target.get_export(vol(2)).provider_location == two["location"]
    live = shown(PREFIX + "volume-2")
    assert [g.tag for g in live.portal_groups] == [codec.PORTAL_GROUP_TAG]


def test_mutual_chap_and_ipv6_portals_are_written_and_live(env, device):
    target = make_target(env, iscsi_mutual_chap=True, target_secondary_ip_addresses=["::1"])
    target.create_export(None, vol(2), device)
    text = (env / "state" / "volumes" / "cxt" / "volume-2").read_text()
    assert "\tPortalGroup=1@127.0.0.1:3260,[::1]:3260\n" in text
    assert "\tAuth_CHAP_Policy=Mutual\n" in text and "\tAuth_CHAP_Target=" in text
    live = shown(PREFIX + "volume-2")
    assert live.portal_groups[0].portals == (Portal("127.0.0.1", 3260), Portal("::1", 3260))
    assert live.value("Auth_CHAP_Policy") == "Mutual" and len(live.chap_target_users) == 1


def test_acls_are_written_behind_acl_enable_and_enforced_only_with_initiators(env, device):
    target = make_target(env)
    path = env / "state" / "volumes" / "cxt" / "volume-1"
    loc = target.create_export(None, vol(1), device)
    assert "ACL" not in path.read_text(), "no initiator: no ACL_Enable, which would shut all out"
    assert not shown(PREFIX + "volume-1").acl_enabled
    attached = vol(1, provider_location=loc["location"], provider_auth=loc["auth"])
    target.initialize_connection(attached, {"initiator": "iqn.1993-08.org.debian:01:a"})
    assert "\tACL_Enable=Yes\n\tACL=iname=iqn.1993-08.org.debian:01:a\n" in path.read_text()
    live = shown(PREFIX + "volume-1")
    assert live.acl_enabled and live.acl_initiators == {"iqn.1993-08.org.debian:01:a"}
    target.terminate_connection(attached, {"initiator": "iqn.1993-08.org.debian:01:a"})
    assert "ACL" not in path.read_text() and not shown(PREFIX + "volume-1").acl_enabled


def test_a_record_with_acl_lines_but_no_acl_enable_is_rewritten_not_adopted(env, device):
    """Files an older version wrote had ACL= without ACL_Enable=Yes: chiscsi ignored them."""
    records = env / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    spec = ExportSpec(
        "1",
        "volume-1",
        PREFIX + "volume-1",
        device,
        0,
        (Portal("127.0.0.1", 3260),),
        ChapCredentials("olduser", "old-secret-1234"),
        None,
        ("iqn.1993-08.org.debian:01:a",),
    )
    text = codec.render(spec, codec.FILE, "s").replace("\tACL_Enable=Yes\n", "")
    (records / "volume-1").write_text(text)
    report = make_target(env).restore_exports()
    assert report.started == ["1"]
    assert "\tACL_Enable=Yes\n" in (records / "volume-1").read_text()
    assert shown(PREFIX + "volume-1").acl_initiators == {"iqn.1993-08.org.debian:01:a"}


# ------------------------------------------------------- failures roll back


def failing_iscsictl(env, script: str):
    failing = env / "failbin"
    failing.mkdir(exist_ok=True)
    (failing / "iscsictl").write_text(script)
    (failing / "iscsictl").chmod(0o755)
    return failing


def test_a_failed_start_leaves_no_file_no_target_and_no_device_claim(env, device, monkeypatch):
    failing = failing_iscsictl(
        env,
        "#!/bin/sh\ncase \"$1\" in -S) echo 'iscsictl: cannot start' >&2; "
        f'exit 3;; esac\nexec {env / "bin" / "iscsictl"} "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{failing}:{os.environ['PATH']}")
    with pytest.raises(TargetCreateFailed, match="cannot start"):
        make_target(env).create_export(None, vol(1), device)
    assert not (env / "state" / "volumes" / "cxt" / "volume-1").exists()
    assert not os.listdir(env / "state" / "volumes" / "cxt-devices")
    assert shown(PREFIX + "volume-1") is None


def test_a_failed_reload_restores_the_previous_file_byte_for_byte(env, device, monkeypatch):
    target = make_target(env)
    target.create_export(None, vol(1), device)
    path = env / "state" / "volumes" / "cxt" / "volume-1"
    before = path.read_bytes()
    failing = failing_iscsictl(env, "#!/bin/sh\necho 'iscsictl: busy' >&2; exit 3\n")
    monkeypatch.setenv("PATH", f"{failing}:{os.environ['PATH']}")
    other = disk(env, "other")
    with pytest.raises(TargetCreateFailed):
        make_target(env).create_export(None, vol(1), other)
    assert path.read_bytes() == before
    assert make_target(env).devices.owner(device) == "volume-1"
    assert make_target(env).devices.owner(other) is None


def test_a_start_chiscsi_reports_but_that_is_not_what_was_asked_is_rolled_back(env, device, monkeypatch):
    """The tool says 'added' for a block that lost its CHAP line on the way: the detailed
    output shows it, so the create fails and nothing stays."""
    real = env / "bin" / "iscsictl"
    failing = failing_iscsictl(
        env,
        textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = -S ]; then
            grep -v Auth_CHAP "$4" | sed 's/AuthMethod=CHAP/AuthMethod=None/' > "$4.lossy"
            exec {real} "$1" "$2" -f "$4.lossy" -x "$6"
        fi
        exec {real} "$@"
        """),
    )
    monkeypatch.setenv("PATH", f"{failing}:{os.environ['PATH']}")
    with pytest.raises(TargetCreateFailed, match="initiator CHAP accounts"):
        make_target(env).create_export(None, vol(1), device)
    assert shown(PREFIX + "volume-1") is None
    assert not (env / "state" / "volumes" / "cxt" / "volume-1").exists()


# ------------------------------------------------------------ what chiscsi refuses


REFUSED = [
    (
        "secret-17",
        lambda env: (vol(1, provider_auth="CHAP user1 seventeen-chars-x"), disk(env, "a")),
        {},
        "12 to 16",
    ),
    (
        "secret-hash",
        lambda env: (vol(1, provider_auth="CHAP user1 secret#1234567"), disk(env, "a")),
        {},
        "comment",
    ),
    (
        "configured-secret",
        lambda env: (vol(1), disk(env, "a")),
        {"use_chap_auth": True, "chap_username": "u", "chap_password": "a-very-long-secret-20"},
        "12 to 16",
    ),
    ("blockio-file", lambda env: (vol(1), disk(env, "a")), {"iscsi_iotype": "blockio"}, "BLK class"),
    ("zero-size", lambda env: (vol(1), disk(env, "a", size=0)), {}, "size 0"),
    ("taken-device", lambda env: (vol(1), disk(env, "kept")), {}, "already exported by volume-5"),
    # Every helper refuses it now, as no initiator could dial it (issue 13).
    (
        "all-zero-portal",
        lambda env: (vol(1), disk(env, "a")),
        {"target_ip_address": "0.0.0.0"},
        "unspecified address",
    ),
    # A valid EUI name is upper-case hex: chiscsi would lower-case it and never find it again.
    (
        "upper-case-iqn",
        lambda env: ({"id": "1", "name": "1"}, disk(env, "a")),
        {"target_prefix": "eui.02004567A425678", "volume_name_template": "%s"},
        "lower-cases",
    ),
]


@pytest.mark.parametrize("case,make,overrides,rule", REFUSED, ids=[c[0] for c in REFUSED])
def test_values_chiscsi_refuses_are_refused_before_anything_is_written(env, case, make, overrides, rule):
    make_target(env).create_export(None, vol(5), disk(env, "kept"))
    volume, device = make(env)
    snapshot = {p: p.read_bytes() for p in (env / "state").rglob("*") if p.is_file()}
    calls: list[tuple[str, ...]] = []
    with pytest.raises(Refused) as raised:
        make_target(env, calls, **overrides).create_export(None, volume, device)
    assert rule in str(raised.value)
    assert calls == [], "nothing reached iscsictl"
    assert {p: p.read_bytes() for p in (env / "state").rglob("*") if p.is_file()} == snapshot
    assert shown(PREFIX + "volume-1") is None


def test_a_device_is_free_again_once_its_export_is_gone_or_its_claim_is_stale(env):
    target = make_target(env)
    shared = disk(env, "shared")
    target.create_export(None, vol(1), shared)
    with pytest.raises(InvalidInput, match="already exported by volume-1"):
        target.create_export(None, vol(2), shared)
    target.remove_export(None, vol(1))
    target.create_export(None, vol(2), shared)
    # A claim whose owner's record is gone (a crash between the two) does not block.
    (env / "state" / "volumes" / "cxt" / "volume-2").unlink()
    assert iscsictl("-s", f"target={PREFIX}volume-2")[0] == 0
    target.create_export(None, vol(3), shared)
    assert shown(PREFIX + "volume-3").devices[0].path == shared


# ------------------------------------------------------------------- cost


@pytest.mark.parametrize("existing", [1, 500])
def test_iscsictl_calls_per_create_and_remove_do_not_grow_with_exports(env, existing):
    populate = make_target(env, executor=InProcessExecutor(emulator_cli.main))
    for n in range(existing):
        populate.create_export(None, vol(1000 + n), disk(env, f"p{n}"))
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls)
    target.create_export(None, vol(1), disk(env, "measured"))
    assert [c[1:3] for c in calls] == [("-S", f"target={PREFIX}volume-1"), ("-c", f"target={PREFIX}volume-1")]
    calls.clear()
    target.remove_export(None, vol(1))
    assert [c[1:] for c in calls] == [("-s", f"target={PREFIX}volume-1"), ("-c", f"target={PREFIX}volume-1")]
    stopped = [f"volume-{1000 + n}" for n in range(min(existing, 3))]
    for name in stopped:  # a partial outage: a few targets lost, the rest live
        assert iscsictl("-s", f"target={PREFIX}{name}")[0] == 0
    calls.clear()
    report = target.restore_exports()
    assert sorted(report.started) == sorted(n.removeprefix("volume-") for n in stopped)
    assert len(report.unchanged) == existing - len(stopped)
    assert calls[0][1:] == ("-c", "target=ALL")
    assert calls[-1][1:] == ("-c", "target=ALL")
    assert len(calls) == len(stopped) + 2, (
        "one listing, one start per missing export, and one listing to confirm they are live"
    )


# ------------------------------------------------------------ CxtAdm's files


def test_a_cxtadm_written_file_is_adopted_with_its_credentials(env, device):
    records = env / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    (records / "volume-7").write_text(CXTADM_BLOCK.format(id=7, device=device))
    target = make_target(env)
    status = target.get_export(vol(7))
    assert status.spec.volume_id == "7" and status.spec.chap.username == "cxtuser7"
    report = target.restore_exports()
    assert report.started == ["7"]
    # CxtAdm names no class, so chiscsi reads BLK, which refuses a regular file: the
    # block is rewritten with FILE (iscsi_iotype = fileio), credentials unchanged.
    text = (records / "volume-7").read_text()
    assert f"\tTargetDevice={device},FILE," in text and '"cxtuser7":"cxtsecret7xyz"' in text
    again = target.create_export(None, vol(7), device)
    assert again["auth"] == "CHAP cxtuser7 cxtsecret7xyz"
    assert shown(PREFIX + "volume-7").devices[0].device_class == "FILE"


# -------------------------------------------------------------- secrets, CLI


def test_no_secret_on_any_command_line_or_log_line(env, device, caplog):
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls, iscsi_mutual_chap=True)
    caplog.set_level(logging.DEBUG)
    result = target.create_export(None, vol(1), device)
    volume = vol(1, provider_auth=result["auth"], provider_location=result["location"])
    target.ensure_export(None, volume, device)
    target.initialize_connection(volume, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.terminate_connection(volume, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.extend_target(volume)
    emulator.reset(env / "chiscsi-state")
    target.restore_exports()
    target.remove_export(None, volume)
    assert target.get_export(volume) is None
    secret = result["auth"].split()[2]
    assert calls and not any(secret in arg for argv in calls for arg in argv)
    assert secret not in caplog.text


def test_cli_main_job_on_the_emulator(env, device):
    base = [
        sys.executable,
        "-m",
        "iscsi_helper",
        "--target-helper",
        "chiscsi",
        "--state-path",
        str(env / "state"),
        "--lock-path",
        str(env / "locks"),
        "--target-ip-address",
        "127.0.0.1",
        "--chiscsi-conf",
        str(env / "chiscsi.conf"),
    ]
    done = subprocess.run(base + ["export", "1", device], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:3260,1 iqn.2010-10.org.openstack:volume-1 0" in done.stdout
    done = subprocess.run(base + ["export", "10", disk(env, "d10")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(base + ["list"], capture_output=True, text=True).stdout
    assert "volume-1\n" in listing and "volume-10\n" in listing
    subprocess.run(base + ["unexport", "1"], check=True, capture_output=True)
    listing = subprocess.run(base + ["list", "--json"], capture_output=True, text=True).stdout
    assert '"volume_id": "10"' in listing and '"volume_id": "1"' not in listing


def test_missing_iscsictl_is_one_clear_line(tmp_path, device):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iscsi_helper",
            "--target-helper",
            "chiscsi",
            "--state-path",
            str(tmp_path / "s"),
            "--lock-path",
            str(tmp_path / "l"),
            "--target-ip-address",
            "127.0.0.1",
            "export",
            "1",
            device,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "iscsi-helper: error: iscsictl not found on PATH; install Chelsio's "
        "chiscsi target (or put its emulator first on PATH)"
    )
    assert not (tmp_path / "s" / "volumes" / "cxt" / "volume-1").exists()


# --------------------------------------------------------- one iscsictl at a time


EXPORTER = textwrap.dedent("""
    import json, sys
    from iscsi_helper import options, registry
    target = registry.get_helper(options.new_config([sys.argv[1]]))
    n, device = sys.argv[2], sys.argv[3]
    print(json.dumps(target.create_export(None, {"id": n, "name": f"volume-{n}"}, device)))
""")


def config_file(env, **extra) -> str:
    path = env / "iscsi-helper.conf"
    lines = [
        "[DEFAULT]",
        "target_helper = chiscsi",
        f"state_path = {env / 'state'}",
        "target_ip_address = 127.0.0.1",
        f"chiscsi_conf = {env / 'chiscsi.conf'}",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[oslo_concurrency]",
        f"lock_path = {env / 'locks'}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_eight_processes_exporting_different_volumes_at_once_all_succeed(env):
    config = config_file(env)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", EXPORTER, config, str(n), disk(env, f"v{n}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    results = {}
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results[n] = json.loads(out)
    listing = parse_summaries(iscsictl("-c", "target=ALL")[1])
    assert sorted(listing.targets) == sorted(f"{PREFIX}volume-{n}" for n in range(8))
    for n, result in results.items():
        assert shown(f"{PREFIX}volume-{n}").chap_initiator_users == (result["auth"].split()[1],)


HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running iscsictl holds
    print("held", flush=True)
    sys.stdin.readline()  # until told to let go
""")


def pid_file(env):
    return os.environ.get("CHISCSI_EMULATOR_PIDFILE") or str(env / "chiscsi-state" / "iscsictl.pid")


@contextlib.contextmanager
def outside_iscsictl(env):
    """Another program's iscsictl holding chiscsi's host lock until the block's caller lets go."""
    (env / "chiscsi-state").mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pid_file(env)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=30)


def test_an_outside_iscsictl_holding_the_lock_delays_an_export_but_does_not_fail_it(env, device):
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls, chiscsi_lock_retry_timeout=600)
    outcome: dict[str, object] = {}

    def export() -> None:
        try:
            outcome["result"] = target.create_export(None, vol(1), device)
        except Exception as err:  # noqa: BLE001 - reported below
            outcome["error"] = err

    with outside_iscsictl(env) as holder:
        worker = threading.Thread(target=export)
        worker.start()
        while len(calls) < 3 and worker.is_alive():  # refused, retried, refused again
            worker.join(0.05)
        assert len(calls) >= 3 and len(set(calls)) == 1, "the same -S, retried while refused"
        holder.stdin.close()  # the other iscsictl finishes
        holder.wait(timeout=30)
        worker.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["location"].endswith(f"{PREFIX}volume-1 0")
    assert shown(PREFIX + "volume-1") is not None


def test_a_lock_held_past_the_retry_timeout_is_a_clear_error_that_leaves_nothing(env, device):
    target = make_target(env, chiscsi_lock_retry_timeout=0.5)
    with outside_iscsictl(env):
        with pytest.raises(TargetCreateFailed) as raised:
            target.create_export(None, vol(1), device)
    message = str(raised.value)
    assert LOCK_REFUSAL in message and "chiscsi_lock_retry_timeout" in message
    assert not (env / "state" / "volumes" / "cxt" / "volume-1").exists()
    assert shown(PREFIX + "volume-1") is None


# --------------------------------------------------------- past the listing's cut


def test_restore_past_the_listing_cut_starts_only_what_is_missing_and_duplicates_nothing(env):
    """Long IQNs fill chiscsi's 128 KiB name buffer with ~600 targets: 700 are past it."""
    prefix = "iqn.2010-10.org.openstack." + "x" * 175 + ":"  # 212-byte IQNs
    count = 700
    calls: list[tuple[str, ...]] = []
    target = make_target(
        env,
        calls,
        executor=InProcessExecutor(emulator_cli.main, observers=[calls.append]),
        target_prefix=prefix,
    )
    for n in range(count):
        target.create_export(None, vol(n), disk(env, f"v{n}", size=4096))
    listing = parse_summaries(iscsictl("-c", "target=ALL")[1])
    assert listing.may_be_cut and len(listing.targets) < count - 50, "the listing really is cut"
    hidden = sorted(
        int(i.rsplit("-", 1)[1]) for i in {f"{prefix}volume-{n}" for n in range(count)} - set(listing.targets)
    )
    stopped = [0, 1, hidden[0], hidden[len(hidden) // 2], hidden[-1]]  # before and past the cut
    for n in stopped:
        assert iscsictl("-s", f"target={prefix}volume-{n}")[0] == 0
    calls.clear()
    report = target.restore_exports()
    assert sorted(map(int, report.started)) == sorted(stopped) and report.ok
    assert len(report.unchanged) == count - len(stopped)
    starts = [c for c in calls if c[1] == "-S"]
    assert sorted(c[2] for c in starts) == sorted(f"target={prefix}volume-{n}" for n in stopped)
    lookups = [c for c in calls if c[1] == "-c"]
    # Two views, each one listing then batches by name past the cut: one to see what is
    # missing, one to confirm that what was started is live.
    alls = [n for n, c in enumerate(lookups) if c[2] == "target=ALL"]
    assert len(alls) == 2 and alls[0] == 0 and 2 < len(lookups) <= 6, lookups
    every = parse_details(
        iscsictl("-c", "target=" + ",".join(f"{prefix}volume-{n}" for n in range(count)))[1]
    )
    assert all(every[f"{prefix}volume-{n}"] is not None for n in range(count))
    assert {d.state for d in target.reconcile()} == {"ok"}
    assert all(s.live for s in target.list_exports())


# ------------------------------------------- a remove while an initiator is logged in


INITIATOR = "iqn.1993-08.org.debian:01:chiscsi-busy"


class QemuSession:
    """A real initiator (qemu's libiscsi block driver) logged in until ``close()``.

    ``qemu-io`` without ``-c`` reads commands from stdin and keeps its iSCSI
    session open between them; a ``read`` proves the session works.
    """

    def __init__(self, tmp_path, props: dict) -> None:
        portal = props["target_portal"]
        secret_file = tmp_path / "chap-secret"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(props["auth_password"])
        options = (
            f"driver=iscsi,transport=tcp,portal={portal},target={props['target_iqn']},"
            f"lun={props['target_lun']},initiator-name={INITIATOR},"
            f"user={props['auth_username']},password-secret=chap0"
        )
        self.proc = subprocess.Popen(
            ["qemu-io", "--object", f"secret,id=chap0,file={secret_file}", "--image-opts", options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def read(self) -> str:
        """One 512-byte read over the session; qemu-io's answer line."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("read 0 512\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line or "read" in line and "bytes" in line or "error" in line.lower():
                return line

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


needs_qemu = pytest.mark.skipif(
    not shutil.which("qemu-io"), reason="needs qemu-utils (scripts/setup.sh installs it)"
)


@pytest.fixture
def wire(env, monkeypatch):
    """The emulator serving its targets through the embedded wire target, on a free port."""
    from iscsi_helper.lab.rig import free_port

    monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "1")
    monkeypatch.setenv("CHISCSI_EMULATOR_STOP_WAIT", "2")  # chiscsi waits 30 s
    return free_port()


def logged_in(env, n=1) -> list[str]:
    """Initiators the emulator's wire target has sessions from on volume-<n>'s target."""
    from iscsi_helper.lab.emulators.chiscsi import serving

    return list(serving.sessions(env / "chiscsi-state", f"{PREFIX}volume-{n}")["served"])


def attached(env, port, n=1):
    target = make_target(env, target_port=port)
    loc = target.create_export(None, vol(n), disk(env, f"wire{n}", size=8 << 20))
    volume = vol(n, provider_location=loc["location"], provider_auth=loc["auth"])
    props = target.initialize_connection(volume, {"initiator": INITIATOR})["data"]
    return target, volume, props


@needs_qemu
def test_a_remove_while_a_real_initiator_is_logged_in_closes_its_session(env, wire):
    """chiscsi closes the target's sessions first; one that goes is no obstacle."""
    target, volume, props = attached(env, wire)
    session = QemuSession(env, props)
    try:
        assert "read 512/512 bytes" in session.read()
        assert logged_in(env) == [INITIATOR], "the target sees the session"
        target.remove_export(None, volume)
        assert shown(PREFIX + "volume-1") is None
        assert not (env / "state" / "volumes" / "cxt" / "volume-1").exists()
    finally:
        session.close()


@needs_qemu
def test_a_remove_while_a_real_initiator_stays_logged_in_is_reported_busy(env, wire):
    """A session that outlasts chiscsi's wait (stuck on I/O: the emulator's session hook
    keeps this initiator's wire session open) makes -s say busy and exit 0. The helper
    reports it, keeps the record, and the export is live again as recorded."""
    from iscsi_helper.exception import TargetBusy
    from iscsi_helper.lab.emulators.chiscsi import sessions

    target, volume, props = attached(env, wire)
    record = env / "state" / "volumes" / "cxt" / "volume-1"
    before = record.read_bytes()
    session = QemuSession(env, props)
    try:
        assert "read 512/512 bytes" in session.read()
        assert logged_in(env) == [INITIATOR], "the target sees the session"
        sessions.declare_stuck(env / "chiscsi-state", PREFIX + "volume-1", [INITIATOR])
        with pytest.raises(TargetBusy) as raised:
            target.remove_export(None, volume)
        assert f"'{PREFIX}volume-1 busy.'" in str(raised.value)
        assert "live again from the export record, which is kept" in str(raised.value)
        assert record.read_bytes() == before
        assert shown(PREFIX + "volume-1").acl_initiators == {INITIATOR}
        assert {d.state for d in target.reconcile()} == {"ok"}
    finally:
        session.close()
    (env / "chiscsi-state" / "sessions").rename(env / "no-more-stuck-sessions")
    target.remove_export(None, volume)  # logged out: the remove goes through
    assert shown(PREFIX + "volume-1") is None and not record.exists()


def test_every_iscsictl_call_holds_the_hosts_iscsictl_lock(env, device, monkeypatch):
    """The lock is the locking module's (a file under lock_path, or coordination_url's
    backend), named for this host, and held around each call, not across operations."""
    import socket

    from iscsi_helper import locking

    held: list[str] = []
    during_calls: list[tuple[str, ...]] = []
    real_lock = locking.named_lock

    between_calls: list[tuple[str, ...]] = []

    @contextlib.contextmanager
    def recording_lock(conf, name):
        if not name.startswith("iscsictl-"):
            between_calls.append(tuple(held))  # volume and device locks: taken between calls
        with real_lock(conf, name):
            held.append(name)
            try:
                yield
            finally:
                held.remove(name)

    monkeypatch.setattr(locking, "named_lock", recording_lock)
    target = make_target(env, executor=Executor(observers=[lambda argv: during_calls.append(tuple(held))]))
    result = target.create_export(None, vol(1), device)
    volume = vol(1, provider_auth=result["auth"], provider_location=result["location"])
    target.initialize_connection(volume, {"initiator": "iqn.1993-08.org.debian:01:a"})
    target.restore_exports()
    target.remove_export(None, volume)
    host_lock = f"iscsictl-{socket.gethostname()}"
    assert len(during_calls) >= 6
    assert all(locks.count(host_lock) == 1 for locks in during_calls), during_calls
    assert between_calls and not any(host_lock in locks for locks in between_calls), (
        "released after each call, never held across an operation"
    )
