"""Adding, reconfiguring and removing target nodes: the kernel side of ``-S``/``-s``.

Sources (under src/chiscsi/):
- ``iscsi_node_read_config``: private/klib/common/iscsi_node.c 248-458 (decode
  the tables, CHAP, leftovers, defaults, validation, name/alias uniqueness on
  add, then a node is allocated (and takes the next id, 46-81) before its
  portals, LUNs and ACLs are set up: a failure past that point still uses up an
  id);
- validation: iscsi_config_keys.c 813-878, iscsi_session_keys.c 282-332,
  iscsi_connection_keys.c 475-502;
- ``iscsi_node_add``: iscsi_node.c 460-522 (attach every LUN, queue the node,
  "target <name> added.", and after the first success the hidden discovery
  node, which takes an id too (iscsi_target_config.c 347-460, enqueue=0));
- ``iscsi_node_reconfig``: iscsi_node.c 591-802 (a temporary node takes an
  id; LUN class, RO and NONEXCL may not change; "target <name> updated.");
- ``iscsi_node_remove``: iscsi_node.c 163-246 (mark offline, close sessions,
  stop portals, release LUNs, wait up to 30 s for the sessions; "<name>
  busy." leaves the node queued but offline, "<name> removed." frees it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from iscsi_helper.lab.emulators.chiscsi.kernel import acl, chap, keys, luns, portals
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError
from iscsi_helper.lab.emulators.chiscsi.kernel.model import SESSION_FIELDS, Node

STOP_WAIT_SECONDS = 30  # iscsi_node.c 202-205


class Kernel(Protocol):
    """What node operations need from the emulated kernel's state."""

    def find_by_name(self, name: str) -> Node | None: ...
    def alias_in_use(self, alias: str) -> bool: ...
    def allocate_id(self) -> int: ...
    def default_node_exists(self) -> bool: ...
    def create_default_node(self) -> None: ...
    def acquire_portal(self, ip: bytes, port: int) -> bool: ...
    def release_portals(self, portal_list: list[portals.TargetPortal]) -> None: ...
    def lun_holders(self, path: str) -> list[tuple[int, str, str]]: ...
    def device_held_exclusively(self, rdev: int) -> bool: ...
    def commit_new(self, node: Node) -> None: ...
    def commit_update(self, old: Node, new: Node) -> None: ...
    def commit_offline(self, node: Node) -> None: ...
    def commit_removed(self, node: Node) -> None: ...


def _session_settings(decoded: dict[str, list[Any]]) -> dict[str, int]:
    settings = {}
    for label, attr in SESSION_FIELDS:
        settings[attr] = int(keys.value_or_default(keys.SESSION_TABLE, decoded, label)[0])
    if settings["first_burst"] > settings["max_burst"]:
        settings["first_burst"] = settings["max_burst"]
    return settings


def _validate_config(decoded: dict[str, list[Any]], ebuf: Ebuf) -> bool:
    """``iscsi_config_keys_validate_value`` for the Chelsio target class."""
    if "PortalGroup" not in decoded:
        ebuf.add("Invalid config: check portal and/or acl settings\n")
        return False
    shadow = keys.value_or_default(keys.CONFIG_TABLE, decoded, "ShadowMode")[0]
    groups = decoded["PortalGroup"]
    standalone = _has_standalone_portal(groups)
    if "TargetDevice" not in decoded:
        if not (shadow and not standalone):
            ebuf.add("TargetDevice missing.\n")
            return False
    elif shadow and not standalone:
        ebuf.add("Unnecessary TargetDevice defined.\n")
    if len(decoded.get("TargetDevice", [])) > luns.TARGET_LUN_MAX:
        ebuf.add(f"TargetDevice too many luns > {luns.TARGET_LUN_MAX}.\n")
        return False
    return True


