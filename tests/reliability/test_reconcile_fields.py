"""Reconcile compares every field a target shows, names the ones that differ, and proves a fix.

The live target is changed behind the helper's back with the target's own
tool (as an operator, or a crash between two tool calls, would leave it):
its LUN moved to another device, its ACL emptied. ``reconcile`` must report
``differs`` with exactly those fields (as far as the target shows them:
docs/reliability.md lists what each one shows), ``--fix`` must put back what
the record says and claim ``fixed`` only after looking again, and a repair
that a lying tool only pretended to make must not be called fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from iscsi_helper.adapters.tgtadm import parse_show

from . import figures
from .conftest import IQN_PREFIX, make_device, tool_names, volume

INITIATOR = "iqn.1993-08.org.debian:01:fields"
IQN = IQN_PREFIX + "volume-1"


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)


def _move_lun_fake(h: Any, device: str) -> None:
    path = h.state_path / "volumes" / "fake-live" / quote(IQN, safe="")
    data = json.loads(path.read_text())
    data["device_path"] = device
    data["initiators"] = []
    path.write_text(json.dumps(data))


def _move_lun_iet(h: Any, device: str) -> None:
    tid = json.loads((h.state_path / "volumes" / "iet" / "volume-1").read_text())["tid"]
    _run("ietadm", "--op", "delete", f"--tid={tid}", "--lun=0")
    _run("ietadm", "--op", "new", f"--tid={tid}", "--lun=0", "--params", f"Path={device},Type=fileio")


def _move_lun_tgt(h: Any, device: str) -> None:
    tid = parse_show(h.tgtd.tgtadm("--mode", "target", "--op", "show").stdout)[IQN].tid
    h.tgtd.tgtadm("--mode", "logicalunit", "--op", "delete", "--tid", str(tid), "--lun", "1")
    h.tgtd.tgtadm("--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", "1", "-b", device)
    h.tgtd.tgtadm("--mode", "target", "--op", "unbind", "--tid", str(tid), "-Q", INITIATOR)
    h.tgtd.tgtadm("--mode", "target", "--op", "bind", "--tid", str(tid), "-I", "ALL")


def _move_lun_chiscsi(h: Any, device: str) -> None:
    record = h.state_path / "volumes" / "cxt" / "volume-1"
    text = record.read_text()
    old = next(line for line in text.splitlines() if "TargetDevice=" in line)
    tampered = h.root / "tampered-volume-1"
    tampered.write_text(
        "\n".join(
            "\tTargetDevice=" + device + "," + old.split(",", 1)[1] if line == old else line
            for line in text.splitlines()
            if not line.strip().startswith("ACL")
        )
        + "\n"
    )
    _run("iscsictl", "-s", f"target={IQN}")
    _run("iscsictl", "-S", f"target={IQN}", "-f", str(tampered), "-x", str(h.chiscsi_conf))


#: How to move the LUN (and, where there is one, empty the ACL) with the target's own tool,
#: and the fields reconcile must then name.
TAMPER: dict[str, tuple[Callable[[Any, str], None], set[str]]] = {
    "fake": (_move_lun_fake, {"device", "acl"}),
    "iet": (_move_lun_iet, {"device"}),  # IET shows no ACL (it keeps none) and no accounts
    "tgt": (_move_lun_tgt, {"device", "acl"}),
    "chiscsi": (_move_lun_chiscsi, {"device", "acl"}),  # -c target=<iqn> shows its ACL
}


def test_reconcile_names_the_differing_fields_and_fix_puts_back_the_record(h):
    if h.name not in TAMPER:
        pytest.skip(f"no way to tamper with {h.name}'s target known here")
    tamper, fields = TAMPER[h.name]
    target = h.target()
    recorded, other = make_device(h, "recorded"), make_device(h, "other")
    made = target.create_export(None, volume(1), recorded)
    located = volume(1, provider_location=made["location"], provider_auth=made["auth"])
    target.initialize_connection(located, {"initiator": INITIATOR})
    tamper(h, other)
    assert h.live(IQN).luns[target.lun] == other, "the tampering did not take"

    drift = [d for d in target.reconcile() if d.volume_name == "volume-1"]
    assert [(d.state, set(d.fields)) for d in drift] == [("differs", fields)], drift
    fixed = [d for d in target.reconcile(fix=True) if d.volume_name == "volume-1"]
    assert [(d.state, d.fixed, d.error) for d in fixed] == [("differs", True, None)], fixed
    assert [d.state for d in target.reconcile()] == ["ok"]
    live = h.live(IQN)
    assert live.luns[target.lun] == recorded
    if target.supports_acl:
        assert INITIATOR in live.initiators
    figures.add(f"reconcile: fields named and fixed [{h.name}]", len(fields))


def test_a_repair_the_tool_only_pretended_to_make_is_not_called_fixed(h):
    from .test_lying_tools import Liar

    tools = tool_names(h)
    if not tools:
        pytest.skip(f"{h.name} runs no target tool")
    liar = Liar(h, tools)
    target = h.target()
    target.create_export(None, volume(1), make_device(h, "d1"))
    h.reboot()
    liar.lie("start")
    report = [d for d in target.reconcile(fix=True) if d.volume_name == "volume-1"]
    assert [(d.state, d.fixed) for d in report] == [("missing-live", False)], report
    # Caught by the second look ("still missing-live") or by the tool's own missing reply.
    assert report[0].error
    liar.truthful()
    assert [(d.state, d.fixed) for d in target.reconcile(fix=True)] == [("missing-live", True)]
    assert h.live(IQN) is not None
    figures.add(f"reconcile: pretended repairs not called fixed [{h.name}]", 1)


def test_reconcile_reports_an_unreadable_stray_without_touching_it(h):
    target = h.target()
    target.create_export(None, volume(1), make_device(h, "d1"))
    stray = target.records_dir / "volume-2"
    stray.write_text("not a record of any format\n")
    report = {d.volume_name: d for d in target.reconcile(fix=True)}
    assert report["volume-1"].state == "ok"
    assert report["volume-2"].state == "foreign-file" and not report["volume-2"].fixed
    assert stray.read_text() == "not a record of any format\n"
    assert os.path.exists(stray)
