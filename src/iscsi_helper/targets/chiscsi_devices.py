"""One device, one target: which volume's export claims each device, for chiscsi.

chiscsi refuses a device path already in another live target
(private/klib/target/lun.c ~274-310). Rather than list every target, the
helper keeps an index of claims (deviceindex.py) under
``<volumes_dir>/cxt-devices``: a claim is made when an export is applied,
released when it is withdrawn or its device changes, and checked and
changed under a per-device lock, so two volumes cannot both find one
device free.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

from iscsi_helper import locking, secretmask
from iscsi_helper.deviceindex import DeviceIndex
from iscsi_helper.exception import InvalidInput, PersistenceError
from iscsi_helper.model import ExportRecord, LiveTarget
from iscsi_helper.targets.primitives import IscsiPrimitives

LOG = secretmask.get_logger(__name__)

DEVICES_SUBDIR = "cxt-devices"


class ChiscsiDevices(IscsiPrimitives):
    """The device claims of the chiscsi helper."""

    @functools.cached_property
    def devices(self) -> DeviceIndex:
        return DeviceIndex(Path(self.conf.volumes_dir) / DEVICES_SUBDIR)

    def _refuse_if_taken(self, volume_name: str, device_path: str) -> None:
        """One device, one target: chiscsi refuses a path already in another live target
        (private/klib/target/lun.c ~274-310). The index answers in one read, and its
        claim is believed only if the claiming volume's record still names the device."""
        owner = self.devices.owner(device_path)
        if owner is None or owner == volume_name:
            return
        try:
            other = self._read_record(owner)
        except PersistenceError:
            taken = True  # an unreadable record still stands for an export: be safe
        else:
            taken = other is not None and other.spec.device_path == device_path
        if taken:
            raise InvalidInput(
                field="device path",
                value=repr(device_path),
                reason=f"is already exported by {owner}; chiscsi puts a device "
                "in one target only (private/klib/target/lun.c ~274-310)",
            )

    def _device_lock(self, device_path: str) -> contextlib.AbstractContextManager[None]:
        """Claims of one device are checked and changed under this lock, so two volumes
        cannot both find it free."""
        digest = hashlib.sha256(device_path.encode()).hexdigest()[:32]
        return locking.named_lock(self.conf, f"chiscsi-device-{digest}")

    def _release(self, device_path: str, volume_name: str) -> None:
        with self._device_lock(device_path):
            self.devices.release(device_path, volume_name)

    def _note_live(self, record: ExportRecord, live: LiveTarget) -> None:
        """Records from before the index (or CxtAdm's) get their claim on the next restore."""
        spec = record.spec
        with self._device_lock(spec.device_path):
            try:
                self._refuse_if_taken(spec.volume_name, spec.device_path)
            except InvalidInput as err:  # live all the same: chiscsi let it be; say so
                LOG.warning("Export of %s: %s", spec.volume_name, err)
                return
            self.devices.claim(spec.device_path, spec.volume_name)
