"""``pip install .`` (not editable) in a fresh venv gives a complete ``iscsi-helper`` command.

The docs' ``pip install`` blocks (quickstart.md, cinder.md) are run here
literally, in a new virtual environment, from a copy of the checkout, so a
missing package file, entry point or dependency shows up as it would for a
user. Slow (about a minute, most of it installing Cinder for the extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .test_docs_commands import packaging_blocks

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ["export", "unexport", "ensure", "list", "show", "connection-info",
               "reconcile", "helpers"]


def run(argv: list[str] | str, env: dict[str, str], cwd: Path, timeout: int = 900) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, shell=isinstance(argv, str),
                          executable="/bin/bash" if isinstance(argv, str) else None)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_pip_install_gives_the_command_and_the_cinder_extra(tmp_path):
    blocks = packaging_blocks()
    assert len(blocks) == 2, blocks  # quickstart.md and cinder.md
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "__pycache__", "build", "dist", ".venv*", ".pytest_cache",
        ".hypothesis"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}:/usr/bin:/bin", VIRTUAL_ENV=str(env_dir))

    quickstart, cinder = blocks
    out = run(quickstart, env, source)
    assert "usage: iscsi-helper" in out and "chiscsi" in out
    command = env_dir / "bin" / "iscsi-helper"
    assert command.exists(), "the console script is installed"
    installed = run([str(env_dir / "bin/python"), "-c",
                     "import iscsi_helper, sys; sys.stdout.write(iscsi_helper.__file__)"], env, tmp_path)
    assert installed.startswith(str(env_dir)), "a real install, not a path into the checkout"

    top = run([str(command), "--help"], env, tmp_path)
    for name in SUBCOMMANDS:
        assert f"    {name} " in top, f"{name} is listed in --help"
        sub = run([str(command), name, "--help"], env, tmp_path)
        assert sub.startswith(f"usage: iscsi-helper {name}")
        assert len(sub.splitlines()) > 4, f"{name} --help explains itself"

    run(cinder, env, source)
    version = run([str(env_dir / "bin/python"), "-c",
                   "import importlib.metadata as m; print(m.version('cinder'))"], env, tmp_path)
    assert version.strip().startswith("29.")
