"""``ietadm``, IET's admin tool, as typed calls: the only place its command lines are built.

Facts modelled (docs/emulators/iet.md records them, with what the emulator
in ``iscsi_helper.lab`` does for each):

* ``main`` returns ietd's negative errno, so the shell sees ``256 - errno``:
  234 EINVAL (``--op new --params Name=`` of a name in use), 239 EEXIST
  (the tid is taken by another target; or the LUN exists), 254 ENOENT (no
  such target, LUN, session or account), 240 EBUSY (the target still has
  sessions). Each is raised here as its exception type.
* ``--op new --tid=0`` lets ietd pick a tid and does not print it; the IET
  helper therefore always passes one.
* A CHAP secret can only be given on the command line
  (``--params=IncomingUser=<u>,Password=<p>``); it is passed to the
  executor as a secret, so it is masked in every log and error.
* ``--op show --user --params=IncomingUser=<u>`` prints that one account
  with its secret on stdout, which is how a target is recognised as ours
  without reading the proc files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from iscsi_helper.exception import (
    AlreadyPresent,
    CommandFailed,
    NameInUse,
    NotPresent,
    TargetHasSessions,
    TidInUse,
    ToolRefused,
)
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.formats import ChapCredentials

TOOL = "ietadm"

EXIT_EINVAL = 234
EXIT_EEXIST = 239
EXIT_EBUSY = 240
EXIT_ENOENT = 254

#: Which CHAP account: the initiator's (``IncomingUser``) or the target's own, for mutual CHAP.
Direction = Literal["IncomingUser", "OutgoingUser"]
INCOMING: Direction = "IncomingUser"
OUTGOING: Direction = "OutgoingUser"

_ABSENT: Mapping[int, type[ToolRefused]] = {EXIT_ENOENT: NotPresent}


def parse_account(text: str) -> tuple[str, str, str] | None:
    """``show --user --params=<Direction>=<user>`` output: (direction, user, secret), else None."""
    words = text.split()
    return (words[0], words[1], words[2]) if len(words) == 3 else None


class Ietadm:
    """Typed ``ietadm`` calls; refusals raise the exception types of :mod:`iscsi_helper.exception`."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def _run(
        self, *args: str, refusals: Mapping[int, type[ToolRefused]] = _ABSENT, secrets: tuple[str, ...] = ()
    ) -> CommandResult:
        try:
            return self.executor.run(TOOL, *args, secrets=secrets)
        except CommandFailed as failure:
            refusal = refusals.get(failure.exit_code)
            if refusal is None:
                raise
            raise refusal.from_failure(failure) from None

    # -- targets

    def target_new(self, tid: int, iqn: str) -> None:
        """NameInUse if a target of that name exists, TidInUse if another target holds ``tid``."""
        self._run(
            "--op",
            "new",
            f"--tid={tid}",
            "--params",
            f"Name={iqn}",
            refusals={EXIT_EINVAL: NameInUse, EXIT_EEXIST: TidInUse},
        )

    def target_delete(self, tid: int) -> None:
        """NotPresent if there is no such target, TargetHasSessions while it has sessions."""
        self._run(
            "--op",
            "delete",
            f"--tid={tid}",
            refusals={EXIT_ENOENT: NotPresent, EXIT_EBUSY: TargetHasSessions},
        )

    # -- LUNs

    def lun_new(self, tid: int, lun: int, path: str, iotype: str) -> None:
        """AlreadyPresent if the LUN exists (its size is read only now, when it is added)."""
        self._run(
            "--op",
            "new",
            f"--tid={tid}",
            f"--lun={lun}",
            "--params",
            f"Path={path},Type={iotype}",
            refusals={EXIT_EEXIST: AlreadyPresent},
        )

    def lun_delete(self, tid: int, lun: int) -> None:
        self._run("--op", "delete", f"--tid={tid}", f"--lun={lun}")

    # -- CHAP accounts

    def account_new(self, tid: int, direction: Direction, credentials: ChapCredentials) -> None:
        """The one ietadm call that carries a secret (IET takes it no other way)."""
        self._run(
            "--op",
            "new",
            f"--tid={tid}",
            "--user",
            f"--params={direction}={credentials.username},Password={credentials.password}",
            secrets=(credentials.password,),
        )

    def account_delete(self, tid: int, direction: Direction, username: str) -> None:
        self._run("--op", "delete", f"--tid={tid}", "--user", f"--params={direction}={username}")

    def account_matches(self, tid: int, direction: Direction, credentials: ChapCredentials) -> bool | None:
        """Whether target ``tid`` holds exactly this account: True; False (that user, another
        secret); None (no such account, or no such target)."""
        try:
            result = self._run(
                "--op",
                "show",
                f"--tid={tid}",
                "--user",
                f"--params={direction}={credentials.username}",
                secrets=(credentials.password,),
            )
        except NotPresent:
            return None
        return parse_account(result.stdout) == (direction, credentials.username, credentials.password)

    # -- sessions

    def connection_close(self, tid: int, sid: int, cid: int) -> None:
        """Force-close one connection (a session without connections goes too)."""
        self._run("--op", "delete", f"--tid={tid}", f"--sid={sid}", f"--cid={cid}")
