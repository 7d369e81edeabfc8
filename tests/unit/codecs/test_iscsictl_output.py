"""chiscsi's ``iscsictl`` output read without iscsictl: details, summaries, and the listing's cut.

The output is laid out as chiscsi's source prints it (tests/support/iscsictl_output.py
cites where); the cut of ``-c target=ALL`` is computed as the kernel does.
"""

from __future__ import annotations

import pytest

from iscsi_helper.codecs.iscsictl_output import NAMES_BUFFER_BYTES, parse_details, parse_summaries
from iscsi_helper.exception import ToolOutputError
from iscsi_helper.formats import Portal
from tests.support.iscsictl_output import IQN, IQN2, detail_block, summary_block


def test_detail_output_is_read_exactly():
    shown = parse_details(detail_block(IQN, acl=True, mutual=True))
    detail = shown[IQN]
    assert detail is not None and list(shown) == [IQN]
    assert detail.value("TargetName") == IQN and detail.value("AuthMethod") == "CHAP"
    assert detail.acl_enabled
    assert detail.acl_initiators == {"iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b"}
    assert detail.chap_initiator_users == ("user1",) and detail.chap_target_users == ("tgtuser",)
    assert [g.tag for g in detail.portal_groups] == [1]
    assert detail.portal_groups[0].portals == (Portal("127.0.0.1", 3260), Portal("::1", 3260))
    device = detail.devices[0]
    assert (device.path, device.device_class) == ("/srv/disk.img", "FILE")
    assert "PROD=CHISCSI Target" in device.flags


def test_acl_lines_are_shown_only_when_enabled_and_count_only_then():
    detail = parse_details(detail_block(IQN))[IQN]
    assert detail is not None and not detail.acl_enabled and detail.acl_initiators == frozenset()


def test_a_named_list_answers_each_name_in_order_missing_ones_included():
    out = detail_block(IQN) + f"target {IQN2} NOT found.\n\n" + detail_block("iqn.2010-10.org.x:y")
    shown = parse_details(out)
    assert list(shown) == [IQN, IQN2, "iqn.2010-10.org.x:y"]
    assert shown[IQN2] is None and shown["iqn.2010-10.org.x:y"] is not None


@pytest.mark.parametrize(
    "out",
    [
        "TARGET: iqn.2010-10.org.openstack:volume-1, id=1, login_ip=0\n",  # a summary is not a detail
        "\ttarget:\n",
        "\ntarget:\n\tErrorRecoveryLevel=0\n",  # no TargetName
        "\ntarget:\n\tTargetName=a\nstray line\n",
        "\ntarget:\n\tTargetName=a\n\tAuth_CHAP_Initiator=user:secret\n",
    ],
)
def test_detail_output_that_is_not_chiscsi_layout_is_an_error(out):
    with pytest.raises(ToolOutputError):
        detail = parse_details(out)
        for shown in detail.values():  # CHAP names are read on demand
            assert shown is not None
            _ = shown.chap_initiator_users


def test_summary_listing_gives_ids_portals_devices_and_the_names_byte_count():
    out = summary_block(IQN, 1) + summary_block(IQN2, 3)
    listing = parse_summaries(out)
    assert list(listing.targets) == [IQN, IQN2]
    assert listing.targets[IQN2].node_id == 3
    assert listing.targets[IQN].portal_groups[0].portals == (Portal("10.9.8.7", 3260),)
    assert listing.targets[IQN].devices[0].device_class == "BLK"
    assert listing.names_bytes == len(f"target={IQN},{IQN2}")
    assert not listing.may_be_cut


def test_an_empty_listing_has_no_targets_and_is_not_cut():
    listing = parse_summaries("")
    assert listing.targets == {} and listing.names_bytes == 0 and not listing.may_be_cut


def kernel_names_buffer(names: list[str]) -> str:
    """``iscsi_node_get_target_names`` (private/klib/common/iscsi_node.c ~124-150), in Python."""
    buf = "target="
    for name in names:
        buf += name + ","
        if len(buf) > NAMES_BUFFER_BYTES:
            break
    if len(buf) > NAMES_BUFFER_BYTES:
        buf = buf[: NAMES_BUFFER_BYTES - 1]
    return buf[:-1] if buf.endswith(",") else buf


def listing_output(names: list[str]) -> str:
    """What ``-c target=ALL`` prints for those targets: each name in the buffer looked up."""
    shown = kernel_names_buffer(names)[len("target=") :].split(",")
    whole = set(names)
    return "".join(
        summary_block(n, i) if n in whole else f"target {n} NOT found.\n\n" for i, n in enumerate(shown, 1)
    )


@pytest.mark.parametrize("count,cut", [(1000, False), (2400, False), (2600, True), (5000, True)])
def test_the_cut_is_detected_by_the_byte_count_the_kernel_uses(count, cut):
    names = [f"iqn.2010-10.org.openstack:volume-{n:020d}" for n in range(count)]  # 54 bytes each
    listing = parse_summaries(listing_output(names))
    assert listing.may_be_cut is cut
    if cut:
        assert len(listing.targets) < count
        assert listing.names_bytes in (NAMES_BUFFER_BYTES - 2, NAMES_BUFFER_BYTES - 1)
    else:
        assert len(listing.targets) == count


def test_a_complete_listing_just_under_the_mark_is_not_taken_for_a_cut_one():
    base = "iqn.2010-10.org.openstack:volume-"
    names = [f"{base}{n:020d}" for n in range(2426)]
    filled = len("target=") + sum(len(n) + 1 for n in names) - 1
    names[-1] += "x" * (NAMES_BUFFER_BYTES - 3 - filled)  # the buffer holds exactly 131069 bytes
    listing = parse_summaries(listing_output(names))
    assert listing.names_bytes == NAMES_BUFFER_BYTES - 3
    assert len(listing.targets) == len(names) and not listing.may_be_cut


@pytest.mark.parametrize(
    "out",
    [
        "\tPortalGroup=1@10.9.8.7:3260,timeout=0\n",  # detail line before any target
        "TARGET: iqn.a:b, id=x, login_ip=0\n",
        "TARGET: iqn.a:b id=1 login_ip=0\n",
        "\nTARGET: iqn.a:b, id=1, login_ip=0\n\tSomething=else\n",
        "\nTARGET: iqn.a:b, id=1, login_ip=0\n\tPortalGroup=1@10.9.8:3260,timeout=0\n",
    ],
)
def test_summary_output_that_is_not_chiscsi_layout_is_an_error(out):
    with pytest.raises(ToolOutputError):
        parse_summaries(out)
