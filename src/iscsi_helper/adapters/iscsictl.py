"""``iscsictl``, chiscsi's admin tool: the only place its command lines exist and its output is read.

Facts modelled here come from Chelsio's chiscsi 2.12.0.3 source (paths are
relative to its ``src/chiscsi/``; line numbers as of that snapshot):

* One ``iscsictl`` at a time per host. The tool takes ``lockf(F_TLOCK)`` on
  ``/etc/chelsio-iscsi/iscsictl.pid`` and, when another instance holds it,
  prints :data:`LOCK_REFUSAL` on stderr and exits at once without doing
  anything (``user/cli/iscsictl.c`` ~183-195). Calls made through
  :class:`Iscsictl` are serialised by the caller's host lock, and a refusal
  (another program running ``iscsictl``) is retried with bounded backoff.
* ``-c target=ALL`` prints a summary per target (``\\nTARGET: <iqn>, id=<n>,
  login_ip=<n>`` and tab-indented ``PortalGroup=``/``TargetDevice=`` lines);
  ``-c target=<a>[,<b>...]`` prints the detailed configuration of each
  (``\\ntarget:`` and tab-indented ``Key=value`` lines, no id); a name that
  is not live prints ``target <name> NOT found.`` instead
  (``private/ulib/iscsictl_cmd.c`` ~1030-1128,
  ``private/klib/common/iscsi_node.c`` ~885-945,
  ``private/klib/control/iscsi_control_cmd.c`` ~367-388). The exit status of
  a named list is that of its *last* name, so the output, not the status,
  says which targets exist.
* The ALL listing iterates over one buffer of ``target=<n1>,<n2>,...`` of
  at most :data:`NAMES_BUFFER_BYTES` bytes, cut silently when the names do
  not fit (``iscsi_node.c`` ~124-150): :attr:`Listing.may_be_cut` tells.
* ``-S`` prints ``target <iqn> added.`` or ``target <iqn> updated.`` on
  stderr (``iscsi_node.c`` ~498, ~790); ``-s`` prints ``<iqn> removed.``,
  ``<iqn> busy.`` (sessions still logged in after a 30 s wait: the target is
  left offline, not removed, and the tool exits 0) or ``<iqn> is not
  found.`` (``iscsi_node.c`` ~200-220, ``iscsi_control_cmd.c`` ~489-494).

Everything here is typed: output is parsed by pure functions into the
dataclasses below (tested without the tool), refusals become exceptions.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from iscsi_helper.exception import CommandFailed, CommandLockBusy, InvalidInput, ToolOutputError
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.formats import Portal, parse_portal

TOOL = "iscsictl"
#: stderr line of an ``iscsictl`` that found another one running (``user/cli/iscsictl.c`` ~190).
LOCK_REFUSAL = "ERROR: unable to obtain exclusive lock, iscsictl already running?"
#: ``ISCSI_CONTROL_DATA_MAX_BUFLEN`` (``user/common/iscsictl_private.h`` line 8): the buffer the
#: kernel fills with ``target=<n1>,<n2>,...`` for ``-c target=ALL``. It is also Linux's limit on
#: one command-line argument (``MAX_ARG_STRLEN``), so named batches are sized under it too.
NAMES_BUFFER_BYTES = 131072
NAMES_KEY = "target="
#: chiscsi shows every CHAP secret as this (``security/chap/iscsi_chap_key.c`` ~651).
MASKED_SECRET = "********"
#: Retry delays after a lock refusal: first, doubling up to the cap, each jittered.
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 1.0
LOCK_RETRY_OPTION = "chiscsi_lock_retry_timeout"
_EVERY_EXIT_CODE = range(256)  # the output decides, not the status (see the module docstring)


class StartOutcome(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"


class StopOutcome(enum.Enum):
    REMOVED = "removed"
    NOT_FOUND = "is not found"
    BUSY = "busy"


@dataclass(frozen=True)
class PortalGroup:
    """One ``PortalGroup=<tag>@<portal>[,<portal>...],timeout=<n>`` line."""

    tag: int
    portals: tuple[Portal, ...]


@dataclass(frozen=True)
class TargetDevice:
    """One ``TargetDevice=<path>,<class>,<flags...>`` line (PROD/SN/ID/WWN among the flags)."""

    path: str
    device_class: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetSummary:
    """A target as ``-c target=ALL`` shows it."""

    iqn: str
    node_id: int
    login_ip: int
    portal_groups: tuple[PortalGroup, ...]
    devices: tuple[TargetDevice, ...]


@dataclass(frozen=True)
class TargetDetail:
    """A target as ``-c target=<iqn>`` shows it: its settings, in the tool's order."""

    iqn: str
    settings: tuple[tuple[str, str], ...]
    portal_groups: tuple[PortalGroup, ...]
    devices: tuple[TargetDevice, ...]

    def values(self, key: str) -> tuple[str, ...]:
        return tuple(value for name, value in self.settings if name == key)

    def value(self, key: str) -> str | None:
        found = self.values(key)
        return found[0] if found else None

    @property
    def acl_enabled(self) -> bool:
        return self.value("ACL_Enable") == "Yes"

    @property
    def acl_initiators(self) -> frozenset[str]:
        """Initiator names of the ``ACL=iname=...`` lines (shown only when ACLs are enabled)."""
        names: set[str] = set()
        for acl in self.values("ACL"):
            for part in acl.split(";"):
                if part.startswith("iname="):
                    names.update(n for n in part[len("iname="):].split(",") if n)
        return frozenset(names)

    @property
    def chap_initiator_users(self) -> tuple[str, ...]:
        return tuple(_chap_user(v) for v in self.values("Auth_CHAP_Initiator"))

    @property
    def chap_target_users(self) -> tuple[str, ...]:
        return tuple(_chap_user(v) for v in self.values("Auth_CHAP_Target"))


