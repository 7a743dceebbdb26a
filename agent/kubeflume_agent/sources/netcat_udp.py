"""Flume's `netcatudp` source: one datagram is one event, its body the bytes before the first LF.

The sender's address goes into the header named by `remoteAddress` (the key Flume's code reads)
or `remoteAddressHeader` (the key its guide documents), formatted as Java prints a socket
address: `/127.0.0.1:50000`. UDP cannot push back: see udp_server for the bounded queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeflume_agent.config.keys import declared_key, key
from kubeflume_agent.core.event import Event
from kubeflume_agent.sources import udp_server
from kubeflume_agent.sources.base import REUSE_PORT_KEY, BindPortKeys, ListeningSource
from kubeflume_agent.sources.udp_server import Datagram


@dataclass(frozen=True)
class NetcatUdpConfig(BindPortKeys):
    bind: str = key("bind", str, "0.0.0.0", doc="address to bind (Flume binds every interface when unset)")
    remote_address: str | None = key("remoteAddress", str, None,
                                     doc="header for the sender's address (the key Flume reads)")
    remote_address_header: str | None = key("remoteAddressHeader", str, None,
                                            doc="the guide's spelling of remoteAddress")
    reuse_port: bool = declared_key(REUSE_PORT_KEY)


class NetcatUdpSource(ListeningSource[NetcatUdpConfig]):
    transport = "UDP"

    def __init__(self, name: str, config: NetcatUdpConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.address_header = config.remote_address or config.remote_address_header
        self.server = udp_server.server_for(self, self._events, reuse_port=config.reuse_port)

    async def _events(self, datagrams: list[Datagram]) -> list[Event]:
        header = self.address_header
        if header is None:
            return [Event(payload.split(b"\n", 1)[0]) for payload, _, _ in datagrams]
        return [Event(payload.split(b"\n", 1)[0], {header: f"/{ip}:{port}"}) for payload, ip, port in datagrams]
