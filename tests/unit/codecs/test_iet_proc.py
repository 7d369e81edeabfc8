"""IET's /proc/net/iet files, in the layout docs/emulators/iet.md records."""

from __future__ import annotations

from iscsi_helper.codecs.iet_proc import count_sessions, parse_sessions, parse_volume
from iscsi_helper.model import LiveTarget

VOLUME = """\
tid:3 name:iqn.2010-10.org.openstack:volume-3
tid:2 name:iqn.2010-10.org.openstack:volume-2
\tlun:1 state:0 iotype:blockio iomode:wt blocks:2048 blocksize:512 path:/dev/vg/b
\tlun:0 state:0 iotype:fileio iomode:wt blocks:8192 blocksize:512 path:/srv/a.img
tid:x name:garbage
\tlun:0 state:0 path:/never/read
tid:1 name:iqn.2001-04.com.example:other
\tlun:0 state:0 iotype:fileio iomode:ro blocks:1 blocksize:512 path:/srv/with space.img
"""

SESSION = """\
tid:2 name:iqn.2010-10.org.openstack:volume-2
\tsid:562949957419520 initiator:iqn.1994-05.com.example:host1
\t\tcid:0 ip:192.0.2.10 state:active hd:none dd:none
\t\tcid:1 ip:192.0.2.11 state:active hd:none dd:none
\tsid:562949957419521 initiator:iqn.1994-05.com.example:host2
\t\tcid:0 ip:[2001:0db8:0000:0000:0000:0000:0000:0005] state:active hd:none dd:none
tid:1 name:iqn.2001-04.com.example:other
\tsid:7 initiator:iqn.1994-05.com.example:host3
\t\tcid:0 ip:192.0.2.12 state:active hd:none dd:none
"""


def test_parse_volume_gives_each_target_its_tid_and_luns_in_lun_order():
    assert parse_volume(VOLUME) == {
        "iqn.2010-10.org.openstack:volume-3": LiveTarget(
            "iqn.2010-10.org.openstack:volume-3", 3, None, (), lun_paths=()
        ),
        "iqn.2010-10.org.openstack:volume-2": LiveTarget(
            "iqn.2010-10.org.openstack:volume-2",
            2,
            None,
            ("/srv/a.img", "/dev/vg/b"),
            lun_paths=((0, "/srv/a.img"), (1, "/dev/vg/b")),
        ),
        "iqn.2001-04.com.example:other": LiveTarget(
            "iqn.2001-04.com.example:other",
            1,
            None,
            ("/srv/with space.img",),
            lun_paths=((0, "/srv/with space.img"),),
        ),
    }


def test_parse_volume_of_an_empty_or_missing_file_is_empty():
    assert parse_volume("") == {}


def test_parse_sessions_lists_the_connections_of_one_target_only():
    assert parse_sessions(SESSION, 2) == [(562949957419520, 0), (562949957419520, 1), (562949957419521, 0)]
    assert parse_sessions(SESSION, 1) == [(7, 0)]
    assert parse_sessions(SESSION, 9) == []


def test_count_sessions_counts_sessions_not_connections_of_one_target():
    assert count_sessions(SESSION, 2) == 2
    assert count_sessions(SESSION, 1) == 1
    assert count_sessions(SESSION, 3) == 0
    assert count_sessions("tid:4 name:x\n\tsid:9 initiator:a\n", 4) == 1, "a session without connections"
