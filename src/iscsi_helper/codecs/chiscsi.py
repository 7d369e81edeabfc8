"""The chiscsi target block: the per-volume file ``iscsictl -S -f`` reads, and the values it takes.

One ``target:`` block per file, in the layout Cinder's CxtAdm used, so
files CxtAdm wrote are read as they are. :func:`check_values` holds the
rules chiscsi applies when it reads such a block, so a value it would
refuse is refused here, by name, before anything is written. Facts are
from Chelsio's chiscsi 2.12.0.3 source (paths relative to ``src/chiscsi/``):

* ``iscsictl`` reads the file with ``fgets`` into a 1024-byte buffer and cuts
  every line at its last ``#`` (a comment); it lower-cases ``TargetName``
  (``private/ulib/iscsictl_cmd.c`` ~495-525, ~640-655; ``LINE_BUFFER_LENGTH``
  in ``user/common/iscsictl_private.h``).
* CHAP: a secret of 12 to 16 characters, not starting with a space, without
  a comma; a name of 1 to 256 characters without space or comma; the
  target's secret must differ from the initiator's
  (``private/klib/security/chap/iscsi_chap_key.c`` ~190-305, ~545-556;
  ``includes/common/iscsi_chap.h`` lines 4-7).
* Portals: an all-zero address is refused
  (``private/klib/text/iscsi_keys_common.c`` ~65-72, ~195-200).
* Devices: the default class is BLK, which takes block devices only; FILE
  and BLK both refuse a device of size 0 (``base/target/lu_vfs.c`` ~72-92,
  ``base/target/lu_blk.c`` ~91-103). A live LU's class cannot change on
  reconfigure (``private/klib/target/lun.c`` ~347-356).
* ``ACL=`` lines count only with ``ACL_Enable=Yes``; with ``ACL_Enable=Yes``
  and no ``ACL=`` line no initiator gets in (``private/klib/target/acl.c``
  ~326-341, ~653-700).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from iscsi_helper.exception import InvalidInput, IscsiHelperError, PersistenceError
from iscsi_helper.formats import ChapCredentials, Portal, parse_portal, validate_iscsi_name
from iscsi_helper.model import ExportSpec

HEADER = "# Export record written by iscsi-helper; loaded with iscsictl -S."
VOLUME_ID_MARK = "# iscsi-helper volume_id="
BLK, FILE = "BLK", "FILE"
#: The class of a ``TargetDevice`` line that names none: the first class registered.
DEFAULT_CLASS = BLK
#: The portal group tag every block uses, so also the tag a SendTargets discovery reports.
PORTAL_GROUP_TAG = 1
CHAP_SECRET_MIN, CHAP_SECRET_MAX = 12, 16
CHAP_NAME_MAX = 256
#: ``fgets(line_buf, 1024, ...)`` keeps 1023 bytes, newline included.
LINE_MAX = 1022
_KEYS = frozenset(
    {
        "TargetName",
        "TargetDevice",
        "PortalGroup",
        "AuthMethod",
        "Auth_CHAP_Policy",
        "Auth_CHAP_Initiator",
        "Auth_CHAP_Target",
        "ACL_Enable",
        "ACL",
    }
)
_CHAP_VALUE = re.compile(r'"([^"]*)":"([^"]*)"')
_SOURCE_CHAP = "private/klib/security/chap/iscsi_chap_key.c"


@dataclass(frozen=True)
class TargetBlock:
    """A parsed record: the export, plus what of the block the export does not say."""

    spec: ExportSpec
    device_class: str  # as chiscsi will read it: the written class, else BLK
    acl_enabled: bool


def render(spec: ExportSpec, device_class: str, serial: str) -> str:
    """The per-volume file: one ``target:`` block, plus our volume id as a comment.

    ``ACL_Enable=Yes`` only with initiators: with no ``ACL=`` line it
    would shut every initiator out, while an export without initiators
    means "any initiator with the secret".
    """
    lines = [
        HEADER,
        f"{VOLUME_ID_MARK}{spec.volume_id}",
        "target:",
        f"\tTargetName={spec.iqn}",
        f"\tTargetDevice={spec.device_path},{device_class},SN={serial}",
        f"\tPortalGroup={PORTAL_GROUP_TAG}@" + ",".join(str(p) for p in spec.portals),
    ]
    if spec.chap:
        lines += [
            "\tAuthMethod=CHAP",
            "\tAuth_CHAP_Policy=" + ("Mutual" if spec.target_chap else "Oneway"),
            f'\tAuth_CHAP_Initiator="{spec.chap.username}":"{spec.chap.password}"',
        ]
        if spec.target_chap:
            lines.append(f'\tAuth_CHAP_Target="{spec.target_chap.username}":"{spec.target_chap.password}"')
    if spec.initiators:
        lines.append("\tACL_Enable=Yes")
        lines += [f"\tACL=iname={initiator}" for initiator in spec.initiators]
    too_long = next((line for line in lines if len(line.encode()) > LINE_MAX), None)
    if too_long is not None:
        key = too_long.strip().partition("=")[0]
        raise InvalidInput(
            field=f"{key} line",
            value=repr(too_long[:40] + "..."),
            reason=f"longer than the {LINE_MAX} bytes iscsictl reads per line "
            "(fgets into LINE_BUFFER_LENGTH 1024, iscsictl_cmd.c)",
        )
    return "\n".join(lines) + "\n"


def _refuse(field: str, value: str, reason: str) -> InvalidInput:
    return InvalidInput(field=field, value=value, reason=reason)


def check_chap(credentials: ChapCredentials, role: str) -> None:
    """chiscsi's rules for one ``"<name>":"<secret>"`` pair, beyond the generic CHAP checks."""
    secret_field, name_field = f"CHAP secret ({role})", f"CHAP username ({role})"
    secret = credentials.password
    if not CHAP_SECRET_MIN <= len(secret) <= CHAP_SECRET_MAX:
        raise _refuse(
            secret_field,
            "<secret>",
            f"chiscsi takes {CHAP_SECRET_MIN} to {CHAP_SECRET_MAX} characters, this has "
            f"{len(secret)} (CHAP_SECRET_LEN_MIN/MAX, includes/common/iscsi_chap.h)",
        )
    if secret.startswith(" ") or "," in secret:
        raise _refuse(
            secret_field, "<secret>", f"chiscsi refuses a leading space or a comma ({_SOURCE_CHAP} ~285-300)"
        )
    if "#" in secret:
        raise _refuse(
            secret_field, "<secret>", "iscsictl reads '#' as the start of a comment (iscsictl_cmd.c ~510-521)"
        )
    name = credentials.username
    if "#" in name:
        raise _refuse(
            name_field,
            repr(name)[:80],
            "iscsictl reads '#' as the start of a comment (iscsictl_cmd.c ~510-521)",
        )
    if not 1 <= len(name) <= CHAP_NAME_MAX or " " in name or "," in name:
        raise _refuse(
            name_field,
            repr(name)[:80],
            f"chiscsi takes 1 to {CHAP_NAME_MAX} characters without space or comma ({_SOURCE_CHAP} ~252-272)",
        )


