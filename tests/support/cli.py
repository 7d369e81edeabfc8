"""Running the installed ``iscsi-helper`` console script as a user would, as root or not.

CLI tests run the script of this interpreter's environment (its venv's
``bin/iscsi-helper``), not ``python -m``: the entry point, its shebang and
its installed metadata are part of what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOBODY = 65534


def console_script() -> str:
    """This environment's ``iscsi-helper``; a missing one fails the test (the install is broken)."""
    script = Path(sys.executable).parent / "iscsi-helper"
    assert script.exists(), (
        f"{script} is missing: install the package into this interpreter's "
        "environment (bash scripts/setup.sh)"
    )
    return str(script)


def unprivileged_prefix() -> list[str]:
    """argv prefix that runs a command as user nobody (when root), else nothing (already unprivileged)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run a command as nobody")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def open_to_all(path: Path) -> Path:
    """Let any user traverse ``path`` and its parents up to /tmp (pytest makes them 0700)."""
    for level in [path, *path.parents]:
        if str(level) in ("/", "/tmp") or level == Path(os.environ.get("TMPDIR", "/tmp")):
            break
        if level.exists() and level.stat().st_uid == os.geteuid():
            level.chmod(level.stat().st_mode | 0o711)
    return path


class Cli:
    """``run(*args, expect=0)`` the console script; fails the test on another exit code."""

    def __init__(
        self,
        base: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        user: list[str] | None = None,
    ) -> None:
        self.base = base
        self.env = env
        self.cwd = cwd
        self.user = user or []

    def run(
        self, *args: str, expect: int | None = 0, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.user, console_script(), *self.base, *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.cwd, input=stdin
        )
        if expect is not None:
            assert done.returncode == expect, (argv, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr or "--debug" in args, done.stderr
        return done

    def json(self, *args: str, expect: int = 0) -> object:
        return json.loads(self.run(*args, "--json", expect=expect).stdout)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a failure (fails when there are more)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("iscsi-helper: error: "), lines[0]
    return lines[0]
