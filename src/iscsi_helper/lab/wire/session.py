"""One iSCSI session on one TCP connection: the login phase, then the full feature phase.

The phases live in :mod:`iscsi_helper.lab.wire.login` and
:mod:`iscsi_helper.lab.wire.full_feature`; this module runs them in turn,
registers the session with its target between them, and makes sure that
whatever the connection held (buffered data, task set entries, the session
registration, an SPC-2 reservation) is released however it ends.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from iscsi_helper.lab.wire.connection import ConnectionDropped, ConnectionState
from iscsi_helper.lab.wire.full_feature import FullFeaturePhase
from iscsi_helper.lab.wire.login import LOGIN_TIMEOUT, LoginFailed, LoginPhase
from iscsi_helper.lab.wire.pdu import PDUError
from iscsi_helper.lab.wire.served import Portal, TargetRegistry

LOG = logging.getLogger(__name__)


class Connection:
    """Serves one TCP connection until logout, error, or withdrawal of its target."""

    def __init__(
        self,
        registry: TargetRegistry,
        portal: Portal,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.state = ConnectionState(registry, portal, reader, writer)
        self.state.session = self
        self.registry = registry
        self.full_feature: FullFeaturePhase | None = None
        self.in_login = True

    @property
    def nexus(self) -> str:
        return self.state.nexus

    @property
    def peer(self) -> str:
        return self.state.peer

    def close(self) -> None:
        self.state.close()

    def abort_tasks(self, lun: int | None) -> None:
        if self.full_feature is not None:
            self.full_feature.abort_tasks(lun)

    async def run(self) -> None:
        state = self.state
        try:
            sock = state.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                await asyncio.wait_for(LoginPhase(state).run(), LOGIN_TIMEOUT)
            except LoginFailed as exc:
                LOG.info(
                    "login from %s (%s) to %s refused: %s (status 0x%04x)",
                    state.peer,
                    state.initiator_name[:64] or "?",
                    state.target_name(),
                    exc,
                    exc.status,
                )
                return
            except TimeoutError:
                LOG.info("login from %s timed out", state.peer)
                return
            finally:
                self.in_login = False
            if state.served is not None:
                if state.served.withdrawn:
                    return
                self.registry.session_started(self, state.initiator_name, state.isid, state.served)
            self.full_feature = FullFeaturePhase(state)
            await self.full_feature.run()
        except (EOFError, ConnectionError, ConnectionDropped) as exc:
            if isinstance(exc, ConnectionDropped):
                LOG.info("connection from %s dropped: %s", state.peer, exc)
        except PDUError as exc:
            LOG.info("connection from %s dropped: %s", state.peer, exc)
        except Exception:
            LOG.exception("connection from %s failed", state.peer)
        finally:
            if self.full_feature is not None:
                await self.full_feature.shutdown()
            self.registry.connection_closed(self, state.served)
            state.close()
