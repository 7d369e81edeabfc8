"""What only the IET helper does: ietd.conf, explicit tids, 234/239 on ensure, sessions, costs.

The shared contract is tested in tests/behaviour; these tests cover what is
IET's own, against the ``ietadm`` emulator found on PATH.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsi_helper import options, registry
from iscsi_helper.codecs.ietd_conf import iter_blocks, replace_block
from iscsi_helper.exception import TargetCreateFailed
from iscsi_helper.executor import Executor
from iscsi_helper.formats import ProviderLocation, parse_provider_auth
from iscsi_helper.lab.emulators.iet import cli as emulator_cli
from iscsi_helper.lab.emulators.iet.state import PROC_ENV, STATE_ENV, State
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.rig import InProcessExecutor, run_main
from iscsi_helper.targets.iet import IetHelper
from tests.support.devices import make_device

PREFIX = "iqn.2010-10.org.openstack:"
INITIATOR = "iqn.1994-05.com.example:host1"

FOREIGN_CONF = """\
# ietd.conf: managed partly by hand, partly by iscsi-helper
IncomingUser discovery-user discoverysecret1
  MaxConnections 1

# the backup LUN (do not touch)
Target iqn.2001-04.com.example:backup
\tIncomingUser backup-user backupsecret1234
\tLun 0 Path=/srv/backup.img,Type=fileio
\tAlias backup