def _has_standalone_portal(groups: list[list[portals.PortalValue]]) -> bool:
    """``iscsi_config_keys_check_for_standalone_portal`` (iscsi_config_keys.c 789-808).

    Meant to find a portal that takes part in no redirection, it clears, for
    every decoded address, the address's own bit and the bits numbered by
    ``v_num[4..6]`` minus one, which hold the port, tag and timeout rather
    than redirect tags. Its shifts are ``int`` shifts (the count taken modulo
    32 on x86) widened with sign extension. Modelled as written: every
    address clears its own bit, so the answer is "none" whenever the target
    has fewer than 32 portal addresses.
    """
    values = [v for group in groups for v in group]
    full = (1 << 64) - 1

    def clear(bitmap: int, count: int) -> int:
        shifted = (1 << (count & 31)) & 0xFFFFFFFF
        inverted = ~shifted & 0xFFFFFFFF
        widened = inverted | (0xFFFFFFFF << 32) if inverted & 0x80000000 else inverted
        return bitmap & widened & full

    bitmap = full
    for i, v in enumerate(values):
        bitmap = clear(bitmap, i)
        for number in (v.port, v.tag, v.timeout):
            bitmap = clear(bitmap, (number - 1) & 0xFFFFFFFF)
    if not values:
        return True
    mask = ((1 << (len(values) & 31)) - 1) & 0xFFFFFFFF
    mask = mask | (0xFFFFFFFF << 32) if mask & 0x80000000 else mask
    return bool(bitmap & mask)


def _validate_session(decoded: dict[str, list[Any]], ebuf: Ebuf) -> bool:
    """``iscsi_session_keys_validate_value``: its messages replace earlier ones."""

    def value(name: str) -> int:
        return int(keys.value_or_default(keys.SESSION_TABLE, decoded, name)[0])

    if "DataSequenceInOrder" in decoded and value("DataSequenceInOrder") == 0:
        ebuf.put("DataSequenceInOrder=No NOT supported.\n")
        return False
    if "DataPDUInOrder" in decoded and value("DataPDUInOrder") == 0:
        ebuf.put("DataPDUInOrder=No NOT supported.\n")
        return False
    if "ErrorRecoveryLevel" in decoded and value("ErrorRecoveryLevel") > 0:
        ebuf.put("ErrorRecoveryLevel > 0 NOT supported.\n")
        return False
    first, most = value("FirstBurstLength"), value("MaxBurstLength")
    if first > most:
        ebuf.put(f"FirstBurstLength={first} > MaxBurstLength={most}.\n")
        return False
    return True


def _validate_connection(decoded: dict[str, list[Any]], ebuf: Ebuf) -> bool:
    if not decoded.get("TargetName"):
        ebuf.add("TargetName missing!\n")
        return False
    for marker in ("OFMarker", "IFMarker"):
        if keys.value_or_default(keys.CONNECTION_TABLE, decoded, marker)[0]:
            ebuf.add("Marker NOT supported!\n")
            return False
    return True


def _chap_config(pairs: list[keys.Pair], methods: list[str], ebuf: Ebuf) -> chap.ChapConfig:
    """``iscsi_auth_config`` -> ``chap_node_config`` (only when a pair is left to decode)."""
    config = chap.ChapConfig(methods, False)
    if not pairs:
        return config
    decoded = keys.decode_table(keys.CHAP_TABLE, pairs, ebuf)
    if not decoded:
        return config
    config.configured = True
    config.targets = list(decoded.get("Auth_CHAP_Target", []))
    config.initiators = list(decoded.get("Auth_CHAP_Initiator", []))
    config.challenge_length = keys.value_or_default(keys.CHAP_TABLE, decoded, "Auth_CHAP_ChallengeLength")[0]
    config.policy = keys.value_or_default(keys.CHAP_TABLE, decoded, "Auth_CHAP_Policy")
    chap.check_node(config, ebuf)
    return config


