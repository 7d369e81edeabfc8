"""Client side of the wire daemon, for the emulated admin tools.

The emulators are short-lived processes (one per ``iscsictl``/``ietadm``
call) while targets must stay served between calls, hence a daemon started
on demand.  Every call here is bounded by a timeout and reports the daemon's
log location on failure, so a wedged daemon shows up as a clear error rather
than a hung admin command.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iscsi_helper.lab.wire.daemon import (
    LOCK_FILE,
    LOG_FILE,
    PID_FILE,
    SOCKET_FILE,
    START_LOCK_FILE,
    ensure_dirs,
    socket_path,
    target_file,
)
from iscsi_helper.lab.wire.model import WireTarget

LOG = logging.getLogger(__name__)


class WireServiceError(RuntimeError):
    """The wire daemon could not be reached, started, or refused a request."""


class _Unreachable(WireServiceError):
    """No daemon listens on the control socket (as opposed to one that failed)."""


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class WireService:
    """Handle on the wire daemon of one run directory."""

    def __init__(self, run_dir: Path | str, timeout: float = 30.0, start_timeout: float = 20.0) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.timeout = timeout
        self.start_timeout = start_timeout

    # --- public API ----------------------------------------------------
    def publish(self, target: WireTarget, *, every_portal: bool = False) -> None:
        """Serve ``target`` (starting the daemon if needed); returns once it is served.

        A portal that cannot be bound (another node's address) is skipped
        with a warning; with ``every_portal`` it is an error (WireServiceError
        naming it) and nothing changes, for publishers whose product would
        not serve the target elsewhere (a port another program holds).
        """
        target.validate()
        request: dict[str, Any] = {"op": "publish", "target": target.to_dict()}
        if every_portal:
            request["every_portal"] = True
        reply = self._request_running(request)
        if reply.get("unbound"):
            LOG.warning(
                "target %s: portals not bound on this node: %s", target.iqn, ", ".join(reply["unbound"])
            )

    def withdraw(self, iqn: str, keep: list[str] | None = None) -> None:
        """Stop serving ``iqn`` and drop its sessions (but those of initiators in
        ``keep``); quiet if it is not served."""
        request: dict[str, Any] = {"op": "withdraw", "iqn": iqn}
        if keep:
            request["keep"] = list(keep)
        try:
            self._request(request)
            return
        except _Unreachable:
            pass
        # No daemon: forget the target so that a later start does not revive it.
        # The start lock keeps a concurrent start from reading the file meanwhile.
        with self._start_lock():
            if self._daemon_running():
                self._request(request)
                return
            with contextlib.suppress(FileNotFoundError):
                target_file(self.run_dir, iqn).unlink()

    def sessions(self, iqn: str) -> dict[str, list[str]]:
        """Initiator names of the sessions on ``iqn``: ``served`` (the target as served
        now) and ``lingering`` (kept through a withdraw); empty when no daemon runs."""
        try:
            reply = self._request({"op": "sessions", "iqn": iqn})
        except _Unreachable:
            return {"served": [], "lingering": []}
        return {"served": list(reply["served"]), "lingering": list(reply["lingering"])}

    def served(self) -> list[str]:
        """IQNs currently served; empty when no daemon runs."""
        try:
            return list(self._request({"op": "served"})["targets"])
        except _Unreachable:
            return []

    def pid(self) -> int | None:
        """The daemon's PID if it runs."""
        if not self._daemon_running():
            return None
        try:
            pid = int((self.run_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the daemon by the PID in its pid file and wait until it has exited."""
        try:
            pid = int((self.run_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            LOG.warning("wire daemon %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 5.0):
                raise WireServiceError(f"wire daemon {pid} did not exit")
            for name in (SOCKET_FILE, PID_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / name).unlink()

    # --- internals -------------------------------------------------------
    @staticmethod
    def _wait_exit(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return True
            time.sleep(0.02)
        return False

    def _daemon_running(self) -> bool:
        """Whether a daemon holds the run directory's lock (pid files can be stale)."""
        try:
            fd = os.open(self.run_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        ensure_dirs(self.run_dir)
        fd = os.open(self.run_dir / START_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + self.start_timeout + self.timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WireServiceError(
                            f"timed out waiting for {self.run_dir / START_LOCK_FILE}"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def _request_running(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._request(request)
        except _Unreachable:
            pass
        self._start()
        return self._request(request)

    def _start(self) -> None:
        with self._start_lock():
            if self._ping():
                return
            if not self._daemon_running():
                # Early failures (before logging is set up) still land in the log.
                with open(self.run_dir / LOG_FILE, "ab") as log:
                    proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "iscsi_helper.lab.wire",
                            "--run-dir",
                            str(self.run_dir),
                            "--detach",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        start_new_session=True,
                        close_fds=True,
                        cwd="/",
                    )
                try:
                    proc.wait(timeout=self.start_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise WireServiceError("wire daemon launcher hung") from None
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self._ping():
                    return
                time.sleep(0.05)
            raise WireServiceError(
                f"wire daemon did not become ready within {self.start_timeout:.0f}s; "
                f"see {self.run_dir / LOG_FILE}: {self._log_tail()}"
            )

    def _ping(self) -> bool:
        try:
            self._request({"op": "ping"}, timeout=min(self.timeout, 5.0))
            return True
        except _Unreachable:
            return False

    def _log_tail(self) -> str:
        try:
            lines = (self.run_dir / LOG_FILE).read_text(errors="replace").splitlines()
            return " | ".join(lines[-3:])
        except OSError:
            return "(no log)"

    def _request(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        timeout = self.timeout if timeout is None else timeout
        path = self.run_dir / SOCKET_FILE
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            try:
                with socket_path(path) as addr:
                    sock.connect(addr)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise _Unreachable(f"no wire daemon at {path}: {exc.strerror}") from None
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                    raise _Unreachable(f"no wire daemon at {path}") from None
                raise WireServiceError(f"cannot reach wire daemon at {path}: {exc}") from None
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise WireServiceError(
                            f"wire daemon closed the connection during {request['op']}; "
                            f"see {self.run_dir / LOG_FILE}"
                        )
                    buf += chunk
            except TimeoutError:
                raise WireServiceError(
                    f"wire daemon did not answer {request['op']} within {timeout:.0f}s; "
                    f"see {self.run_dir / LOG_FILE}"
                ) from None
            except OSError as exc:
                raise WireServiceError(
                    f"wire daemon connection failed during {request['op']}: {exc}"
                ) from None
        finally:
            sock.close()
        try:
            reply = json.loads(buf)
        except ValueError:
            raise WireServiceError(f"malformed reply from wire daemon to {request['op']}") from None
        if not reply.get("ok"):
            error = reply.get("error", "unknown error")
            raise WireServiceError(f"wire daemon refused {request['op']}: {error}")
        return reply
