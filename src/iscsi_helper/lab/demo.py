"""``iscsi-helper demo``: the whole story of one export, on this machine, as a user would see it.

A 64 MiB file-backed volume is exported through the chiscsi helper; the
chiscsi product is played by the bundled ``iscsictl`` emulator, which
serves the target on the wire with the embedded iSCSI target. A real
initiator (libiscsi, qemu-io) then logs in with CHAP using the connection
info, writes and reads back data; the export is listed and removed.
Everything lives in a temporary directory; nothing needs root-only paths.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from iscsi_helper import cli, options, registry
from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.shims import install_shims
from iscsi_helper.lab.initiator import Initiator, InitiatorError
from iscsi_helper.lab.rig import free_port, private_args

VOLUME_ID = "8d1c2a5e-0f7b-4c3e-9a61-3e2d7f00c0de"
INITIATOR = "iqn.1993-08.org.debian:01:demo-compute-1"
SIZE = 64 << 20


def _step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}")


def run(workdir: Path | None = None) -> int:
    """Run the demo; returns 0 when every step did what it should."""
    keep = workdir is not None
    root = Path(workdir or tempfile.mkdtemp(prefix="iscsi-helper-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    state = root / "chiscsi-state"
    bin_dir = install_shims(root / "bin")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ[emulator.STATE_ENV] = str(state)
    os.environ["CHISCSI_EMULATOR_WIRE"] = "1"
    port = free_port()
    flags = [
        *private_args(root, "chiscsi"),
        "--target-port",
        str(port),
        "--chiscsi-conf",
        str(root / "chiscsi.conf"),
    ]
    conf = options.new_config(
        overrides={
            "target_helper": "chiscsi",
            "state_path": str(root / "state"),
            "oslo_concurrency.lock_path": str(root / "locks"),
            "target_ip_address": "127.0.0.1",
            "target_port": port,
            "chiscsi_conf": str(root / "chiscsi.conf"),
        }
    )
    target = registry.get_helper(conf)
    print("iscsi-helper demo: the chiscsi helper on the embedded chiscsi emulator")
    print(f"working directory: {root}")
    try:
        _step(1, f"Create a {SIZE >> 20} MiB file-backed volume")
        image = root / f"volume-{VOLUME_ID}.img"
        with open(image, "wb") as handle:
            handle.truncate(SIZE)
        print(f"    {image}")

        _step(2, "Export it: target_helper = chiscsi (iscsictl -S with a per-volume target file)")
        volume = {"id": VOLUME_ID, "name": f"volume-{VOLUME_ID}"}
        model = target.create_export(None, volume, str(image))
        user = model["auth"].split()[1]
        print(f"    provider_location  {model['location']}")
        print(f"    provider_auth      CHAP {user} ***")
        print(f"    target file        {Path(conf.volumes_dir) / 'cxt' / volume['name']} (mode 0600)")

        _step(3, f"Connection info for initiator {INITIATOR}")
        volume.update(provider_location=model["location"], provider_auth=model["auth"])
        info = target.initialize_connection(volume, {"initiator": INITIATOR})
        for key, value in sorted(info["data"].items()):
            print(f"    {key:20} {'***' if key == 'auth_password' else value}")

        _step(4, "A real initiator (libiscsi) logs in with CHAP")
        initiator = Initiator(INITIATOR, info["data"])
        inquiry = initiator.inquiry()
        for line in inquiry.splitlines():
            if any(k in line for k in ("Vendor", "Product", "Revision")):
                print(f"    {line.strip()}")
        capacity = initiator.capacity()
        print(f"    READ CAPACITY(16): {capacity} bytes ({capacity >> 20} MiB)")
        if capacity != SIZE:
            raise InitiatorError(f"capacity {capacity} != {SIZE}")

        _step(5, "Write 1 MiB of 0x5a at offset 4 MiB, read it back (qemu-io over iSCSI)")
        initiator.write_and_read_back(0x5A, offset=4 << 20, length=1 << 20)
        with open(image, "rb") as handle:
            handle.seek(4 << 20)
            on_disk = handle.read(1 << 20) == b"\x5a" * (1 << 20)
        print(f"    read back matches: yes; backing file holds the pattern: {'yes' if on_disk else 'NO'}")
        if not on_disk:
            return 1

        _step(6, "A wrong CHAP secret and a foreign initiator are refused")
        for who, props in (
            (INITIATOR, dict(info["data"], auth_password="wrong-secret-000")),
            ("iqn.1993-08.org.debian:01:intruder", info["data"]),
        ):
            try:
                Initiator(who, props).inquiry()
                print(f"    {who}: logged in (UNEXPECTED)")
                return 1
            except InitiatorError as err:
                print(f"    {who}: refused ({err})")

        _step(7, "iscsi-helper list")
        cli.main(flags + ["list"])

        _step(8, "Remove the export; the initiator can no longer log in")
        target.remove_export(None, volume)
        try:
            initiator.inquiry()
            print("    login still works (UNEXPECTED)")
            return 1
        except InitiatorError as err:
            print(f"    login refused: {err}")
        cli.main(flags + ["list"])
        print("\ndemo complete: export, CHAP login, write/read-back, list and removal all worked")
        return 0
    except Exception as err:  # noqa: BLE001 - the demo reports any failure as one line
        print(f"\ndemo FAILED: {err}")
        return 1
    finally:
        emulator.reset(state)  # stops the embedded target's daemon
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
