"""An export record as JSON: the index files of IET and the fake helper's records.

One layout for every helper that keeps its record as JSON: the spec's
fields by name, plus the helper's facts (``tid``, ``device_size``) when it
has them. Credentials are ``[user, secret]`` pairs; the files are written
0600 by their helpers because of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iscsi_helper.exception import IscsiHelperError, PersistenceError
from iscsi_helper.formats import ChapCredentials, parse_portal
from iscsi_helper.model import ExportRecord, ExportSpec


def _chap(credentials: ChapCredentials | None) -> list[str] | None:
    return [credentials.username, credentials.password] if credentials else None


def spec_fields(spec: ExportSpec) -> dict[str, Any]:
    """The spec as JSON-ready values (portals in Cinder's ``ip:port`` form)."""
    return {
        "volume_id": spec.volume_id,
        "volume_name": spec.volume_name,
        "iqn": spec.iqn,
        "device_path": spec.device_path,
        "lun": spec.lun,
        "portals": [str(p) for p in spec.portals],
        "chap": _chap(spec.chap),
        "target_chap": _chap(spec.target_chap),
        "initiators": list(spec.initiators),
    }


def spec_from_fields(data: Any) -> ExportSpec:
    """The inverse of :func:`spec_fields`; KeyError, TypeError or ValueError when it is not one."""
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    return ExportSpec(
        str(data["volume_id"]),
        str(data["volume_name"]),
        str(data["iqn"]),
        str(data["device_path"]),
        int(data["lun"]),
        tuple(parse_portal(p) for p in data["portals"]),
        ChapCredentials(*data["chap"]) if data["chap"] else None,
        ChapCredentials(*data["target_chap"]) if data["target_chap"] else None,
        tuple(data.get("initiators") or ()),
    )


def render_record(record: ExportRecord) -> str:
    """One record file's text; equal records give identical text (keys sorted)."""
    data = spec_fields(record.spec)
    if record.tid is not None:
        data["tid"] = record.tid
    if record.device_size is not None:
        data["device_size"] = record.device_size
    return json.dumps(data, sort_keys=True) + "\n"


def parse_record(text: str, path: Path, volume_name: str | None = None) -> ExportRecord:
    """Read a record file; ``volume_name``, when given, must be the one it names.

    Anything else (not JSON, a missing field, an invalid stored value such as
    a too-short secret) is a PersistenceError naming the file, never the secret.
    """
    try:
        data = json.loads(text)
        spec = spec_from_fields(data)
        if volume_name is not None and spec.volume_name != volume_name:
            raise ValueError(f"it names volume {spec.volume_name!r}")
        tid = data.get("tid")
        size = data.get("device_size")
        return ExportRecord(spec, int(tid) if tid else None, int(size) if size is not None else None, text)
    except (KeyError, TypeError, ValueError) as err:
        raise PersistenceError(path=path, reason=f"not an export record ({err})") from None
    except IscsiHelperError as err:  # an invalid stored value (InvalidInput)
        raise PersistenceError(path=path, reason=str(err)) from None
