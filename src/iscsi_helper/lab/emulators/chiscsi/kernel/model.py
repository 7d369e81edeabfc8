"""A target node as the kernel keeps it (``struct iscsi_node``), and its display.

Display sources (under src/chiscsi/): private/klib/common/iscsi_node.c
875-950 (``node_config_display``: the summary starts ``\\nTARGET: <name>,
id=<n>, login_ip=<n>``; the detailed form ``\\ntarget:`` then the settings),
private/klib/target/config_api.c 14-134 (settings lines and their order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iscsi_helper.lab.emulators.chiscsi.kernel import acl, chap, luns, portals
from iscsi_helper.lab.emulators.chiscsi.kernel.portals import TargetPortal

SESSION_FIELDS = (
    ("ErrorRecoveryLevel", "erl"),
    ("InitialR2T", "initial_r2t"),
    ("ImmediateData", "immediate_data"),
    ("DataPDUInOrder", "data_pdu_in_order"),
    ("DataSequenceInOrder", "data_sequence_in_order"),
    ("MaxConnections", "max_conns"),
    ("MaxOutstandingR2T", "max_r2t"),
    ("FirstBurstLength", "first_burst"),
    ("MaxBurstLength", "max_burst"),
    ("DefaultTime2Wait", "time2wait"),
    ("DefaultTime2Retain", "time2retain"),
)
BOOLEAN_SESSION = {"initial_r2t", "immediate_data", "data_pdu_in_order", "data_sequence_in_order"}


@dataclass
class Node:
    id: int
    name: str
    alias: str = ""
    offline: bool = False
    session: dict[str, int] = field(default_factory=dict)
    header_digest: list[str] = field(default_factory=lambda: ["None"])
    data_digest: list[str] = field(default_factory=lambda: ["None"])
    max_recv_data_segment: int = 8192
    chap: chap.ChapConfig = field(default_factory=lambda: chap.ChapConfig(["CHAP", "None"], False))
    acl_enabled: bool = False
    isns_register: bool = True
    shadow_mode: bool = False
    sess_max_cmds: int = 128
    portals: list[TargetPortal] = field(default_factory=list)
    luns: list[luns.Lun] = field(default_factory=list)
    acls: list[acl.AclEntry] = field(default_factory=list)
    redirect_on: bool = False

    # -- persistence -------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "offline": self.offline,
            "session": self.session,
            "header_digest": self.header_digest,
            "data_digest": self.data_digest,
            "max_recv_data_segment": self.max_recv_data_segment,
            "chap": self.chap.to_dict(),
            "acl_enabled": self.acl_enabled,
            "isns_register": self.isns_register,
            "shadow_mode": self.shadow_mode,
            "sess_max_cmds": self.sess_max_cmds,
            "portals": [p.to_dict() for p in self.portals],
            "luns": [lun.to_dict() for lun in self.luns],
            "acls": [a.to_dict() for a in self.acls],
            "redirect_on": self.redirect_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            alias=str(data["alias"]),
            offline=bool(data["offline"]),
            session={str(k): int(v) for k, v in data["session"].items()},
            header_digest=list(data["header_digest"]),
            data_digest=list(data["data_digest"]),
            max_recv_data_segment=int(data["max_recv_data_segment"]),
            chap=chap.ChapConfig.from_dict(data["chap"]),
            acl_enabled=bool(data["acl_enabled"]),
            isns_register=bool(data["isns_register"]),
            shadow_mode=bool(data["shadow_mode"]),
            sess_max_cmds=int(data["sess_max_cmds"]),
            portals=[portals.TargetPortal.from_dict(p) for p in data["portals"]],
            luns=[luns.Lun.from_dict(lun) for lun in data["luns"]],
            acls=[acl.AclEntry.from_dict(a) for a in data["acls"]],
            redirect_on=bool(data["redirect_on"]),
        )

    @property
    def started_portals(self) -> list[TargetPortal]:
        return [p for p in self.portals if p.started]


# --------------------------------------------------------------------------
# display
# --------------------------------------------------------------------------


def _digests(values: list[str]) -> str:
    """``digests_sprintf``: at most the first two values."""
    return ",".join(values[:2])


def settings_display(node: Node) -> str:
    """``chiscsi_target_info_sprintf`` (config_api.c 119-134)."""
    out = f"\tTargetName={node.name}\n"
    if node.alias:
        out += f"\tTargetAlias={node.alias}\n"
    for label, key in SESSION_FIELDS:
        value = node.session[key]
        out += f"\t{label}={('Yes' if value else 'No') if key in BOOLEAN_SESSION else value}\n"
    out += f"\tHeaderDigest={_digests(node.header_digest)}\n"
    out += f"\tDataDigest={_digests(node.data_digest)}\n"
    out += f"\tMaxRecvDataSegmentLength={node.max_recv_data_segment}\n"
    out += chap.settings_display(node.chap)
    out += f"\tACL_Enable={'Yes' if node.acl_enabled else 'No'}\n"
    out += f"\tRegisteriSNS={'Yes' if node.isns_register else 'No'}\n"
    out += f"\tShadowMode={'Yes' if node.shadow_mode else 'No'}\n"
    out += f"\tTargetSessionMaxCmd={node.sess_max_cmds}\n"
    return out


def config_display(node: Node, detail: bool, login_ip: int = 0) -> str:
    """``node_config_display``: what ``-c`` receives for one target."""
    if not detail:
        out = f"\nTARGET: {node.name}, id={node.id}, login_ip={login_ip}\n"
    else:
        out = "\ntarget:\n" + settings_display(node)
        if node.acl_enabled:
            out += acl.display(node.acls)
        out += chap.credentials_display(node.chap)
    out += portals.display(node.portals)
    out += "".join(luns.display(lun) for lun in node.luns)
    return out