Target iqn.2010-10.org.openstack:volume-10
\tLun 0 Path=/srv/not-ours-10.img,Type=fileio
# trailing comment, no blank line before it
Target iqn.2010-10.org.openstack:volume-1x
\tLun 0 Path=/srv/x.img,Type=fileio
"""

# What Cinder's IetAdm appended (its string literal, indentation and all).
CINDER_BLOCK = """
                    Target iqn.2010-10.org.openstack:volume-{id}
                        IncomingUser cinderuser{id} cindersecret{id}xyz
                        Lun 0 Path={device},Type=fileio
            """


@pytest.fixture
def env(tmp_path, monkeypatch):
    bin_dir = install_shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "iet-state"))
    monkeypatch.setenv(PROC_ENV, str(tmp_path / "proc"))
    monkeypatch.setenv("IET_EMULATOR_WIRE", "0")
    (tmp_path / "etc").mkdir()
    return tmp_path


def make_target(
    tmp_path: Path, calls: list | None = None, executor: Executor | None = None, **overrides: object
) -> IetHelper:
    conf = options.new_config(
        overrides={
            "target_helper": "iet",
            "state_path": str(tmp_path / "state"),
            "target_ip_address": "127.0.0.1",
            "iet_conf": str(tmp_path / "etc" / "ietd.conf"),
            "iet_proc_dir": str(tmp_path / "proc"),
            "oslo_concurrency.lock_path": str(tmp_path / "locks"),
            **overrides,
        }
    )
    if executor is None:
        executor = Executor(observers=[calls.append] if calls is not None else [])
    target = registry.get_helper(conf, executor)
    assert isinstance(target, IetHelper)
    return target


def vol(n: int | str, **extra: str) -> dict[str, str]:
    return {"id": str(n), "name": f"volume-{n}", **extra}


def ietadm(*args: str) -> tuple[int, str]:
    code, out, _ = run_main(emulator_cli.main, args)
    return code, out


def proc_volume(tmp_path: Path) -> str:
    return (tmp_path / "proc" / "volume").read_text()


def emulator(tmp_path: Path) -> State:
    return State(tmp_path / "iet-state", tmp_path / "proc")


def reboot(tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(tmp_path / "iet-state")
    shutil.rmtree(tmp_path / "proc")


def ietadm_ops(calls: list[tuple[str, ...]]) -> list[str]:
    """Each call as ``<op> <options> <params key>``, values left out (they differ per export)."""
    shapes = []
    for argv in calls:
        assert argv[0] == "ietadm"
        words, args = [], list(argv[1:])
        while args:
            arg = args.pop(0)
            name, _, value = arg.partition("=")
            if name in ("--op", "--params") and not value:
                value = args.pop(0)
            if name == "--op":
                words.insert(0, value)
            elif name == "--params":
                words.append(value.split("=")[0])
            else:
                words.append(name.lstrip("-"))
        shapes.append(" ".join(words))
    return shapes


# -- ietd.conf ----------------------------------------------------------------


def test_ietd_conf_block_layout_and_private_files(env):
    dev = make_device(env, "d1")
    target = make_target(env)
    result = target.create_export(None, vol(1), dev)
    user, secret = result["auth"].split()[1:]
    conf = env / "etc" / "ietd.conf"
    assert conf.read_text() == (
        f"Target {PREFIX}volume-1\n\tIncomingUser {user} {secret}\n\tLun 0 Path={dev},Type=fileio\n"
    )
    index = env / "state" / "volumes" / "iet" / "volume-1"
    record = json.loads(index.read_text())
    assert record["tid"] == ProviderLocation.parse(result["location"]).tid
    assert record["chap"] == [user, secret] and record["volume_id"] == "1"
    for path in (conf, index):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_mutual_chap_adds_outgoing_user_to_conf_and_target(env):
    dev = make_device(env, "d1")
    target = make_target(env, iscsi_mutual_chap=True)
    target.create_export(None, vol(1), dev)
    record = json.loads((env / "state" / "volumes" / "iet" / "volume-1").read_text())
    out_user, out_secret = record["target_chap"]
    lines = (env / "etc" / "ietd.conf").read_text().splitlines()
    assert lines[2] == f"\tOutgoingUser {out_user} {out_secret}"
    live = emulator(env).load_target(record["tid"])
    assert live["outgoing"] == [[out_user, out_secret]]


def test_other_softwares_blocks_and_comments_survive_create_and_remove_byte_for_byte(env):
    conf = env / "etc" / "ietd.conf"
    conf.write_text(FOREIGN_CONF)
    target = make_target(env)
    target.create_export(None, vol(1), make_device(env, "d1"))
    target.create_export(None, vol(2), make_device(env, "d2"))
    text = conf.read_text()
    assert text.startswith(FOREIGN_CONF)
    assert text.count(f"Target {PREFIX}volume-1\n") == 1
    assert f"Target {PREFIX}volume-10\n\tLun 0 Path=/srv/not-ours-10.img" in text
    target.remove_export(None, vol(1))
    target.remove_export(None, vol(2))
    assert conf.read_bytes() == FOREIGN_CONF.encode()


def test_replace_block_matches_the_exact_name_only():
    text = FOREIGN_CONF + "Target iqn.2010-10.org.openstack:volume-1\n\tLun 0 Path=/a,Type=fileio\n"
    new = "Target iqn.2010-10.org.openstack:volume-1\n\tLun 0 Path=/b,Type=fileio\n"
    assert replace_block(text, PREFIX + "volume-1", new) == FOREIGN_CONF + new
    assert replace_block(text, PREFIX + "volume-1", None) == FOREIGN_CONF
    assert replace_block(FOREIGN_CONF, PREFIX + "volume-1", None) == FOREIGN_CONF
    # an unterminated last line of someone else's gets the newline it needs, nothing more
    assert replace_block("Alias x", PREFIX + "volume-1", new) == "Alias x\n" + new


_CONF_LINES = [
    f"Target {PREFIX}volume-1\n",
    f"target  {PREFIX}volume-1 \r\n",
    "\tLun 0 Path=/a\n",
    f"# {PREFIX}volume-1 in a comment\n",
    "\n",
    f"Target {PREFIX}volume-10\n",
    "  IncomingUser someone secretsecret1\n",
    f"Target {PREFIX}volume-2\n",
    "\r",
    f"Alias {PREFIX}volume-1\n",
    "\x0c",
    f"Target {PREFIX}volume-1",
]


@given(st.lists(st.sampled_from(_CONF_LINES), max_size=10))
def test_replace_block_changes_only_the_blocks_of_that_name(pieces):
    """Whatever surrounds them (mentions in comments, CR, form feeds, the name as a prefix of
    another), only volume-1's blocks change; the fast paths that skip the line scan agree."""
    text, iqn = "".join(pieces), PREFIX + "volume-1"
    new = f"Target {iqn}\n\tLun 0 Path=/b,Type=fileio\n"

    def split(t: str) -> tuple[list[str], int]:
        lines = t.splitlines(keepends=True)
        ours = {i for name, start, end in iter_blocks(lines) if name == iqn for i in range(start, end)}
        return [line for i, line in enumerate(lines) if i not in ours], len(
            [1 for name, _s, _e in iter_blocks(lines) if name == iqn]
        )

    others, _ = split(text)
    removed = replace_block(text, iqn, None)
    # Compared as text: a lone "\r" line and a "\n" line that our block separated
    # are one "\r\n" line once it is gone, byte for byte what they were.
    remaining, count = split(removed)
    assert count == 0 and "".join(remaining) == "".join(others)
    replaced = replace_block(text, iqn, new)
    kept, count = split(replaced)
    assert count == 1
    assert "".join(kept).rstrip("\n") == "".join(others).rstrip("\n")
    assert replace_block(replaced, iqn, new) == replaced  # idempotent


