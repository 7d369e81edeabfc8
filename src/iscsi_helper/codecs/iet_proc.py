"""IET's ``/proc/net/iet`` files: ``volume`` (targets and LUNs) and ``session`` (connections).

Both list every target, so the IET helper reads them only on the bulk
paths (list, restore, reconcile) and on rare recovery paths; a single
export's operations never do. Lines the parser does not know are
skipped, as later IET releases add fields.
"""

from __future__ import annotations

from iscsi_helper.model import LiveTarget


def parse_volume(text: str) -> dict[str, LiveTarget]:
    """``volume``: ``tid:N name:IQN`` lines, each followed by ``\\tlun:L ... path:P`` lines."""
    targets: dict[str, LiveTarget] = {}
    current: tuple[str, int] | None = None
    devices: dict[int, str] = {}

    def close() -> None:
        if current is not None:
            targets[current[0]] = LiveTarget(
                current[0],
                current[1],
                None,
                tuple(devices[n] for n in sorted(devices)),
                lun_paths=tuple(sorted(devices.items())),
            )

    for line in text.splitlines():
        if line.startswith("tid:"):
            close()
            tid_field, _, name_field = line.partition(" ")
            tid_text = tid_field[len("tid:") :]
            if not tid_text.isdigit() or not name_field.startswith("name:"):
                current = None
                continue
            current, devices = (name_field[len("name:") :].strip(), int(tid_text)), {}
        elif current is not None and line.strip().startswith("lun:"):
            fields = dict(f.partition(":")[::2] for f in line.split())
            if fields.get("lun", "").isdigit() and " path:" in line:
                devices[int(fields["lun"])] = line.split(" path:", 1)[1].strip()
    close()
    return targets


def parse_sessions(text: str, tid: int) -> list[tuple[int, int]]:
    """(sid, cid) of every connection of target ``tid`` in ``session``."""
    result: list[tuple[int, int]] = []
    inside = False
    sid: int | None = None
    for line in text.splitlines():
        if line.startswith("tid:"):
            inside = line.split()[0] == f"tid:{tid}"
            sid = None
            continue
        if not inside:
            continue
        fields = dict(f.partition(":")[::2] for f in line.split())
        if "sid" in fields and fields["sid"].isdigit():
            sid = int(fields["sid"])
        elif "cid" in fields and fields["cid"].isdigit() and sid is not None:
            result.append((sid, int(fields["cid"])))
    return result


def count_sessions(text: str, tid: int) -> int:
    """Sessions (``sid:`` lines) of target ``tid`` in ``session``, with or without connections."""
    count = 0
    inside = False
    for line in text.splitlines():
        if line.startswith("tid:"):
            inside = line.split()[0] == f"tid:{tid}"
        elif inside and line.strip().startswith("sid:"):
            count += 1
    return count
