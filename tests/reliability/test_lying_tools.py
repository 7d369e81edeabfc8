"""A tool's word is not believed: only the target's own state says an operation worked.

A wrapper placed first on PATH under each tool's name (no hook in the
product) makes the tool lie in one of three ways:

* ``start``: every call that adds something (``iscsictl -S``, ``ietadm --op
  new``, ``tgtadm --op new|bind``) exits 0 and does nothing;
* ``stop``: every call that removes something (``iscsictl -s``, ``ietadm
  --op delete``, ``tgtadm --op delete|unbind``) exits 0 and does nothing;
* ``garbage``: every call does its work, then prints a line no parser of
  ours can read (a portal that is no address).

Then: a create must fail, not report an export; a remove must fail, keep
the record and not print "export removed"; a restore must not count
"started" what is not live (the CLI's ``ensure --all`` neither); a failure
after a change is exit 1 with the state left, never exit 2 ("invalid
input, nothing was changed"). Once the tool tells the truth again,
``reconcile --fix`` settles everything.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import pytest

from iscsi_helper import cli
from iscsi_helper.exception import IscsiHelperError, TargetRemoveFailed

from . import figures
from .conftest import IQN_PREFIX, make_device, tool_names, volume

LIAR = textwrap.dedent("""\
    import os, shutil, subprocess, sys
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    mode = os.environ["LIAR_MODE"]

    def kind():
        if name == "iscsictl":
            return {"-S": "start", "-s": "stop"}.get(args[0] if args else "")
        if "--op" in args[:-1]:
            op = args[args.index("--op") + 1]
            return {"new": "start", "bind": "start", "delete": "stop", "unbind": "stop"}.get(op)
        return None

    if mode in ("start", "stop") and kind() == mode:
        sys.exit(0)
    real = shutil.which(name, path=os.environ["LIAR_REAL_PATH"])
    code = subprocess.run([real, *args]).returncode
    if mode == "garbage":
        sys.stdout.write("\\tPortalGroup=1@999.0.0.1:3260\\n")
        sys.stdout.flush()
    sys.exit(code)
""")


class Liar:
    """The wrappers, armed per mode through the environment."""

    def __init__(self, h: Any, tools: set[str]) -> None:
        self.h = h
        directory = h.root / "liars"
        directory.mkdir()
        for tool in tools:
            script = directory / tool
            script.write_text(f"#!{sys.executable}\n{LIAR}")
            script.chmod(0o755)
        h.monkeypatch.setenv("LIAR_REAL_PATH", os.environ["PATH"])
        h.monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
        self.truthful()

    def lie(self, mode: str) -> None:
        self.h.monkeypatch.setenv("LIAR_MODE", mode)

    def truthful(self) -> None:
        self.h.monkeypatch.setenv("LIAR_MODE", "none")


def _cli(capsys: Any, config: str, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config-file", config, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _the_error(stderr: str) -> str:
    """The CLI's one error line (log records of WARNING and above may precede it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("iscsi-helper: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _settles(h: Any) -> None:
    target = h.target()
    target.reconcile(fix=True)
    assert [d for d in target.reconcile() if d.state != "ok"] == []
    for status in target.list_exports():
        live = h.live(status.spec.iqn)
        assert live is not None and live.luns[target.lun] == status.spec.device_path


def _setup(h: Any) -> Liar:
    tools = tool_names(h)
    if not tools:
        pytest.skip(f"{h.name} runs no target tool: nothing can lie")
    return Liar(h, tools)


def test_a_start_that_does_nothing_fails_the_create_and_is_not_counted_started(h, capsys, root_logging):
    liar = _setup(h)
    devs = {n: make_device(h, f"d{n}") for n in (1, 2, 3)}
    target = h.target()
    liar.lie("start")
    with pytest.raises(IscsiHelperError, match="not live"):
        target.create_export(None, volume(1), devs[1])
    assert h.live(IQN_PREFIX + "volume-1") is None
    liar.truthful()
    for n in (2, 3):
        target.create_export(None, volume(n), devs[n])
    h.reboot()
    liar.lie("start")
    report = target.restore_exports()
    assert report.started == [] and sorted(report.failed) == ["2", "3"], report
    assert all("not live" in why and "state left" in why for why in report.failed.values())
    code, out, err = _cli(capsys, str(h.config_file()), "ensure", "--all")
    assert code == 1 and out.startswith("started 0,"), (out, err)
    liar.truthful()
    _settles(h)
    figures.add(f"lying tools: starts that did nothing, caught [{h.name}]", 4)


def test_a_remove_that_does_nothing_fails_and_keeps_the_record(h, capsys, root_logging):
    liar = _setup(h)
    dev = make_device(h, "d1")
    target = h.target()
    target.create_export(None, volume(1), dev)
    live = h.live(IQN_PREFIX + "volume-1")
    liar.lie("stop")
    with pytest.raises(TargetRemoveFailed):
        target.remove_export(None, volume(1))
    assert target.get_export(volume(1)) is not None, "the record of a live export was dropped"
    assert h.live(IQN_PREFIX + "volume-1") == live
    code, out, err = _cli(capsys, str(h.config_file()), "unexport", "1")
    assert code == 1 and "export removed" not in out, (out, err)
    assert _the_error(err) and "state left: volume-1 persisted, live" in _the_error(err), err
    liar.truthful()
    _settles(h)
    assert target.get_export(volume(1)) is not None
    target.remove_export(None, volume(1))
    assert h.live(IQN_PREFIX + "volume-1") is None
    figures.add(f"lying tools: removes that did nothing, caught [{h.name}]", 2)


def test_unreadable_tool_output_after_a_change_is_exit_1_with_the_state_left(h, capsys, root_logging):
    liar = _setup(h)
    dev = make_device(h, "d1")
    liar.lie("garbage")
    code, out, err = _cli(capsys, str(h.config_file()), "export", "1", dev)
    # Valid input: whatever the tool printed, the answer is never "invalid input" (2).
    assert code in (0, 1), (code, out, err)
    if code == 1:
        assert "state left" in _the_error(err), err
    liar.truthful()
    _settles(h)
    figures.add(f"lying tools: unreadable output after a change, exit {code} [{h.name}]", 1)
