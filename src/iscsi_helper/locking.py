"""Inter-process locks, so two processes acting on one export cannot interleave.

Locks are oslo.concurrency external (file) locks under the configured
``[oslo_concurrency] lock_path``. One lock per volume keeps unrelated
exports concurrent; helpers whose persistence is one shared file (IET's
ietd.conf) take that file's lock as well.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from oslo_concurrency import lockutils
from oslo_config import cfg

from iscsi_helper.fileutil import ensure_private_dir

LOCK_PREFIX = "iscsi-helper-"


def lock_dir(conf: cfg.ConfigOpts) -> Path:
    return ensure_private_dir(Path(conf.oslo_concurrency.lock_path))


@contextlib.contextmanager
def named_lock(conf: cfg.ConfigOpts, name: str) -> Iterator[None]:
    """Hold the thread and process lock called ``name`` (a volume or file name)."""
    with lockutils.lock(name, lock_file_prefix=LOCK_PREFIX, external=True,
                        lock_path=str(lock_dir(conf))):
        yield