def read_config(entries: list[tuple[str, str]], kernel: Kernel, ebuf: Ebuf, check_dup: bool) -> Node:
    """``iscsi_node_read_config``: a validated node with portals started and LUNs parsed.

    On failure after portals were started they are released again, as the
    source's error path does.
    """
    pairs = keys.text_to_pairs(entries, ebuf)
    config = keys.decode_table(keys.CONFIG_TABLE, pairs, ebuf)
    session = keys.decode_table(keys.SESSION_TABLE, pairs, ebuf)
    connection = keys.decode_table(keys.CONNECTION_TABLE, pairs, ebuf)
    methods = connection.get("AuthMethod") or ["CHAP", "None"]
    chap_config = _chap_config(pairs, list(dict.fromkeys(methods)), ebuf)
    if pairs:
        ebuf.add(f"unrecognized key {pairs[0].key}.\n")
        raise KernelError("unrecognized")
    ok = _validate_config(config, ebuf)
    ok = _validate_session(session, ebuf) and ok
    ok = _validate_connection(connection, ebuf) and ok
    if not ok:
        raise KernelError("invalid")
    name = connection["TargetName"][0]
    alias_values = connection.get("TargetAlias") or []
    alias = alias_values[0] if alias_values else None
    if check_dup:
        if kernel.find_by_name(name) is not None:
            ebuf.add(f"An target with name {name} already exists.\n")
            raise KernelError("exists")
        if alias and kernel.alias_in_use(alias):
            ebuf.add(f"An target with alias {alias} already exists.\n")
            raise KernelError("alias exists")

    node = Node(id=kernel.allocate_id(), name=name, alias=alias or "")
    node.session = _session_settings(session)
    node.header_digest = (connection.get("HeaderDigest") or ["None"])[:2]
    node.data_digest = (connection.get("DataDigest") or ["None"])[:2]
    node.max_recv_data_segment = keys.value_or_default(
        keys.CONNECTION_TABLE, connection, "MaxRecvDataSegmentLength"
    )[0]
    node.chap = chap_config
    node.acl_enabled = bool(keys.value_or_default(keys.CONFIG_TABLE, config, "ACL_Enable")[0])
    node.isns_register = bool(keys.value_or_default(keys.CONFIG_TABLE, config, "RegisteriSNS")[0])
    node.shadow_mode = bool(keys.value_or_default(keys.CONFIG_TABLE, config, "ShadowMode")[0])
    node.sess_max_cmds = keys.value_or_default(keys.CONFIG_TABLE, config, "TargetSessionMaxCmd")[0]

    values = [v for group in config["PortalGroup"] for v in group]
    acquired: list[portals.TargetPortal] = []

    def acquire(ip: bytes, port: int) -> bool:
        if kernel.acquire_portal(ip, port):
            acquired.append(portals.TargetPortal(ip, port, started=True))
            return True
        return False

    try:
        started = portals.start_portals(values, name, node.shadow_mode, ebuf, acquire)
        node.portals = started.portals
        node.redirect_on = started.redirect_on
        device_values = config.get("TargetDevice", [])
        parse_luns = True
        if node.shadow_mode and not any(
            p.started and portals.FLAG_REDIRECT_FROM not in p.flags for p in node.portals
        ):
            parse_luns = False
            if device_values:
                ebuf.put(f"{name} ShadowMode on, TargetDevice ignored.\n")
        if parse_luns:
            node.luns = [luns.parse_lun(text, i, node.alias, ebuf) for i, text in enumerate(device_values)]
            _check_lun_owners(node, kernel, ebuf)
            if len(node.luns) > luns.NODE_MAX_LUN_COUNT:
                ebuf.put(f"{name} exeeds max lun allowed {len(node.luns)} > {luns.NODE_MAX_LUN_COUNT}.\n")
                raise KernelError("too many luns")
        node.acls = acl.configure(
            config.get("ACL", []), node.acl_enabled, [p.ip for p in node.started_portals], ebuf
        )
    except KernelError:
        kernel.release_portals(acquired)
        raise
    return node


def _check_lun_owners(node: Node, kernel: Kernel, ebuf: Ebuf) -> None:
    """lun.c 270-316: a path in another live target (or with another class) is refused."""
    for lun in node.luns:
        for _node_id, owner, lclass in kernel.lun_holders(lun.path):
            if lun.lclass == "MEM" and owner != node.name:
                continue  # RAM disks may share a name across targets
            if lun.lclass != lclass:
                ebuf.put(f"dev {lun.path} already with class {lclass}.\n")
                raise KernelError("class")
            if owner != node.name and lun.lclass != "MEM":
                ebuf.put(f"{owner} already has device {lun.path}.\n")
                raise KernelError("owned")
            break