def check_target_name(iqn: str) -> None:
    """A target name chiscsi could find again after it read it."""
    if iqn != iqn.lower():
        raise _refuse(
            "target IQN",
            repr(iqn)[:80],
            "chiscsi lower-cases TargetName when it reads the block but looks "
            "target=<name> up as given, so a name with upper case could never be "
            "found again (iscsictl_cmd.c ~640-655)",
        )


def check_values(spec: ExportSpec) -> None:
    """Refuse, naming the rule, any value chiscsi would refuse in this export's block."""
    check_target_name(spec.iqn)
    for portal in spec.portals:
        if not int(ipaddress.ip_address(portal.ip)):
            raise _refuse(
                "portal address",
                repr(portal.ip),
                "chiscsi refuses an all-zero IP address; name the address to listen "
                "on (private/klib/text/iscsi_keys_common.c ~65-72)",
            )
    if spec.chap:
        check_chap(spec.chap, "initiator")
    if spec.target_chap:
        check_chap(spec.target_chap, "target")
        if spec.chap and spec.target_chap.password == spec.chap.password:
            raise _refuse(
                "CHAP secret (target)",
                "<secret>",
                f"chiscsi refuses the same secret for target and initiator ({_SOURCE_CHAP} ~545-556)",
            )


def device_class_for(iotype: str, is_block: bool, device_path: str) -> str:
    """The class ``iscsi_iotype`` asks for, refused where chiscsi's class would refuse the device."""
    if iotype == "blockio" and not is_block:
        raise _refuse(
            "device path",
            repr(device_path)[:80],
            "is a regular file, and iscsi_iotype = blockio asks for chiscsi's BLK "
            "class, which takes block devices only (base/target/lu_blk.c ~91-103); "
            "use fileio or auto",
        )
    if iotype == "blockio" or (iotype == "auto" and is_block):
        return BLK
    return FILE


