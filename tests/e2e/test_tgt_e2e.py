"""tgt end to end: the helper configures a private, real tgtd and a real initiator uses it.

libiscsi (``iscsi-inq``, ``iscsi-readcapacity16``) and ``qemu-io`` log in
with exactly the properties ``initialize_connection`` returned, through
:class:`iscsi_helper.lab.initiator.Initiator`, which passes CHAP secrets in the
environment (``LIBISCSI_CHAP_PASSWORD``) and a 0600 file (qemu's secret
object), never on a command line.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from iscsi_helper import options, registry
from iscsi_helper.adapters.tgtadm import TgtLiveTarget, parse_show
from iscsi_helper.exception import CommandFailed, TargetCreateFailed
from iscsi_helper.executor import CommandResult, Executor
from iscsi_helper.lab.initiator import Initiator, InitiatorError
from iscsi_helper.lab.rig import TgtdProcess, running_tgtd

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("tgtd", "tgtadm", "iscsi-inq", "iscsi-readcapacity16", "qemu-io")),
    reason="needs tgt, libiscsi-bin and qemu-utils (scripts/setup.sh installs them)",
)

INITIATOR = "iqn.1993-08.org.debian:01:e2e-compute-1"
INTRUDER = "iqn.1993-08.org.debian:01:e2e-intruder"
MiB = 1 << 20


@dataclass
class FailingExecutor(Executor):
    """Runs commands for real, except one tgtadm step, which fails as tgtadm would."""

    fail_on: tuple[str, ...] = ()

    def run(self, *argv: str, **kwargs) -> CommandResult:  # type: ignore[override]
        if self.fail_on and all(part in argv for part in self.fail_on):
            for observer in self.observers:
                observer(tuple(argv))
            raise CommandFailed(
                command=" ".join(argv[:2]), exit_code=22, stdout="", stderr="tgtadm: injected failure"
            )
        return super().run(*argv, **kwargs)


@pytest.fixture
def tgtd(tmp_path):
    with running_tgtd(tmp_path / "tgtd.log") as process:  # stopped by PID, whatever the test did
        yield process


@pytest.fixture
def make_target(tgtd, tmp_path):
    calls: list[tuple[str, ...]] = []

    def make(fail_on: tuple[str, ...] = (), **overrides: object):
        conf = options.new_config(
            overrides={
                "target_helper": "tgtadm",
                "state_path": str(tmp_path / "state"),
                "target_ip_address": "127.0.0.1",
                "target_port": tgtd.portal_port,
                "oslo_concurrency.lock_path": str(tmp_path / "locks"),
                "tgt_control_port": tgtd.control_port,
                **overrides,
            }
        )
        executor = FailingExecutor(timeout=30, observers=[calls.append], fail_on=fail_on)
        return registry.get_helper(conf, executor)

    make.calls = calls  # type: ignore[attr-defined]
    return make


def image(tmp_path: Path, name: str, size: int) -> str:
    path = tmp_path / f"{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def stored(n: int, model: dict[str, str]) -> dict[str, str]:
    return {
        "id": str(n),
        "name": f"volume-{n}",
        "provider_location": model["location"],
        "provider_auth": model["auth"],
    }


def show(tgtd: TgtdProcess) -> dict[str, TgtLiveTarget]:
    return parse_show(tgtd.tgtadm("--mode", "target", "--op", "show").stdout)


def accounts(tgtd: TgtdProcess) -> list[str]:
    """User names tgtd holds (it prints nothing at all when there are none)."""
    lines = tgtd.tgtadm("--mode", "account", "--op", "show").stdout.splitlines()
    return [line.strip() for line in lines[1:] if line.strip()]


def test_real_initiator_logs_in_with_chap_reads_writes_and_is_refused_after_removal(
    make_target, tgtd, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    target = make_target()
    path = image(tmp_path, "volume-1", 64 * MiB)
    model = target.create_export(None, {"id": "1", "name": "volume-1"}, path)
    volume = stored(1, model)
    props = target.initialize_connection(volume, {"initiator": INITIATOR})["data"]
    assert props["target_lun"] == 1 and props["auth_method"] == "CHAP"
    assert props["target_portal"] == f"127.0.0.1:{tgtd.portal_port}"

    initiator = Initiator(INITIATOR, props)
    assert "DIRECT_ACCESS" in initiator.inquiry()
    assert initiator.capacity() == 64 * MiB
    initiator.write_and_read_back(0x5A, offset=3 * MiB, length=512 << 10)
    with open(path, "rb") as handle:
        handle.seek(3 * MiB)
        assert handle.read(512 << 10) == b"\x5a" * (512 << 10), "the bytes reached the file"

    wrong = dict(props, auth_password=props["auth_password"][::-1])
    with pytest.raises(InitiatorError, match="Authentication failure"):
        Initiator(INITIATOR, wrong).inquiry()
    with pytest.raises(InitiatorError):
        Initiator(INTRUDER, props).inquiry()  # the ACL admits only the connector's IQN

    secret = props["auth_password"]
    with_secret = [argv for argv in make_target.calls if any(secret in a for a in argv)]
    assert len(with_secret) == 1 and "--password" in with_secret[0], (
        "only tgtadm's account creation carries the secret (tgtadm has no other way)"
    )
    assert secret not in caplog.text

    target.remove_export(None, volume)
    with pytest.raises(InitiatorError):
        initiator.inquiry()
    assert show(tgtd) == {}
    assert accounts(tgtd) == []


def test_restart_of_tgtd_then_restore_serves_the_same_properties(make_target, tgtd, tmp_path):
    target = make_target()
    path = image(tmp_path, "volume-2", 8 * MiB)
    model = target.create_export(None, {"id": "2", "name": "volume-2"}, path)
    props = target.initialize_connection(stored(2, model), {"initiator": INITIATOR})["data"]
    record = tmp_path / "state" / "volumes" / "tgt" / "volume-2"
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    tgtd.restart()
    with pytest.raises(InitiatorError):
        Initiator(INITIATOR, props).inquiry()
    report = make_target().restore_exports()
    assert report.started == ["2"] and report.ok
    assert Initiator(INITIATOR, props).capacity() == 8 * MiB
    with pytest.raises(InitiatorError):
        Initiator(INTRUDER, props).inquiry()  # the ACL came back too


def test_extend_makes_tgtd_report_the_new_size(make_target, tmp_path):
    target = make_target()
    path = image(tmp_path, "volume-3", 8 * MiB)
    model = target.create_export(None, {"id": "3", "name": "volume-3"}, path)
    props = target.initialize_connection(stored(3, model), {"initiator": INITIATOR})["data"]
    with open(path, "r+b") as handle:
        handle.truncate(24 * MiB)
    assert Initiator(INITIATOR, props).capacity() == 8 * MiB  # tgtd read the size once
    target.extend_target(stored(3, model))
    assert Initiator(INITIATOR, props).capacity() == 24 * MiB


@pytest.mark.parametrize(
    "step",
    [
        ("--mode", "logicalunit", "--op", "new"),
        ("--mode", "account", "--op", "bind"),
        ("--mode", "target", "--op", "bind"),
    ],
)
def test_a_failed_create_leaves_no_target_no_account_and_no_record(make_target, tgtd, tmp_path, step):
    target = make_target(fail_on=step)
    with pytest.raises(TargetCreateFailed, match="injected failure"):
        target.create_export(None, {"id": "4", "name": "volume-4"}, image(tmp_path, "v4", MiB))
    assert show(tgtd) == {}
    assert accounts(tgtd) == []
    assert not (tmp_path / "state" / "volumes" / "tgt" / "volume-4").exists()
    assert not list((tmp_path / "state" / "volumes" / "tgt" / ".accounts").glob("*/*"))


def test_a_failed_acl_change_restores_the_previous_acl(make_target, tgtd, tmp_path):
    model = make_target().create_export(None, {"id": "5", "name": "volume-5"}, image(tmp_path, "v5", MiB))
    record = tmp_path / "state" / "volumes" / "tgt" / "volume-5"
    before_text, before_live = record.read_text(), show(tgtd)
    failing = make_target(fail_on=("--op", "unbind", "-I", "ALL"))
    with pytest.raises(TargetCreateFailed):
        failing.initialize_connection(stored(5, model), {"initiator": INITIATOR})
    assert show(tgtd) == before_live and record.read_text() == before_text


def test_a_shared_chap_account_outlives_the_removal_of_one_export(make_target, tmp_path):
    target = make_target(use_chap_auth=True, chap_username="cinder-node", chap_password="shared-secret-123")
    models = {
        n: target.create_export(None, {"id": str(n), "name": f"volume-{n}"}, image(tmp_path, f"v{n}", MiB))
        for n in (6, 7)
    }
    assert models[6]["auth"] == models[7]["auth"] == "CHAP cinder-node shared-secret-123"
    target.remove_export(None, stored(6, models[6]))
    props = target.initialize_connection(stored(7, models[7]), {"initiator": INITIATOR})["data"]
    assert "DIRECT_ACCESS" in Initiator(INITIATOR, props).inquiry()
    with pytest.raises(InitiatorError, match="Authentication failure"):
        Initiator(INITIATOR, dict(props, auth_password="not-the-secret-1")).inquiry()


def test_a_user_name_with_another_secret_is_refused_not_overwritten(make_target, tmp_path):
    target = make_target()
    first = target.create_export(
        None,
        {"id": "8", "name": "volume-8", "provider_auth": "CHAP same-user first-secret-123"},
        image(tmp_path, "v8", MiB),
    )
    with pytest.raises(TargetCreateFailed, match="one secret per user name"):
        target.create_export(
            None,
            {"id": "9", "name": "volume-9", "provider_auth": "CHAP same-user other-secret-456"},
            image(tmp_path, "v9", MiB),
        )
    props = target.initialize_connection(stored(8, first), {"initiator": INITIATOR})["data"]
    assert "DIRECT_ACCESS" in Initiator(INITIATOR, props).inquiry()