@dataclass(frozen=True)
class Listing:
    """``-c target=ALL``: the targets it showed, and whether the name buffer may have been cut."""

    targets: Mapping[str, TargetSummary]
    #: names the buffer held whose lookup said ``NOT found`` (a node going offline, or the
    #: last name, cut in the middle)
    unfound: tuple[str, ...] = ()
    #: length of ``target=<n1>,<n2>,...`` as the kernel built it, from the names shown
    names_bytes: int = 0

    @property
    def may_be_cut(self) -> bool:
        """True when targets may exist that this listing cannot show.

        A complete buffer holds at most NAMES_BUFFER_BYTES - 1 characters; a
        cut one is truncated to NAMES_BUFFER_BYTES - 1 and loses a trailing
        comma, so it holds NAMES_BUFFER_BYTES - 2 or - 1 (``iscsi_node.c``
        ~138-147). Below that it is certainly whole.
        """
        return self.names_bytes >= NAMES_BUFFER_BYTES - 2


# ----------------------------------------------------------------- parsing


def _chap_user(value: str) -> str:
    """``"<user>":"********"`` -> ``<user>``."""
    user, sep, secret = value.partition('":"')
    if not (sep and user.startswith('"') and secret.endswith('"')):
        raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable CHAP line {value[:60]!r}")
    return user[1:]


def parse_portal_group(value: str) -> PortalGroup:
    """``<tag>@<portal>[,<portal>...],timeout=<n>[,[<redirect tags>]]``; IPv6 shown expanded."""
    tag_text, at, members = value.partition("@")
    if not at or not tag_text.isdigit():
        raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable PortalGroup {value[:80]!r}")
    portals: list[Portal] = []
    for member in members.split(","):
        if member.startswith("timeout="):
            break  # what follows is the timeout and any redirect list, not portals
        try:
            portals.append(parse_portal(member))
        except InvalidInput:
            raise ToolOutputError(command=f"{TOOL} -c",
                                  reason=f"unreadable portal {member[:60]!r}") from None
    return PortalGroup(int(tag_text), tuple(portals))


def parse_target_device(value: str) -> TargetDevice:
    fields = value.split(",")
    if len(fields) < 2 or not fields[0]:
        raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable TargetDevice {value[:80]!r}")
    return TargetDevice(fields[0], fields[1], tuple(fields[2:]))


def _not_found_name(line: str) -> str | None:
    """``target <name> NOT found.`` -> ``<name>`` (``iscsi_control_cmd.c`` ~382)."""
    if line.startswith("target ") and line.endswith(" NOT found."):
        return line[len("target "):-len(" NOT found.")]
    return None


def _setting(line: str, command: str) -> tuple[str, str]:
    if not line.startswith("\t"):
        raise ToolOutputError(command=command, reason=f"unexpected line {line[:80]!r}")
    key, sep, value = line[1:].partition("=")
    if not sep or not key:
        raise ToolOutputError(command=command, reason=f"unexpected line {line[:80]!r}")
    return key, value


