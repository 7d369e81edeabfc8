"""A cinder.conf-style file configures us under Cinder's option names."""

import pytest

from iscsi_helper import options, registry
from iscsi_helper.exception import UnknownTargetHelper


def test_cinder_names_defaults_and_deprecated_spellings(tmp_path):
    conf_file = tmp_path / "cinder.conf"
    conf_file.write_text("[DEFAULT]\niscsi_helper = chiscsi\niscsi_ip_address = 10.0.0.5\n"
                         "iscsi_secondary_ip_addresses = 10.0.0.6,fd00::6\nstate_path = /srv/c\n")
    conf = options.new_config([str(conf_file)])
    assert conf.target_helper == "chiscsi"
    assert conf.target_ip_address == "10.0.0.5"
    assert conf.target_secondary_ip_addresses == ["10.0.0.6", "fd00::6"]
    assert conf.volumes_dir == "/srv/c/volumes"
    assert conf.target_prefix == "iqn.2010-10.org.openstack:"
    assert conf.target_port == 3260
    assert conf.chiscsi_conf == "/etc/chelsio-iscsi/chiscsi.conf"
    assert conf.iet_conf == "/etc/iet/ietd.conf"
    assert conf.iscsi_iotype == "fileio"


@pytest.mark.parametrize("alias", ["chiscsi", "iscsictl", "cxtadm"])
def test_chiscsi_aliases_select_one_helper(alias):
    conf = options.new_config(overrides={"target_helper": alias})
    assert type(registry.get_helper(conf)).__name__ == "ChiscsiHelper"


def test_unknown_helper_lists_valid_ones():
    conf = options.new_config(overrides={"target_helper": "lio"})
    with pytest.raises(UnknownTargetHelper, match="valid helpers are: .*chiscsi.*fake"):
        registry.get_helper(conf)
