"""Chelsio chiscsi (``iscsictl``): IET's job, done with one target file per volume.

Each export is one ``target:`` block in ``<volumes_dir>/cxt/<volume name>``,
the layout Cinder's CxtAdm used, so existing files are adopted as they are.
The file is written atomically (0600: it holds the CHAP secret) and loaded
with ``iscsictl -S target=<iqn> -f <file> -x <chiscsi_conf>``; no secret is
ever on a command line. Costs: create is two ``iscsictl`` calls (start,
then one exact lookup for the target id), remove is one, and only the bulk
paths list all targets, once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from iscsi_helper import secretmask, specs
from iscsi_helper.devices import is_block_device
from iscsi_helper.exception import (CommandError, CommandFailed, CommandNotExecutable,
                                    CommandNotFound, PersistenceError,
                                    TargetCreateFailed, TargetRemoveFailed, ToolOutputError)
from iscsi_helper.fileutil import (atomic_write, read_text_or_none,
                                   remove_file)
from iscsi_helper.formats import ChapCredentials, Portal, parse_portal, validate_iscsi_name
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.targets.iscsi import IscsiHelper

LOG = secretmask.get_logger(__name__)

TOOL = "iscsictl"
SUBDIR = "cxt"
VOLUME_ID_MARK = "# iscsi-helper volume_id="
_CHAP_VALUE = re.compile(r'"([^"]*)":"([^"]*)"')
_RECORD_KEYS = frozenset({"TargetName", "TargetDevice", "PortalGroup", "AuthMethod",
                          "Auth_CHAP_Policy", "Auth_CHAP_Initiator", "Auth_CHAP_Target", "ACL"})


def render_block(spec: ExportSpec, device_options: tuple[str, ...] = ()) -> str:
    """The per-volume file: one ``target:`` block, plus our volume id as a comment."""
    lines = [
        "# Export record written by iscsi-helper; loaded with iscsictl -S.",
        f"{VOLUME_ID_MARK}{spec.volume_id}",
        "target:",
        f"\tTargetName={spec.iqn}",
        "\tTargetDevice=" + ",".join((spec.device_path, *device_options)),
        "\tPortalGroup=1@" + ",".join(str(p) for p in spec.portals),
    ]
    if spec.chap:
        lines += ["\tAuthMethod=CHAP",
                  "\tAuth_CHAP_Policy=" + ("Mutual" if spec.target_chap else "Oneway"),
                  f'\tAuth_CHAP_Initiator="{spec.chap.username}":"{spec.chap.password}"']
        if spec.target_chap:
            lines.append(f'\tAuth_CHAP_Target="{spec.target_chap.username}"'
                         f':"{spec.target_chap.password}"')
    lines += [f"\tACL=iname={initiator}" for initiator in spec.initiators]
    return "\n".join(lines) + "\n"


def _chap(value: str, path: Path) -> ChapCredentials:
    match = _CHAP_VALUE.fullmatch(value)
    if not match:
        raise PersistenceError(path=path, reason='a CHAP value is not "<name>":"<secret>"')
    try:
        return ChapCredentials(match[1], match[2])
    except Exception as err:
        raise PersistenceError(path=path, reason=str(err)) from None


def parse_record(text: str, path: Path, volume_name: str, volume_id_from_name: str,
                 lun: int) -> ExportSpec:
    """Read one of our files, or one CxtAdm wrote (indented, no volume-id comment).

    Strict: a key we would not write means someone else edited the file, and
    silently rewriting it would lose their change, so it is an error.
    """
    values: dict[str, list[str]] = {}
    volume_id = volume_id_from_name
    blocks = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(VOLUME_ID_MARK):
            volume_id = line[len(VOLUME_ID_MARK):].strip()
            continue
        if not line or line.startswith("#"):
            continue
        if line == "target:":
            blocks += 1
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in _RECORD_KEYS or blocks != 1:
            raise PersistenceError(path=path, reason=f"line {number}: unexpected {line[:60]!r}")
        values.setdefault(key, []).append(value)
    single = {k: v[0] for k, v in values.items() if len(v) == 1}
    if blocks != 1 or "TargetName" not in single or "TargetDevice" not in single:
        raise PersistenceError(path=path, reason="expected one target: block with TargetName "
                                                 "and one TargetDevice")
    iqn = single["TargetName"]
    portals: list[Portal] = []
    for group in values.get("PortalGroup", []):
        _tag, at, members = group.partition("@")
        if not at:
            raise PersistenceError(path=path, reason=f"malformed PortalGroup {group!r}")
        try:
            portals += [parse_portal(m) for m in members.split(",")]
        except Exception as err:
            raise PersistenceError(path=path, reason=str(err)) from None
    chap = None
    if values.get("Auth_CHAP_Initiator"):
        chap = _chap(values["Auth_CHAP_Initiator"][0], path)
    target_chap = _chap(single["Auth_CHAP_Target"], path) if "Auth_CHAP_Target" in single else None
    initiators = tuple(sorted(a.removeprefix("iname=") for a in values.get("ACL", [])
                              if a.startswith("iname=")))
    return ExportSpec(volume_id, volume_name, iqn, single["TargetDevice"].split(",")[0], lun,
                      tuple(portals), chap, target_chap, initiators)


def parse_listing(text: str) -> dict[str, LiveTarget]:
    """``iscsictl -c`` output: a ``TARGET:`` line per target, indented detail lines after it."""
    targets: dict[str, LiveTarget] = {}
    current: dict[str, object] | None = None

    def close() -> None:
        if current is not None:
            targets[str(current["iqn"])] = LiveTarget(
                str(current["iqn"]), int(str(current["tid"])),
                tuple(current["portals"]), tuple(current["devices"]))  # type: ignore[arg-type]

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("TARGET:"):
            close()
            fields = [f.strip() for f in stripped[len("TARGET:"):].split(",")]
            tid = next((f[3:] for f in fields[1:] if f.startswith("id=")), None)
            if not fields[0] or tid is None or not tid.isdigit():
                raise ToolOutputError(command=f"{TOOL} -c", reason=f"unreadable line {stripped[:80]!r}")
            current = {"iqn": fields[0], "tid": tid, "portals": [], "devices": []}
        elif current is not None and stripped.startswith("PortalGroup="):
            _tag, _, members = stripped[len("PortalGroup="):].partition("@")
            for member in members.split(","):
                if member and "=" not in member:
                    current["portals"].append(parse_portal(member))  # type: ignore[union-attr]
        elif current is not None and stripped.startswith("TargetDevice="):
            current["devices"].append(stripped[len("TargetDevice="):].split(",")[0])  # type: ignore[union-attr]
    close()
    return targets


class ChiscsiHelper(IscsiHelper):
    """``target_helper = chiscsi`` (also ``iscsictl``, ``cxtadm``)."""

    names = ("chiscsi", "iscsictl", "cxtadm")
    lun = 0  # chiscsi numbers LUNs from 0
    supports_acl = True
    records_subdir = SUBDIR

    def _device_options(self, spec: ExportSpec) -> tuple[str, ...]:
        """Access mode from iscsi_iotype, and a serial so multipath sees one disk per volume."""
        iotype = self.conf.iscsi_iotype
        blockio = iotype == "blockio" or (iotype == "auto" and is_block_device(spec.device_path))
        serial = hashlib.sha256(spec.volume_id.encode()).hexdigest()[:16]
        return ("BLK" if blockio else "FILE", f"SN={serial}")

    # -- persistence

    def _read_record(self, volume_name: str) -> ExportRecord | None:
        path = self._record_path(volume_name)
        text = read_text_or_none(path)
        if text is None:
            return None
        return ExportRecord(parse_record(text, path, volume_name,
                                         specs.volume_id_from_name(self.conf, volume_name), self.lun),
                            text=text)

    # -- live target

    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        validate_iscsi_name(spec.iqn, "target IQN")
        path = self._record_path(spec.volume_name)
        old_text = previous.text if previous else None
        # A file that already says the same (one CxtAdm wrote, say) is adopted as it is.
        new_text = old_text if (previous is not None and previous.spec == spec
                                and old_text is not None) else \
            render_block(spec, self._device_options(spec))
        if new_text != old_text:
            atomic_write(path, new_text, mode=0o600)
        try:
            self.executor.run(TOOL, "-S", f"target={spec.iqn}", "-f", str(path),
                              "-x", self.conf.chiscsi_conf)
        except CommandError as err:
            if old_text is None:
                remove_file(path)
            elif new_text != old_text:
                atomic_write(path, old_text, mode=0o600)
            if isinstance(err, (CommandNotFound, CommandNotExecutable)):
                raise  # the tool is missing: that is the whole story
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=str(err)) from None
        return ExportRecord(spec, text=new_text)

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        result = self.executor.run(TOOL, "-c", f"target={iqn}", ok_codes=range(256))
        if result.exit_code != 0:
            if "NOT found" in result.stdout:
                return None
            raise CommandFailed(command=f"{TOOL} -c", exit_code=result.exit_code,
                                stdout=result.stdout, stderr=result.stderr)
        return parse_listing(result.stdout).get(iqn)

    def _list_live(self) -> dict[str, LiveTarget]:
        return parse_listing(self.executor.run(TOOL, "-c", "target=ALL").stdout)

    def _withdraw(self, volume_name: str, iqn: str) -> None:
        try:
            self.executor.run(TOOL, "-s", f"target={iqn}")
        except CommandFailed as err:
            if "is not found" not in err.stderr:
                raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
            LOG.debug("Target %s was not running", iqn)
        except CommandError as err:
            raise TargetRemoveFailed(volume_id=volume_name, reason=str(err)) from None
        remove_file(self._record_path(volume_name))
