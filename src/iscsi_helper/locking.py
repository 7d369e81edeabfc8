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
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oslo_concurrency import lockutils
from oslo_config import cfg

from iscsi_helper.exception import CoordinationError, MissingDependency
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
            try:  # only deployments that set coordination_url need tooz (and its driver's client)
                with warnings.catch_warnings():
                    # tooz imports futurist, which imports eventlet when installed, which warns
                    # on import that it is deprecated: not ours to act on, and not the operator's.
                    warnings.filterwarnings("ignore", message=r"(?s).*[Ee]ventlet")
                    from tooz import coordination
                member = f"iscsi-helper-{socket.gethostname()}-{os.getpid()}".encode()
                coordinator = coordination.get_coordinator(url, member)
                coordinator.start(start_heart=True)  # the heartbeat keeps held locks from expiring
            except ImportError as err:
                package = (err.name or "tooz").split(".")[0]
                raise MissingDependency(option="coordination_url", package=package,
                                        fix="pip install 'iscsi-helper[coordination]'") from None
            except Exception as err:  # noqa: BLE001 - tooz's errors share no base we can name here
                raise CoordinationError(lock="(connecting)", reason=_reason(err)) from None
            _coordinators[key] = coordinator
        return coordinator


def _reason(err: Exception) -> str:
    """tooz's message, which names host and port but not the URL (it may carry a password)."""
    return f"{type(err).__name__}: {err}".splitlines()[0]


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
        lock = _coordinator(url).get_lock((LOCK_PREFIX + name).encode())
        try:
            acquired = lock.acquire(blocking=True)
        except Exception as err:  # noqa: BLE001 - tooz's errors share no base we can name here
            raise CoordinationError(lock=name, reason=_reason(err)) from None
        if not acquired:
            raise CoordinationError(lock=name, reason="the backend did not grant it")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                lock.release()
        return
    with lockutils.lock(name, lock_file_prefix=LOCK_PREFIX, external=True,
                        lock_path=str(lock_dir(conf))):
        yield
