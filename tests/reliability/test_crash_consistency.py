"""Crash consistency: a fault at any step of create, remove or ensure, then recovery converges.

Faults come from outside the product, as they would in production:

* a wrapper placed first on PATH under each target tool's name makes the
  N-th tool call fail, hang until ``target_tool_timeout`` kills it (before
  or after doing its work), or finish its work and then SIGKILL the
  process that called it;
* for steps that are file commits (``os.replace``/``os.unlink`` of the
  sandbox), the operation runs in a child process that SIGKILLs itself
  right after the N-th commit, or right before a rename (the temp file
  written and fsynced, never renamed: recovery must sweep it).

The steps of each operation are counted first by running it once without
a fault, so every step is hit whatever the helper does. After each fault
the restart path (``restore_exports`` + ``reconcile(fix=True)``, then a
simulated reboot and another restore) must leave each export fully present
(live, persisted, same CHAP, same device) or fully absent, the bystander
export untouched, and nothing else live.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from iscsi_helper.exception import IscsiHelperError

from . import figures
from .conftest import IQN_PREFIX, make_device, volume

# target_tool_timeout while hangs are injected: it bounds every call of the
# operation, so it must exceed a loaded machine's slowest tool run.
TIMEOUT = 2.0
# The default run stays within CI's budget; FULL=1 also hangs at every tool
# call and re-checks every kill point after a simulated reboot.
FULL = os.environ.get("ISCSI_HELPER_RELIABILITY_FULL") == "1"

# Both fault scripts count steps in one shared counter (tool calls and file
# commits interleave in one operation) and log what each step was.
BUMP = textwrap.dedent("""\
    import fcntl, os
    def bump(kind):
        with open(os.environ["FAULT_COUNTER"], "a+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)
            counter.seek(0)
            step = int(counter.read() or 0) + 1
            counter.seek(0)
            counter.truncate()
            counter.write(str(step))
            with open(os.environ["FAULT_COUNTER"] + ".kinds", "a") as kinds:
                kinds.write(kind + "\\n")
        return step
""")

WRAPPER = BUMP + textwrap.dedent("""\
    import shutil, signal, subprocess, sys, time
    env = os.environ
    name = os.path.basename(sys.argv[0])
    real = shutil.which(name, path=env["FAULT_REAL_PATH"])
    hit = bump("tool") == int(env.get("FAULT_STEP", "0"))
    mode = env.get("FAULT_MODE", "count")
    if hit and mode == "fail":
        print(f"{name}: injected failure", file=sys.stderr)
        sys.exit(1)
    if hit and mode == "hang":
        time.sleep(60)
    code = subprocess.run([real, *sys.argv[1:]]).returncode
    if hit and mode == "hang-after":
        time.sleep(60)
    if hit and mode == "kill-after":
        os.kill(os.getppid(), signal.SIGKILL)
    sys.exit(code)
""")

CHILD = BUMP + textwrap.dedent("""\
    import signal, sys
    config, op, device, scope = sys.argv[1:5]
    env = os.environ
    mode = env.get("FAULT_MODE")
    kill_at = int(env.get("FAULT_STEP", "0")) if mode in ("kill-after", "kill-before") else 0

    def around_commit(fn, which, kind):
        # kill-after: the commit is done; kill-before: the temp file is
        # written and fsynced, the rename never happens.
        def wrapped(*args, **kwargs):
            path = os.fspath(args[which])
            ours = path.startswith(scope) and not os.path.basename(path).startswith("iscsi-helper-")
            step = bump(kind) if ours else 0
            if step and step == kill_at and mode == "kill-before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = fn(*args, **kwargs)
            if step and step == kill_at and mode == "kill-after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapped

    os.replace = around_commit(os.replace, 1, "replace")
    os.unlink = around_commit(os.unlink, 0, "unlink")
    from iscsi_helper import options, registry
    target = registry.get_helper(options.new_config([config]))
    vol = {"id": "1", "name": "volume-1", "provider_auth": env.get("FAULT_AUTH") or None}
    if op == "create":
        target.create_export(None, vol, device)
    elif op == "remove":
        target.remove_export(None, vol)
    elif op == "ensure":
        target.ensure_export(None, vol, device)
    elif op == "restore":
        assert target.restore_exports().ok
    print("done")
""")


class Faults:
    """The wrapper directory, the step counter and the environment that arms them."""

    def __init__(self, h: Any) -> None:
        self.h = h
        self.dir = h.root / "faults"
        self.dir.mkdir()
        self.counter = h.root / "fault-counter"
        self.kinds_file = h.root / "fault-counter.kinds"
        self.real_path = os.environ["PATH"]
        h.monkeypatch.setenv("PATH", f"{self.dir}{os.pathsep}{self.real_path}")
        h.monkeypatch.setenv("FAULT_REAL_PATH", self.real_path)
        h.monkeypatch.setenv("FAULT_COUNTER", str(self.counter))
        self.disarm()

    def wrap(self, tools: set[str]) -> None:
        for tool in tools:
            path = self.dir / tool
            path.write_text(f"#!{sys.executable}\n{WRAPPER}")
            path.chmod(0o755)

    def arm(self, mode: str, step: int) -> None:
        self.counter.write_text("0")
        self.kinds_file.write_text("")
        self.h.monkeypatch.setenv("FAULT_MODE", mode)
        self.h.monkeypatch.setenv("FAULT_STEP", str(step))

    def disarm(self) -> None:
        self.arm("count", 0)

    def steps(self) -> int:
        return int(self.counter.read_text() or 0)

    def kinds(self) -> list[str]:
        """What each counted step was: ``tool``, ``replace`` or ``unlink``."""
        return self.kinds_file.read_text().split()


# --------------------------------------------------------------- scenarios
# Each: how to reach the starting state, and the operation (run in-process or
# in the child, by name). Volume 5 is a bystander that must never change.


def _start_create(h: Any, dev: str) -> None:
    pass


def _start_remove(h: Any, dev: str) -> None:
    h.target().create_export(None, volume(1), dev)


def _start_after_reboot(h: Any, dev: str) -> None:
    h.target().create_export(None, volume(1), dev)
    h.reboot()  # the bystander goes down too: recovery must bring both back


def _start_on_another_device(h: Any, dev: str) -> None:
    """Volume 1 exported on the device it had before: the operation moves it (issue 13: IET
    kept serving the old disk after a device change killed before its LUN swap)."""
    h.target().create_export(None, volume(1), make_device(h, BEFORE_CHANGE))


BEFORE_CHANGE = "disk-before-change"
SCENARIOS: dict[str, Callable[[Any, str], None]] = {
    "create": _start_create,
    "remove": _start_remove,
    "ensure": _start_after_reboot,
    "change": _start_on_another_device,
}
#: The operation each scenario runs, where it is not its own name.
OPERATION = {"change": "create"}


def _in_process(h: Any, op: str, dev: str, auth: str | None, short_timeout: bool = False) -> None:
    """Run ``op`` here; the short tool timeout only where a hang is injected (a slow machine
    must not turn an ordinary call into a timeout where a refusal is being tested)."""
    target = h.target(**({"target_tool_timeout": TIMEOUT} if short_timeout else {}))
    vol = volume(1, provider_auth=auth)
    op = OPERATION.get(op, op)
    if op == "create":
        target.create_export(None, vol, dev)
    elif op == "remove":
        target.remove_export(None, vol)
    elif op == "ensure":
        target.ensure_export(None, vol, dev)
    else:
        report = target.restore_exports()
        if not report.ok:
            raise IscsiHelperError(str(report.failed))


class Run:
    def __init__(self, h: Any, op: str) -> None:
        self.h, self.op = h, op
        self.dev = make_device(h, "disk1")
        self.kept_dev = make_device(h, "kept")
        self.config = h.config_file()  # kills need no timeout; a short one flakes under load
        self.faults = Faults(h)
        self.auth: str | None = None
        self.kept_chap: tuple[str, ...] = ()

    def reset(self) -> None:
        """Back to the scenario's starting state; the bystander (volume 5) stays exported."""
        self.faults.disarm()
        target = self.h.target()
        target.remove_export(None, volume(1))
        if not self.kept_chap:
            kept = target.create_export(None, volume(5), self.kept_dev)
            self.kept_chap = tuple(kept["auth"].split()[1:])
        elif self.h.live(IQN_PREFIX + "volume-5") is None:
            target.reconcile(fix=True, stop_orphans=True)
        SCENARIOS[self.op](self.h, self.dev)
        record = target.get_export(volume(1))
        self.auth = (
            f"CHAP {record.spec.chap.username} {record.spec.chap.password}"
            if record and record.spec.chap
            else None
        )

    def child(self) -> subprocess.CompletedProcess[str]:
        env = self.h.env()
        env["FAULT_AUTH"] = self.auth or ""
        return subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(self.config),
                OPERATION.get(self.op, self.op),
                self.dev,
                str(self.h.root),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def volume_1(self) -> tuple[Any, Any]:
        """(persisted spec, live view) of volume-1, read without the fault wrapper armed."""
        self.faults.disarm()
        status = self.h.target().get_export(volume(1))
        return (status.spec if status else None), self.h.live(IQN_PREFIX + "volume-1")

    def right_after(self, what: str, mode: str, raised: bool, before: tuple[Any, Any]) -> list[str]:
        """The state the moment the operation returned or raised, before any repair.

        When the tool refused (``fail``), a failed create or ensure has rolled
        back at once: persisted and live state exactly as before (a later
        reconcile must not be what makes it whole). When the tool did its
        work and then timed out (``hang-after``), the helper cannot know what
        the tool did: its persisted record is back as before, and what the
        tool left live is for repair to settle (checked by :meth:`converged`).
        A failed remove keeps the record, so the remove can be retried. A
        failed ensure keeps the record, and leaves the target as it was or
        whole as recorded: when the tool refused the look that confirms an
        apply, what it applied is the record's export, and stopping it again
        would undo a restore for want of a look (the error says the state
        left). An operation that did not fail did its whole job.
        """
        record, live = self.volume_1()
        if raised:
            if self.op == "remove":
                return [] if record == before[0] else [f"{what}: a failed remove lost the record"]
            if mode == "hang-after":
                return [] if record == before[0] else [f"{what}: the record was not rolled back"]
            if (
                self.op == "ensure"
                and record == before[0]
                and live is not None
                and live.luns.get(self.h.target().lun) == record.device_path
                and live.chap == (record.chap.username, record.chap.password)
            ):
                return []
            if (record, live) != before:
                return [
                    f"{what}: not rolled back right after the failure: "
                    f"record {'kept' if record == before[0] else 'changed'}, "
                    f"live {'kept' if live == before[1] else f'changed to {live}'}"
                ]
            return []
        if self.op == "remove":
            return (
                []
                if record is None and live is None
                else [f"{what}: remove reported success but the export is still there"]
            )
        if (
            record is None
            or live is None
            or live.luns.get(self.h.target().lun) != self.dev
            or live.chap != (record.chap.username, record.chap.password)
        ):
            return [f"{what}: {self.op} reported success but the export is not whole: {live}"]
        return []

    def _devices_of_1(self) -> set[str]:
        """Where volume 1 may be once recovered: the operation's device (or, for an
        interrupted device change, the one it had before), as long as live and record agree."""
        before = {str(self.h.root / f"{BEFORE_CHANGE}.img")} if self.op == "change" else set()
        return {self.dev} | before

    def converged(self, what: str, reboot: bool = False) -> list[str]:
        """Recover as a restarted service would; every export fully there or fully gone.

        Returns what is wrong (empty when it converged).
        """
        self.faults.disarm()
        problems: list[str] = []
        for rebooted in (False, True) if reboot else (False,):
            if rebooted:
                self.h.reboot()
            target = self.h.target()
            # A crash may leave a target whose record was never written: stopping it is asked.
            target.reconcile(fix=True, stop_orphans=True)
            drift = [d for d in target.reconcile() if d.state != "ok"]
            if drift:
                problems.append(f"{what}: drift after reconcile --fix: {drift}")
            statuses = {s.spec.volume_name: s for s in target.list_exports()}
            for n, devs in ((1, self._devices_of_1()), (5, {self.kept_dev})):
                status = statuses.get(f"volume-{n}")
                live = self.h.live(IQN_PREFIX + f"volume-{n}")
                if status is None:
                    if live is not None:
                        problems.append(f"{what}: volume-{n} live without a record")
                    continue
                if live is None:
                    problems.append(f"{what}: volume-{n} recorded but not live")
                elif live.chap != (status.spec.chap.username, status.spec.chap.password):
                    problems.append(
                        f"{what}: volume-{n} live with CHAP {live.chap and live.chap[0]!r}, "
                        f"recorded {status.spec.chap.username!r}"
                    )
                elif status.spec.device_path not in devs:
                    problems.append(f"{what}: volume-{n} recorded on {status.spec.device_path}")
                elif live.luns.get(target.lun) != status.spec.device_path:
                    problems.append(
                        f"{what}: volume-{n} live on {live.luns.get(target.lun)}, "
                        f"recorded on {status.spec.device_path}"
                    )
            kept = self.h.live(IQN_PREFIX + "volume-5")
            if kept is None or kept.chap != self.kept_chap:
                problems.append(f"{what}: the bystander changed")
            leftovers = [
                str(p)
                for d, _r, of_file in target._state_dirs()
                if d.is_dir()
                for p in d.rglob(".tmp-*")
                if of_file is None or p.name.startswith(f".tmp-{of_file}.")
            ]
            if leftovers:
                problems.append(f"{what}: temp files left: {leftovers}")
        if problems:  # leave a clean start for the next fault point
            self.faults.disarm()
            for n in (1, 5):
                self.h.target().remove_export(None, volume(n))
            self.kept_chap = ()
        return problems


def _tool_steps(mode: str, count: int) -> list[int]:
    """Which tool calls fail or hang: by default the first, the middle and the last (the
    kills already cover every step, and each point costs a few tool runs);
    ``ISCSI_HELPER_RELIABILITY_FULL=1``: every call."""
    if FULL or count <= 3:
        return list(range(1, count + 1))
    return sorted({1, (count + 1) // 2, count})


@pytest.mark.parametrize("op", sorted(SCENARIOS))
def test_a_fault_at_any_step_converges_after_restart(h, op):
    run = Run(h, op)
    # Count the steps: tool calls (in-process, through the observer) and all
    # steps (child process: tool calls and file commits).
    run.reset()
    calls_before = len(h.calls)
    _in_process(h, op, run.dev, run.auth)
    tools = {os.path.basename(argv[0]) for argv in h.calls[calls_before:]}
    tool_steps = len(h.calls) - calls_before
    run.faults.wrap(tools)
    run.reset()
    run.faults.disarm()  # count the operation's steps only, not those of the reset
    result = run.child()
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]
    all_steps = run.faults.steps()
    assert all_steps >= tool_steps
    renames = [n for n, kind in enumerate(run.faults.kinds(), 1) if kind == "replace"]

    injected, problems = 0, []
    for step in range(1, all_steps + 1):
        run.reset()
        run.faults.arm("kill-after", step)
        result = run.child()
        assert result.returncode == -9 or "done" in result.stdout, result.stderr[-2000:]
        problems += run.converged(
            f"{op}: SIGKILL after step {step}/{all_steps}", reboot=FULL or step == all_steps
        )
        injected += 1
    # A kill inside a file write: the temp file is there, the rename is not.
    for step in renames:
        run.reset()
        run.faults.arm("kill-before", step)
        result = run.child()
        assert result.returncode == -9, result.stderr[-2000:]
        problems += run.converged(f"{op}: SIGKILL before the rename at step {step}/{all_steps}")
        injected += 1
    # "fail": the tool refuses without doing anything; "hang-after": it does
    # its work, then hangs until target_tool_timeout kills it.
    # Right after each, before any repair, the state is checked too (immediate rollback).
    for mode in ("fail", "hang-after"):
        for step in _tool_steps(mode, tool_steps):
            run.reset()
            before = run.volume_1()
            run.faults.arm(mode, step)
            raised = False
            try:
                _in_process(h, op, run.dev, run.auth, short_timeout=mode == "hang-after")
            except IscsiHelperError as err:
                assert "\n" not in str(err)
                raised = True
            what = f"{op}: tool {mode} at call {step}/{tool_steps}"
            problems += run.right_after(what, mode, raised, before)
            problems += run.converged(what)
            injected += 1
    figures.add(f"crash: fault points injected [{h.name}]", injected)
    figures.add(f"crash: fault points recovered [{h.name}]", injected - len(problems))
    assert not problems, problems