def parse_summaries(stdout: str) -> Listing:
    """The output of ``iscsictl -c target=ALL``."""
    command = f"{TOOL} -c {NAMES_KEY}ALL"
    targets: dict[str, TargetSummary] = {}
    unfound: list[str] = []
    names: list[str] = []
    current: tuple[str, int, int] | None = None
    groups: list[PortalGroup] = []
    devices: list[TargetDevice] = []

    def close() -> None:
        if current is not None:
            iqn, node_id, login_ip = current
            targets[iqn] = TargetSummary(iqn, node_id, login_ip, tuple(groups), tuple(devices))

    for line in stdout.splitlines():
        if not line:
            continue
        missing = _not_found_name(line)
        if line.startswith("TARGET: ") or missing is not None:
            close()
            current, groups, devices = None, [], []
            if missing is not None:
                unfound.append(missing)
                names.append(missing)
                continue
            head = line[len("TARGET: "):].split(", ")
            if (len(head) != 3 or not head[0] or not head[1].startswith("id=")
                    or not head[2].startswith("login_ip=") or not head[1][3:].isdigit()
                    or not head[2][9:].isdigit()):
                raise ToolOutputError(command=command, reason=f"unreadable line {line[:80]!r}")
            current = (head[0], int(head[1][3:]), int(head[2][9:]))
            names.append(head[0])
            continue
        if current is None:
            raise ToolOutputError(command=command, reason=f"unexpected line {line[:80]!r}")
        key, value = _setting(line, command)
        if key == "PortalGroup":
            groups.append(parse_portal_group(value))
        elif key == "TargetDevice":
            devices.append(parse_target_device(value))
        else:
            raise ToolOutputError(command=command, reason=f"unexpected line {line[:80]!r}")
    close()
    names_bytes = len(NAMES_KEY) + sum(len(n) for n in names) + max(len(names) - 1, 0)
    return Listing(targets, tuple(unfound), names_bytes if names else 0)


def parse_details(stdout: str) -> dict[str, TargetDetail | None]:
    """The output of ``iscsictl -c target=<a>[,<b>...]``: each name's detail, or None if not live."""
    command = f"{TOOL} -c {NAMES_KEY}<names>"
    found: dict[str, TargetDetail | None] = {}
    settings: list[tuple[str, str]] | None = None

    def close() -> None:
        if settings is None:
            return
        names = [v for k, v in settings if k == "TargetName"]
        if len(names) != 1 or not names[0]:
            raise ToolOutputError(command=command, reason="a target: block without one TargetName")
        groups = tuple(parse_portal_group(v) for k, v in settings if k == "PortalGroup")
        devices = tuple(parse_target_device(v) for k, v in settings if k == "TargetDevice")
        rest = tuple((k, v) for k, v in settings if k not in ("PortalGroup", "TargetDevice"))
        found[names[0]] = TargetDetail(names[0], rest, groups, devices)

    for line in stdout.splitlines():
        if not line:
            continue
        missing = _not_found_name(line)
        if line == "target:" or missing is not None:
            close()
            settings = None
            if missing is not None:
                found[missing] = None
            else:
                settings = []
            continue
        if settings is None:
            raise ToolOutputError(command=command, reason=f"unexpected line {line[:80]!r}")
        settings.append(_setting(line, command))
    close()
    return found


def _said(stderr: str, wanted: str) -> bool:
    """Whether ``wanted`` is one whole line of ``stderr`` (never a substring of another line)."""
    return any(line.strip() == wanted for line in stderr.splitlines())


def stop_outcome(iqn: str, result: CommandResult) -> StopOutcome:
    """What ``-s target=<iqn>`` said it did; its exit status is 0 even when the target stayed."""
    for outcome in StopOutcome:
        if _said(result.stderr, f"{iqn} {outcome.value}."):
            return outcome
    raise CommandFailed(command=f"{TOOL} -s", exit_code=result.exit_code,
                        stdout=result.stdout, stderr=result.stderr or
                        f"no '{iqn} removed.', 'busy.' or 'is not found.' in its output")


def start_outcome(iqn: str, result: CommandResult) -> StartOutcome:
    """What ``-S target=<iqn>`` said it did; anything else is a failure, whatever the status."""
    if result.exit_code == 0:
        for outcome in StartOutcome:
            if _said(result.stderr, f"target {iqn} {outcome.value}."):
                return outcome
    raise CommandFailed(command=f"{TOOL} -S", exit_code=result.exit_code,
                        stdout=result.stdout, stderr=result.stderr or
                        f"no 'target {iqn} added.' or 'updated.' in its output")


