"""Which volume exports which device: one small file per device, so asking costs one read.

A target that refuses a device already exported by another target (chiscsi
does, comparing paths) says so only when its tool runs, after the export's
record is written; finding the other export among the records would read
them all on every create. The index answers in one file read instead.

Entries are claims, not truth: the caller checks a claim against the
claimed owner's record (one more read) before trusting it. So an entry
left behind by a crash (written, then the export never recorded; or the
record removed, then the process killed) is simply stale and taken over,
and no ordering between index and record needs to be atomic. For the same
reason entries are written and removed without fsync: one a crash loses is
made again by the next restore, and meanwhile the target itself refuses a
device that is in use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from iscsi_helper.fileutil import atomic_write, read_text_or_none


class DeviceIndex:
    """``<directory>/<sha256 of the device path>`` holding ``<volume name>\\n<device path>\\n``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _entry(self, device_path: str) -> Path:
        # A hash, because a path can be longer than a file name may be.
        return self.directory / hashlib.sha256(device_path.encode()).hexdigest()

    def owner(self, device_path: str) -> str | None:
        """The volume name claiming ``device_path``, or None."""
        text = read_text_or_none(self._entry(device_path))
        if text is None:
            return None
        volume_name, _, rest = text.partition("\n")
        if rest != device_path + "\n" or not volume_name:
            return None  # not an entry we wrote for this path: no claim
        return volume_name

    def claim(self, device_path: str, volume_name: str) -> bool:
        """Record ``volume_name`` as the device's owner; False when it already was."""
        if self.owner(device_path) == volume_name:
            return False
        atomic_write(self._entry(device_path), f"{volume_name}\n{device_path}\n", mode=0o600, durable=False)
        return True

    def release(self, device_path: str, volume_name: str) -> None:
        """Drop the claim if it is ``volume_name``'s; another volume's claim stays."""
        if self.owner(device_path) == volume_name:
            try:
                os.unlink(self._entry(device_path))
            except FileNotFoundError:
                pass
