"""ietd.conf blocks: rendered as Cinder's IetAdm wrote them, found by exact name, parsed back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from iscsi_helper.codecs.ietd_conf import find_block, iter_blocks, parse_block, render_block, replace_block
from iscsi_helper.exception import PersistenceError
from iscsi_helper.formats import ChapCredentials

from .conftest import IQN

CONF = Path("/etc/iet/ietd.conf")
OTHERS = """\
IncomingUser discovery-user discoverysecret1

# the backup LUN (do not touch)
Target iqn.2001-04.com.example:backup
\tLun 0 Path=/srv/backup.img,Type=fileio
Target iqn.2010-10.org.openstack:volume-10
\tLun 0 Path=/srv/v10.img,Type=fileio
"""


def test_render_block_is_cinders_layout_with_one_tab_of_indent(spec):
    assert render_block(spec, "fileio") == (
        f"Target {IQN}\n\tIncomingUser user-1 secret-secret-1\n\tLun 0 Path=/srv/volume-1.img,Type=fileio\n"
    )
    mutual = replace(spec, target_chap=ChapCredentials("target-1", "target-secret-1"), chap=None)
    assert render_block(mutual, "blockio").splitlines() == [
        f"Target {IQN}",
        "\tOutgoingUser target-1 target-secret-1",
        "\tLun 0 Path=/srv/volume-1.img,Type=blockio",
    ]


def test_a_rendered_block_is_found_and_parses_back(spec):
    mutual = replace(spec, target_chap=ChapCredentials("target-1", "target-secret-1"))
    text = OTHERS + render_block(mutual, "fileio")
    block = find_block(text, IQN)
    assert block is not None and "".join(block) == render_block(mutual, "fileio")
    parsed = parse_block(block, CONF)
    assert (parsed.iqn, parsed.incoming, parsed.outgoing, parsed.luns) == (
        IQN,
        mutual.chap,
        mutual.target_chap,
        {0: "/srv/volume-1.img"},
    )


def test_blocks_end_at_a_blank_line_a_comment_or_the_next_target():
    lines = OTHERS.splitlines(keepends=True)
    assert [(name, end - start) for name, start, end in iter_blocks(lines)] == [
        ("iqn.2001-04.com.example:backup", 2),
        ("iqn.2010-10.org.openstack:volume-10", 2),
    ]
    assert find_block(OTHERS, "iqn.2010-10.org.openstack:volume-1") is None, "a prefix is no match"
    assert find_block("# Target " + IQN + "\n", IQN) is None, "a comment is no block"
    assert find_block("target   " + IQN + "\n\tLun 0 Path=/x\n", IQN) == [
        "target   " + IQN + "\n",
        "\tLun 0 Path=/x\n",
    ], "the keyword is case-blind"


def test_replace_block_keeps_every_other_byte(spec):
    ours = render_block(spec, "fileio")
    added = replace_block(OTHERS, IQN, ours)
    assert added == OTHERS + ours
    moved = replace_block(added, IQN, render_block(replace(spec, device_path="/b"), "fileio"))
    assert moved.startswith(OTHERS) and "Path=/b," in moved and "Path=/srv/volume-1" not in moved
    assert replace_block(moved, IQN, None) == OTHERS
    assert replace_block("Alias x", IQN, ours) == "Alias x\n" + ours  # unterminated last line
    assert replace_block(ours + ours, IQN, None) == "", "duplicates of our name go too"


def test_parse_block_adopts_the_first_incoming_user_and_every_lun():
    block = [
        f"Target {IQN}\n",
        "  IncomingUser first firstsecret12\n",
        "  IncomingUser second secondsecret\n",
        "  Lun 0 Path=/a,Type=fileio\n",
        "  Lun 3 Type=blockio,Path=/dev/sdb\n",
        "  Alias somewhere\n",
    ]
    parsed = parse_block(block, CONF)
    assert parsed.incoming == ChapCredentials("first", "firstsecret12")
    assert parsed.luns == {0: "/a", 3: "/dev/sdb"} and parsed.outgoing is None


def test_an_unusable_credential_names_the_file_and_block_never_the_secret():
    with pytest.raises(PersistenceError) as raised:
        parse_block([f"Target {IQN}\n", "\tIncomingUser user tooshort\n"], CONF)
    assert str(CONF) in str(raised.value) and IQN in str(raised.value)
    assert "tooshort" not in str(raised.value)
    with pytest.raises(PersistenceError, match="must start with 'Target <name>'"):
        parse_block(["\tLun 0 Path=/a\n"], CONF)
