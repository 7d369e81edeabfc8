"""Locks that cannot be held hostage: private files, a wait limit, two namespaces."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from iscsi_helper import locking, options
from iscsi_helper.exception import LockTimeout

HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
""")


@pytest.fixture
def conf(tmp_path):
    return options.new_config(
        overrides={"oslo_concurrency.lock_path": str(tmp_path / "locks"), "lock_timeout": 0.3}
    )


def test_lock_directory_is_created_0700_and_lock_files_0600(conf, tmp_path):
    with locking.volume_lock(conf, "volume-1"), locking.named_lock(conf, "iet_conf"):
        pass
    directory = tmp_path / "locks"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(os.listdir(directory))
    assert files == ["iscsi-helper-internal.iet_conf", "iscsi-helper-volume.volume-1"]
    for name in files:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name


def test_a_lock_file_an_older_release_left_readable_is_made_private(conf, tmp_path):
    directory = tmp_path / "locks"
    directory.mkdir(mode=0o700)
    old = directory / "iscsi-helper-volume.volume-1"
    old.write_text("")
    old.chmod(0o644)
    with locking.volume_lock(conf, "volume-1"):
        assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_a_lock_held_elsewhere_gives_up_after_lock_timeout_naming_the_lock(conf, tmp_path):
    directory = tmp_path / "locks"
    directory.mkdir(mode=0o700)
    path = directory / "iscsi-helper-volume.volume-1"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout) as info:
            with locking.volume_lock(conf, "volume-1"):
                pytest.fail("took a lock another process holds")
        message = str(info.value)
        assert "volume.volume-1" in message and str(path) in message and "lock_timeout" in message
        assert "\n" not in message
        with locking.volume_lock(conf, "volume-2"):  # other volumes are not blocked
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with locking.volume_lock(conf, "volume-1"):  # released by the holder's exit
        pass


def test_volume_and_internal_namespaces_never_meet(conf):
    """The same text as a volume name and as an internal name: two locks, so taking one
    inside the other cannot deadlock (the old flat names hung IET on volume 'iet-conf')."""
    with locking.named_lock(conf, "iet-conf"), locking.volume_lock(conf, "iet-conf"):
        pass
    with locking.volume_lock(conf, "internal.x"), locking.named_lock(conf, "x"):
        pass