def _chap(value: str, path: Path) -> ChapCredentials:
    match = _CHAP_VALUE.fullmatch(value)
    if not match:
        raise PersistenceError(path=path, reason='a CHAP value is not "<name>":"<secret>"')
    try:
        return ChapCredentials(match[1], match[2])
    except IscsiHelperError as err:
        raise PersistenceError(path=path, reason=str(err)) from None


def parse(text: str, path: Path, volume_name: str, volume_id_from_name: str, lun: int) -> TargetBlock:
    """Read one of our files, or one CxtAdm wrote (indented, no volume-id comment).

    Strict: a key or value we would not write means someone else edited
    the file, and silently rewriting it would lose their change.
    """
    values: dict[str, list[str]] = {}
    volume_id = volume_id_from_name
    blocks = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(VOLUME_ID_MARK):
            volume_id = line[len(VOLUME_ID_MARK) :].strip()
            continue
        if not line or line.startswith("#"):
            continue
        if "#" in line:
            raise PersistenceError(
                path=path, reason=f"line {number} holds '#', which iscsictl reads as the start of a comment"
            )
        if line == "target:":
            blocks += 1
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in _KEYS or blocks != 1:
            raise PersistenceError(path=path, reason=f"line {number}: unexpected {line[:60]!r}")
        values.setdefault(key, []).append(value)
    single = {k: v[0] for k, v in values.items() if len(v) == 1}
    if blocks != 1 or "TargetName" not in single or "TargetDevice" not in single:
        raise PersistenceError(
            path=path, reason="expected one target: block with TargetName and one TargetDevice"
        )
    iqn = single["TargetName"]
    try:
        validate_iscsi_name(iqn, "TargetName")
    except InvalidInput as err:
        raise PersistenceError(path=path, reason=str(err)) from None
    device_path, *options = single["TargetDevice"].split(",")
    device_class = next((o for o in options if o in (BLK, FILE)), DEFAULT_CLASS)
    portals: list[Portal] = []
    for group in values.get("PortalGroup", []):
        _tag, at, members = group.partition("@")
        if not at:
            raise PersistenceError(path=path, reason=f"malformed PortalGroup {group!r}")
        try:
            portals += [parse_portal(m) for m in members.split(",")]
        except InvalidInput as err:
            raise PersistenceError(path=path, reason=str(err)) from None
    chap = _chap(values["Auth_CHAP_Initiator"][0], path) if "Auth_CHAP_Initiator" in single else None
    if len(values.get("Auth_CHAP_Initiator", [])) > 1 or len(values.get("Auth_CHAP_Target", [])) > 1:
        raise PersistenceError(path=path, reason="more than one CHAP account per role")
    target_chap = _chap(single["Auth_CHAP_Target"], path) if "Auth_CHAP_Target" in single else None
    acl_enable = single.get("ACL_Enable", "No")
    if acl_enable not in ("Yes", "No") or len(values.get("ACL_Enable", [])) > 1:
        raise PersistenceError(path=path, reason="ACL_Enable must be Yes or No, once")
    initiators = []
    for acl in values.get("ACL", []):
        name = acl.removeprefix("iname=")
        if name == acl or not name:
            raise PersistenceError(path=path, reason=f"an ACL other than iname=<initiator>: {acl!r}")
        initiators.append(name)
    spec = ExportSpec(
        volume_id,
        volume_name,
        iqn,
        device_path,
        lun,
        tuple(portals),
        chap,
        target_chap,
        tuple(sorted(initiators)),
    )
    return TargetBlock(spec, device_class, acl_enable == "Yes")