def _attach_all(node: Node, kernel: Kernel, ebuf: Ebuf, keep: Callable[[luns.Lun], bool]) -> None:
    held: set[int] = set()

    def exclusively_held(rdev: int) -> bool:
        return rdev in held or kernel.device_held_exclusively(rdev)

    for lun in node.luns:
        if keep(lun):
            continue
        luns.attach(lun, ebuf, exclusively_held)
        if lun.rdev is not None and lun.exclusive:
            held.add(lun.rdev)


def _current_size(lun: luns.Lun) -> int:
    """``vfs_reattach`` reads the size of the file it holds open (lu_vfs.c 103-120)."""
    try:
        if lun.rdev is None:
            return os.stat(lun.path).st_size
        fd = os.open(lun.path, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError:
        return lun.size


def _no_serving(node: Node) -> None:
    """Without a data path there is nothing to serve."""


def add(
    entries: list[tuple[str, str]], kernel: Kernel, ebuf: Ebuf, serve: Callable[[Node], None] = _no_serving
) -> Node:
    """``iscsi_node_add``. ``serve`` starts the data path just before the node is recorded."""
    node = read_config(entries, kernel, ebuf, check_dup=True)
    try:
        _attach_all(node, kernel, ebuf, keep=lambda lun: False)
        serve(node)
    except Exception:
        kernel.release_portals(node.started_portals)
        raise
    kernel.commit_new(node)
    ebuf.add(f"target {node.name} added.\n")
    if not kernel.default_node_exists():
        kernel.create_default_node()
    return node


def reconfig(
    old: Node,
    entries: list[tuple[str, str]],
    kernel: Kernel,
    ebuf: Ebuf,
    serve: Callable[[Node], None] = _no_serving,
) -> Node:
    """``iscsi_node_reconfig``: the old node takes the new settings and keeps its id."""
    new = read_config(entries, kernel, ebuf, check_dup=False)
    old_by_path = {lun.path: lun for lun in old.luns}
    try:
        for lun in new.luns:
            prior = old_by_path.get(lun.path)
            if prior is None:
                continue
            if ("NONEXCL" in lun.flags) != ("NONEXCL" in prior.flags):
                ebuf.put(f"{prior.path} NONEXCL change prohibited.\n")
                raise KernelError("nonexcl")
            if lun.read_only != prior.read_only:
                ebuf.put(f"{prior.path} RO change prohibited.\n")
                raise KernelError("ro")
        kept = {path for path in old_by_path}

        def keep(lun: luns.Lun) -> bool:
            if lun.path in kept:  # fp_reattach: the open device carries over, at its size now
                prior = old_by_path[lun.path]
                lun.rdev = prior.rdev
                if lun.lclass != "MEM":
                    lun.size = _current_size(prior)
                return True
            return False

        _attach_all(new, kernel, ebuf, keep)
        updated = Node(**{**new.__dict__, "id": old.id, "name": old.name, "offline": False})
        serve(updated)
    except Exception:
        kernel.release_portals(new.started_portals)
        raise
    kernel.commit_update(old, updated)
    ebuf.add(f"target {old.name} updated.\n")
    return updated


def remove(node: Node, kernel: Kernel, ebuf: Ebuf | None, wait_sessions: Callable[[Node], int]) -> bool:
    """``iscsi_node_remove`` for one node; True if it was freed, False if busy.

    ``wait_sessions`` closes what it can and returns how many sessions are
    left once none remain or the bounded wait ran out.
    """
    kernel.commit_offline(node)
    remaining = wait_sessions(node)
    if remaining:
        if ebuf is not None:
            ebuf.add(f"{node.name} busy.\n")
        return False
    if ebuf is not None:
        ebuf.add(f"{node.name} removed.\n")
    kernel.commit_removed(node)
    return True
