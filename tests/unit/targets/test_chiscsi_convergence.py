"""The chiscsi helper's decisions, against a small scripted chiscsi kernel in this process.

The emulator tests (tests/unit/targets/test_chiscsi.py) prove the helper on the
rebuilt ``iscsictl``; these pin the convergence logic itself on situations
that are slow or awkward to stage there: a target that stays busy, a name
buffer cut at a chosen count, a tool that says "removed" and keeps the
target. The script answers in chiscsi's layouts (the codec's parsers are
tested on those in tests/unit/codecs/test_iscsictl_output.py) and keeps what
chiscsi keeps:
an ordered node queue with offline nodes, one id counter, devices by path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iscsi_helper import registry
from iscsi_helper.codecs import chiscsi as codec
from iscsi_helper.exception import TargetBusy, TargetRemoveFailed
from iscsi_helper.executor import CommandResult
from iscsi_helper.formats import ChapCredentials, Portal
from iscsi_helper.lab.rig import AnsweringExecutor
from iscsi_helper.model import ExportSpec
from tests.support.emulators import chiscsi_config

PREFIX = "iqn.2010-10.org.openstack:"


@dataclass
class Node:
    name: str
    node_id: int
    block: codec.TargetBlock
    offline: bool = False
    sessions: int = 0


@dataclass
class ScriptedChiscsi(AnsweringExecutor):
    """Enough of chiscsi's kernel and iscsictl for the helper's decisions."""

    names_buffer: int = 131072
    nodes: list[Node] = field(default_factory=list)
    next_id: int = 1
    busy: set[str] = field(default_factory=set)  # names whose sessions will not close
    ignore_stop: set[str] = field(default_factory=set)  # "removed." said, target kept
    argvs: list[tuple[str, ...]] = field(default_factory=list)

    def _find(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name and not n.offline), None)

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        self.argvs.append(argv)
        option, value = argv[1], argv[2].removeprefix("target=")
        out, err, code = "", "", 0
        if option == "-S":
            path = Path(argv[4])
            block = codec.parse(path.read_text(), path, path.name, path.name, 0)
            node = self._find(value)
            taken = [
                n
                for n in self.nodes
                if not n.offline and n.name != value and n.block.spec.device_path == block.spec.device_path
            ]
            if taken:
                err, code = f"{taken[0].name} already has device {block.spec.device_path}.\n", 255
            elif node:
                node.block, err = block, f"target {value} updated.\n"
                self.next_id += 1  # the reconfigure's temporary node
            else:
                self.nodes.append(Node(value, self.next_id, block))
                self.next_id += 2 if self.next_id == 1 else 1  # the hidden default target
                err = f"target {value} added.\n"
        elif option == "-s":
            node = self._find(value)
            if node is None:
                err = f"{value} is not found.\n"
            elif value in self.busy:
                node.offline, err = True, f"{value} busy.\n"
            elif value in self.ignore_stop:
                err = f"{value} removed.\n"
            else:
                self.nodes.remove(node)
                err = f"{value} removed.\n"
        elif value == "ALL":
            buffer = "target="
            for node in self.nodes:
                buffer += node.name + ","
                if len(buffer) > self.names_buffer:
                    break
            if len(buffer) > self.names_buffer:
                buffer = buffer[: self.names_buffer - 1]
            for name in buffer[len("target=") :].rstrip(",").split(","):
                node = self._find(name) if name else None
                if node is None:
                    out += f"target {name} NOT found.\n\n" if name else ""
                    continue
                out += (
                    f"\nTARGET: {name}, id={node.node_id}, login_ip=0\n"
                    f"\tPortalGroup=1@{node.block.spec.portals[0]},timeout=0\n"
                    f"\tTargetDevice={node.block.spec.device_path},"
                    f"{node.block.device_class},PROD=CHISCSI Target\n\n"
                )
        else:
            for name in value.split(","):
                node = self._find(name)
                if node is None:
                    out, code = out + f"target {name} NOT found.\n\n", 255
                    continue
                spec, code = node.block.spec, 0
                out += (
                    f"\ntarget:\n\tTargetName={name}\n\tAuthMethod=CHAP\n"
                    f"\tACL_Enable={'Yes' if node.block.acl_enabled else 'No'}\n"
                    + "".join(
                        f"\tACL=iname={i};lun=ALL:RW\n" for i in spec.initiators if node.block.acl_enabled
                    )
                    + f'\tAuth_CHAP_Initiator="{spec.chap.username}":"********"\n'
                    f"\tPortalGroup=1@{spec.portals[0]},timeout=0\n"
                    f"\tTargetDevice={spec.device_path},{node.block.device_class}\n\n"
                )
        assert code in ok_codes
        return code, out, err

    def live(self) -> list[str]:
        return [n.name for n in self.nodes if not n.offline]


@pytest.fixture
def kernel() -> ScriptedChiscsi:
    return ScriptedChiscsi()


def helper(tmp_path, kernel, **overrides):
    conf = chiscsi_config(tmp_path, **overrides)
    return registry.get_helper(conf, kernel)


def disk(tmp_path, n) -> str:
    path = tmp_path / f"d{n}.img"
    path.write_bytes(b"\0" * 512)
    return str(path)


def vol(n):
    return {"id": str(n), "name": f"volume-{n}"}


def test_a_busy_remove_is_an_error_and_the_export_stays_as_recorded(tmp_path, kernel):
    target = helper(tmp_path, kernel)
    target.create_export(None, vol(1), disk(tmp_path, 1))
    kernel.busy.add(PREFIX + "volume-1")
    record = tmp_path / "state" / "volumes" / "cxt" / "volume-1"
    before = record.read_bytes()
    with pytest.raises(TargetBusy, match="busy.*nothing was removed.*live again"):
        target.remove_export(None, vol(1))
    assert record.read_bytes() == before
    assert kernel.live() == [PREFIX + "volume-1"], "started again under the same name"
    assert [n.offline for n in kernel.nodes] == [True, False], "chiscsi's offline node lingers"
    assert target.devices.owner(disk(tmp_path, 1)) == "volume-1"
    assert {d.state for d in target.reconcile()} == {"ok"}
    kernel.busy.clear()  # the initiators logged out
    target.remove_export(None, vol(1))
    assert kernel.live() == [] and not record.exists()


def test_a_busy_remove_whose_restart_fails_says_the_target_is_left_offline(tmp_path, kernel):
    target = helper(tmp_path, kernel)
    target.create_export(None, vol(1), disk(tmp_path, 1))
    kernel.busy.add(PREFIX + "volume-1")
    real_run = kernel.run

    def no_restart(*argv, **kwargs):
        if argv[1] == "-S":
            return CommandResult(argv, 255, "", "ERROR: Failed to start target!\n")
        return real_run(*argv, **kwargs)

    kernel.run = no_restart  # type: ignore[method-assign]
    with pytest.raises(TargetBusy, match="left the target offline.*record is kept.*ensure"):
        target.remove_export(None, vol(1))
    kernel.run = real_run  # type: ignore[method-assign]
    assert [d.state for d in target.reconcile()] == ["missing-live"]
    assert target.restore_exports().started == ["1"] and kernel.live() == [PREFIX + "volume-1"]


def test_a_stop_that_says_removed_but_keeps_the_target_is_not_success(tmp_path, kernel):
    target = helper(tmp_path, kernel)
    target.create_export(None, vol(1), disk(tmp_path, 1))
    kernel.ignore_stop.add(PREFIX + "volume-1")
    with pytest.raises(TargetRemoveFailed, match="still shows the target"):
        target.remove_export(None, vol(1))
    assert (tmp_path / "state" / "volumes" / "cxt" / "volume-1").exists()


LONG_PREFIX = "iqn.2010-10.org.openstack." + "x" * 160 + ":"  # ~600 names fill the buffer


def populate(tmp_path, kernel, count: int) -> None:
    """Records as the helper writes them and their live nodes, without a create per export."""
    records = tmp_path / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    chap = ChapCredentials("populateuser", "populate-secret1")
    for n in range(count):
        spec = ExportSpec(
            str(n),
            f"volume-{n}",
            f"{LONG_PREFIX}volume-{n}",
            disk(tmp_path, n),
            0,
            (Portal("127.0.0.1", 3260),),
            chap,
        )
        text = codec.render(spec, codec.FILE, "s")
        (records / spec.volume_name).write_text(text)
        kernel.nodes.append(Node(spec.iqn, n + 1, codec.parse(text, Path("r"), spec.volume_name, str(n), 0)))


@pytest.mark.parametrize("count", [500, 700])
def test_bulk_paths_see_every_recorded_export_past_the_cut_in_a_few_calls(tmp_path, kernel, count):
    populate(tmp_path, kernel, count)
    target = helper(tmp_path, kernel, target_prefix=LONG_PREFIX)
    lost = {0, 15, 499, count - 1}  # before and (with 700) after the cut
    kernel.nodes = [n for n in kernel.nodes if int(n.name.rsplit("-", 1)[1]) not in lost]
    report = target.restore_exports()
    assert sorted(map(int, report.started)) == sorted(lost) and report.ok
    starts = [a for a in kernel.argvs if a[1] == "-S"]
    assert len(starts) == len(lost), "only what was missing is started"
    lookups = [a for a in kernel.argvs if a[1] == "-c"]
    cut = count == 700
    # One view to see what is missing, one more to confirm what was started is live;
    # past the cut, each looks the unseen names up by name in one batch.
    view = [True] + [False] * (1 if cut else 0)
    assert [a[2] == "target=ALL" for a in lookups] == view + view
    assert sorted(kernel.live()) == sorted(f"{LONG_PREFIX}volume-{n}" for n in range(count))
    assert {d.state for d in target.reconcile()} == {"ok"}
    assert all(s.live for s in target.list_exports())
    # Cinder's start-up path: ensure_exports with the volumes it knows
    kernel.nodes = [n for n in kernel.nodes if not n.name.endswith(f"volume-{count - 2}")]
    kernel.argvs.clear()
    report = target.ensure_exports(None, [(vol(n), disk(tmp_path, n)) for n in range(count)])
    assert report.started == [str(count - 2)] and len(report.unchanged) == count - 1
    assert [a[1] for a in kernel.argvs].count("-S") == 1


def test_the_recorded_class_is_kept_while_the_device_stays(tmp_path, kernel):
    target = helper(tmp_path, kernel, iscsi_iotype="fileio")
    target.create_export(None, vol(1), disk(tmp_path, 1))
    changed = helper(tmp_path, kernel, iscsi_iotype="auto")  # a regular file: FILE either way
    changed.create_export(None, vol(1), disk(tmp_path, 1))
    assert kernel.nodes[0].block.device_class == codec.FILE


CXTADM_BLOCK = """
              target:
                       TargetName=iqn.2010-10.org.openstack:volume-7
                       TargetDevice={device}
                       PortalGroup=1@127.0.0.1:3260
                       AuthMethod=CHAP
                       Auth_CHAP_Policy=Oneway
                       Auth_CHAP_Initiator="cxtuser7":"cxtsecret7xyzab"
                 """


@pytest.mark.parametrize("block_device", [True, False])
def test_a_cxtadm_block_is_adopted_untouched_only_where_chiscsi_can_load_it(
    tmp_path, kernel, monkeypatch, block_device
):
    """CxtAdm names no class, so chiscsi reads BLK: right for an LV (a block device), refused
    for a regular file, where the block is rewritten with FILE and its credentials kept."""
    import iscsi_helper.targets.chiscsi as helper_module

    monkeypatch.setattr(helper_module, "is_block_device", lambda path: block_device)
    records = tmp_path / "state" / "volumes" / "cxt"
    records.mkdir(parents=True)
    original = CXTADM_BLOCK.format(device=disk(tmp_path, 7))
    (records / "volume-7").write_text(original)
    target = helper(tmp_path, kernel, iscsi_iotype="fileio")
    assert target.restore_exports().started == ["7"]
    text = (records / "volume-7").read_text()
    assert (text == original) is block_device
    assert kernel.nodes[0].block.device_class == (codec.BLK if block_device else codec.FILE)
    assert '"cxtuser7":"cxtsecret7xyzab"' in text
    assert target.devices.owner(disk(tmp_path, 7)) == "volume-7", "the restore made its claim"