def test_cinder_written_block_is_listed_adopted_with_its_chap_and_not_duplicated(env):
    dev = make_device(env, "d7")
    conf = env / "etc" / "ietd.conf"
    conf.write_text("# ietd.conf\n" + CINDER_BLOCK.format(id=7, device=dev))
    target = make_target(env)
    records = {s.spec.volume_name: s for s in target.list_exports()}
    assert set(records) == {"volume-7"}
    spec = records["volume-7"].spec
    assert spec.volume_id == "7" and spec.device_path == dev
    assert (spec.chap.username, spec.chap.password) == ("cinderuser7", "cindersecret7xyz")
    assert records["volume-7"].live is None

    # Cinder had the target live too (IetAdm created it with tid 0 -> 1).
    assert ietadm("--op", "new", "--tid=0", "--params", f"Name={PREFIX}volume-7")[0] == 0
    assert ietadm("--op", "new", "--tid=1", "--lun=0", "--params", f"Path={dev},Type=fileio")[0] == 0
    assert (
        ietadm(
            "--op", "new", "--tid=1", "--user", "--params=IncomingUser=cinderuser7,Password=cindersecret7xyz"
        )[0]
        == 0
    )
    result = target.create_export(None, vol(7), dev)
    assert result["auth"] == "CHAP cinderuser7 cindersecret7xyz"
    assert ProviderLocation.parse(result["location"]).tid == 1
    text = conf.read_text()
    assert text.count(f"Target {PREFIX}volume-7") == 1
    assert text.startswith("# ietd.conf\n")
    assert emulator(env).load_target(1)["incoming"] == [["cinderuser7", "cindersecret7xyz"]]


# -- ensure after a restart: 234 and 239 ---------------------------------------


def _record_tid(env: Path, name: str) -> int:
    return json.loads((env / "state" / "volumes" / "iet" / name).read_text())["tid"]


def test_ensure_when_ietd_reloaded_the_conf_with_other_tids_answers_234_and_239_as_there(env):
    """After a real reboot ietd loads ietd.conf itself and numbers the targets its own way."""
    dev = make_device(env, "d1")
    target = make_target(env)
    created = target.create_export(None, vol(1), dev)
    user, secret = created["auth"].split()[1:]
    old_tid = _record_tid(env, "volume-1")
    reboot(env)
    # ietd at boot: a foreign target first, then ours, from ietd.conf
    assert ietadm("--op", "new", f"--tid={old_tid}", "--params", "Name=iqn.2001-04.com.example:x")[0] == 0
    assert ietadm("--op", "new", "--tid=0", "--params", f"Name={PREFIX}volume-1")[0] == 0
    new_tid = old_tid + 1
    assert ietadm("--op", "new", f"--tid={new_tid}", "--lun=0", "--params", f"Path={dev},Type=fileio")[0] == 0
    assert (
        ietadm(
            "--op", "new", f"--tid={new_tid}", "--user", f"--params=IncomingUser={user},Password={secret}"
        )[0]
        == 0
    )
    calls: list[tuple[str, ...]] = []
    stored = vol(1, provider_auth=created["auth"], provider_location=created["location"])
    make_target(env, calls).ensure_export(None, stored, dev)
    codes = [c for c in calls if "Name=" in " ".join(c)]
    assert codes, "ensure tried to create the target and took 234 as 'it is there'"
    assert _record_tid(env, "volume-1") == new_tid
    assert emulator(env).load_target(new_tid)["luns"][0]["path"] == dev
    assert emulator(env).load_target(old_tid)["name"] == "iqn.2001-04.com.example:x", "foreign untouched"
    assert f"tid:{new_tid} name:{PREFIX}volume-1\n" in proc_volume(env)
    again = make_target(env).create_export(None, stored, dev)
    assert ProviderLocation.parse(again["location"]).tid == new_tid


