"""The wire target daemon: one process per run directory, driven over a unix socket.

Layout of the run directory (mode 0700, files 0600 because target files hold
CHAP secrets)::

    daemon.lock   flock held by the running daemon for its whole life
    start.lock    flock taken by clients around "is it running? start it"
    wire.pid      the daemon's PID
    control.sock  JSON-line control socket
    wire.log      the daemon's log (CHAP secrets masked)
    targets/      one JSON file per served target, reloaded on start

Each control request touches one target and one file, so the cost of an
operation does not depend on how many targets are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import resource
import signal
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iscsi_helper import secretmask
from iscsi_helper.lab.wire.model import WireTarget
from iscsi_helper.lab.wire.server import WireServer

LOG = logging.getLogger("iscsi_helper.lab.wire.daemon")

PID_FILE = "wire.pid"
LOCK_FILE = "daemon.lock"
START_LOCK_FILE = "start.lock"
SOCKET_FILE = "control.sock"
LOG_FILE = "wire.log"
TARGETS_DIR = "targets"
MAX_REQUEST = 4 * 1024 * 1024
UNIX_PATH_MAX = 107


def target_file(run_dir: Path, iqn: str) -> Path:
    return run_dir / TARGETS_DIR / (urllib.parse.quote(iqn, safe="") + ".json")


@contextlib.contextmanager
def socket_path(path: Path) -> Iterator[str]:
    """A path usable for bind/connect even when ``path`` is longer than sun_path allows.

    Long run directories (pytest's tmp_path, deep state dirs) would otherwise
    make the control socket unusable; going through /proc/self/fd of an open
    directory keeps the address short without weakening its permissions.
    """
    text = str(path)
    if len(text.encode()) <= UNIX_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` (0600) so a crash never leaves half a target file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_dirs(run_dir: Path) -> None:
    for d in (run_dir, run_dir / TARGETS_DIR):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)


class Daemon:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.server = WireServer()
        self.stopping = asyncio.Event()
        self.lock = asyncio.Lock()

    async def run(self) -> int:
        ensure_dirs(self.run_dir)
        lock_fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            LOG.error("another wire daemon already runs in %s", self.run_dir)
            return 3
        pid_path = self.run_dir / PID_FILE
        write_private(pid_path, f"{os.getpid()}\n")
        sock_path = self.run_dir / SOCKET_FILE
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        control = None
        try:
            await self._reload()
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            with socket_path(sock_path) as addr:
                control = await asyncio.start_unix_server(self._client, path=addr, limit=MAX_REQUEST)
            os.chmod(sock_path, 0o600)
            LOG.info(
                "wire daemon %d ready in %s serving %d target(s)",
                os.getpid(),
                self.run_dir,
                len(self.server.targets),
            )
            await self.stopping.wait()
            LOG.info("wire daemon %d stopping", os.getpid())
        finally:
            if control is not None:
                control.close()
            await self.server.close()
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                if pid_path.read_text().strip() == str(os.getpid()):
                    pid_path.unlink()
            os.close(lock_fd)
        return 0

    async def _reload(self) -> None:
        for path in sorted((self.run_dir / TARGETS_DIR).glob("*.json")):
            try:
                target = WireTarget.from_json(path.read_text())
                with secretmask.handling_secrets(target.secrets()):
                    await self.server.publish(target)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                LOG.error("cannot reload %s: %s", path.name, exc)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "request too large"}\n')
                    break
                if not line:
                    break
                reply = await self._handle(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            if op == "served":
                return {"ok": True, "targets": self.server.served()}
            if op == "publish":
                target = WireTarget.from_dict(request["target"])
                with secretmask.handling_secrets(target.secrets()):
                    async with self.lock:
                        unbound = await self.server.publish(
                            target, every_portal=bool(request.get("every_portal"))
                        )
                        await asyncio.to_thread(
                            write_private, target_file(self.run_dir, target.iqn), target.to_json()
                        )
                return {"ok": True, "unbound": unbound}
            if op == "sessions":
                return {"ok": True, **self.server.session_initiators(str(request["iqn"]))}
            if op == "withdraw":
                iqn = str(request["iqn"])
                keep = [str(name) for name in request.get("keep", [])]
                async with self.lock:
                    found = await self.server.withdraw(iqn, keep)
                    with contextlib.suppress(FileNotFoundError):
                        target_file(self.run_dir, iqn).unlink()
                return {"ok": True, "found": found}
            return {"ok": False, "error": f"unknown op {str(op)[:32]!r}"}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"invalid request: {secretmask.mask(str(exc))}"}
        except OSError as exc:
            return {"ok": False, "error": secretmask.mask(str(exc))}


def raise_nofile_limit() -> None:
    """5000 targets with a LUN each need more descriptors than the usual soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m iscsi_helper.lab.wire",
        description="Pure-Python iSCSI target daemon for the emulated targets.",
    )
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument(
        "--detach", action="store_true", help="fork into the background (the parent exits at once)"
    )
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir.absolute()
    ensure_dirs(run_dir)
    if args.detach:
        if os.fork():
            os._exit(0)
        with contextlib.suppress(OSError):
            os.setsid()
        os.chdir("/")
    handler = logging.FileHandler(run_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    # On the handler, not the logger: logger filters miss records from child loggers.
    handler.addFilter(secretmask.SecretMaskingFilter())
    root = logging.getLogger("iscsi_helper")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.debug else logging.INFO)
    raise_nofile_limit()
    try:
        return asyncio.run(Daemon(run_dir).run())
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            LOG.error("control socket in use: %s", exc)
        else:
            LOG.exception("wire daemon failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
