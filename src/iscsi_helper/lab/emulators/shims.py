"""Executables that stand in for proprietary/kernel admin tools on PATH.

Helpers call ``iscsictl``/``ietadm`` by name through their executor, exactly
as in production; putting the shim directory first on PATH is the only
change a test or the demo makes, so the code under test never knows it is
talking to an emulator.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from iscsi_helper.lab.emulators.store import write_atomic

#: tool name -> (module, function) it runs
SHIMS: dict[str, tuple[str, str]] = {
    "iscsictl": ("iscsi_helper.lab.emulators.chiscsi.cli", "run"),
    "ietadm": ("iscsi_helper.lab.emulators.iet.cli", "main"),
}

_MAX_SHEBANG = 120  # Linux truncates longer #! lines (127 bytes before 5.1)


def _script(module: str, function: str) -> str:
    body = f"import sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    python = sys.executable
    if len(python) + 2 <= _MAX_SHEBANG and not any(c.isspace() for c in python):
        return f"#!{python}\n{body}"
    # An interpreter path the kernel cannot take in a #! line goes through sh.
    code = f"from {module} import {function}; import sys; sys.exit({function}())"
    return f'#!/bin/sh\nexec {shlex.quote(python)} -c {shlex.quote(code)} "$@"\n'


def install_shims(bin_dir: Path) -> Path:
    """Write ``iscsictl`` and ``ietadm`` into ``bin_dir`` (created if missing) and return it.

    Scripts use this interpreter (``sys.executable``) so they import the same
    installed package as the test process; each is replaced atomically so
    installing while another process runs a shim is safe.
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, (module, function) in SHIMS.items():
        write_atomic(bin_dir / name, _script(module, function), mode=0o755)
    return bin_dir