def test_restore_after_ietd_reloaded_the_conf_calls_nothing_and_keeps_ops_constant(env, monkeypatch):
    """A real reboot: ietd loads ietd.conf at start and numbers the targets in file order.

    Everything is live, so the restore makes no ietadm call; it notes the
    new tids in our records (from its one proc listing), so a later remove
    finds its target at the recorded tid instead of reading the proc file.
    """
    from iscsi_helper.lab.emulators.iet.boot import start_ietd

    dev = make_device(env, "d1")
    target = make_target(env)
    for n in (1, 2, 3, 4):
        target.create_export(None, vol(n), dev)
    target.remove_export(None, vol(1))  # a hole: file order and our tids now differ
    target.create_export(None, vol(1), dev)
    before = {n: _record_tid(env, f"volume-{n}") for n in (1, 2, 3, 4)}
    reboot(env)
    report = start_ietd(State.from_env(), env / "etc" / "ietd.conf")
    assert report.targets == 4 and not report.refused
    live = {}
    for line in proc_volume(env).splitlines():
        if line.startswith("tid:"):
            tid_field, name_field = line.split()
            live[name_field.removeprefix(f"name:{PREFIX}")] = int(tid_field.removeprefix("tid:"))
    assert live != {f"volume-{n}": t for n, t in before.items()}, "ietd numbered them otherwise"
    calls: list[tuple[str, ...]] = []
    report = make_target(env, calls).restore_exports()
    assert calls == [] and sorted(report.unchanged) == ["1", "2", "3", "4"]
    assert {f"volume-{n}": _record_tid(env, f"volume-{n}") for n in (1, 2, 3, 4)} == live
    proc_reads: list[str] = []
    original = IetHelper._list_live
    monkeypatch.setattr(IetHelper, "_list_live", lambda self: proc_reads.append("volume") or original(self))
    calls.clear()
    make_target(env, calls).remove_export(None, vol(3))
    assert ietadm_ops(calls) == [
        "show tid user IncomingUser",
        "delete tid lun",
        "delete tid",
        "show tid user IncomingUser",
    ]  # gone? (the exit code is no proof)
    assert f"--tid={live['volume-3']}" in calls[-1] and proc_reads == []
    assert f"name:{PREFIX}volume-3" not in proc_volume(env)
    assert f"name:{PREFIX}volume-2" in proc_volume(env)


def test_ensure_finishes_a_half_created_target_lun_exists_239(env):
    dev = make_device(env, "d1")
    target = make_target(env)
    created = target.create_export(None, vol(1), dev)
    tid = _record_tid(env, "volume-1")
    user = created["auth"].split()[1]
    # The account dropped behind our back (an operator, or Cinder's IetAdm,
    # which added it last): target and LUN are live, no CHAP.
    assert ietadm("--op", "delete", f"--tid={tid}", "--user", f"--params=IncomingUser={user}")[0] == 0
    calls: list[tuple[str, ...]] = []
    make_target(env, calls).ensure_export(None, vol(1, provider_auth=created["auth"]), dev)
    live = emulator(env).load_target(tid)
    assert live["incoming"] == [created["auth"].split()[1:]]
    assert len(live["luns"]) == 1
    shapes = ietadm_ops(calls)
    assert shapes == [
        "show tid user IncomingUser",  # lookup: account gone, so not live
        "show tid user IncomingUser",  # realise: is the recorded tid ours? no
        "new tid Name",  # 234: the name exists (the proc file says where)
        "show tid user IncomingUser",  # account absent
        "new tid user IncomingUser",  # the one call with the secret
        "new tid lun Path",  # 239: LUN 0 is there
        "show tid user IncomingUser",
    ]  # confirm: live and ours now


