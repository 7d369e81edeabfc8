"""``tgtadm``, tgtd's admin tool, as typed calls: the only place its command lines are built.

Facts modelled, from tgt's ``usr/tgtadm.c`` (fujita/tgt):

* every refusal of tgtd is printed as ``tgtadm_strerror``'s text and the
  exit code is EINVAL (22) whatever the reason (``ipc_mgmt_rsp``), so the
  reason is told apart by that text: "... already exists", "can't find the
  target", "can't find the account", "this access control rule does not
  exist". That matching happens here and nowhere else;
* ``--mode account --op new`` takes the CHAP secret only as
  ``--password`` on the command line; it is passed to the executor as a
  secret, so it is masked in every log and error;
* ``-C <port>`` picks which tgtd to talk to, ``--lld`` its low-level driver
  (``iscsi`` or ``iser``, Cinder's ``target_protocol``);
* ``--mode target --op show`` lists every target with its LUNs, accounts
  and ACL, indented by four spaces a level (:func:`parse_show`); tgtd shows
  no single target by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iscsi_helper.exception import (
    AlreadyPresent,
    CommandFailed,
    NoSuchAccount,
    NoSuchAclRule,
    NoSuchTarget,
    ToolOutputError,
    ToolRefused,
)
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.formats import ChapCredentials
from iscsi_helper.model import LiveTarget

TOOL = "tgtadm"

#: tgtd's refusal texts (``tgtadm_strerror``) and what each one means.
_REFUSALS: tuple[tuple[str, type[ToolRefused]], ...] = (
    ("already exists", AlreadyPresent),
    ("can't find the target", NoSuchTarget),
    ("can't find the account", NoSuchAccount),
    ("access control rule does not exist", NoSuchAclRule),
)

#: What tgt-admin runs for "write-cache off": the caching mode page with WCE cleared.
WRITE_CACHE_OFF_MODE_PAGE = "mode_page=8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:0:0:0:0:0:0"


# ------------------------------------------------------------------- show


@dataclass(frozen=True)
class TgtLiveTarget(LiveTarget):
    """A target as ``tgtadm --op show`` lists it (tgtd shows no portals per target)."""

    luns: tuple[tuple[int, str], ...] = ()  # (LUN, backing path), controller LUN 0 excluded
    sizes: tuple[tuple[int, int], ...] = ()  # (LUN, size in MB as tgtd reports it)
    accounts: tuple[str, ...] = ()  # incoming CHAP users
    outgoing: tuple[str, ...] = ()  # outgoing (mutual CHAP) users
    acl: tuple[str, ...] = ()  # initiator addresses ("ALL") and names, as listed

    def lun_path(self, lun: int) -> str | None:
        return dict(self.luns).get(lun)


@dataclass
class _Shown:
    """One target while its lines are being read."""

    tid: int
    iqn: str
    luns: dict[int, str]
    sizes: dict[int, int]
    accounts: list[str]
    outgoing: list[str]
    acl: list[str]
    nexuses: int = 0  # I_T nexuses: one per session logged in

    def done(self) -> TgtLiveTarget:
        luns = tuple(sorted(self.luns.items()))
        return TgtLiveTarget(
            self.iqn,
            self.tid,
            None,
            tuple(path for _n, path in luns),
            luns=luns,
            sizes=tuple(sorted(self.sizes.items())),
            accounts=tuple(self.accounts),
            outgoing=tuple(self.outgoing),
            acl=tuple(self.acl),
            sessions=self.nexuses,
        )


_TARGET_LINE = re.compile(r"Target (\d+): (\S+)")
_SIZE = re.compile(r"Size: (\d+) MB")


def parse_show(text: str) -> dict[str, TgtLiveTarget]:
    """``tgtadm --mode target --op show``: indentation is the structure (4 spaces a level)."""
    targets: dict[str, TgtLiveTarget] = {}
    current: _Shown | None = None
    section = ""
    lun: int | None = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if indent == 0:
            match = _TARGET_LINE.fullmatch(line)
            if not match:
                raise ToolOutputError(command=f"{TOOL} --op show", reason=f"unreadable line {line[:80]!r}")
            if current is not None:
                targets[current.iqn] = current.done()
            current = _Shown(int(match[1]), match[2], {}, {}, [], [], [])
            section, lun = "", None
            continue
        if current is None:
            raise ToolOutputError(command=f"{TOOL} --op show", reason=f"unreadable line {line[:80]!r}")
        if indent == 4:
            section, lun = line.rstrip(":"), None
        elif section == "LUN information":
            if indent == 8 and line.startswith("LUN: "):
                lun = int(line[5:])
            elif lun is not None and line.startswith("Backing store path: "):
                path = line[len("Backing store path: ") :]
                if path != "None":
                    current.luns[lun] = path
            elif lun is not None and (size := _SIZE.match(line)):
                current.sizes[lun] = int(size[1])
        elif section == "Account information" and indent == 8:
            if line.endswith(" (outgoing)"):
                current.outgoing.append(line[: -len(" (outgoing)")])
            else:
                current.accounts.append(line)
        elif section == "ACL information" and indent == 8:
            current.acl.append(line)
        elif section == "I_T nexus information" and indent == 8 and line.startswith("I_T nexus: "):
            current.nexuses += 1
    if current is not None:
        targets[current.iqn] = current.done()
    return targets


# ------------------------------------------------------------------ calls


class Tgtadm:
    """Typed ``tgtadm`` calls against one tgtd; refusals raise :mod:`iscsi_helper.exception` types."""

    def __init__(self, executor: Executor, *, lld: str, control_port: int | None) -> None:
        self.executor = executor
        self._prefix = (TOOL, *(("-C", str(control_port)) if control_port is not None else ()), "--lld", lld)

    def _run(self, *args: str, secrets: tuple[str, ...] = ()) -> CommandResult:
        try:
            return self.executor.run(*self._prefix, *args, secrets=secrets)
        except CommandFailed as failure:
            for text, refusal in _REFUSALS:
                if text in failure.stderr:
                    raise refusal.from_failure(failure) from None
            raise

    # -- targets

    def show(self) -> dict[str, TgtLiveTarget]:
        """Every target by IQN (one call; its output grows with the number of targets)."""
        return parse_show(self._run("--mode", "target", "--op", "show").stdout)

    def target_new(self, tid: int, iqn: str) -> None:
        """AlreadyPresent if the tid or the name is taken (tgtd says the same for both)."""
        self._run("--mode", "target", "--op", "new", "--tid", str(tid), "-T", iqn)

    def target_delete(self, tid: int) -> None:
        """Delete even with sessions (``--force``); NoSuchTarget if there is none."""
        self._run("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))

    def initiator_bind(self, tid: int, initiator: str, *, by_name: bool) -> None:
        """Admit an initiator by name (``-Q``) or by address (``-I``, ``ALL`` for any)."""
        self._run("--mode", "target", "--op", "bind", "--tid", str(tid), "-Q" if by_name else "-I", initiator)

    def initiator_unbind(self, tid: int, initiator: str, *, by_name: bool) -> None:
        """NoSuchAclRule if no rule of that kind names it."""
        self._run(
            "--mode", "target", "--op", "unbind", "--tid", str(tid), "-Q" if by_name else "-I", initiator
        )

    # -- logical units

    def lun_new(self, tid: int, lun: int, path: str, bsoflags: str = "") -> None:
        args = ["--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", str(lun), "-b", path]
        if bsoflags:
            args += ["--bsoflags", bsoflags]
        self._run(*args)

    def lun_write_cache_off(self, tid: int, lun: int) -> None:
        self._run(
            "--mode",
            "logicalunit",
            "--op",
            "update",
            "--tid",
            str(tid),
            "--lun",
            str(lun),
            "--params",
            WRITE_CACHE_OFF_MODE_PAGE,
        )

    def lun_delete(self, tid: int, lun: int) -> None:
        self._run("--mode", "logicalunit", "--op", "delete", "--tid", str(tid), "--lun", str(lun))

    # -- CHAP accounts (global to a tgtd: one secret per user name)

    def account_new(self, credentials: ChapCredentials) -> None:
        """The one tgtadm call with a secret on its command line; AlreadyPresent if the user exists."""
        self._run(
            "--mode",
            "account",
            "--op",
            "new",
            "--user",
            credentials.username,
            "--password",
            credentials.password,
            secrets=(credentials.password,),
        )

    def account_delete(self, username: str) -> None:
        """Deleting an account unbinds it from every target; NoSuchAccount if there is none."""
        self._run("--mode", "account", "--op", "delete", "--user", username)

    def account_bind(self, tid: int, username: str, *, outgoing: bool) -> None:
        self._run(
            "--mode",
            "account",
            "--op",
            "bind",
            "--tid",
            str(tid),
            "--user",
            username,
            *(("--outgoing",) if outgoing else ()),
        )

    def account_unbind(self, tid: int, username: str, *, outgoing: bool) -> None:
        self._run(
            "--mode",
            "account",
            "--op",
            "unbind",
            "--tid",
            str(tid),
            "--user",
            username,
            *(("--outgoing",) if outgoing else ()),
        )
