"""The tgt helper in the behaviour suite, on a private, real ``tgtd``.

Each harness starts its own tgtd on a free loopback portal and a free
control port (``tgtadm -C``), so suites and other tgtd on the host never
meet. The target's own state is read with ``tgtadm --op show``.

tgtd never reveals a CHAP secret (``--mode account --op show`` lists user
names only). So :meth:`TgtHarness.live` takes the user name tgtd reports as
bound to the target, takes the candidate secret from the persisted record,
and keeps it only if a real CHAP login with libiscsi (``iscsi-inq``) as that
user succeeds: the secret in the view is one the target accepted, not one
the helper claims.

``target_port`` is deliberately left at the suite's 3260: the suite checks
that number in provider_location, and the helper only writes it there (it
never dials the portal), while the login check uses tgtd's real port.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from iscsi_helper.adapters.tgtadm import TgtLiveTarget, parse_show
from iscsi_helper.lab.rig import TgtdProcess
from iscsi_helper.targets.tgt import DISK_LUN, TgtHelper

from .harness import Harness, LiveView, PersistedView, register

LOGIN_TIMEOUT = 20


def chap_login_works(
    portal_port: int,
    iqn: str,
    lun: int,
    user: str,
    secret: str,
    initiator: str,
    mutual: tuple[str, str] | None = None,
) -> bool:
    """A real login and INQUIRY with libiscsi; the secrets travel in its environment, not argv.

    With ``mutual`` (user, secret), libiscsi also challenges the target and
    refuses the login unless the target answers as that user with that secret.
    """
    # The user name goes through the environment too: in the URL, a legal CHAP name
    # holding '?', '@', '%' or '/' would be read as part of the URL's syntax.
    env = dict(os.environ, LIBISCSI_CHAP_USERNAME=user, LIBISCSI_CHAP_PASSWORD=secret)
    if mutual:
        env.update(LIBISCSI_CHAP_TARGET_USERNAME=mutual[0], LIBISCSI_CHAP_TARGET_PASSWORD=mutual[1])
    result = subprocess.run(
        ["iscsi-inq", "-i", initiator, f"iscsi://127.0.0.1:{portal_port}/{iqn}/{lun}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=LOGIN_TIMEOUT,
    )
    return result.returncode == 0


@register("tgt")
class TgtHarness(Harness):
    LOGIN_INITIATOR = "iqn.1993-08.org.debian:01:tgt-harness"

    def setup(self) -> None:
        self.tgtd = TgtdProcess(self.root / "tgtd.log")
        self.tgtd.start()

    def teardown(self) -> None:
        self.tgtd.stop()

    def overrides(self) -> dict[str, object]:
        return {"tgt_control_port": self.tgtd.control_port}

    def reboot(self) -> None:
        self.tgtd.restart()

    def drop_record(self, volume_name: str) -> None:
        (self.state_path / "volumes" / TgtHelper.records_subdir / volume_name).unlink()

    def live(self, iqn: str) -> LiveView | None:
        shown = parse_show(self.tgtd.tgtadm("--mode", "target", "--op", "show").stdout)
        target = shown.get(iqn)
        if target is None:
            return None
        names = frozenset(a for a in target.acl if a != "ALL")
        chap = mutual = None
        if target.accounts:
            user = target.accounts[0]
            secret = self._accepted_secret(target, user, names)
            chap = (user, secret)
            if target.outgoing and secret:
                mutual_user = target.outgoing[0]
                mutual = (mutual_user, self._answered_secret(target, chap, mutual_user, names))
        elif target.outgoing:
            mutual = (target.outgoing[0], "")  # never checkable without an incoming account
        return LiveView(target.iqn, dict(target.luns), chap, names, mutual, target.tid)

    def _recorded(self, iqn: str, key: str, user: str) -> list[str]:
        """Secrets the records on disk pair with ``user`` under ``key`` for ``iqn`` (candidates only)."""
        candidates = []
        records = self.state_path / "volumes" / TgtHelper.records_subdir
        for path in records.iterdir() if records.is_dir() else ():
            if path.is_file() and not path.name.startswith("."):
                text = path.read_text()
                if f"<target {iqn}>" in text:
                    candidates += [
                        line.split()[2] for line in text.splitlines() if line.split()[:2] == [key, user]
                    ]
        return candidates

    def _accepted_secret(self, target: TgtLiveTarget, user: str, names: frozenset[str]) -> str:
        """The recorded secret if tgtd accepts it in a real login; "" if none is known or it fails."""
        initiator = min(names) if names else self.LOGIN_INITIATOR
        for secret in self._recorded(target.iqn, "incominguser", user):
            if chap_login_works(self.tgtd.portal_port, target.iqn, DISK_LUN, user, secret, initiator):
                return secret
        return ""

    def _answered_secret(
        self, target: TgtLiveTarget, chap: tuple[str, str], user: str, names: frozenset[str]
    ) -> str:
        """The recorded target secret if tgtd proves it in a mutual login; "" otherwise."""
        initiator = min(names) if names else self.LOGIN_INITIATOR
        for secret in self._recorded(target.iqn, "outgoinguser", user):
            if chap_login_works(
                self.tgtd.portal_port, target.iqn, DISK_LUN, *chap, initiator, mutual=(user, secret)
            ):
                return secret
        return ""

    def persisted(self, volume_name: str, iqn: str) -> PersistedView | None:
        """The target file ``tgt-admin -e`` would load for this volume, read line by line."""
        path = self.state_path / "volumes" / TgtHelper.records_subdir / volume_name
        if not path.exists():
            return None
        lines = [line.split() for line in path.read_text().splitlines()]
        if ["<target", f"{iqn}>"] not in lines:
            return None
        device = next((w[1] for w in lines if w[:1] == ["backing-store"]), "")
        chap = next(((w[1], w[2]) for w in lines if w[:1] == ["incominguser"]), None)
        mutual = next(((w[1], w[2]) for w in lines if w[:1] == ["outgoinguser"]), None)
        return PersistedView(iqn, device, chap, mutual)

    def state_dirs(self) -> list[Path]:
        return [self.state_path]