def test_ensure_finishes_a_target_killed_between_account_and_lun(env):
    dev = make_device(env, "d1")
    created = make_target(env).create_export(None, vol(1), dev)
    tid = _record_tid(env, "volume-1")
    # Our create adds the account before the LUN: a crash in between leaves
    # a target that serves no disk, which ensure (and reconcile) complete.
    assert ietadm("--op", "delete", f"--tid={tid}", "--lun=0")[0] == 0
    assert make_target(env).reconcile()[0].state == "differs"
    calls: list[tuple[str, ...]] = []
    make_target(env, calls).ensure_export(None, vol(1, provider_auth=created["auth"]), dev)
    assert [lun["path"] for lun in emulator(env).load_target(tid)["luns"]] == [dev]
    assert ietadm_ops(calls) == [
        "show tid user IncomingUser",  # lookup: ours, LUN unknown
        "show tid user IncomingUser",  # realise: ours
        "new tid lun Path",  # the LUN, back
        "show tid user IncomingUser",
    ]  # confirm
    assert make_target(env).reconcile()[0].state == "ok"


def test_ensure_when_a_foreign_target_took_our_tid_moves_to_a_new_tid(env):
    dev = make_device(env, "d1")
    created = make_target(env).create_export(None, vol(1), dev)
    old_tid = _record_tid(env, "volume-1")
    reboot(env)
    assert ietadm("--op", "new", f"--tid={old_tid}", "--params", "Name=iqn.2001-04.com.example:y")[0] == 0
    make_target(env).ensure_export(None, vol(1, provider_auth=created["auth"]), dev)
    new_tid = _record_tid(env, "volume-1")
    assert new_tid != old_tid
    assert emulator(env).load_target(new_tid)["name"] == PREFIX + "volume-1"
    assert emulator(env).load_target(old_tid)["name"] == "iqn.2001-04.com.example:y"


def test_remove_never_deletes_a_target_of_another_name_at_the_recorded_tid(env):
    dev = make_device(env, "d1")
    make_target(env).create_export(None, vol(1), dev)
    tid = _record_tid(env, "volume-1")
    reboot(env)
    assert ietadm("--op", "new", f"--tid={tid}", "--params", "Name=iqn.2001-04.com.example:z")[0] == 0
    make_target(env).remove_export(None, vol(1))
    assert emulator(env).load_target(tid)["name"] == "iqn.2001-04.com.example:z"
    assert not (env / "state" / "volumes" / "iet" / "volume-1").exists()


# -- sessions, iotype, rollback ------------------------------------------------


def test_remove_force_closes_an_open_session(env):
    dev = make_device(env, "d1")
    target = make_target(env)
    target.create_export(None, vol(1), dev)
    tid = _record_tid(env, "volume-1")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "iscsi_helper.lab.emulators.iet",
            "--inject-session",
            f"--tid={tid}",
            f"--initiator={INITIATOR}",
            "--ip=192.0.2.10",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    sid = int(out.stdout)
    assert f"sid:{sid} initiator:{INITIATOR}" in (env / "proc" / "session").read_text()
    calls: list[tuple[str, ...]] = []
    make_target(env, calls).remove_export(None, vol(1))
    assert emulator(env).load_target(tid) is None
    assert PREFIX + "volume-1" not in proc_volume(env)
    assert ("ietadm", "--op", "delete", f"--tid={tid}", f"--sid={sid}", "--cid=0") in calls
    deletes = [c for c in calls if c == ("ietadm", "--op", "delete", f"--tid={tid}")]
    assert len(deletes) == 2, "refused with EBUSY once, then done"


@pytest.mark.parametrize("iotype", ["auto", "fileio"])
def test_iotype_auto_and_fileio_pick_fileio_for_a_file(env, iotype):
    dev = make_device(env, "d1")
    make_target(env, iscsi_iotype=iotype).create_export(None, vol(1), dev)
    assert f"iotype:fileio iomode:wt blocks:8192 blocksize:512 path:{dev}" in proc_volume(env)
    assert f"\tLun 0 Path={dev},Type=fileio\n" in (env / "etc" / "ietd.conf").read_text()


