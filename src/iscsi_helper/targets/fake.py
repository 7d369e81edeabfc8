"""``target_helper = fake``: the contract with no target tool behind it.

It keeps "persisted" records and "live" targets as small JSON files under
``volumes_dir``, so it behaves across processes and restarts like a real
helper (a simulated reboot removes ``fake-live``) and runs the shared
behaviour suite without any external program. It exists for tests and
for trying the CLI; it exports nothing on the wire.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from iscsi_helper import locking
from iscsi_helper.exception import PersistenceError
from iscsi_helper.fileutil import atomic_write, is_temp_file, read_text_or_none, remove_file
from iscsi_helper.formats import ChapCredentials, parse_portal
from iscsi_helper.model import ExportSpec, LiveTarget
from iscsi_helper.targets.iscsi import ISCSITarget


def _spec_to_json(spec: ExportSpec) -> str:
    def chap(c: ChapCredentials | None) -> list[str] | None:
        return [c.username, c.password] if c else None
    return json.dumps({"volume_id": spec.volume_id, "volume_name": spec.volume_name,
                       "iqn": spec.iqn, "device_path": spec.device_path, "lun": spec.lun,
                       "portals": [str(p) for p in spec.portals], "chap": chap(spec.chap),
                       "target_chap": chap(spec.target_chap),
                       "initiators": list(spec.initiators)}, sort_keys=True)


def _spec_from_json(text: str, path: Path) -> ExportSpec:
    try:
        data = json.loads(text)
        return ExportSpec(
            data["volume_id"], data["volume_name"], data["iqn"], data["device_path"], data["lun"],
            tuple(parse_portal(p) for p in data["portals"]),
            ChapCredentials(*data["chap"]) if data["chap"] else None,
            ChapCredentials(*data["target_chap"]) if data["target_chap"] else None,
            tuple(data["initiators"]))
    except (ValueError, KeyError, TypeError) as err:
        raise PersistenceError(path=path, reason=f"not a fake export record ({err})") from None


class FakeTarget(ISCSITarget):
    names = ("fake",)
    lun = 0
    supports_acl = True

    @property
    def records_dir(self) -> Path:
        return Path(self.conf.volumes_dir) / "fake"

    @property
    def live_dir(self) -> Path:
        return Path(self.conf.volumes_dir) / "fake-live"

    def _state_dirs(self) -> list[tuple[Path, bool, str | None]]:
        return [*super()._state_dirs(), (self.live_dir, True, None)]

    def _live_path(self, iqn: str) -> Path:
        return self.live_dir / quote(iqn, safe="")

    def _read_record(self, volume_name: str) -> ExportSpec | None:
        path = self.records_dir / volume_name
        text = read_text_or_none(path)
        return None if text is None else _spec_from_json(text, path)

    def _list_records(self) -> list[ExportSpec]:
        try:
            names = os.listdir(self.records_dir)
        except FileNotFoundError:
            return []
        return [r for n in names if not n.startswith(".") and not is_temp_file(n)
                if (r := self._read_record(n)) is not None]

    def _realise(self, spec: ExportSpec, previous: ExportSpec | None,
                 listing: Mapping[str, LiveTarget] | None = None) -> None:
        atomic_write(self.records_dir / spec.volume_name, _spec_to_json(spec))
        live_path = self._live_path(spec.iqn)
        current = read_text_or_none(live_path)
        tid = json.loads(current)["tid"] if current else self._next_tid()
        atomic_write(live_path, json.dumps({"tid": tid, "spec": _spec_to_json(spec)}))

    def _next_tid(self) -> int:
        counter = self.live_dir / ".next-tid"
        with locking.named_lock(self.conf, "fake_tid"):  # "_" is never in a volume name
            tid = int(read_text_or_none(counter) or "1")
            atomic_write(counter, str(tid + 1))
        return tid

    def _live_target(self, text: str) -> LiveTarget:
        data = json.loads(text)
        spec = _spec_from_json(data["spec"], self.live_dir)
        return LiveTarget(spec.iqn, data["tid"], spec.portals, (spec.device_path,))

    def _lookup(self, iqn: str) -> LiveTarget | None:
        text = read_text_or_none(self._live_path(iqn))
        return None if text is None else self._live_target(text)

    def _list_live(self) -> dict[str, LiveTarget]:
        try:
            names = os.listdir(self.live_dir)
        except FileNotFoundError:
            return {}
        targets = [self._live_target(text) for n in names
                   if not n.startswith(".") and not is_temp_file(n)
                   if (text := read_text_or_none(self.live_dir / n)) is not None]
        return {t.iqn: t for t in targets}

    def live_spec(self, iqn: str) -> ExportSpec | None:
        """The full live configuration (a real target shows it through its own tools)."""
        text = read_text_or_none(self._live_path(iqn))
        return None if text is None else _spec_from_json(json.loads(text)["spec"], self.live_dir)

    def _unrealise(self, volume_name: str, iqn: str) -> None:
        remove_file(self._live_path(iqn))
        remove_file(self.records_dir / volume_name)
