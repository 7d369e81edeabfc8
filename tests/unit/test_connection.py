"""Connection properties in os-brick's format, from stored provider fields only."""

import pytest

from iscsi_helper.connection import connector_initiator, iscsi_properties
from iscsi_helper.exception import ExportNotFound, InvalidConnector
from iscsi_helper.model import Volume

IQN = "iqn.2010-10.org.openstack:volume-1"


def vol(location, auth="CHAP user1 secret-secret-1", **kw):
    return Volume("1", "volume-1", provider_location=location, provider_auth=auth, **kw)


def test_single_portal():
    data = iscsi_properties(vol(f"10.9.8.7:3260,1 {IQN} 0"), {"initiator": "iqn.1993-08.org.debian:01:a"})
    assert data == {
        "target_discovered": False,
        "target_portal": "10.9.8.7:3260",
        "target_iqn": IQN,
        "target_lun": 0,
        "volume_id": "1",
        "discard": False,
        "encrypted": False,
        "auth_method": "CHAP",
        "auth_username": "user1",
        "auth_password": "secret-secret-1",
    }


def test_several_portals_give_multipath_lists_with_first_equal_to_single_values():
    data = iscsi_properties(vol(f"10.0.0.1:3260;[fd00::1]:3260,7 {IQN} 0"), {})
    assert data["target_portals"] == ["10.0.0.1:3260", "[fd00::1]:3260"]
    assert data["target_iqns"] == [IQN, IQN] and data["target_luns"] == [0, 0]
    assert data["target_portal"] == data["target_portals"][0]


def test_multipath_connector_gets_lists_even_with_one_portal():
    data = iscsi_properties(vol(f"[::1]:3260,1 {IQN} 1"), {"multipath": True})
    assert data["target_portals"] == ["[::1]:3260"] and data["target_luns"] == [1]
    assert "target_portals" not in iscsi_properties(vol(f"[::1]:3260,1 {IQN} 1"), {"multipath": False})


def test_encrypted_geometry_discard_and_no_chap():
    data = iscsi_properties(
        vol(f"10.0.0.1:3260,1 {IQN} 0", auth=None, encryption_key_id="k", provider_geometry="4096 512"),
        None,
        discard=True,
    )
    assert data["encrypted"] is True and data["discard"] is True
    assert (data["physical_block_size"], data["logical_block_size"]) == (4096, 512)
    assert "auth_method" not in data


def test_no_provider_location_is_a_clear_error():
    with pytest.raises(ExportNotFound, match="create_export"):
        iscsi_properties(vol(None), {})


@pytest.mark.parametrize("connector", [{}, {"initiator": ""}, {"initiator": "not an iqn"}, None])
def test_connector_needs_a_valid_initiator(connector):
    with pytest.raises(InvalidConnector):
        connector_initiator(connector)


def test_volume_coerce_reads_objects_and_mappings():
    class CinderLike:
        id, name, provider_location, provider_auth = "1", "volume-1", None, None

        @property
        def encryption_key_id(self):
            raise NotImplementedError("lazy field not loaded")

    assert Volume.coerce(CinderLike()).name == "volume-1"
    assert Volume.coerce({"id": "2", "name": "volume-2"}).id == "2"
