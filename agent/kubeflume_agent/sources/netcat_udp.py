"""Flume's `netcatudp` source: one datagram is one event, its body the bytes before the first LF.

The sender's address goes into the header named by `remoteAddress` (the key Flume's code reads)
or `remoteAddressHeader` (the key its guide documents), formatted as Java prints a socket
address: `/127.0.0.1:50000`. UDP cannot push back: see udp_server for the bounded queue.
"""

from __future__ import annotations

from typing import ClassVar

from kubeflume_agent.config.keys import Key, Settings, boolean, port_number
from kubeflume_agent.event import Event
from kubeflume_agent.sources.base import Source
from kubeflume_agent.sources.udp_server import Datagram, UdpServer


class NetcatUdpSource(Source):
    keys: ClassVar = (
        Key("port", port_number, required=True),
        Key("bind", str, "0.0.0.0", doc="address to bind (Flume binds every interface when unset)"),
        Key("remoteAddress", str, None, doc="header for the sender's address (the key Flume reads)"),
        Key("remoteAddressHeader", str, None, doc="the guide's spelling of remoteAddress"),
        Key("reusePort", boolean, False, doc="SO_REUSEPORT: several agent processes share the port"),
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.address_header = settings["remoteAddress"] or settings["remoteAddressHeader"]
        self.server = UdpServer(self, self._events, reuse_port=settings["reusePort"])
        self.bound_ports: list[int] = []

    @classmethod
    def listening_ports(cls, settings: Settings) -> list[tuple[int, str]]:
        return [(settings["port"], "UDP")]

    async def start(self) -> None:
        self.bound_ports = [await self.server.start(self.settings["bind"], self.settings["port"])]
        await super().start()

    async def stop(self) -> None:
        await self.server.stop()
        await super().stop()

    async def _events(self, datagrams: list[Datagram]) -> list[Event]:
        header = self.address_header
        if header is None:
            return [Event(payload.split(b"\n", 1)[0]) for payload, _, _ in datagrams]
        return [Event(payload.split(b"\n", 1)[0], {header: f"/{ip}:{port}"}) for payload, ip, port in datagrams]
