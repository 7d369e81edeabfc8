"""Sessions on a target, for ``-s``: close them, wait a bounded time, report what is left.

The kernel schedules every session of the node for closing, and if there
were any, sleeps until the last one is gone or 30 seconds have passed
(private/klib/common/iscsi_node.c 186-205, base/common/os_common.c 348-380,
private/klib/common/iscsi_session.c 262-281). Sessions that are still there
make the target "busy".

Where the emulator finds sessions:

- on the data path (``CHISCSI_EMULATOR_WIRE=1``): the wire target's sessions
  of that IQN, logged in by real initiators;
- in a test hook, ``$CHISCSI_EMULATOR_STATE/sessions/<name>`` (the file name
  is the IQN percent-encoded): one initiator name per line, each a session
  that refuses to close, standing for a session stuck on I/O. On the data
  path, a wire session of an initiator listed there is kept open instead of
  closed; a line matching no wire session counts as a session of its own.
  Stuck sessions belong to the first node of that name in the kernel's queue
  (the one that was stopped). Deleting the file lets them close.

``CHISCSI_EMULATOR_STOP_WAIT`` (seconds, default 30) bounds the wait.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from iscsi_helper.lab.emulators.chiscsi import serving
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node
from iscsi_helper.lab.emulators.chiscsi.state import KernelState, key_file_name

STOP_WAIT_ENV = "CHISCSI_EMULATOR_STOP_WAIT"
STOP_WAIT_DEFAULT = 30.0  # iscsi_node.c 205
POLL_SECONDS = 0.05


def hook_file(state_root: Path, name: str) -> Path:
    return Path(state_root) / "sessions" / key_file_name(name)


def declare_stuck(state_root: Path, name: str, initiators: list[str]) -> Path:
    """Write the test hook for ``name`` (tests and the demo use this)."""
    path = hook_file(state_root, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in initiators), encoding="utf-8")
    return path


def stop_wait_seconds() -> float:
    text = os.environ.get(STOP_WAIT_ENV, "")
    try:
        return max(0.0, float(text)) if text else STOP_WAIT_DEFAULT
    except ValueError:
        return STOP_WAIT_DEFAULT


def stuck_initiators(state: KernelState, node: Node) -> list[str]:
    path = hook_file(state.root, node.name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    if any(other.id < node.id and other.name == node.name for other in state.all_nodes()):
        return []  # stuck sessions belong to the first node of that name
    return [line.strip() for line in lines if line.strip()]


def _remaining(state: KernelState, node: Node, mine: list[str]) -> int:
    wire = serving.sessions(state.root, node.name)["lingering"]
    left = list(wire)
    count = 0
    for initiator in mine:
        if initiator in left:
            left.remove(initiator)
            count += 1
    hook = stuck_initiators(state, node)
    virtual = [h for h in hook if h not in wire]
    return count + len(virtual)


def close_and_wait(state: KernelState, node: Node, was_offline: bool) -> int:
    """Close ``node``'s sessions and wait for them; the number still there at the end.

    ``was_offline``: the node was already offline (stopped earlier while
    busy), so its sessions are the ones the data path kept, not the ones of a
    newer target of the same name.
    """
    stuck = stuck_initiators(state, node)
    wire = serving.sessions(state.root, node.name)
    mine = list(wire["lingering"] if was_offline else wire["served"])
    virtual = [h for h in stuck if h not in wire["served"] and h not in wire["lingering"]]
    before = len(mine) + len(virtual)
    serving.withdraw(state.root, node.name, keep=stuck)
    if not before:
        return 0
    deadline = time.monotonic() + stop_wait_seconds()
    while True:
        left = _remaining(state, node, mine)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_SECONDS)
