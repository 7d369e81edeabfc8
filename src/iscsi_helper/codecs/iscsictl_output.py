"""What ``iscsictl`` prints, read into typed values: pure functions, tested without the tool.

Facts modelled here come from Chelsio's chiscsi 2.12.0.3 source (paths are
relative to its ``src/chiscsi/``; line numbers as of that snapshot):

* ``-c target=ALL`` prints a summary per target (``\\nTARGET: <iqn>, id=<n>,
  login_ip=<n>`` and tab-indented ``PortalGroup=``/``TargetDevice=`` lines);
  ``-c target=<a>[,<b>...]`` prints the detailed configuration of each
  (``\\ntarget:`` and tab-indented ``Key=value`` lines, no id); a name that
  is not live prints ``target <name> NOT found.`` instead
  (``private/ulib/iscsictl_cmd.c`` ~1030-1128,
  ``private/klib/common/iscsi_node.c`` ~885-945,
  ``private/klib/control/iscsi_control_cmd.c`` ~367-388).
* The ALL listing iterates over one buffer of ``target=<n1>,<n2>,...`` of
  at most :data:`NAMES_BUFFER_BYTES` bytes, cut silently when the names do
  not fit (``iscsi_node.c`` ~124-150): :attr:`Listing.may_be_cut` tells.
* ``-S`` prints ``target <iqn> added.`` or ``target <iqn> updated.`` on
  stderr (``iscsi_node.c`` ~498, ~790); ``-s`` prints ``<iqn> removed.``,
  ``<iqn> busy.`` or ``<iqn> is not found.`` (``iscsi_node.c`` ~200-220,
  ``iscsi_control_cmd.c`` ~489-494).

Unreadable output is a ToolOutputError naming the command; what a command
line is, and what an exit status means, is the adapter's
(:mod:`iscsi_helper.adapters.iscsictl`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from iscsi_helper.exception import InvalidInput, ToolOutputError
from iscsi_helper.formats import Portal, parse_portal

TOOL = "iscsictl"
#: ``ISCSI_CONTROL_DATA_MAX_BUFLEN`` (``user/common/iscsictl_private.h`` line 8): the buffer the
#: kernel fills with ``target=<n1>,<n2>,...`` for ``-c target=ALL``. It is also Linux's limit on
#: one command-line argument (``MAX_ARG_STRLEN``), so named batches are sized under it too.
NAMES_BUFFER_BYTES = 131072
NAMES_KEY = "target="


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
                    names.update(n for n in part[len("iname=") :].split(",") if n)
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
            raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable portal {member[:60]!r}") from None
    return PortalGroup(int(tag_text), tuple(portals))


def parse_target_device(value: str) -> TargetDevice:
    fields = value.split(",")
    if len(fields) < 2 or not fields[0]:
        raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable TargetDevice {value[:80]!r}")
    return TargetDevice(fields[0], fields[1], tuple(fields[2:]))


def _not_found_name(line: str) -> str | None:
    """``target <name> NOT found.`` -> ``<name>`` (``iscsi_control_cmd.c`` ~382)."""
    if line.startswith("target ") and line.endswith(" NOT found."):
        return line[len("target ") : -len(" NOT found.")]
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
            head = line[len("TARGET: ") :].split(", ")
            if (
                len(head) != 3
                or not head[0]
                or not head[1].startswith("id=")
                or not head[2].startswith("login_ip=")
                or not head[1][3:].isdigit()
                or not head[2][9:].isdigit()
            ):
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


def said(stderr: str, wanted: str) -> bool:
    """Whether ``wanted`` is one whole line of ``stderr`` (never a substring of another line)."""
    return any(line.strip() == wanted for line in stderr.splitlines())


def stop_said(iqn: str, stderr: str) -> StopOutcome | None:
    """What ``-s target=<iqn>`` said it did (None: none of its three answers)."""
    return next((outcome for outcome in StopOutcome if said(stderr, f"{iqn} {outcome.value}.")), None)


def start_said(iqn: str, stderr: str) -> StartOutcome | None:
    """What ``-S target=<iqn>`` said it did (None: neither ``added`` nor ``updated``)."""
    return next((outcome for outcome in StartOutcome if said(stderr, f"target {iqn} {outcome.value}.")), None)


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
            count = line[len(head) :].partition(",")[0]
            if count.isdigit():
                return int(count)
            raise ToolOutputError(command=f"{TOOL} -r", reason=f"unreadable line {line[:120]!r}")
    return 0
