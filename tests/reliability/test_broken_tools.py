"""A missing or broken target tool: one clear line, and state that reconcile can settle.

For each tool a helper runs (found by watching one create), the tool is made
absent from PATH, present but not executable, hanging until
``target_tool_timeout``, or printing garbage (instead of its listing, or
binary noise with a failing exit). Each operation must fail, if it fails,
with an :class:`IscsiHelperError` whose message is one line naming the
problem, and once the tool is back, ``reconcile(fix=True)`` leaves every
export fully present or fully absent.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from iscsi_helper.exception import IscsiHelperError

from . import figures
from .conftest import IQN_PREFIX, make_device, tool_names, volume

TIMEOUT = 0.75

GARBAGE = textwrap.dedent("""\
    import sys
    if sys.argv[-1] == "binary":
        sys.stdout.buffer.write(b"\\xff\\xfe\\x00garbage\\n\\x1b[2J")
        sys.stderr.buffer.write(b"\\xff\\x00\\nmore\\n")
        sys.exit(3)
    print("TARGET: , id=x, login_ip=?")
    print("tid:zz name:")
    print("Target 1: \\x00\\x01 garbage")
    print("=" * 80)
""")


def _break(h: Any, tool: str, how: str) -> None:
    bad = h.root / f"broken-{how}"
    bad.mkdir(exist_ok=True)
    path = os.environ["PATH"].split(os.pathsep)
    without = [d for d in path if not os.path.exists(os.path.join(d, tool))]
    if how == "absent":
        h.monkeypatch.setenv("PATH", os.pathsep.join(without))
        return
    script = bad / tool
    if how == "not-executable":
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o644)
        h.monkeypatch.setenv("PATH", os.pathsep.join([str(bad), *without]))
        return
    if how == "hanging":
        script.write_text("#!/bin/sh\nexec sleep 60\n")
    elif how == "garbage":
        script.write_text(f"#!{sys.executable}\n{GARBAGE}")
    elif how == "binary":
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{GARBAGE}' \"$@\" binary\n")
    script.chmod(0o755)
    h.monkeypatch.setenv("PATH", os.pathsep.join([str(bad), *path]))


OPERATIONS: dict[str, Callable[[Any, str], Any]] = {
    "create": lambda t, dev: t.create_export(None, volume(1), dev),
    "ensure": lambda t, dev: t.ensure_export(None, volume(2), dev),
    "remove": lambda t, dev: t.remove_export(None, volume(3)),
    "restore": lambda t, dev: t.restore_exports(),
    "list": lambda t, dev: t.list_exports(),
    "reconcile": lambda t, dev: t.reconcile(fix=True, stop_orphans=True),
}


@pytest.mark.parametrize("how", ["absent", "not-executable", "hanging", "garbage", "binary"])
def test_broken_tool_gives_one_clear_line_and_reconcile_settles(h, how):
    tools = tool_names(h)
    if not tools:
        pytest.skip(f"{h.name} runs no target tool")
    devs = {n: make_device(h, f"d{n}") for n in (1, 2, 3)}
    good = h.target()
    for n in (2, 3):
        good.create_export(None, volume(n), devs[n])
    original_path = os.environ["PATH"]
    messages = []
    for tool in sorted(tools):
        _break(h, tool, how)
        # Only a hanging tool needs the short timeout; the others keep the default, so a
        # slow machine cannot turn their garbage or refusal into a timeout.
        target = h.target(**({"target_tool_timeout": TIMEOUT} if how == "hanging" else {}))
        for name, operation in OPERATIONS.items():
            try:
                result = operation(target, devs[int(name == "ensure") + 1])
            except IscsiHelperError as err:
                messages.append(f"{name}: {err}")
            except Exception as err:  # noqa: BLE001
                pytest.fail(f"{tool} {how}: {name} raised {type(err).__name__}: {err}")
            else:
                failed = getattr(result, "failed", None) or {}
                messages += [f"{name}: {m}" for m in failed.values()]
                messages += [
                    f"{name}: {d.error}"
                    for d in (result if isinstance(result, list) else [])
                    if getattr(d, "error", None)
                ]
        h.monkeypatch.setenv("PATH", original_path)
    assert messages, "a broken tool went unnoticed"
    for message in messages:
        assert "\n" not in message and len(message) < 400, message
    expected = {
        "absent": "not found",
        "not-executable": "not executable",
        "hanging": "target_tool_timeout",
    }.get(how)
    if expected:
        assert any(expected in m for m in messages), messages
    target = h.target()
    target.reconcile(fix=True, stop_orphans=True)
    assert all(d.state == "ok" for d in target.reconcile())
    for status in target.list_exports():
        live = h.live(status.spec.iqn)
        assert live is not None and live.chap == (status.spec.chap.username, status.spec.chap.password)
    for n in (1, 2, 3):
        if target.get_export(volume(n)) is None:
            assert h.live(IQN_PREFIX + f"volume-{n}") is None
    figures.add(f"broken tools: failures reported in one line [{h.name}]", len(messages))
    figures.add(f"broken tools: scenarios settled by reconcile [{h.name}]", 1)