def test_failed_create_rolls_back_target_conf_and_record(env):
    conf = env / "etc" / "ietd.conf"
    conf.write_text(FOREIGN_CONF)
    dev = make_device(env, "d1")
    target = make_target(env, iscsi_iotype="blockio")  # a file cannot be blockio: ENOTBLK (241)
    with pytest.raises(TargetCreateFailed, match="241"):
        target.create_export(None, vol(1), dev)
    assert conf.read_bytes() == FOREIGN_CONF.encode()
    assert not (env / "state" / "volumes" / "iet" / "volume-1").exists()
    assert PREFIX + "volume-1" not in proc_volume(env)


def test_extend_re_adds_the_lun_so_iet_reports_the_new_size(env):
    dev = make_device(env, "d1")
    target = make_target(env)
    target.create_export(None, vol(1), dev)
    assert "blocks:8192 " in proc_volume(env)
    os.truncate(dev, 8 << 20)
    target.extend_target(vol(1))
    assert "blocks:16384 " in proc_volume(env)
    calls: list[tuple[str, ...]] = []
    make_target(env, calls).extend_target(vol(1))  # unchanged size: the LUN is left alone
    assert not any("delete" in c for c in calls)


# -- cost and secrets ------------------------------------------------------------


def _populate(env: Path, count: int) -> None:
    fast = make_target(env, executor=InProcessExecutor(emulator_cli.main))
    dev = make_device(env, "shared")
    for n in range(1000, 1000 + count):
        fast.create_export(None, vol(n), dev)


@pytest.mark.parametrize("existing", [1, 300])
def test_ietadm_calls_per_create_and_remove_do_not_grow_with_exports(env, existing, monkeypatch):
    _populate(env, existing)
    assert proc_volume(env).count("tid:") == existing
    proc_reads: list[str] = []
    original = IetHelper._list_live
    monkeypatch.setattr(IetHelper, "_list_live", lambda self: proc_reads.append("volume") or original(self))
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls)
    dev = make_device(env, "d1")
    target.create_export(None, vol(1), dev)
    assert ietadm_ops(calls) == [
        "new tid Name",  # explicit tid from our counter
        "new tid user IncomingUser",  # CHAP account, before any disk
        "new tid lun Path",
        "show tid user IncomingUser",
    ]  # lookup: that account, ours?
    calls.clear()
    target.create_export(None, vol(1), dev)  # again (Cinder calls it on every attach)
    assert ietadm_ops(calls) == [
        "show tid user IncomingUser",  # ours, at the recorded tid
        "new tid lun Path",  # 239: there (re-added if it was lost)
        "show tid user IncomingUser",
    ]  # lookup
    calls.clear()
    target.remove_export(None, vol(1))
    assert ietadm_ops(calls) == [
        "show tid user IncomingUser",  # is the recorded tid ours?
        "delete tid lun",
        "delete tid",
        "show tid user IncomingUser",
    ]  # gone? (exit codes are no proof)
    assert proc_reads == [], "no single-export operation reads the proc file"


def test_chap_secret_is_on_exactly_one_argv_and_in_no_log(env, caplog):
    caplog.set_level(logging.DEBUG)
    calls: list[tuple[str, ...]] = []
    target = make_target(env, calls)
    dev = make_device(env, "d1")
    result = target.create_export(None, vol(1), dev)
    secret = parse_provider_auth(result["auth"]).password
    carrying = [c for c in calls if any(secret in a for a in c)]
    assert len(carrying) == 1
    assert carrying[0][:4] == ("ietadm", "--op", "new", f"--tid={_record_tid(env, 'volume-1')}")
    assert carrying[0][4] == "--user"
    target.ensure_export(None, vol(1, provider_auth=result["auth"]), dev)
    target.get_export(vol(1))
    target.remove_export(None, vol(1))
    assert len([c for c in calls if any(secret in a for a in c)]) == 1
    assert all(secret not in r.getMessage() for r in caplog.records)
