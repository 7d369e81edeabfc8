"""What the commands print: an export's status, the list, reports, each for people and for --json.

Kept apart from :mod:`iscsi_helper.cli` so a command function is the call
of the contract and nothing else. Each command shows one data object: as
JSON with ``--json``, else through the ``human_*`` function of this module
(``Invocation.show``). Secrets are masked here unless ``--show-secrets``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from iscsi_helper import secretmask
from iscsi_helper.formats import format_provider_auth
from iscsi_helper.model import Drift, EnsureReport, ExportStatus
from iscsi_helper.targets.base import Progress


def status_dict(status: ExportStatus, show_secrets: bool) -> dict[str, Any]:
    spec = status.spec
    auth = None
    if spec.chap:
        auth = (
            format_provider_auth(spec.chap)
            if show_secrets
            else f"CHAP {spec.chap.username} {secretmask.MASK}"
        )
    return {
        "volume_id": spec.volume_id,
        "volume_name": spec.volume_name,
        "iqn": spec.iqn,
        "device": spec.device_path,
        "lun": spec.lun,
        "portals": [str(p) for p in spec.portals],
        "live": status.live is not None,
        "tid": status.live.tid if status.live else None,
        "provider_location": status.provider_location,
        "provider_auth": auth,
        "initiators": list(spec.initiators),
    }


def human_status(d: dict[str, Any]) -> str:
    rows = [
        ("volume", d["volume_id"]),
        ("iqn", d["iqn"]),
        ("device", d["device"]),
        ("lun", d["lun"]),
        ("portals", ", ".join(d["portals"])),
        ("live", f"yes (tid {d['tid']})" if d["live"] else "NO"),
        ("provider_location", d["provider_location"] or "-"),
        ("provider_auth", d["provider_auth"] or "-"),
        ("initiators", ", ".join(d["initiators"]) or "any"),
    ]
    return "\n".join(f"{k:18} {v}" for k, v in rows)


def human_list(rows: list[dict[str, Any]], long: bool) -> str:
    """One line per export, columns as wide as their widest cell."""
    header = ["VOLUME", "LIVE", "TID", "IQN"] + (["DEVICE", "PORTALS"] if long else [])
    table = [header] + [
        [r["volume_id"], "yes" if r["live"] else "NO", "-" if r["tid"] is None else str(r["tid"]), r["iqn"]]
        + ([r["device"], ",".join(r["portals"])] if long else [])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


@contextlib.contextmanager
def progress_bar() -> Iterator[Progress | None]:
    """A tqdm bar for large restores, on a terminal only: pipes, logs and --json stay clean."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # only a terminal pays for the import

    bars: list[tqdm[Any]] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=total,
                    desc="restoring exports",
                    unit="export",
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                )
            )
        bars[0].update(done - bars[0].n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def human_unexport(d: dict[str, Any]) -> str:
    if d["removed"]:
        return f"volume {d['volume_id']}: export removed"
    return f"volume {d['volume_id']}: no export to remove (nothing was changed)"


def report_dict(report: EnsureReport) -> dict[str, Any]:
    return {
        "started": report.started,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
    }


def human_report(d: dict[str, Any]) -> str:
    return (
        f"started {len(d['started'])}, updated {len(d['updated'])}, "
        f"unchanged {len(d['unchanged'])}, failed {len(d['failed'])}"
        + "".join(f"\n  failed {k}: {v}" for k, v in sorted(d["failed"].items()))
    )


def mask_connection_secret(info: dict[str, Any], show_secrets: bool) -> dict[str, Any]:
    """``info`` with its CHAP password masked, unless ``show_secrets``."""
    if not show_secrets and "auth_password" in info["data"]:
        info["data"]["auth_password"] = secretmask.MASK
    return info


def human_connection_info(i: dict[str, Any]) -> str:
    return "\n".join(
        [f"driver_volume_type {i['driver_volume_type']}"]
        + [f"{k:22} {v}" for k, v in sorted(i["data"].items())]
    )


def human_disconnect(d: dict[str, Any]) -> str:
    if d["revoked"]:
        return f"volume {d['volume_id']}: access of {d['initiator']} revoked"
    return f"volume {d['volume_id']}: {d['initiator']} was granted no access, nothing to revoke" + (
        ""
        if d["helper_keeps_acl"]
        else " (this helper keeps no initiator list: any initiator with the CHAP credentials can log in)"
    )


def fix_action(drift: Drift, stop_orphans: bool) -> str | None:
    """What ``reconcile --fix`` does (or would do) about one drift."""
    if drift.state == "missing-live":
        return "start"
    if drift.state == "differs":
        return "reload"
    if drift.state == "orphan-live":
        return "stop" if stop_orphans else None
    return None


def drift_dict(
    drift: Drift, volume_id: str, *, fix: bool, dry_run: bool, stop_orphans: bool
) -> dict[str, Any]:
    """One row of ``reconcile``: ``volume_id`` is the id the drift's volume name was built from."""
    return {
        "volume_id": volume_id,
        "volume_name": drift.volume_name,
        "iqn": drift.iqn,
        "state": drift.state,
        "fields": list(drift.fields),
        "action": fix_action(drift, stop_orphans) if fix else None,
        "dry_run": bool(fix and dry_run),
        "fixed": drift.fixed,
        "error": drift.error,
    }


def human_drift(r: dict[str, Any], fix: bool) -> str:
    text = f"{r['state']:13} {r['volume_id']}"
    if r["fields"]:
        text += f" [{', '.join(r['fields'])}]"
    if r["state"] == "orphan-live" and fix and r["action"] is None:
        text += " (left running: add --stop-orphans to stop it)"
    elif r["dry_run"] and r["action"]:
        text += f" (would {r['action']})"
    elif r["fixed"]:
        text += f" (fixed: {r['action']})" if r["action"] else " (fixed)"
    if r["error"]:
        text += f" ({r['error']})"
    return text


def human_drifts(rows: list[dict[str, Any]], fix: bool) -> str:
    return "\n".join(human_drift(r, fix) for r in rows) or "no exports"
