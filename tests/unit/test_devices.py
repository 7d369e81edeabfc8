"""Device checks, iotype and size: what every helper asks about the backing device."""

from __future__ import annotations

import pytest

from iscsi_helper import devices
from iscsi_helper.exception import InvalidInput


def test_size_and_iotype_of_a_file(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(3 << 20)
    assert devices.device_size(str(path)) == 3 << 20
    assert devices.device_size(str(tmp_path / "missing")) is None
    assert devices.iotype("auto", str(path)) == "fileio"
    assert devices.iotype("blockio", str(path)) == "blockio"
    assert not devices.is_block_device(str(path))


@pytest.mark.parametrize(
    "path,reason",
    [
        ("relative.img", "must be absolute"),
        ("/a,b", "must not contain a comma"),
        ("/a b", "must not contain whitespace"),
        ("/a#b", "must not contain '#'"),
        ("/tmp", "is neither a regular file nor a block device"),
        ("/nonexistent/disk", "does not exist"),
        ("", "must be a non-empty path"),
    ],
)
def test_unusable_paths_are_refused_with_the_reason(path, reason):
    with pytest.raises(InvalidInput, match=reason):
        devices.validate_device_path(path)
