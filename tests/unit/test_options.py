"""A cinder.conf-style file configures us under Cinder's option names."""

import pytest

from iscsi_helper import options, registry
from iscsi_helper.exception import UnknownTargetHelper


def test_cinder_names_defaults_and_deprecated_spellings(tmp_path):
    conf_file = tmp_path / "cinder.conf"
    conf_file.write_text(
        "[DEFAULT]\niscsi_helper = chiscsi\niscsi_ip_address = 10.0.0.5\n"
        "iscsi_secondary_ip_addresses = 10.0.0.6,fd00::6\nstate_path = /srv/c\n"
    )
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


def test_a_backend_section_then_backend_defaults_as_cinder_reads_them(tmp_path):
    conf_file = tmp_path / "cinder.conf"
    conf_file.write_text(
        "[DEFAULT]\nenabled_backends = lvm\nstate_path = /srv/c\ntarget_port = 3999\n"
        "iscsi_ip_address = 10.9.9.9\n"
        "[backend_defaults]\ntarget_prefix = iqn.2000-01.com.example:\nchap_password = a$$b\n"
        "[lvm]\niscsi_ip_address = 10.0.0.5\nvolumes_dir = $state_path/lvm\n"
        "iscsi_helper_target = fake\ntarget_helper = tgtadm\nuse_chap_auth = true\n"
    )
    loaded = options.load([str(conf_file)])
    conf = loaded.conf
    assert loaded.backend == "lvm"
    assert conf.target_ip_address == "10.0.0.5", "the section's, under its deprecated name"
    assert conf.target_port == 3260, "[DEFAULT] is not read for a backend option"
    assert conf.target_prefix == "iqn.2000-01.com.example:"
    assert conf.volumes_dir == "/srv/c/lvm", "$state_path from [DEFAULT], as Cinder substitutes"
    assert conf.chap_password == "a$b", "a literal $ stays one"
    assert conf.target_helper == "fake", "iscsi_helper_target wins, as in the Cinder adapter"
    assert conf.use_chap_auth is True
    # iscsi_ip_address is in [DEFAULT] too, but also where it is read: no warning for it.
    assert loaded.warnings == [
        "[DEFAULT] target_port is not read for backend lvm: Cinder reads a backend's options "
        "from [lvm], then [backend_defaults]; move it to [lvm]"
    ]


def test_overrides_win_and_host_options_feed_backend_substitutions(tmp_path):
    conf_file = tmp_path / "cinder.conf"
    conf_file.write_text("[DEFAULT]\nenabled_backends = lvm\n[lvm]\ntarget_helper = fake\n")
    loaded = options.load([str(conf_file)], {"state_path": "/x", "target_port": 4000})
    assert loaded.conf.volumes_dir == "/x/volumes"
    assert loaded.conf.target_port == 4000
    assert loaded.address_guessed
    assert not options.load([str(conf_file)], {"target_ip_address": "10.1.1.1"}).address_guessed
