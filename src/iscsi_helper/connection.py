"""Connection properties exactly as os-brick's iSCSI connector reads them.

Built only from what the caller stored (provider_location, provider_auth,
provider_geometry, encryption_key_id), never from a live query: an attach
must not depend on the target tool answering, and the same stored volume
must always yield the same properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iscsi_helper.exception import ExportNotFound, InvalidConnector, InvalidInput
from iscsi_helper.formats import (
    ProviderLocation,
    normalize_initiator_name,
    parse_geometry,
    parse_provider_auth,
)
from iscsi_helper.model import Volume


def connector_initiator(connector: Mapping[str, Any]) -> str:
    """The initiator's iSCSI name of a connector, in its one spelling (RFC 3722 case folding).

    InvalidConnector when there is none or it is not an iSCSI name.
    """
    if not isinstance(connector, Mapping):
        raise InvalidConnector(reason="expected a mapping such as os-brick's connector properties")
    initiator = connector.get("initiator")
    if not initiator:
        raise InvalidConnector(reason="an iSCSI connector must carry the initiator's IQN in 'initiator'")
    try:
        return normalize_initiator_name(str(initiator), "initiator name")
    except InvalidInput as err:  # -> the connector-specific error type
        raise InvalidConnector(reason=str(err).rstrip(".")) from None


def iscsi_properties(
    volume: Volume, connector: Mapping[str, Any] | None, *, discard: bool = False
) -> dict[str, Any]:
    """The ``data`` dict of an iSCSI connection_info."""
    if not volume.provider_location:
        raise ExportNotFound(volume=f"{volume.id} (it has no provider_location; call create_export first)")
    location = ProviderLocation.parse(volume.provider_location)
    portals = [str(p) for p in location.portals]
    properties: dict[str, Any] = {
        "target_discovered": False,
        "target_portal": portals[0],
        "target_iqn": location.iqn,
        "target_lun": location.lun,
        "volume_id": volume.id,
        "discard": discard,
        "encrypted": bool(volume.encryption_key_id),
    }
    multipath = bool(connector and connector.get("multipath"))
    if len(portals) > 1 or multipath:
        properties["target_portals"] = portals
        properties["target_iqns"] = [location.iqn] * len(portals)
        properties["target_luns"] = [location.lun] * len(portals)
    chap = parse_provider_auth(volume.provider_auth)
    if chap:
        properties["auth_method"] = "CHAP"
        properties["auth_username"] = chap.username
        properties["auth_password"] = chap.password
    geometry = parse_geometry(volume.provider_geometry)
    if geometry:
        properties["physical_block_size"], properties["logical_block_size"] = geometry
    return properties
