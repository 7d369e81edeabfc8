"""iscsi-helper: export block volumes over iSCSI through pluggable target helpers.

The target side of OpenStack Cinder (``cinder/volume/targets/``) as a
library and a command line: a *helper* drives one iSCSI target (Chelsio's
chiscsi through ``iscsictl``, IET through ``ietadm``, tgt through
``tgtadm``, or ``fake``), with Cinder's option names, Cinder's
``provider_location``/``provider_auth`` strings and os-brick's connection
properties.

Main entry points::

    import iscsi_helper

    conf = iscsi_helper.new_config(["/etc/cinder/cinder.conf"])  # or overrides={...}
    helper = iscsi_helper.get_helper(conf)       # the helper target_helper names
    status = helper.export({"id": "1", "name": "volume-1"}, "/dev/vg/volume-1")
    status.provider_location                     # '192.0.2.10:3260,1 iqn...:volume-1 0'
    helper.initialize_connection(volume, {"initiator": "iqn.1993-08.org.debian:01:a"})

* :func:`new_config` reads a ``cinder.conf`` as Cinder reads it (a backend
  section, then ``[backend_defaults]``) into a private ``ConfigOpts``;
  :data:`options` holds the option definitions (``list_opts`` for
  oslo-config-generator).
* :func:`get_helper` / :func:`helper_names` (:data:`registry`) find helpers
  through the ``iscsi_helper.target_helpers`` entry points.
* :class:`TargetHelper` is the whole contract: Cinder's calls
  (``create_export``, ``ensure_export``, ``remove_export``,
  ``initialize_connection``, ``terminate_connection``, ...) and the
  operator's (``export``, ``unexport``, ``restore_exports``,
  ``list_exports``, ``get_export`` -> :class:`ExportStatus`, ``reconcile``
  -> :class:`Drift`).
* A volume is anything :class:`VolumeProtocol` describes (a Cinder volume
  object, a :class:`Volume`) or a mapping with ``id`` and ``name``
  (:data:`VolumeLike`).
* Every error raised on purpose is an :class:`IscsiHelperError`, one line
  naming the problem; :class:`ExportNotFound`, :class:`InvalidInput` and
  :class:`InvalidConfiguration` are the ones callers usually tell apart.

The command line is ``iscsi-helper`` (:mod:`iscsi_helper.cli`); the Cinder
driver adapter is :mod:`iscsi_helper.cinder`. Importing this package is
cheap: each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module it lives in (None: the name is that module itself).
_EXPORTS: dict[str, str | None] = {
    # configuration
    "options": None,
    "new_config": "iscsi_helper.options",
    "list_opts": "iscsi_helper.options",
    # helpers
    "registry": None,
    "get_helper": "iscsi_helper.registry",
    "helper_names": "iscsi_helper.registry",
    "helper_class": "iscsi_helper.registry",
    "TargetHelper": "iscsi_helper.targets.base",
    "Progress": "iscsi_helper.targets.base",
    "IscsiHelper": "iscsi_helper.targets.iscsi",
    "Executor": "iscsi_helper.executor",
    # what helpers take and give
    "Volume": "iscsi_helper.model",
    "VolumeProtocol": "iscsi_helper.model",
    "VolumeLike": "iscsi_helper.model",
    "ExportSpec": "iscsi_helper.model",
    "ExportStatus": "iscsi_helper.model",
    "LiveTarget": "iscsi_helper.model",
    "Drift": "iscsi_helper.model",
    "EnsureReport": "iscsi_helper.model",
    "ChapCredentials": "iscsi_helper.formats",
    "Portal": "iscsi_helper.formats",
    # errors
    **{
        name: "iscsi_helper.exception"
        for name in (
            "IscsiHelperError",
            "InvalidInput",
            "InvalidConnector",
            "InvalidConfiguration",
            "UnknownTargetHelper",
            "AccessDenied",
            "MissingDependency",
            "ExportNotFound",
            "ExportNotLive",
            "ExportInUse",
            "TargetCreateFailed",
            "TargetRemoveFailed",
            "TargetBusy",
            "PersistenceError",
            "CommandError",
            "CommandNotFound",
            "CommandFailed",
            "CommandTimedOut",
            "CoordinationError",
        )
    },
}

#: Every public name (a test checks each one loads, and matches _EXPORTS).
__all__ = [
    "__version__",
    "options",
    "new_config",
    "list_opts",
    "registry",
    "get_helper",
    "helper_names",
    "helper_class",
    "TargetHelper",
    "Progress",
    "IscsiHelper",
    "Executor",
    "Volume",
    "VolumeProtocol",
    "VolumeLike",
    "ExportSpec",
    "ExportStatus",
    "LiveTarget",
    "Drift",
    "EnsureReport",
    "ChapCredentials",
    "Portal",
    "IscsiHelperError",
    "InvalidInput",
    "InvalidConnector",
    "InvalidConfiguration",
    "UnknownTargetHelper",
    "AccessDenied",
    "MissingDependency",
    "ExportNotFound",
    "ExportNotLive",
    "ExportInUse",
    "TargetCreateFailed",
    "TargetRemoveFailed",
    "TargetBusy",
    "PersistenceError",
    "CommandError",
    "CommandNotFound",
    "CommandFailed",
    "CommandTimedOut",
    "CoordinationError",
]


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562), so ``import iscsi_helper`` stays cheap."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iscsi_helper' has no attribute {name!r}")
    home = _EXPORTS[name]
    value = (
        importlib.import_module(f"iscsi_helper.{name}")
        if home is None
        else getattr(importlib.import_module(home), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names are, for type checkers (at run time: __getattr__)
    from iscsi_helper import options, registry
    from iscsi_helper.exception import (
        AccessDenied,
        CommandError,
        CommandFailed,
        CommandNotFound,
        CommandTimedOut,
        CoordinationError,
        ExportInUse,
        ExportNotFound,
        ExportNotLive,
        InvalidConfiguration,
        InvalidConnector,
        InvalidInput,
        IscsiHelperError,
        MissingDependency,
        PersistenceError,
        TargetBusy,
        TargetCreateFailed,
        TargetRemoveFailed,
        UnknownTargetHelper,
    )
    from iscsi_helper.executor import Executor
    from iscsi_helper.formats import ChapCredentials, Portal
    from iscsi_helper.model import (
        Drift,
        EnsureReport,
        ExportSpec,
        ExportStatus,
        LiveTarget,
        Volume,
        VolumeLike,
        VolumeProtocol,
    )
    from iscsi_helper.options import list_opts, new_config
    from iscsi_helper.registry import get_helper, helper_class, helper_names
    from iscsi_helper.targets.base import Progress, TargetHelper
    from iscsi_helper.targets.iscsi import IscsiHelper
