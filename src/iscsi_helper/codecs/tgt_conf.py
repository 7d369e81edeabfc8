"""tgt's per-volume target file (``<volumes_dir>/tgt/<volume name>``), as Cinder's TgtAdm wrote it.

The layout is tgt-admin's ``<target ...>`` block, so ``tgt-admin -e`` can
load it after a reboot. Our own metadata (volume id, tid, portals) is one
``#`` comment line, which tgt-admin ignores::

    # iscsi-helper volume_id=<id> tid=<tid> portals=<ip:port>[,<ip:port>...]
    <target <iqn>>
        backing-store <device>
        driver <iscsi|iser>
        incominguser <user> <secret>
        outgoinguser <user> <secret>        (mutual CHAP only)
        initiator-name <initiator iqn>      (one per allowed initiator)
        bsoflags <flags>                    (iscsi_target_flags, when set)
        write-cache <on|off>
    </target>
"""

from __future__ import annotations

import re
from pathlib import Path

from iscsi_helper.exception import IscsiHelperError, PersistenceError
from iscsi_helper.formats import ChapCredentials, Portal, parse_portal
from iscsi_helper.model import ExportRecord, ExportSpec

META_MARK = "# iscsi-helper"

_TARGET_OPEN = re.compile(r"<target\s+(\S+)\s*>")
_KEYS = frozenset(
    {"backing-store", "driver", "incominguser", "outgoinguser", "initiator-name", "bsoflags", "write-cache"}
)


def render(spec: ExportSpec, tid: int, *, driver: str, write_cache: str, bsoflags: str) -> str:
    """Cinder's TgtAdm layout, plus our metadata comment and the initiator ACL."""
    meta = f"{META_MARK} volume_id={spec.volume_id} tid={tid} portals=" + ",".join(
        str(p) for p in spec.portals
    )
    lines = [meta, f"<target {spec.iqn}>", f"    backing-store {spec.device_path}", f"    driver {driver}"]
    if spec.chap:
        lines.append(f"    incominguser {spec.chap.username} {spec.chap.password}")
    if spec.target_chap:
        lines.append(f"    outgoinguser {spec.target_chap.username} {spec.target_chap.password}")
    lines += [f"    initiator-name {name}" for name in spec.initiators]
    if bsoflags:
        lines.append(f"    bsoflags {bsoflags}")
    lines += [f"    write-cache {write_cache}", "</target>"]
    return "\n".join(lines) + "\n"


def _credentials(value: str, path: Path, key: str) -> ChapCredentials:
    parts = value.split()
    if len(parts) != 2:
        raise PersistenceError(path=path, reason=f"{key} is not '<user> <secret>'")
    try:
        return ChapCredentials(parts[0], parts[1])
    except IscsiHelperError as err:
        raise PersistenceError(path=path, reason=str(err)) from None


def parse(
    text: str,
    path: Path,
    volume_name: str,
    default_volume_id: str,
    default_portals: tuple[Portal, ...],
    lun: int,
) -> ExportRecord:
    """Read one of our files, or one Cinder's TgtAdm wrote (indented, blank lines, no metadata).

    Strict: a key we would not write means someone edited the file, and
    rewriting it on the next change would silently drop their edit. A file
    without our metadata takes ``default_volume_id`` and ``default_portals``
    and has no tid.
    """
    meta: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    iqn: str | None = None
    closed = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(META_MARK):
            for item in line[len(META_MARK) :].split():
                key, _, value = item.partition("=")
                meta[key] = value
            continue
        if not line or line.startswith("#"):
            continue
        opened = _TARGET_OPEN.fullmatch(line)
        if opened and iqn is None:
            iqn = opened[1]
            continue
        if line == "</target>" and iqn is not None and not closed:
            closed = True
            continue
        key, _, value = line.partition(" ")
        if iqn is None or closed or key not in _KEYS:
            raise PersistenceError(path=path, reason=f"line {number}: unexpected {line[:60]!r}")
        values.setdefault(key, []).append(value.strip())
    if iqn is None or not closed or len(values.get("backing-store", [])) != 1:
        raise PersistenceError(path=path, reason="expected one <target> block with one backing-store")
    chap = (
        _credentials(values["incominguser"][0], path, "incominguser") if values.get("incominguser") else None
    )
    target_chap = (
        _credentials(values["outgoinguser"][0], path, "outgoinguser") if values.get("outgoinguser") else None
    )
    portals = default_portals
    if meta.get("portals"):
        try:
            portals = tuple(parse_portal(p) for p in meta["portals"].split(","))
        except IscsiHelperError as err:
            raise PersistenceError(path=path, reason=str(err)) from None
    tid_text = meta.get("tid", "")
    tid = int(tid_text) if tid_text.isascii() and tid_text.isdigit() and int(tid_text) > 0 else None
    spec = ExportSpec(
        meta.get("volume_id") or default_volume_id,
        volume_name,
        iqn,
        values["backing-store"][0],
        lun,
        portals,
        chap,
        target_chap,
        tuple(sorted(set(values.get("initiator-name", [])))),
    )
    return ExportRecord(spec, tid, text=text)
