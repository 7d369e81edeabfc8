"""Emulator of Chelsio chiscsi's admin tool ``iscsictl``, modelled on the product's source.

chiscsi (kernel modules plus ``iscsictl``) cannot run here; helpers are tested
against this emulator, which keeps the emulated kernel in
``$CHISCSI_EMULATOR_STATE``. docs/emulators/chiscsi.md maps every behaviour
to the source file and lines it comes from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from iscsi_helper.lab.emulators.chiscsi import serving
from iscsi_helper.lab.emulators.chiscsi.state import STATE_ENV, KernelState

__all__ = ["STATE_ENV", "reset"]


def reset(state_dir: Path | str) -> None:
    """Simulate a host reboot: the module reloads with no target, ids from 1.

    Only the emulator's state directory changes; configuration files written
    elsewhere (per-volume files, chiscsi.conf) stay as they are. The data
    path's daemon is stopped and its run directory removed, since after a
    reboot nothing is served until ``iscsictl -S`` runs again.
    """
    state = KernelState(Path(state_dir))
    state.ensure()
    with state.locked():
        serving.stop_all(state.root)
        shutil.rmtree(state.wire_dir, ignore_errors=True)
        state.clear()
