"""What IET shows of its live targets: the proc files, and one ietadm probe that vouches for a tid.

IET has no "show target" command. A target is proved ours at constant cost
by the random per-volume CHAP account our index record names at its tid
(one ``ietadm`` call); IET's ``/proc/net/iet`` files (``volume``,
``session``) show everything, but grow with the number of exports, so
only bulk operations, reconcile, failure reports and rare recovery paths
read them (docs/helpers/iet.md counts the calls).
"""

from __future__ import annotations

from pathlib import Path

from iscsi_helper.adapters.ietadm import INCOMING, Ietadm
from iscsi_helper.codecs import iet_proc
from iscsi_helper.exception import TargetCreateFailed
from iscsi_helper.fileutil import read_text_or_none
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.targets.primitives import IscsiPrimitives


class IetLiveState(IscsiPrimitives):
    """The live-state primitives of the IET helper, over ``ietadm`` and the proc files."""

    ietadm: Ietadm

    def _proc_text(self, name: str) -> str:
        return read_text_or_none(Path(self.conf.iet_proc_dir) / name) or ""

    def _list_live(self) -> dict[str, LiveTarget]:
        return iet_proc.parse_volume(self._proc_text("volume"))

    def _lookup_unrecorded(self, iqn: str) -> LiveTarget | None:
        return self._list_live().get(iqn)  # no tid to vouch for: the proc file, as _withdraw

    def _session_count(self, iqn: str, record: ExportRecord | None, live: LiveTarget) -> int | None:
        """From IET's session file (read whole: only before a device swap)."""
        return iet_proc.count_sessions(self._proc_text("session"), live.tid)

    def _vouched_tid(self, record: ExportRecord | None, iqn: str) -> int | None:
        """The recorded tid, if the target there is provably this export's (one ietadm call).

        A random per-volume user and secret at the tid our index names is how
        we recognise our own target without reading the proc file.
        """
        if (
            record is None
            or record.text is None
            or record.spec.iqn != iqn
            or record.spec.chap is None
            or not record.tid
        ):
            return None
        ours = self.ietadm.account_matches(record.tid, INCOMING, record.spec.chap)
        return record.tid if ours else None

    def _lookup(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        tid = self._vouched_tid(record, iqn)
        return None if tid is None else LiveTarget(iqn, tid)

    def _inspect(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """The proc listing's entry: the only view of IET's LUNs (reconcile, failure reports)."""
        return self._list_live().get(iqn)

    def _live_tids(self) -> list[int]:
        return [t.tid for t in self._list_live().values()]

    def _confirm_lun(self, spec: ExportSpec, tid: int) -> None:
        """After a LUN swap, the proc listing (IET's only view of LUNs) must show the new device.

        Read only after a swap (a device change or growth), never on a plain create.
        """
        live = self._list_live().get(spec.iqn)
        shown = dict(live.lun_paths or ()) if live is not None and live.tid == tid else {}
        if shown.get(spec.lun) != spec.device_path:
            raise TargetCreateFailed(
                volume_id=spec.volume_id,
                reason=f"ietadm reported the LUN swap done but {self.conf.iet_proc_dir}/volume "
                f"shows LUN {spec.lun} of tid {tid} on {shown.get(spec.lun) or 'nothing'}",
            )
