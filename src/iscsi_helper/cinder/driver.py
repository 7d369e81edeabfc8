"""Cinder volume drivers whose export path is an iscsi-helper helper.

``volume_driver = iscsi_helper.cinder.driver.LVMVolumeDriver`` is Cinder's
LVM driver, unchanged except for where its target comes from. Cinder's
driver looks ``target_helper`` up in ``self.target_mapping`` (a table of
Cinder's own target classes, filled in by its base class) and constructs
the class it finds with the backend configuration; here every name maps to
:class:`~iscsi_helper.cinder.target.IscsiHelperTarget`, which then picks
our helper from ``iscsi_helper_target`` (or ``target_helper``). All of
Cinder's own code paths, checks and model updates stay Cinder's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cinder import objects

from iscsi_helper.cinder.config import backend_opts

objects.register_all()  # cinder.volume.drivers.lvm needs cinder.objects.Volume at import time;
# cinder-volume registers them at start-up too, and registering again is harmless.

from cinder.volume.drivers import lvm  # noqa: E402

TARGET_CLASS = "iscsi_helper.cinder.target.IscsiHelperTarget"


class _OurTargetForEveryName(Mapping[str, str]):
    """Stands in for Cinder's target table: whatever target_helper says, our adapter."""

    def __getitem__(self, name: object) -> str:
        return TARGET_CLASS

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class LVMVolumeDriver(lvm.LVMVolumeDriver):
    """Cinder's LVM driver exporting through iscsi-helper (chiscsi, IET, tgt, ...)."""

    @property
    def target_mapping(self) -> Mapping[str, str]:
        return _OurTargetForEveryName()

    @target_mapping.setter
    def target_mapping(self, value: Any) -> None:
        """Cinder's base class assigns its own table here; it is deliberately not used."""

    @classmethod
    def get_driver_options(cls) -> list[Any]:
        """Cinder's LVM options plus ours, for cinder's option listing and config generator."""
        theirs: list[Any] = list(lvm.LVMVolumeDriver.get_driver_options())
        names = {o.name for o in theirs}
        return theirs + [o for o in backend_opts() if o.name not in names]
