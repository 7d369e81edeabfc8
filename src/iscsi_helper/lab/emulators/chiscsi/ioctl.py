"""The control device: each ``iscsictl`` request as the kernel answers it.

A request returns the message buffer (always copied back), the data buffer
(copied back only when the request succeeded) and success or failure; a
failing kernel handler makes ``ioctl`` return -1 (private/klib/control/
iscsi_control_linux.c 15-112; handlers in iscsi_control_cmd.c 46-625).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iscsi_helper.lab.emulators.chiscsi import serving, sessions
from iscsi_helper.lab.emulators.chiscsi.kernel import node as node_ops
from iscsi_helper.lab.emulators.chiscsi.kernel import settings as settings_mod
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError
from iscsi_helper.lab.emulators.chiscsi.kernel.keys import decode_range
from iscsi_helper.lab.emulators.chiscsi.kernel.model import Node, config_display
from iscsi_helper.lab.emulators.chiscsi.state import KernelState

DATA_MAX_BUFLEN = 131072  # ISCSI_CONTROL_DATA_MAX_BUFLEN, user/common/iscsictl_private.h 8


@dataclass
class Reply:
    ok: bool
    message: str = ""
    data: str = ""


def _reply(ebuf: Ebuf, ok: bool, data: str = "") -> Reply:
    return Reply(ok, ebuf.text, data if ok else "")


class ControlDevice:
    """``/dev/chiscsi``: requests against one emulated kernel."""

    def __init__(self, state: KernelState) -> None:
        self.state = state

    # -- listing -----------------------------------------------------------

    def get_names(self) -> Reply:
        """``iscsi_node_get_target_names`` (private/klib/common/iscsi_node.c 124-150).

        Every node in the queue (offline ones too), ``name,`` after ``name,``
        behind ``target=``; once past the 128 KiB buffer the text is cut at
        buflen - 1 bytes (a trailing comma dropped), with no word about it.
        The source's sprintf runs past the end of the kernel's 128 KiB buffer
        before that cut; see the assumptions in docs/emulators/chiscsi.md.
        """
        text = "target="
        count = 0
        for node in self.state.all_nodes():
            count += 1
            text += node.name + ","
            if len(text) > DATA_MAX_BUFLEN:
                break
        if not count:
            return Reply(True, "", text)
        length = len(text)
        if length > DATA_MAX_BUFLEN:
            length = DATA_MAX_BUFLEN - 1
        if text[length - 1] == ",":
            length -= 1
        return Reply(True, "", text[:length])

    def get_config(self, name: str, detail: bool) -> Reply:
        """``iscsi_control_node_get_config`` (iscsi_control_cmd.c 365-389)."""
        ebuf = Ebuf()
        if not name:
            ebuf.put("Empty request buffer.\n")
            return _reply(ebuf, False)
        if name == "ALL":
            out = ""
            for node in self.state.all_nodes():
                if self.state.find_by_name(node.name) is None:
                    continue  # chiscsi_get_target_info fails for it (iscsi_node.c 887-889, 974-976)
                out += config_display(node, detail)
                if len(out) > DATA_MAX_BUFLEN:
                    break
            return _reply(ebuf, True, out[:DATA_MAX_BUFLEN])
        found = self.state.find_by_name(name)
        if found is None:
            ebuf.put(f"target {name} NOT found.\n")
            return _reply(ebuf, False)
        return _reply(ebuf, True, config_display(found, detail))

    # -- start / reload ------------------------------------------------------

    def _serve(self) -> Callable[[Node], None]:
        settings = self.state.settings()
        return lambda node: serving.publish(self.state.root, node, settings)

    def add(self, name: str, entries: list[tuple[str, str]], reload: bool = False) -> Reply:
        """``iscsi_control_node_add`` / ``iscsi_control_node_reload`` (iscsi_control_cmd.c 416-470)."""
        ebuf = Ebuf()
        if not name:
            ebuf.put("Empty request buffer.\n")
            return _reply(ebuf, False)
        if not entries:
            ebuf.put("Missing data buffer.\n")
            return _reply(ebuf, False)
        old = self.state.find_by_name(name)
        try:
            if old is None:
                if reload:
                    ebuf.put(f"{name} not started, ignore.\n")
                    return _reply(ebuf, True)
                node_ops.add(entries, self.state, ebuf, serve=self._serve())
            else:
                node_ops.reconfig(old, entries, self.state, ebuf, serve=self._serve())
        except KernelError:
            return _reply(ebuf, False)
        return _reply(ebuf, True)

    # -- stop --------------------------------------------------------------

    def remove(self, name: str) -> Reply:
        """``iscsi_control_node_remove`` (iscsi_control_cmd.c 479-499) and iscsi_node.c 163-246."""
        ebuf = Ebuf()
        if not name:
            ebuf.put("Empty request buffer.\n")
            return _reply(ebuf, False)
        if name != "ALL":
            node = self.state.find_by_name(name)
            if node is None:
                ebuf.put(f"{name} is not found.\n")
                return _reply(ebuf, False)
            node_ops.remove(node, self.state, ebuf, self._waiter(node))
            return _reply(ebuf, True)
        for node in self.state.all_nodes():
            node_ops.remove(node, self.state, None, self._waiter(node))
        if self.state.node_ids():
            ebuf.add("NOT all targets removed.\n")
        else:
            ebuf.add("All targets removed.\n")
        return _reply(ebuf, True)

    def _waiter(self, node: Node) -> Callable[[Node], int]:
        was_offline = node.offline
        return lambda n: sessions.close_and_wait(self.state, n, was_offline)

    # -- settings and statistics ------------------------------------------

    def drv_get(self) -> Reply:
        return Reply(True, settings_mod.display(self.state.settings()))

    def drv_set(self, request: str) -> Reply:
        ebuf = Ebuf()
        current = self.state.settings()
        try:
            settings_mod.apply(current, request, ebuf)
        except KernelError:
            return _reply(ebuf, False)
        finally:
            self.state.save_settings(current)
        return _reply(ebuf, True)

    def stat_get(self) -> Reply:
        """``iscsi_stats_display`` (base/common/os_common.c 178-207); the counts are an assumption."""
        names = ("sess", "conn", "sbuf_rx", "sbuf_tx", "mem", "mempg", "gl")
        return Reply(True, "".join(f"{n}=0 " for n in names))

    # -- flush and sessions ------------------------------------------------

    def flush(self, name: str, lun: str) -> Reply:
        """``iscsi_control_target_flush`` (iscsi_control_cmd.c 319-340, iscsi_target_config.c 241-286)."""
        ebuf = Ebuf()
        if name and name != "ALL" and self.state.find_by_name(name) is None:
            ebuf.put(f"target {name} NOT found.\n")
            return _reply(ebuf, False)
        if lun:
            try:
                decode_range(lun, ebuf)
            except KernelError:
                return _reply(ebuf, False)
        return _reply(ebuf, True)

    def get_session(self, name: str, peer: str) -> Reply:
        """``iscsi_control_node_get_session`` (iscsi_control_cmd.c 521-545, iscsi_node.c 817-873)."""
        ebuf = Ebuf()
        if not name:
            ebuf.put("Empty request buffer.\n")
            return _reply(ebuf, False)
        node = self.state.find_by_name(name)
        if node is None:
            ebuf.put(f"{name} is not found.\n")
            return _reply(ebuf, False)
        wire = serving.sessions(self.state.root, name)["served"]
        stuck = sessions.stuck_initiators(self.state, node)
        count = len(wire) + len([s for s in stuck if s not in wire])
        if not count:
            return _reply(ebuf, True)
        return _reply(ebuf, True, f"{name}: session={count}, login_ip=0.\n")
