"""Emulator of Chelsio chiscsi's admin tool ``iscsictl`` (see docs/emulators/chiscsi.md).

chiscsi is proprietary and cannot run here; helpers are tested against this
emulator, which keeps the target table in ``$CHISCSI_EMULATOR_STATE``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from iscsi_helper.lab.emulators.chiscsi import serving
from iscsi_helper.lab.emulators.chiscsi.state import STATE_ENV, State

__all__ = ["STATE_ENV", "reset"]


def reset(state_dir: Path | str) -> None:
    """Simulate a host reboot: every live target (and its data path) is gone.

    Only the emulator's state directory changes; configuration files written
    by helpers elsewhere (per-volume files, chiscsi.conf) stay as they are,
    which is what ``ensure_export`` at service start-up has to cope with.
    The tid counter restarts at 1, as a freshly loaded kernel module would.
    The data path's run directory is removed after its daemon stops: the wire
    daemon reloads what it served on start, and after a reboot the kernel
    target serves nothing until ``iscsictl -S`` runs again.
    """
    state = State(Path(state_dir))
    state.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with state.locked():
        serving.stop_all(state.root)
        shutil.rmtree(state.wire_dir, ignore_errors=True)
        state.clear()
