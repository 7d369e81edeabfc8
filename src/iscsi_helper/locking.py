"""Inter-process locks, so two processes acting on one export cannot interleave.

By default locks are files under the configured ``[oslo_concurrency]
lock_path``, held with ``flock``: enough when every process touching the
exports runs on this host. When several hosts share the export state (a
shared config directory), ``coordination_url`` names a tooz backend
(``redis://...``, ``etcd3+http://...``) and the same lock names are taken
there instead. One lock per volume keeps unrelated exports concurrent;
helpers whose persistence is one shared file (IET's ietd.conf) take that
file's lock as well.

Two namespaces, told apart by the structure of the name and not by
convention: a volume's lock is ``volume.<volume name>``, every other lock
(a shared file, a tid counter, a tool's host lock) is
``internal.<name>``, so no volume name, whatever the template builds, can
ever take an internal lock (a lock taken twice in one thread would hang).

No lock can be held hostage: the directory is created 0700 and each lock
file 0600, so only this user (and root) can open one, and a wait gives up
after ``lock_timeout`` seconds with an error naming the lock.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oslo_config import cfg

from iscsi_helper.exception import CoordinationError, LockTimeout, MissingDependency
from iscsi_helper.fileutil import ensure_private_dir

LOCK_PREFIX = "iscsi-helper-"
VOLUME_NAMESPACE = "volume."
INTERNAL_NAMESPACE = "internal."
#: Polling a held flock starts fast (a volume's lock is usually held for
#: milliseconds) and backs off to this, so a long wait costs little CPU.
_MAX_POLL = 0.05

# One started coordinator per (process, URL): starting one costs a connection
# and a heartbeat thread, so it is done once and reused by every lock.
_coordinators: dict[tuple[int, str], Any] = {}
_coordinators_guard = threading.Lock()


_made_lock_dirs: set[str] = set()


def lock_dir(conf: cfg.ConfigOpts) -> Path:
    """The lock directory, created 0700 on first use in this process.

    Only the first call pays the mkdir; should the directory vanish later,
    opening a lock file recreates it.
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
                raise MissingDependency(
                    option="coordination_url", package=package, fix="pip install 'iscsi-helper[coordination]'"
                ) from None
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


def _open_lock_file(directory: Path, file_name: str) -> int:
    """The lock file, opened (created 0600 if missing); never through a symlink."""
    path = directory / file_name
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # the directory went away since this process made it
        ensure_private_dir(directory)
        fd = os.open(path, flags, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # a file an older release made with the umask's mode
    except OSError:
        pass  # not ours to change (another user's file): open() already succeeded
    return fd


@contextlib.contextmanager
def _file_lock(directory: Path, file_name: str, shown: str, timeout: float) -> Iterator[None]:
    fd = _open_lock_file(directory, file_name)
    try:
        started = time.monotonic()
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            waited = time.monotonic() - started
            if waited >= timeout:
                raise LockTimeout(waited=waited, lock=f"{shown} ({directory / file_name})")
            time.sleep(min(pause, timeout - waited))
            pause = min(pause * 2, _MAX_POLL)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


@contextlib.contextmanager
def _lock(conf: cfg.ConfigOpts, full_name: str) -> Iterator[None]:
    timeout = float(conf.lock_timeout)
    url = conf.coordination_url
    if url:
        lock = _coordinator(url).get_lock((LOCK_PREFIX + full_name).encode())
        started = time.monotonic()
        try:
            acquired = lock.acquire(blocking=timeout)
        except Exception as err:  # noqa: BLE001 - tooz's errors share no base we can name here
            raise CoordinationError(lock=full_name, reason=_reason(err)) from None
        if not acquired:
            raise LockTimeout(waited=time.monotonic() - started, lock=f"{full_name} (coordination backend)")
        try:
            yield
        finally:
            lock.release()
        return
    with _file_lock(lock_dir(conf), LOCK_PREFIX + full_name, full_name, timeout):
        yield


def volume_lock(conf: cfg.ConfigOpts, volume_name: str) -> contextlib.AbstractContextManager[None]:
    """Hold the lock of one volume's export across threads, processes and hosts.

    ``volume_name`` must have been validated (it becomes part of a file name).
    """
    return _lock(conf, VOLUME_NAMESPACE + volume_name)


def named_lock(conf: cfg.ConfigOpts, name: str) -> contextlib.AbstractContextManager[None]:
    """Hold an internal lock (a shared file, a counter, a tool's host-wide lock).

    Internal names live in their own namespace: no volume's lock can be one.
    """
    return _lock(conf, INTERNAL_NAMESPACE + name)
