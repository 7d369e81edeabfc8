"""Every shell command shown in the docs runs, as shown, in a sandbox.

Each ```sh block of the documents below is run with bash -euo pipefail,
after rewriting the system paths it names (/etc/cinder, /var/lib/cinder,
/etc/iet, ...) into a temporary directory prepared as a node would be (a
cinder.conf, a CxtAdm file, an ietd.conf written by IetAdm), with the
chiscsi and IET emulators standing in for the products. Blocks of one
document run in order in one sandbox, so a walkthrough is tested as a
walkthrough. ``pip install`` blocks are run by test_packaging.py, which
reads them from here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iscsi_helper.lab.emulators import chiscsi as chiscsi_emulator
from iscsi_helper.lab.emulators.shims import install_shims

REPO = Path(__file__).resolve().parents[2]
DOCS = ["quickstart.md", "helpers/chiscsi.md", "migration.md", "cinder.md", "configuration.md"]
PREFIX = "iqn.2010-10.org.openstack:"
REWRITES = ("/etc/cinder", "/var/lib/cinder", "/etc/chelsio-iscsi", "/etc/iet", "/proc/net/iet")

CXTADM_FILE = """
              target:
                       TargetName=iqn.2010-10.org.openstack:volume-1
                       TargetDevice={root}/var/lib/cinder/disk1.img
                       PortalGroup=1@127.0.0.1:3260
                       AuthMethod=CHAP
                       Auth_CHAP_Policy=Oneway
                       Auth_CHAP_Initiator="cxtuser1":"cxtsecret1abcdef"
                 """
FOREIGN_IET = (
    "# ietd.conf of this node\n"
    "Target iqn.2001-04.com.example:storage.other\n"
    "\tLun 0 Path=/dev/sdz,Type=blockio\n"
)
IETADM_BLOCK = (
    "Target iqn.2010-10.org.openstack:volume-2\n"
    "\tIncomingUser ietuser2 ietsecret2abcdef\n"
    "\tLun 0 Path={root}/var/lib/cinder/disk2.img,Type=fileio\n"
)


def shell_blocks(doc: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (REPO / "docs" / doc).read_text(), re.S)


def packaging_blocks() -> list[str]:
    return [b for doc in DOCS for b in shell_blocks(doc) if "pip install" in b]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for sub in (
        "tmp",
        "etc/cinder",
        "etc/chelsio-iscsi",
        "etc/iet",
        "proc/net/iet",
        "var/lib/cinder/volumes/cxt",
    ):
        (root / sub).mkdir(parents=True)
    (root / "etc/chelsio-iscsi/chiscsi.conf").write_text("global:\n\tiscsi_offload_mode=AUTO\n")
    for disk in ("disk1.img", "disk2.img"):
        with open(root / "var/lib/cinder" / disk, "wb") as handle:
            handle.truncate(4 << 20)
    # cinder.conf files as a deployment has them: one enabled backend, its target options in
    # its own section (the command line reads them there, as Cinder does), host ones in DEFAULT.
    locks = "\n[oslo_concurrency]\nlock_path = /var/lib/cinder/lock\n"
    (root / "etc/cinder/cinder.conf").write_text(
        rewrite(
            "[DEFAULT]\nenabled_backends = lvm-chiscsi\nstate_path = /var/lib/cinder\n\n"
            "[lvm-chiscsi]\nvolume_driver = iscsi_helper.cinder.driver.LVMVolumeDriver\n"
            "volume_group = cinder-volumes\ntarget_helper = iscsictl\n"
            "target_ip_address = 127.0.0.1\nchiscsi_conf = /etc/chelsio-iscsi/chiscsi.conf\n" + locks,
            root,
        )
    )
    (root / "etc/cinder/cinder-iet.conf").write_text(
        rewrite(
            "[DEFAULT]\nenabled_backends = lvm-iet\nstate_path = /var/lib/cinder\n\n"
            "[lvm-iet]\nvolume_driver = iscsi_helper.cinder.driver.LVMVolumeDriver\n"
            "iscsi_helper_target = iet\ntarget_ip_address = 127.0.0.1\n"
            "iet_conf = /etc/iet/ietd.conf\niet_proc_dir = /proc/net/iet\n" + locks,
            root,
        )
    )
    (root / "var/lib/cinder/volumes/cxt/volume-1").write_text(CXTADM_FILE.format(root=root))
    (root / "etc/iet/ietd.conf").write_text(FOREIGN_IET + IETADM_BLOCK.format(root=root))
    bin_dir = install_shims(tmp_path / "emulator-bin")
    # This interpreter's own iscsi-helper (its venv's bin), not one found first on PATH.
    cli_dir = Path(sys.executable).parent
    if not (cli_dir / "iscsi-helper").exists():
        cli_dir = Path(shutil.which("iscsi-helper") or sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{cli_dir}:{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TMPDIR": str(root / "tmp"),  # mktemp -d lands in the sandbox
        chiscsi_emulator.STATE_ENV: str(tmp_path / "chiscsi-state"),
        "CHISCSI_EMULATOR_WIRE": "0",
        "IET_EMULATOR_STATE": str(tmp_path / "iet-state"),
        "IET_EMULATOR_PROC": str(root / "proc/net/iet"),
        "IET_EMULATOR_WIRE": "0",
    }
    yield root, env
    chiscsi_emulator.reset(tmp_path / "chiscsi-state")


#: The docs' example addresses, as portals this host can listen on (chiscsi starts a
#: target only on portals it can bind, and so does its emulator).
ADDRESSES = {"192.0.2.10": "127.0.0.1", "2001:db8::10": "::1"}


def rewrite(text: str, root: Path) -> str:
    for path in REWRITES:
        text = text.replace(path, f"{root}{path}")
    for documented, local in ADDRESSES.items():
        text = text.replace(documented, local)
    return text


def run_block(block: str, root: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", rewrite(block, root)],
        cwd=root / "tmp",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"block failed:\n{block}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("doc", DOCS)
def test_every_shell_block_runs(doc, sandbox):
    root, env = sandbox
    outputs = [run_block(b, root, env) for b in shell_blocks(doc) if "pip install" not in b]
    check = CHECKS.get(doc)
    if check:
        check(root, env, outputs)


def cli_json(root: Path, env: dict[str, str], conf: str, *args: str):
    return json.loads(
        run_block(f"iscsi-helper --config-file /etc/cinder/{conf} {' '.join(args)} --json", root, env)
    )


def check_quickstart(root, env, outputs):
    assert list(root.glob("tmp/*/iscsi-helper.conf")), "the walkthrough works in its own mktemp -d"
    assert any("provider_location" in o and "127.0.0.1:3260,1 " in o for o in outputs)
    assert "export removed" in outputs[-1]
    assert "no such export (exit 3)" in outputs[-1]
    assert "volume 1: access of iqn.1993-08.org.debian:01:client revoked" in outputs[-1]


def check_chiscsi(root, env, outputs):
    shown = outputs[-1]
    # the cat, then iscsictl -c target=<iqn>'s detailed output (which alone has ACL_Enable)
    assert shown.count("\tTargetName=iqn.2010-10.org.openstack:volume-1\n") == 2
    assert "\tACL_Enable=No\n" in shown and "********" in shown
    # ends with the removal; the ls after it printed nothing: the record is gone
    assert shown.rstrip().endswith("volume 1: export removed")
    assert list(root.glob("tmp/*/volumes/cxt")), "the walkthrough's state_path is under $TMPDIR"
    assert not list(root.glob("tmp/*/volumes/cxt/volume-1"))


def check_migration(root, env, outputs):
    cxt = root / "var/lib/cinder/volumes/cxt/volume-1"
    # CxtAdm names no device class, so chiscsi would read BLK, which refuses this regular
    # file: the block is rewritten with FILE, its credentials kept (docs/migration.md).
    text = cxt.read_text()
    assert f"\tTargetDevice={root}/var/lib/cinder/disk1.img,FILE," in text
    assert '\tAuth_CHAP_Initiator="cxtuser1":"cxtsecret1abcdef"\n' in text
    rows = cli_json(root, env, "cinder.conf", "list")
    assert [(r["volume_id"], r["live"], r["provider_auth"]) for r in rows] == [
        ("1", True, "CHAP cxtuser1 ***")
    ]
    ietd = (root / "etc/iet/ietd.conf").read_text()
    assert ietd.startswith(FOREIGN_IET), "other software's ietd.conf lines are kept byte for byte"
    assert "IncomingUser ietuser2 ietsecret2abcdef" in ietd
    rows = cli_json(root, env, "cinder-iet.conf", "list")
    assert [(r["volume_id"], r["live"], r["provider_auth"]) for r in rows] == [
        ("2", True, "CHAP ietuser2 ***")
    ]


def every_doc() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_docs_name_no_build_machine_path_and_no_fixed_temporary_directory():
    """Examples make their own directory (mktemp -d): a fixed /tmp path is shared by every user."""
    for doc in every_doc():
        text = doc.read_text()
        assert "/work/" not in text, f"{doc.relative_to(REPO)} names a path of our build machines"
        fixed = re.findall(r"(?<![\w}])/tmp/[\w.-]+", text)
        assert not fixed, f"{doc.relative_to(REPO)}: fixed temporary paths {fixed}"


def test_every_document_with_commands_is_checked():
    for doc in DOCS:
        runnable = [b for b in shell_blocks(doc) if "pip install" not in b]
        if runnable:
            assert doc in CHECKS, f"{doc}: its commands run but nothing checks what they did"


def check_cinder(root, env, outputs):
    (output,) = outputs  # one block: list -l, then the dry run
    listing, dry_run = output.splitlines()[:2], "\n".join(output.splitlines()[2:])
    assert listing[0].split() == ["VOLUME", "LIVE", "TID", "IQN", "DEVICE", "PORTALS"]
    row = listing[1].split()
    assert row[:2] == ["1", "NO"] and row[4] == f"{root}/var/lib/cinder/disk1.img", (
        "the CxtAdm file, read through the backend section's options"
    )
    assert "missing-live  1 (would start)" in dry_run and "drift left (exit 1)" in dry_run
    assert not list(root.glob("var/lib/cinder/volumes/cxt/.tmp-*")), "a dry run writes nothing"


CHECKS = {
    "quickstart.md": check_quickstart,
    "helpers/chiscsi.md": check_chiscsi,
    "migration.md": check_migration,
    "cinder.md": check_cinder,
}
