"""The chiscsi helper in the behaviour suite, on the ``iscsictl`` emulator.

The emulator stands where the product would: it is found as ``iscsictl``
on PATH, and its emulated kernel is read back here through its read-only
view (``lab.emulators.chiscsi.live``) to check what the target really
holds, CHAP secrets included (``iscsictl -c`` masks them, as chiscsi does).
"""

from __future__ import annotations

from pathlib import Path

from iscsi_helper.lab.emulators import chiscsi as emulator
from iscsi_helper.lab.emulators.chiscsi import live as emulator_live
from iscsi_helper.lab.emulators.shims import install_shims

from .harness import Harness, LiveView, PersistedView, register


@register("chiscsi")
class ChiscsiHarness(Harness):
    #: provider_location's number is the portal group tag (docs/helpers/chiscsi.md).
    location_tid_is_target_id = False

    def setup(self) -> None:
        self.emulator_state = self.root / "chiscsi-state"
        self.bin_dir = install_shims(self.root / "bin")
        self.monkeypatch.setenv("PATH", f"{self.bin_dir}:{self.env()['PATH']}")
        self.monkeypatch.setenv(emulator.STATE_ENV, str(self.emulator_state))
        self.monkeypatch.setenv("CHISCSI_EMULATOR_WIRE", "0")
        # iscsictl's lock file (the product's /etc/chelsio-iscsi/iscsictl.pid) holds the pid of
        # the last iscsictl: not target state, so outside the directories compared byte for byte.
        (self.root / "run").mkdir()
        self.monkeypatch.setenv("CHISCSI_EMULATOR_PIDFILE", str(self.root / "run" / "iscsictl.pid"))
        self.chiscsi_conf = self.root / "etc" / "chiscsi.conf"
        self.chiscsi_conf.parent.mkdir()
        self.chiscsi_conf.write_text("global:\n\tiscsi_offload_mode=AUTO\n")

    def overrides(self) -> dict[str, object]:
        return {"chiscsi_conf": str(self.chiscsi_conf)}

    def reboot(self) -> None:
        emulator.reset(self.emulator_state)

    def teardown(self) -> None:
        emulator.reset(self.emulator_state)

    def live(self, iqn: str) -> LiveView | None:
        target = emulator_live.live_target(self.emulator_state, iqn)
        if target is None:
            return None
        chap = None
        if target.auth_method == "CHAP" and target.initiator_credentials:
            chap = target.initiator_credentials[0]
        # ACLs count only with ACL_Enable=Yes (chiscsi's acl.c 308-336)
        return LiveView(
            target.name,
            {n: lun.path for n, lun in enumerate(target.luns)},
            chap,
            target.acl_initiators,
            target.target_credential,
            target.tid,
        )

    def persisted(self, volume_name: str, iqn: str) -> PersistedView | None:
        """The target file ``iscsictl -S`` loads for this volume, read key by key."""
        path = self.state_path / "volumes" / "cxt" / volume_name
        if not path.exists():
            return None
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values.setdefault(key, value)
        if values.get("TargetName") != iqn:
            return None

        def account(key: str) -> tuple[str, str] | None:
            if key not in values:
                return None
            user, _, secret = values[key].partition(":")
            return (user.strip('"'), secret.strip('"'))

        return PersistedView(
            iqn,
            values.get("TargetDevice", "").split(",")[0],
            account("Auth_CHAP_Initiator"),
            account("Auth_CHAP_Target"),
        )

    def drop_record(self, volume_name: str) -> None:
        (self.state_path / "volumes" / "cxt" / volume_name).unlink()

    def state_dirs(self) -> list[Path]:
        return [self.state_path, self.emulator_state, self.chiscsi_conf.parent]
