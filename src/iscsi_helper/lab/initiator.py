"""A real iSCSI initiator driven by connection properties, to prove an export works.

The demo and the end-to-end tests hand this module exactly what
``initialize_connection`` returned, and it logs in with libiscsi's tools
(``iscsi-inq``, ``iscsi-readcapacity16``) and qemu's iSCSI block driver
(``qemu-io``, for writing and reading back data). Secrets travel through
the environment (libiscsi's ``LIBISCSI_CHAP_*``) and a 0600 file (qemu's
``secret`` object), never through a command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iscsi_helper.formats import format_portal, parse_portal


class InitiatorError(Exception):
    """The initiator could not log in or run its command; the message is the tool's."""


@dataclass(frozen=True)
class LunPath:
    """One path to the LUN: a portal plus the IQN and LUN reached through it."""

    host: str
    port: int
    iqn: str
    lun: int

    @property
    def url(self) -> str:
        return f"iscsi://{format_portal(self.host, self.port)}/{self.iqn}/{self.lun}"


def paths(properties: Mapping[str, Any]) -> list[LunPath]:
    """Every path the properties describe (the multipath lists when present)."""
    portals = properties.get("target_portals") or [properties["target_portal"]]
    iqns = properties.get("target_iqns") or [properties["target_iqn"]] * len(portals)
    luns = properties.get("target_luns") or [properties["target_lun"]] * len(portals)
    result = []
    for portal, iqn, lun in zip(portals, iqns, luns, strict=True):
        parsed = parse_portal(portal)
        result.append(LunPath(parsed.ip, parsed.port, iqn, int(lun)))
    return result


class Initiator:
    """Runs initiator tools as ``initiator_name`` against one set of connection properties."""

    def __init__(self, initiator_name: str, properties: Mapping[str, Any], timeout: float = 60.0) -> None:
        self.name = initiator_name
        self.properties = dict(properties)
        self.timeout = timeout

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_CHAP_")}
        if self.properties.get("auth_method") == "CHAP":
            env["LIBISCSI_CHAP_USERNAME"] = self.properties["auth_username"]
            env["LIBISCSI_CHAP_PASSWORD"] = self.properties["auth_password"]
        return env

    def _run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, env=self._env(), timeout=self.timeout)
        if done.returncode != 0:
            message = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
            raise InitiatorError(message.splitlines()[-1])
        return done.stdout

    def inquiry(self, path: LunPath | None = None) -> str:
        """Standard INQUIRY through a full login (CHAP included)."""
        path = path or paths(self.properties)[0]
        return self._run(["iscsi-inq", "-i", self.name, path.url])

    def capacity(self, path: LunPath | None = None) -> int:
        """The LUN's size in bytes as READ CAPACITY(16) reports it."""
        path = path or paths(self.properties)[0]
        out = self._run(["iscsi-readcapacity16", "-s", "-i", self.name, path.url])
        match = re.search(r"\d+", out)
        if not match:
            raise InitiatorError(f"unexpected iscsi-readcapacity16 output {out!r}")
        return int(match.group())

    def write_and_read_back(
        self, pattern: int, offset: int = 0, length: int = 1 << 20, path: LunPath | None = None
    ) -> str:
        """Write ``pattern`` bytes and read them back over iSCSI; qemu-io checks every byte."""
        path = path or paths(self.properties)[0]
        portal = format_portal(path.host, path.port)
        options = [
            f"driver=iscsi,transport=tcp,portal={portal},target={path.iqn},lun={path.lun}",
            f"initiator-name={self.name}",
        ]
        argv = ["qemu-io", "--image-opts"]
        with tempfile.TemporaryDirectory() as scratch:
            if self.properties.get("auth_method") == "CHAP":
                secret_file = os.path.join(scratch, "chap")
                fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(self.properties["auth_password"])
                argv = ["qemu-io", "--object", f"secret,id=chap0,file={secret_file}", "--image-opts"]
                options.append(f"user={self.properties['auth_username']},password-secret=chap0")
            ops = [f"write -P {pattern:#x} {offset} {length}", f"read -P {pattern:#x} {offset} {length}"]
            out = self._run(argv + [c for op in ops for c in ("-c", op)] + [",".join(options)])
        if "Pattern verification failed" in out or "read " not in out:
            raise InitiatorError(f"read-back did not match the written pattern: {out.strip()[-200:]}")
        return out
