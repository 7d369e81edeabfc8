"""JSON export records (the IET index, the fake helper): one layout, strict on the way in."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from iscsi_helper.codecs.export_json import parse_record, render_record
from iscsi_helper.exception import PersistenceError
from iscsi_helper.formats import ChapCredentials
from iscsi_helper.model import ExportRecord

PATH = Path("/var/lib/cinder/volumes/iet/volume-1")


def test_a_record_round_trips_with_its_helper_facts(spec):
    full = replace(
        spec,
        target_chap=ChapCredentials("target-1", "target-secret-1"),
        initiators=("iqn.1993-08.org.debian:01:a",),
    )
    text = render_record(ExportRecord(full, tid=12, device_size=4 << 20))
    assert parse_record(text, PATH, "volume-1") == ExportRecord(full, 12, 4 << 20, text)
    assert render_record(ExportRecord(full, tid=12, device_size=4 << 20)) == text, "stable text"


def test_facts_a_helper_does_not_keep_are_left_out(spec):
    data = json.loads(render_record(ExportRecord(spec)))
    assert "tid" not in data and "device_size" not in data
    assert data["portals"] == ["192.0.2.10:3260", "[2001:db8::1]:3260"]
    assert data["chap"] == ["user-1", "secret-secret-1"] and data["target_chap"] is None


def test_an_index_record_written_before_initiators_were_kept_still_reads(spec):
    data = json.loads(render_record(ExportRecord(spec, tid=3)))
    del data["initiators"]
    data["device_size"] = None
    record = parse_record(json.dumps(data), PATH, "volume-1")
    assert record.spec == spec and record.tid == 3 and record.device_size is None


@pytest.mark.parametrize(
    "text,reason",
    [
        ("not json", "not an export record"),
        ("[]", "not an export record"),
        ('{"volume_id": "1"}', "not an export record"),
    ],
)
def test_what_is_not_a_record_is_refused_naming_the_file(text, reason):
    with pytest.raises(PersistenceError, match=reason) as raised:
        parse_record(text, PATH)
    assert str(PATH) in str(raised.value)


def test_a_record_of_another_volume_or_with_a_bad_secret_is_refused(spec):
    text = render_record(ExportRecord(spec))
    with pytest.raises(PersistenceError, match="names volume 'volume-1'"):
        parse_record(text, PATH, "volume-2")
    data = json.loads(text)
    data["chap"] = ["user-1", "tiny"]
    with pytest.raises(PersistenceError) as raised:
        parse_record(json.dumps(data), PATH)
    assert "tiny" not in str(raised.value)
