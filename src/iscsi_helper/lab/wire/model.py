"""What the wire target serves, as plain data that survives a JSON round trip.

The emulators (iscsictl, ietadm) translate their own configuration into these
objects; the daemon persists them one file per target so that it can reload
what it served after a restart without the emulators replaying anything.
Validation happens here, once, so that a bad request fails in the caller's
process with a clear message instead of inside the daemon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The package's one portal spelling; re-exported for the wire target's modules.
from iscsi_helper.formats import format_portal as format_portal

AUTH_METHODS = ("None", "CHAP", "None,CHAP")
CHAP_POLICIES = ("Oneway", "Mutual")
BLOCK_SIZES = (512, 1024, 2048, 4096)


def normalize_host(host: str) -> str:
    """Portal hosts are kept unbracketed; brackets are a URL/SendTargets concern."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


@dataclass
class WireLun:
    """One logical unit backed by a regular file or a block device.

    The size is never stored: it is read from the backing store whenever a
    command needs it, so growing the file is visible to READ CAPACITY.
    """

    path: str
    read_only: bool = False
    serial: str | None = None
    device_id: str | None = None
    wwn: str | None = None
    block_size: int = 512
    vendor: str = "ISCSIHLP"
    product: str = "WIRE DISK"

    def validate(self) -> None:
        if not self.path:
            raise ValueError("WireLun.path must not be empty")
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"WireLun.block_size must be one of {BLOCK_SIZES}, got {self.block_size}")
        for name in ("serial", "device_id", "wwn", "vendor", "product"):
            value = getattr(self, name)
            if value is not None and (not value.isascii() or not value.isprintable()):
                raise ValueError(f"WireLun.{name} must be printable ASCII")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "read_only": self.read_only,
            "serial": self.serial,
            "device_id": self.device_id,
            "wwn": self.wwn,
            "block_size": self.block_size,
            "vendor": self.vendor,
            "product": self.product,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WireLun:
        known = {
            k: data[k]
            for k in ("path", "read_only", "serial", "device_id", "wwn", "block_size", "vendor", "product")
            if k in data
        }
        lun = cls(**known)
        lun.validate()
        return lun


@dataclass
class WireTarget:
    """One iSCSI target: its LUNs (numbered from 0), portals, auth and ACL.

    Secrets are excluded from ``repr`` so that logging a target never leaks
    CHAP credentials.
    """

    iqn: str
    luns: list[WireLun]
    portals: list[tuple[str, int]]
    auth_method: str = "None,CHAP"
    chap_policy: str = "Oneway"
    initiator_credentials: list[tuple[str, str]] = field(default_factory=list, repr=False)
    target_credential: tuple[str, str] | None = field(default=None, repr=False)
    acl: list[str] = field(default_factory=list)
    tpgt: int = 1

    def __post_init__(self) -> None:
        self.portals = [(normalize_host(h), int(p)) for h, p in self.portals]
        self.initiator_credentials = [(str(u), str(s)) for u, s in self.initiator_credentials]
        if self.target_credential is not None:
            user, secret = self.target_credential
            self.target_credential = (str(user), str(secret))

    def validate(self) -> None:
        iqn = self.iqn
        if not iqn or not iqn.isascii() or any(c.isspace() or c in "\0=" for c in iqn) or len(iqn) > 223:
            raise ValueError(f"invalid target name {iqn!r}")
        if not iqn.startswith(("iqn.", "eui.", "naa.")):
            raise ValueError(f"target name {iqn!r} must start with iqn., eui. or naa.")
        if self.auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {AUTH_METHODS}, got {self.auth_method!r}")
        if self.chap_policy not in CHAP_POLICIES:
            raise ValueError(f"chap_policy must be one of {CHAP_POLICIES}, got {self.chap_policy!r}")
        if self.auth_method == "CHAP" and not self.initiator_credentials:
            raise ValueError("auth_method CHAP needs at least one initiator credential")
        if self.chap_policy == "Mutual" and self.auth_method != "None" and self.target_credential is None:
            raise ValueError("chap_policy Mutual needs a target_credential")
        target_side = [self.target_credential] if self.target_credential else []
        for user, secret in self.initiator_credentials + target_side:
            if not user or not secret or "\0" in user + secret:
                raise ValueError("CHAP user names and secrets must be non-empty and contain no NUL")
        for host, port in self.portals:
            if not host or not 0 < port < 65536:
                raise ValueError(f"invalid portal {host!r}:{port}")
        if not 0 < self.tpgt < 65536:
            raise ValueError("tpgt must be in 1..65535")
        for lun in self.luns:
            lun.validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "iqn": self.iqn,
            "luns": [lun.to_dict() for lun in self.luns],
            "portals": [[h, p] for h, p in self.portals],
            "auth_method": self.auth_method,
            "chap_policy": self.chap_policy,
            "initiator_credentials": [[u, s] for u, s in self.initiator_credentials],
            "target_credential": list(self.target_credential) if self.target_credential else None,
            "acl": list(self.acl),
            "tpgt": self.tpgt,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WireTarget:
        tc = data.get("target_credential")
        target = cls(
            iqn=data["iqn"],
            luns=[WireLun.from_dict(d) for d in data.get("luns", [])],
            portals=[(h, p) for h, p in data.get("portals", [])],
            auth_method=data.get("auth_method", "None,CHAP"),
            chap_policy=data.get("chap_policy", "Oneway"),
            initiator_credentials=[(u, s) for u, s in data.get("initiator_credentials", [])],
            target_credential=(tc[0], tc[1]) if tc else None,
            acl=list(data.get("acl", [])),
            tpgt=int(data.get("tpgt", 1)),
        )
        target.validate()
        return target

    @classmethod
    def from_json(cls, text: str) -> WireTarget:
        return cls.from_dict(json.loads(text))

    def secrets(self) -> list[str]:
        """Every secret in this target, for :func:`iscsi_helper.secretmask.handling_secrets`."""
        out = [s for _, s in self.initiator_credentials]
        if self.target_credential:
            out.append(self.target_credential[1])
        return out
