"""The emulator shims on PATH: what a helper runs instead of the product's admin tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators.shims import install_shims


def test_shim_with_interpreter_path_too_long_for_shebang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux cuts #! lines at 127 bytes: a long interpreter path goes through /bin/sh instead."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    # The whole environment under a long path, not the interpreter alone: a venv's
    # python away from its pyvenv.cfg is the base Python, without this package.
    (deep / "env").symlink_to(sys.prefix, target_is_directory=True)
    python = deep / "env" / "bin" / Path(sys.executable).name
    monkeypatch.setattr(sys, "executable", str(python))
    bin_dir = install_shims(tmp_path / "bin")
    script = (bin_dir / "iscsictl").read_text()
    assert script.startswith("#!/bin/sh\n")
    env = dict(os.environ, CHISCSI_EMULATOR_STATE=str(tmp_path / "s"))
    res = subprocess.run(
        [str(bin_dir / "iscsictl"), "-c", "target=nope"], env=env, capture_output=True, text=True, timeout=60
    )
    # chiscsi's answer for a missing name (private/ulib/iscsictl_cmd.c): stdout, exit 255
    assert (res.returncode, res.stdout) == (255, "target nope NOT found.\n\n")
