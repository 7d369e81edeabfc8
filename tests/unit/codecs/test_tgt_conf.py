"""tgt's per-volume target files: ours round-trip, Cinder's are adopted, hand edits are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from iscsi_helper.codecs.tgt_conf import parse, render
from iscsi_helper.exception import PersistenceError
from iscsi_helper.formats import ChapCredentials, Portal

from .conftest import IQN

PATH = Path("/var/lib/cinder/volumes/tgt/volume-1")
DEFAULT_PORTALS = (Portal("198.51.100.1", 3260),)


def read(text: str):
    return parse(text, PATH, "volume-1", "id-from-name", DEFAULT_PORTALS, 1)


def test_render_writes_cinders_layout_with_our_metadata_line(spec):
    spec = replace(spec, lun=1)
    assert render(spec, 4, driver="iscsi", write_cache="on", bsoflags="") == (
        "# iscsi-helper volume_id=1 tid=4 portals=192.0.2.10:3260,[2001:db8::1]:3260\n"
        f"<target {IQN}>\n"
        "    backing-store /srv/volume-1.img\n"
        "    driver iscsi\n"
        "    incominguser user-1 secret-secret-1\n"
        "    write-cache on\n"
        "</target>\n"
    )


def test_every_field_round_trips(spec):
    full = replace(
        spec,
        lun=1,
        target_chap=ChapCredentials("target-1", "target-secret-1"),
        initiators=("iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b"),
    )
    text = render(full, 9, driver="iser", write_cache="off", bsoflags="direct")
    record = read(text)
    assert record.spec == full and record.tid == 9 and record.text == text


def test_a_file_cinders_tgtadm_wrote_takes_the_defaults_and_has_no_tid():
    cinder = (
        f"\n<target {IQN}>\n"
        "    backing-store /dev/vg/volume-1\n\n"
        "    driver iscsi\n"
        "    incominguser cinderuser cindersecret12\n"
        "    write-cache on\n"
        "</target>\n"
    )
    record = read(cinder)
    assert record.tid is None and record.spec.volume_id == "id-from-name"
    assert record.spec.portals == DEFAULT_PORTALS and record.spec.lun == 1
    assert record.spec.chap == ChapCredentials("cinderuser", "cindersecret12")


@pytest.mark.parametrize(
    "text,reason",
    [
        (f"<target {IQN}>\n    backing-store /a\n    vendor_id x\n</target>\n", "line 3: unexpected"),
        (f"<target {IQN}>\n    backing-store /a\n    backing-store /b\n</target>\n", "one backing-store"),
        (f"<target {IQN}>\n    backing-store /a\n", "one <target> block"),
        (f"<target {IQN}>\n    backing-store /a\n</target>\n<target {IQN}>\n</target>\n", "unexpected"),
        (
            f"<target {IQN}>\n    backing-store /a\n    incominguser only-a-name\n</target>\n",
            "incominguser is not '<user> <secret>'",
        ),
        (f"# iscsi-helper portals=nonsense\n<target {IQN}>\n    backing-store /a\n</target>\n", "portal"),
    ],
)
def test_anything_we_would_not_write_is_refused_naming_the_file(text, reason):
    with pytest.raises(PersistenceError, match=reason) as raised:
        read(text)
    assert str(PATH) in str(raised.value)


def test_a_short_secret_is_refused_without_being_shown():
    with pytest.raises(PersistenceError) as raised:
        read(f"<target {IQN}>\n    backing-store /a\n    incominguser user tiny\n</target>\n")
    assert "tiny" not in str(raised.value)
