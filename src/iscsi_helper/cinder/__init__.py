"""Using iscsi-helper's target helpers from a real Cinder volume service.

Cinder owns its process-wide configuration and validates ``target_helper``
against its own fixed list, which cannot name helpers Cinder lacks
(``chiscsi``, ``iet``). So the adapter never touches Cinder's options: it
adds one option of its own, ``iscsi_helper_target``, to the backend section
and hands our helpers a private configuration built from the values Cinder
already parsed (see :mod:`iscsi_helper.cinder.config`). Only
:mod:`iscsi_helper.cinder.driver` and :mod:`iscsi_helper.cinder.target`
import Cinder; the rest of the package never needs it installed.

This package is only useful inside Cinder, so importing it where Cinder is
missing fails at once with one line that names the extra to install, instead
of a ``ModuleNotFoundError`` for some Cinder module deep in the driver's
imports (cinder-volume logs only the last line when a driver fails to load).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("cinder") is None:
    raise ModuleNotFoundError(
        "iscsi_helper.cinder is the Cinder adapter and needs Cinder: install "
        "iscsi-helper with its cinder extra (pip install 'iscsi-helper[cinder]') "
        "in the environment that runs cinder-volume",
        name="cinder",
    )
