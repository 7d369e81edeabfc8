"""The rig the tests, the benchmarks and the demo stand on: free ports, emulators in process, a tgtd.

Each of them used to write these pieces itself, a little differently each
time (a fixed control-port range here, a lock check there). Kept once here,
a fix (a port race, a tgtd that ignores SIGTERM) reaches every user.
Lab only: no product module imports it (tests/unit/test_lab_wall.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from iscsi_helper.exception import CommandFailed
from iscsi_helper.executor import CommandResult, Executor

#: an emulator's command line entry point: argv without the program name in, exit code out
Main = Callable[[list[str]], int]

TGTD_START_TIMEOUT = 60.0  # a guard against a tgtd that never answers; a loaded machine is slow
TGTD_STOP_TIMEOUT = 5.0
TGTD_START_ATTEMPTS = 5
CONTROL_PORT_MIN, CONTROL_PORT_MAX = 1024, 32767  # tgtd refuses -C above 32767


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it); IPv6 when ``host`` is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_dual_stack_port() -> int:
    """A port free on both 127.0.0.1 and ::1, so one number serves both loopback portals."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4:
            v4.bind(("127.0.0.1", 0))
            port = int(v4.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as v6:
                    v6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both loopback families")


def free_tgtd_control_port() -> int:
    """A tgtd control port (``tgtadm -C``, 1024-32767) whose lock no tgtd holds.

    The "port" only names tgtd's unix socket ``/var/run/tgtd/socket.<n>``
    and the lockf lock beside it; an unheld lock means no tgtd uses n. A
    race with another starter is caught by :meth:`TgtdProcess.start` retrying.
    """
    for _ in range(100):
        port = random.randint(CONTROL_PORT_MIN, CONTROL_PORT_MAX)
        lock = Path(f"/var/run/tgtd/socket.{port}.lock")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return port
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: a tgtd runs there
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return port
        finally:
            os.close(fd)
    raise RuntimeError("no free tgtd control port found")


# ------------------------------------------------------------ the CLI


def private_args(root: Path, helper: str) -> list[str]:
    """The ``iscsi-helper`` global options that keep a run's files under ``root``.

    Helper, state, locks and a loopback portal: what every CLI test and the
    demo set so they touch nothing of the host's; a caller appends the rest.
    """
    return [
        "--target-helper",
        helper,
        "--state-path",
        str(root / "state"),
        "--lock-path",
        str(root / "locks"),
        "--target-ip-address",
        "127.0.0.1",
    ]


# ------------------------------------------------------------ emulators in process


def run_main(main: Main, args: Sequence[str]) -> tuple[int, str, str]:
    """Run an emulator's ``main`` here: (exit code, stdout, stderr), without an interpreter start."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


class AnsweringExecutor(Executor):
    """The real executor's contract (argv, observers, ok codes, CommandFailed) with Python as the tool.

    A subclass says what the tool answers (:meth:`answer`); everything a helper
    relies on around that (observers see each argv first, an exit code outside
    ``ok_codes`` raises :class:`CommandFailed` as the real executor does) is
    here once, so every double of a tool keeps the executor's contract.
    """

    def run(
        self,
        *argv: str,
        ok_codes: Sequence[int] = (0,),
        stdin: str | None = None,
        secrets: Sequence[str] = (),
    ) -> CommandResult:
        for observer in self.observers:
            observer(tuple(argv))
        code, out, err = self.answer(tuple(argv), stdin=stdin, ok_codes=ok_codes, secrets=secrets)
        if code not in ok_codes:
            raise CommandFailed(command=" ".join(argv[:2]), exit_code=code, stdout=out, stderr=err)
        return CommandResult(tuple(argv), code, out, err)

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of the tool for ``argv``."""
        raise NotImplementedError


class InProcessExecutor(AnsweringExecutor):
    """The real executor's contract (argv, observers, ok codes, CommandFailed) on an in-process main.

    The helper issues the same argv and the observers see the same calls, so
    call counts are those of a real run; only the process per call is saved,
    which is what lets tests and benchmarks set up hundreds of exports.
    """

    def __init__(self, main: Main, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.main = main

    def call(self, args: list[str]) -> tuple[int, str, str]:
        """One run of the main; a benchmark overrides it to time the tool's share."""
        return run_main(self.main, args)

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        return self.call(list(argv[1:]))


# ------------------------------------------------------------------ tgtd


class TgtdStartError(RuntimeError):
    pass


class TgtdProcess:
    """One tgtd in the foreground on loopback, owned and stopped by its PID.

    Its portal and control port are free ones unless given, so a private
    tgtd never meets another on the host; :meth:`tgtadm` addresses it.
    ``preexec`` runs in the child before tgtd (a benchmark raises the open
    file limit there: tgtd keeps a file open per LUN).
    """

    def __init__(
        self,
        log_path: Path,
        portal_port: int | None = None,
        control_port: int | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = log_path
        self.portal_port = portal_port or free_port()
        self.control_port = control_port or free_tgtd_control_port()
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    def tgtadm(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
            env=env,
        )

    def start(self) -> None:
        """Start tgtd; on a lost race for the ports, try fresh ones (a first start only)."""
        for attempt in range(TGTD_START_ATTEMPTS):
            try:
                return self._start_once()
            except TgtdStartError:
                if self.started_once or attempt == TGTD_START_ATTEMPTS - 1:
                    raise
                self.portal_port, self.control_port = free_port(), free_tgtd_control_port()

    def _start_once(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "tgtd",
                    "-f",
                    "--iscsi",
                    f"portal=127.0.0.1:{self.portal_port}",
                    "-C",
                    str(self.control_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self.preexec,
            )
        deadline = time.monotonic() + TGTD_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise TgtdStartError(
                    f"tgtd exited with {self.proc.returncode}: "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            if self.tgtadm("--mode", "target", "--op", "show", check=False).returncode == 0:
                self.started_once = True
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TgtdStartError("tgtd did not answer on its control port in time")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: tgtd ignores SIGTERM while it still has targets."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TGTD_STOP_TIMEOUT)

    def restart(self) -> None:
        """A host reboot as tgtd sees it: all live state gone, same ports afterwards."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_tgtd(log_path: Path, preexec: Callable[[], None] | None = None) -> Iterator[TgtdProcess]:
    """A started :class:`TgtdProcess` for the block, stopped by PID however the block ends."""
    tgtd = TgtdProcess(log_path, preexec=preexec)
    tgtd.start()
    try:
        yield tgtd
    finally:
        tgtd.stop()
