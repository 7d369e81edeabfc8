"""CHAP configuration keys and ``AuthMethod``.

Sources (under src/chiscsi/):
- ``"<id>":"<secret>"``: private/klib/security/chap/iscsi_chap_key.c 188-313:
  both parts double-quoted and separated by ':'; the id 1..256 characters
  without ' ' or ','; the secret ``CHAP_SECRET_LEN_MIN``..``MAX`` = 12..16
  characters (includes/common/iscsi_chap.h 4-7), not starting with a space,
  without ','; anything after the secret's closing quote is ignored;
- duplicates: 315-333 (no two entries of one key share an id or a secret),
  525-562 (at most one target credential; the target's secret differs from
  every initiator's);
- ``Auth_CHAP_ChallengeLength``: 339-354 (non-zero multiple of 16) within
  16..1024 (iscsi_chap_private.h 15-17); ``Auth_CHAP_Policy``: 360-375;
- the CHAP configuration is built only when some CHAP key is present
  (private/klib/common/iscsi_node.c 313-319), and CHAP counts as enabled only
  then (iscsi_chap_key.c 965-985);
- ``AuthMethod``: private/klib/security/iscsi_auth.c 145-235 (list of None
  and CHAP; the default enables both; None absent means CHAP is required);
- display: private/klib/target/config_api.c 80-100 and iscsi_chap_key.c
  643-661, 709-742 (secrets are printed as ``********``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

NAME_LEN_MIN, NAME_LEN_MAX = 1, 256
SECRET_LEN_MIN, SECRET_LEN_MAX = 12, 16
CHALLENGE_LENGTH_DEFAULT = 16
AUTH_METHODS = ("None", "CHAP")


@dataclass
class Credential:
    user: str
    secret: str = field(repr=False)


def decode_pair(value: str, ebuf: Ebuf) -> Credential:
    """``kv_decode_chap_pair``."""
    if not value.startswith('"'):
        ebuf.add("ERR! chap id should be in double quote.\n")
        raise KernelError("chap")
    end = value.find('"', 1)
    if end < 0:
        ebuf.add("ERR! chap id missing 2nd double quote.\n")
        raise KernelError("chap")
    user = value[1:end]
    rest = value[end + 1 :]
    if not rest.startswith(":"):
        ebuf.add("ERR! chap pair missing seperator :.\n")
        raise KernelError("chap")
    rest = rest[1:]
    if not rest.startswith('"'):
        ebuf.add("ERR! chap secret should be in double quote.\n")
        raise KernelError("chap")
    end = rest.find('"', 1)
    if end < 0:
        ebuf.add("ERR! chap secret missing 2nd double quote.\n")
        raise KernelError("chap")
    secret = rest[1:end]
    if not NAME_LEN_MIN <= len(user) <= NAME_LEN_MAX:
        ebuf.add(f"ERR! chap id needs to be {NAME_LEN_MIN} ~ {NAME_LEN_MAX} characters.\n")
        raise KernelError("chap")
    if " " in user or "," in user:
        ebuf.add("ERR! chap id cannot contain spaces or commas.\n")
        raise KernelError("chap")
    if not SECRET_LEN_MIN <= len(secret) <= SECRET_LEN_MAX:
        ebuf.add(f"ERR! chap secret needs to be {SECRET_LEN_MIN} ~ {SECRET_LEN_MAX} characters.\n")
        raise KernelError("chap")
    if secret.startswith(" "):
        ebuf.add("ERR! chap secret cannot begin with a space character.\n")
        raise KernelError("chap")
    if "," in secret:
        ebuf.add("ERR! chap secret cannot contain commas\n")
        raise KernelError("chap")
    return Credential(user, secret)


def post_decode_pair(previous: list[Credential], new: Credential, ebuf: Ebuf) -> None:
    """``kv_post_decode_chap_pair``: one key's entries share neither id nor secret."""
    for old in previous:
        if old.user == new.user or old.secret == new.secret:
            ebuf.add(f"duplicate chap name or secret for {new.user}.\n")
            raise KernelError("chap dup")


def check_challenge_length(value: int, ebuf: Ebuf) -> None:
    if not value or value & 0xF:
        ebuf.add(f"ERR! Invalid ChallengeLength {value}.\n")
        raise KernelError("chap")


def decode_policy(value: str, ebuf: Ebuf) -> str:
    if value in ("Oneway", "Mutual"):
        return value
    ebuf.add(f"ERR! invalid policy {value}.\n")
    raise KernelError("chap")


def decode_auth_method(value: str, ebuf: Ebuf) -> str:
    if value in AUTH_METHODS:
        return value
    ebuf.add(f"WARN! AuthMethod, {value}, not supported.\n")
    raise KernelError("auth")


@dataclass
class ChapConfig:
    """What the node keeps (``chap_node`` plus the method flags of ``iscsi_auth_node``)."""

    methods: list[str]  # enabled methods
    configured: bool  # a chap_node exists (some CHAP key was given)
    targets: list[Credential] = field(default_factory=list)
    initiators: list[Credential] = field(default_factory=list)
    challenge_length: int = CHALLENGE_LENGTH_DEFAULT
    policy: str = "Oneway"

    @property
    def forced(self) -> bool:
        return "None" not in self.methods

    @property
    def chap_enabled(self) -> bool:
        return "CHAP" in self.methods and self.configured

    @property
    def displayed_method(self) -> str:
        """AuthMethod as ``-c`` shows it (``chiscsi_chap_settings_sprintf``): None without CHAP."""
        if self.chap_enabled:
            return "CHAP" if self.forced else "None,CHAP"
        return "None"

    def to_dict(self) -> dict[str, object]:
        return {
            "methods": self.methods,
            "configured": self.configured,
            "targets": [[c.user, c.secret] for c in self.targets],
            "initiators": [[c.user, c.secret] for c in self.initiators],
            "challenge_length": self.challenge_length,
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChapConfig:
        return cls(
            [str(m) for m in data["methods"]],
            bool(data["configured"]),
            [Credential(u, s) for u, s in data["targets"]],
            [Credential(u, s) for u, s in data["initiators"]],
            int(data["challenge_length"]),
            str(data["policy"]),
        )


def check_node(config: ChapConfig, ebuf: Ebuf) -> None:
    """``chap_config_check_one_node``. The second message shows the secret, as the product's does."""
    if len(config.targets) > 1:
        ebuf.add(f"too many target chap id/secret: {len(config.targets)}.")
        raise KernelError("chap")
    initiator_secrets = {c.secret for c in config.initiators}
    for target in config.targets:
        if target.secret in initiator_secrets:
            ebuf.add(f"same secret {target.secret} used for target and initiator!\n")
            raise KernelError("chap")


def settings_display(config: ChapConfig) -> str:
    """``chiscsi_chap_settings_sprintf``."""
    if config.chap_enabled:
        return (
            f"\tAuthMethod={config.displayed_method}\n\tAuth_CHAP_Policy={config.policy}\n"
            f"\tAuth_CHAP_ChallengeLength={config.challenge_length}\n"
        )
    return "\tAuthMethod=None\n"


def credentials_display(config: ChapConfig) -> str:
    """``iscsi_auth_config_display`` -> ``chap_node_config_display``."""
    if "CHAP" not in config.methods or not config.configured:
        return ""
    out = "".join(f'\tAuth_CHAP_Target="{c.user}":"********"\n' for c in config.targets)
    out += "".join(f'\tAuth_CHAP_Initiator="{c.user}":"********"\n' for c in config.initiators)
    return out
