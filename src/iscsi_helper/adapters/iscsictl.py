"""``iscsictl``, chiscsi's admin tool: the only place its command lines exist and its output is read.

Facts modelled here come from Chelsio's chiscsi 2.12.0.3 source (paths are
relative to its ``src/chiscsi/``; line numbers as of that snapshot):

* One ``iscsictl`` at a time per host. The tool takes ``lockf(F_TLOCK)`` on
  ``/etc/chelsio-iscsi/iscsictl.pid`` and, when another instance holds it,
  prints :data:`LOCK_REFUSAL` on stderr and exits at once without doing
  anything (``user/cli/iscsictl.c`` ~183-195). Calls made through
  :class:`Iscsictl` are serialised by the caller's host lock, and a refusal
  (another program running ``iscsictl``) is retried with bounded backoff.
* The exit status of a named list (``-c target=<a>,<b>``) is that of its
  *last* name, so the output, not the status, says which targets exist;
  ``-s`` exits 0 even when the target stays (``<iqn> busy.``).

What the tool prints is read by the pure functions of
:mod:`iscsi_helper.codecs.iscsictl_output` (tested without the tool); here
are the command lines, and the refusals and failures they can end in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from iscsi_helper.codecs.iscsictl_output import (
    NAMES_BUFFER_BYTES,
    NAMES_KEY,
    TOOL,
    Listing,
    StartOutcome,
    StopOutcome,
    TargetDetail,
    parse_details,
    parse_session_count,
    parse_summaries,
    said,
    start_said,
    stop_said,
)
from iscsi_helper.exception import CommandFailed, CommandLockBusy, InvalidInput, ToolOutputError
from iscsi_helper.executor import CommandResult, Executor

#: stderr line of an ``iscsictl`` that found another one running (``user/cli/iscsictl.c`` ~190).
LOCK_REFUSAL = "ERROR: unable to obtain exclusive lock, iscsictl already running?"
#: Retry delays after a lock refusal: first, doubling up to the cap, each jittered.
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 1.0
LOCK_RETRY_OPTION = "chiscsi_lock_retry_timeout"
_EVERY_EXIT_CODE = range(256)  # the output decides, not the status (see the module docstring)


def _failed(option: str, result: CommandResult, why: str | None = None) -> CommandFailed:
    """The one failure of this adapter: what ran, its status, its output (``why`` if stderr is empty)."""
    return CommandFailed(
        command=f"{TOOL} {option}",
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr if why is None else result.stderr or why,
    )


def name_batches(iqns: Iterable[str], budget: int = NAMES_BUFFER_BYTES - 1) -> Iterator[str]:
    """``target=<a>,<b>,...`` arguments, each at most ``budget`` characters long."""
    batch: list[str] = []
    size = len(NAMES_KEY)
    for iqn in iqns:
        if not iqn or "," in iqn or iqn == "ALL" or len(NAMES_KEY) + len(iqn) > budget:
            raise InvalidInput(
                field="target name", value=repr(iqn)[:80], reason="cannot be looked up by iscsictl -c"
            )
        extra = len(iqn) + (1 if batch else 0)
        if batch and size + extra > budget:
            yield NAMES_KEY + ",".join(batch)
            batch, size, extra = [], len(NAMES_KEY), len(iqn)
        batch.append(iqn)
        size += extra
    if batch:
        yield NAMES_KEY + ",".join(batch)


# ----------------------------------------------------------------- the tool


@dataclass
class Iscsictl:
    """Typed calls of ``iscsictl``, one host lock around each, lock refusals retried.

    ``host_lock`` serialises the calls of every iscsi-helper process on the
    host; ``lock_retry_timeout`` bounds how long a refusal caused by another
    program is retried. ``sleep``/``clock`` are injectable for tests.
    """

    executor: Executor
    host_lock: Callable[[], AbstractContextManager[None]]
    chiscsi_conf: str
    lock_retry_timeout: float = 40.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def start(self, iqn: str, target_file: Path) -> StartOutcome:
        """``-S``: add the target from the one block in ``target_file``, or reconfigure it live.

        ``-x`` is passed as Cinder's CxtAdm passes it; the tool ignores it
        ("currently unimplemented", ``iscsictl_cmd.c`` ~1515).
        """
        result = self._run("-S", NAMES_KEY + iqn, "-f", str(target_file), "-x", self.chiscsi_conf)
        outcome = start_said(iqn, result.stderr) if result.exit_code == 0 else None
        if outcome is None:  # anything else is a failure, whatever the status
            raise _failed("-S", result, f"no 'target {iqn} added.' or 'updated.' in its output")
        return outcome

    def stop(self, iqn: str) -> StopOutcome:
        """``-s``: what it said it did; its exit status is 0 even when the target stayed."""
        result = self._run("-s", NAMES_KEY + iqn)
        outcome = stop_said(iqn, result.stderr)
        if outcome is None:
            raise _failed("-s", result, f"no '{iqn} removed.', 'busy.' or 'is not found.' in its output")
        return outcome

    def show(self, iqns: Sequence[str]) -> dict[str, TargetDetail | None]:
        """Detail of each live target among ``iqns`` (None: not live), in as few calls as fit."""
        wanted = list(dict.fromkeys(iqns))
        found: dict[str, TargetDetail | None] = {}
        for argument in name_batches(wanted):
            result = self._run("-c", argument)
            details = parse_details(result.stdout)
            asked = argument[len(NAMES_KEY) :].split(",")
            if not details and result.exit_code != 0:
                raise _failed("-c", result)
            unanswered = [name for name in asked if name not in details]
            if unanswered:
                raise ToolOutputError(
                    command=f"{TOOL} -c",
                    reason=f"no answer for {unanswered[0]!r} ({len(unanswered)} of {len(asked)} names)",
                )
            found.update((name, details[name]) for name in asked)
        return found

    def session_count(self, iqn: str) -> int:
        """``-r target=<iqn>``: how many sessions the live target ``iqn`` has."""
        result = self._run("-r", NAMES_KEY + iqn)
        if result.exit_code != 0:
            raise _failed("-r", result)
        return parse_session_count(result.stdout, iqn)

    def list_all(self) -> Listing:
        result = self._run("-c", NAMES_KEY + "ALL")
        listing = parse_summaries(result.stdout)
        if not listing.names_bytes and result.exit_code != 0:
            raise _failed("-c", result)
        return listing

    def _run(self, *args: str) -> CommandResult:
        """Run once under the host lock; while another program holds chiscsi's lock, retry.

        A refusal means the tool did nothing (it checks the lock before
        acting), so every command may be retried.
        """
        attempts, delay, first_refusal = 0, FIRST_RETRY_DELAY, None
        with self.host_lock():
            while True:
                result = self.executor.run(TOOL, *args, ok_codes=_EVERY_EXIT_CODE)
                attempts += 1
                if not said(result.stderr, LOCK_REFUSAL):
                    return result
                now = self.clock()
                if first_refusal is None:
                    first_refusal = now
                left = first_refusal + self.lock_retry_timeout - now
                if left <= 0:
                    raise CommandLockBusy(
                        command=f"{TOOL} {args[0]}",
                        tool=TOOL,
                        attempts=attempts,
                        waited=now - first_refusal,
                        refusal=LOCK_REFUSAL,
                        option=LOCK_RETRY_OPTION,
                    )
                self.sleep(min(delay * self.rng.uniform(0.5, 1.0), left))
                delay = min(delay * 2, MAX_RETRY_DELAY)
