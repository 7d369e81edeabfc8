"""Names and Cinder strings: what we write must parse back, and bad values must be refused."""

import pytest

from iscsi_helper.exception import InvalidInput
from iscsi_helper.formats import (
    ChapCredentials,
    Portal,
    ProviderLocation,
    format_provider_auth,
    make_portal,
    parse_geometry,
    parse_portal,
    parse_provider_auth,
    portals_from_config,
    validate_iscsi_name,
    validate_volume_name,
)


@pytest.mark.parametrize(
    "name",
    [
        "iqn.2010-10.org.openstack:volume-1",
        "iqn.2006-02.com.chelsio.diskarray.san1",
        "iqn.1993-08.org.debian:01:abcdef",
        "eui.02004567A425678D",
        "naa.52004567BA64678D",
    ],
)
def test_valid_iscsi_names_pass(name):
    assert validate_iscsi_name(name) == name


@pytest.mark.parametrize(
    "name,reason",
    [
        ("", "non-empty"),
        ("iqn.2010-10.org.OpenStack:volume-1", "not a valid iqn"),
        ("iqn.2010-13.org.openstack:v", "month"),
        ("iqn.2010-10.org.openstack:vol ume", "not a valid iqn"),
        ("iqn.2010-10.org.openstack:vol\nume", "not a valid iqn"),
        ('iqn.2010-10.org.openstack:vol"ume', "not a valid iqn"),
        ("iqn.2010-10.org.openstack:" + "a" * 200, "223 bytes"),
        ("eui.02004567a425678d", "eui."),
        ("target1", "iqn., eui."),
    ],
)
def test_invalid_iscsi_names_are_refused_with_reason(name, reason):
    with pytest.raises(InvalidInput, match=reason):
        validate_iscsi_name(name)


@pytest.mark.parametrize("name", ["../etc", "volume/1", ".hidden", "Volume-1", "vol_1", "a b", ""])
def test_volume_names_that_are_not_file_and_iqn_safe_are_refused(name):
    with pytest.raises(InvalidInput, match="volume name"):
        validate_volume_name(name)


def test_portals_bracket_ipv6_and_canonicalise():
    assert str(make_portal("10.9.8.7", 3260)) == "10.9.8.7:3260"
    assert str(make_portal("2001:db8:0::1", 3260)) == "[2001:db8::1]:3260"
    assert parse_portal("[2001:db8::1]:3260") == Portal("2001:db8::1", 3260)
    assert parse_portal("10.9.8.7:3261") == Portal("10.9.8.7", 3261)


@pytest.mark.parametrize(
    "ip,port,field",
    [
        ("10.0.0.256", 3260, "portal address"),
        ("fe80::1%eth0", 3260, "zone ids"),
        ("host.example", 3260, "portal address"),
        ("10.0.0.1", 0, "port"),
        ("10.0.0.1", 65536, "port"),
        ("10.0.0.1", "x", "port"),
    ],
)
def test_bad_portals_are_refused(ip, port, field):
    with pytest.raises(InvalidInput, match=field):
        make_portal(ip, port)


def test_portals_from_config_keeps_order_and_drops_duplicates():
    portals = portals_from_config("10.0.0.1", ["10.0.0.2", "10.0.0.1", "::1"], 3260)
    assert [str(p) for p in portals] == ["10.0.0.1:3260", "10.0.0.2:3260", "[::1]:3260"]


def test_provider_location_round_trips_cinder_format():
    text = "10.9.8.7:3260;[2001:db8::1]:3260,1 iqn.2010-10.org.openstack:volume-1 0"
    location = ProviderLocation.parse(text)
    assert location.tid == 1 and location.lun == 0
    assert location.iqn == "iqn.2010-10.org.openstack:volume-1"
    assert [str(p) for p in location.portals] == ["10.9.8.7:3260", "[2001:db8::1]:3260"]
    assert str(location) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0.1:3260 iqn.2010-10.org.x:v 0",
        "10.0.0.1:3260,x iqn.2010-10.org.x:v 0",
        "10.0.0.1:3260,1 iqn.2010-10.org.x:v",
    ],
)
def test_malformed_provider_location_is_refused(text):
    with pytest.raises(InvalidInput, match="provider_location"):
        ProviderLocation.parse(text)


def test_provider_auth_round_trip_and_secret_hidden_in_repr():
    creds = ChapCredentials("user1", "secret-secret-1")
    assert format_provider_auth(creds) == "CHAP user1 secret-secret-1"
    assert parse_provider_auth("CHAP user1 secret-secret-1") == creds
    assert "secret-secret-1" not in repr(creds)
    assert parse_provider_auth(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "CHAP user1 secret-secret-1 ",
        " CHAP user1 secret-secret-1",
        "CHAP\tuser1 secret-secret-1",
        "CHAP user1  secret-secret-1",
        "CHAP user1 secret-secret-1\n",
        "CHAP user1 ",
    ],
)
def test_provider_auth_is_three_words_on_single_spaces_and_nothing_is_trimmed(text):
    # Trimming would silently change a secret the caller stored; refuse instead.
    with pytest.raises(InvalidInput) as info:
        parse_provider_auth(text)
    assert "secret-secret-1" not in str(info.value)


@pytest.mark.parametrize(
    "user,secret,reason",
    [
        ("", "secret-secret-1", "empty"),
        ("us er", "secret-secret-1", "whitespace"),
        ('us"er', "secret-secret-1", "'\"'"),
        ("user", "tiny-pw", "shorter than 12"),
        ("user", "x" * 256, "longer than 255"),
        ("user", "secret secret 1", "whitespace"),
        ("user", "sécret-secret-1", "non-ASCII"),
    ],
)
def test_bad_chap_values_are_refused_without_echoing_the_secret(user, secret, reason):
    with pytest.raises(InvalidInput, match=reason) as info:
        ChapCredentials(user, secret)
    if len(secret) >= 4:
        assert secret not in str(info.value)


def test_generated_credentials_are_valid_and_distinct():
    a, b = ChapCredentials.generate(), ChapCredentials.generate()
    assert a != b and len(a.username) == 20 and len(a.password) == 16


def test_generated_symbols_cover_the_alphabet_without_bias():
    # 62 symbols from bytes: a plain "byte % 62" would make the first 8 symbols ~20% likelier.
    import collections

    from iscsi_helper.formats import _GENERATED_ALPHABET, random_token

    counts = collections.Counter("".join(random_token(16) for _ in range(6200)))
    assert set(counts) == set(_GENERATED_ALPHABET)
    expected = 6200 * 16 / 62  # 1600 per symbol, standard deviation ~40
    first, rest = (
        [counts[c] for c in _GENERATED_ALPHABET[:8]],
        [counts[c] for c in _GENERATED_ALPHABET[-8:]],
    )
    assert all(abs(n - expected) < 0.15 * expected for n in counts.values()), counts.most_common(3)
    assert abs(sum(first) / len(first) - sum(rest) / len(rest)) < 0.1 * expected


def test_geometry():
    assert parse_geometry("4096 512") == (4096, 512)
    assert parse_geometry(None) is None
    with pytest.raises(InvalidInput):
        parse_geometry("4096 500")