def name_batches(iqns: Iterable[str], budget: int = NAMES_BUFFER_BYTES - 1) -> Iterator[str]:
    """``target=<a>,<b>,...`` arguments, each at most ``budget`` characters long."""
    batch: list[str] = []
    size = len(NAMES_KEY)
    for iqn in iqns:
        if not iqn or "," in iqn or iqn == "ALL" or len(NAMES_KEY) + len(iqn) > budget:
            raise InvalidInput(field="target name", value=repr(iqn)[:80],
                               reason="cannot be looked up by iscsictl -c")
        extra = len(iqn) + (1 if batch else 0)
        if batch and size + extra > budget:
            yield NAMES_KEY + ",".join(batch)
            batch, size, extra = [], len(NAMES_KEY), len(iqn)
        batch.append(iqn)
        size += extra
    if batch:
        yield NAMES_KEY + ",".join(batch)


def parse_session_count(text: str, iqn: str) -> int:
    """``-r target=<iqn>``: ``<iqn>: session=<n>, login_ip=<m>.``, or nothing when there is none.

    ``iscsi_node_get_session`` prints that line, then one ``SESS:`` block per
    session, and nothing at all for a target without sessions
    (``private/klib/common/iscsi_node.c`` ~817-873, reached through
    ``iscsi_control_node_get_session``, ``iscsi_control_cmd.c`` ~521-545).
    """
    head = f"{iqn}: session="
    for line in text.splitlines():
        if line.startswith(head):
            count = line[len(head):].partition(",")[0]
            if count.isdigit():
                return int(count)
            raise ToolOutputError(command=f"{TOOL} -r", reason=f"unreadable line {line[:120]!r}")
    return 0


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
        return start_outcome(iqn, result)

    def stop(self, iqn: str) -> StopOutcome:
        return stop_outcome(iqn, self._run("-s", NAMES_KEY + iqn))

    def show(self, iqns: Sequence[str]) -> dict[str, TargetDetail | None]:
        """Detail of each live target among ``iqns`` (None: not live), in as few calls as fit."""
        wanted = list(dict.fromkeys(iqns))
        found: dict[str, TargetDetail | None] = {}
        for argument in name_batches(wanted):
            result = self._run("-c", argument)
            details = parse_details(result.stdout)
            asked = argument[len(NAMES_KEY):].split(",")
            if not details and result.exit_code != 0:
                raise CommandFailed(command=f"{TOOL} -c", exit_code=result.exit_code,
                                    stdout=result.stdout, stderr=result.stderr)
            unanswered = [name for name in asked if name not in details]
            if unanswered:
                raise ToolOutputError(command=f"{TOOL} -c",
                                      reason=f"no answer for {unanswered[0]!r} "
                                             f"({len(unanswered)} of {len(asked)} names)")
            found.update((name, details[name]) for name in asked)
        return found

    def session_count(self, iqn: str) -> int:
        """``-r target=<iqn>``: how many sessions the live target ``iqn`` has."""
        result = self._run("-r", NAMES_KEY + iqn)
        if result.exit_code != 0:
            raise CommandFailed(command=f"{TOOL} -r", exit_code=result.exit_code,
                                stdout=result.stdout, stderr=result.stderr)
        return parse_session_count(result.stdout, iqn)

    def list_all(self) -> Listing:
        result = self._run("-c", NAMES_KEY + "ALL")
        listing = parse_summaries(result.stdout)
        if not listing.names_bytes and result.exit_code != 0:
            raise CommandFailed(command=f"{TOOL} -c", exit_code=result.exit_code,
                                stdout=result.stdout, stderr=result.stderr)
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
                if not _said(result.stderr, LOCK_REFUSAL):
                    return result
                now = self.clock()
                if first_refusal is None:
                    first_refusal = now
                left = first_refusal + self.lock_retry_timeout - now
                if left <= 0:
                    raise CommandLockBusy(command=f"{TOOL} {args[0]}", tool=TOOL,
                                          attempts=attempts, waited=now - first_refusal,
                                          refusal=LOCK_REFUSAL, option=LOCK_RETRY_OPTION)
                self.sleep(min(delay * self.rng.uniform(0.5, 1.0), left))
                delay = min(delay * 2, MAX_RETRY_DELAY)

