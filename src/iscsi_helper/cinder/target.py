"""An iscsi-helper helper in the shape of a Cinder target driver.

Cinder's LVM driver builds its target as ``cls(configuration=..., executor=...)``
and calls ``create_export``/``ensure_export``/``remove_export``/
``initialize_connection``/... on it; this class is that object. It turns
Cinder's configuration into ours once, delegates every call to the helper,
and raises Cinder's own exception types so Cinder's volume manager handles
our failures exactly like its targets' (error state, retries, messages).

The ``executor`` Cinder offers is not used: our executor applies the root
helper, the tool timeout and secret masking that the helpers rely on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from cinder import exception as cinder_exception
from cinder.common import constants
from cinder.volume.targets import driver as cinder_target
from oslo_config import cfg

from iscsi_helper import exception, registry, secretmask
from iscsi_helper.cinder.config import config_from_cinder
from iscsi_helper.targets.base import TargetHelper

LOG = secretmask.get_logger(__name__)


def _volume_id(volume: Any) -> str:
    try:
        return str(volume["id"])
    except Exception:  # noqa: BLE001 - only for an error message
        return str(getattr(volume, "id", "?"))


@contextlib.contextmanager
def cinder_errors(volume: Any = None) -> Iterator[None]:
    """Re-raise our errors as the Cinder exceptions its manager expects from a target."""
    vid = _volume_id(volume) if volume is not None else "?"
    try:
        yield
    except exception.InvalidConnector as err:
        raise cinder_exception.InvalidConnectorException(missing=str(err)) from err
    except exception.InvalidConfiguration as err:
        raise cinder_exception.InvalidConfigurationValue(
            message=str(err), option="iscsi_helper_target", value=""
        ) from err
    except exception.InvalidInput as err:
        raise cinder_exception.InvalidInput(reason=str(err)) from err
    except exception.TargetRemoveFailed as err:
        raise cinder_exception.ISCSITargetRemoveFailed(message=str(err), volume_id=vid) from err
    except (exception.TargetCreateFailed, exception.CommandError) as err:
        raise cinder_exception.ISCSITargetCreateFailed(message=str(err), volume_id=vid) from err
    except exception.IscsiHelperError as err:
        raise cinder_exception.VolumeBackendAPIException(data=str(err)) from err


class IscsiHelperTarget(cinder_target.Target):
    """Cinder target driver backed by the iscsi-helper helper the backend section names."""

    protocol = constants.ISCSI
    SHARED_TARGET_SUPPORT = False
    SECONDARY_IP_SUPPORT = True  # every iSCSI helper of ours serves all configured portals

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with cinder_errors():
            self.helper_conf = config_from_cinder(self.configuration, cfg.CONF)
            self.helper: TargetHelper = registry.get_helper(self.helper_conf)
            # At start-up, not at the first export: a state or lock directory (or, without
            # a root helper, ietd.conf) this user cannot write is one message naming it.
            self.helper.check_access()
        LOG.info(
            "Cinder backend uses iscsi-helper's %s helper (%s)",
            self.helper_conf.target_helper,
            type(self.helper).__name__,
        )

    def ensure_export(self, context: Any, volume: Any, volume_path: str) -> None:
        with cinder_errors(volume):
            self.helper.ensure_export(context, volume, volume_path)

    def create_export(self, context: Any, volume: Any, volume_path: str) -> dict[str, str]:
        with cinder_errors(volume):
            return self.helper.create_export(context, volume, volume_path)

    def remove_export(self, context: Any, volume: Any) -> None:
        with cinder_errors(volume):
            self.helper.remove_export(context, volume)

    def initialize_connection(self, volume: Any, connector: Mapping[str, Any]) -> dict[str, Any]:
        with cinder_errors(volume):
            return self.helper.initialize_connection(volume, connector)

    def terminate_connection(self, volume: Any, connector: Mapping[str, Any], **kwargs: Any) -> None:
        with cinder_errors(volume):
            self.helper.terminate_connection(volume, connector, **kwargs)

    def validate_connector(self, connector: Mapping[str, Any]) -> bool:
        with cinder_errors():
            return self.helper.validate_connector(connector)

    def extend_target(self, volume: Any) -> None:
        with cinder_errors(volume):
            self.helper.extend_target(volume)

    @staticmethod
    def are_same_connector(A: Mapping[str, Any], B: Mapping[str, Any]) -> bool:
        """iSCSI attachments are the same host when the initiator IQN is (as in Cinder's ISCSITarget)."""
        initiator = A.get("initiator")
        return bool(initiator) and initiator == B.get("initiator")
