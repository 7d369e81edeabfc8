"""Inter-process locks, so two processes acting on one export cannot interleave.

By default locks are oslo.concurrency external (file) locks under the
configured ``[oslo_concurrency] lock_path``: enough when every process
touching the exports runs on this host. When several hosts share the
export state (a shared config directory), ``coordination_url`` names a tooz
backend (``redis://...``, ``etcd3+http://...``) and the same lock names are
taken there instead. One lock per volume keeps unrelated exports
concurrent; helpers whose persistence is one shared file (IET's ietd.conf)
take that file's lock as well.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oslo_concurrency import lockutils
from oslo_config import cfg

from iscsi_helper.fileutil import ensure_private_dir

LOCK_PREFIX = "iscsi-helper-"

# One started coordinator per (process, URL): starting one costs a connection
# and a heartbeat thread, so it is done once and reused by every lock.
_coordinators: dict[tuple[int, str], Any] = {}
_coordinators_guard = threading.Lock()


_made_lock_dirs: set[str] = set()


def lock_dir(conf: cfg.ConfigOpts) -> Path:
    """The lock directory, created 0700 on first use in this process.

    Only the first call pays the mkdir: should the directory vanish later,
    fasteners recreates it when it opens a lock file.
    """
    path = conf.oslo_concurrency.lock_path
    if path not in _made_lock_dirs:
        ensure_private_dir(Path(path))
        _made_lock_dirs.add(path)
    return Path(path)


def _coordinator(url: str) -> Any:
    """The process's started coordinator for ``url``.

    Keyed by pid as well, so a child forked after a lock was taken starts
    its own connection instead of sharing the parent's socket.
    """
    key = (os.getpid(), url)
    with _coordinators_guard:
        coordinator = _coordinators.get(key)
        if coordinator is None:
            from tooz import coordination  # only deployments that set coordination_url need tooz
            member = f"iscsi-helper-{socket.gethostname()}-{os.getpid()}".encode()
            coordinator = coordination.get_coordinator(url, member)
            coordinator.start(start_heart=True)  # the heartbeat keeps held locks from expiring
            _coordinators[key] = coordinator
        return coordinator


@atexit.register
def stop_coordinators() -> None:
    """Release the backend connections (and any lock a crashed caller left) at exit."""
    with _coordinators_guard:
        for (pid, _url), coordinator in list(_coordinators.items()):
            if pid == os.getpid():
                with contextlib.suppress(Exception):
                    coordinator.stop()
        _coordinators.clear()


@contextlib.contextmanager
def named_lock(conf: cfg.ConfigOpts, name: str) -> Iterator[None]:
    """Hold the lock called ``name`` (a volume or file name) across threads, processes and hosts."""
    url = conf.coordination_url
    if url:
        with _coordinator(url).get_lock((LOCK_PREFIX + name).encode()):
            yield
        return
    with lockutils.lock(name, lock_file_prefix=LOCK_PREFIX, external=True,
                        lock_path=str(lock_dir(conf))):
        yield
