"""Flume's syslog sources: `syslogtcp`, `syslogudp` and `multiport_syslogtcp`.

Differences from Flume, on purpose:
* a full channel is backpressure, not loss: TCP sources stop reading the connection and retry
  the batch until the channel takes it (Flume drops the events); UDP queues a bounded number of
  datagrams and counts the rest as ChannelWriteFail;
* TCP also accepts RFC 6587 octet-counted frames (`<len> <msg>`), as rsyslog and syslog-ng send;
* a last line without LF at connection close is delivered (Flume discards it);
* `reusePort` lets several agent processes share a port (SO_REUSEPORT) to use more cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from kubeflume_agent.config.keys import (
    Config,
    InvalidValue,
    charset,
    declared_key,
    integer,
    key,
    port_number,
    positive_integer,
)
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols import tls
from kubeflume_agent.protocols.ipfilter import reverse_name
from kubeflume_agent.protocols.syslog import (
    INVALID,
    STATUS,
    MultiportSyslogParser,
    SyslogFramer,
    SyslogUtilsParser,
    parse_keep_fields,
)
from kubeflume_agent.sources import udp_server
from kubeflume_agent.sources.base import REUSE_PORT_KEY, HostKeys, HostPortKeys, ListeningSource
from kubeflume_agent.sources.tcp_server import (
    Connection,
    ConnectionKeys,
    TcpServer,
    deliver_until_accepted,
    server_for,
)
from kubeflume_agent.sources.udp_server import Datagram


def event_size(text: str) -> int:
    value = integer(text)
    if value < 10:
        raise InvalidValue(f"eventSize must be at least 10 bytes, got {text!r}")
    return value


def port_list(text: str) -> list[int]:
    ports = [port_number(word) for word in text.replace(",", " ").split()]
    if not ports:
        raise InvalidValue("expected at least one port")
    return ports


@dataclass(frozen=True)
class SyslogClientConfig(Config):
    """The keys every syslog source has: which fields to keep, which headers tell the client."""

    keep_fields: frozenset[str] = key("keepFields", parse_keep_fields, frozenset(),
                                      doc="none, all, or priority version timestamp hostname")
    client_ip_header: str | None = key("clientIPHeader", str, None, doc="header to put the client's IP address in")
    client_hostname_header: str | None = key("clientHostnameHeader", str, None,
                                             doc="header to put the client's host name in (reverse DNS)")
    reuse_port: bool = declared_key(REUSE_PORT_KEY)


@dataclass(frozen=True)
class SyslogTcpBaseConfig(HostKeys, ConnectionKeys, SyslogClientConfig, tls.TlsServerConfig):
    """The keys of both TCP syslog sources."""

    event_size: int = key("eventSize", event_size, 2500,
                          doc="longest message in bytes; longer ones are cut (Incomplete)")

    def problems(self) -> list[tuple[str, str]]:
        return tls.validate_server(self)


@dataclass(frozen=True)
class SyslogTcpConfig(SyslogTcpBaseConfig, HostPortKeys):
    pass


@dataclass(frozen=True)
class MultiportSyslogTcpConfig(SyslogTcpBaseConfig):
    ports: list[int] = key("ports", port_list, required=True, doc="space-separated ports")
    port_header: str | None = key("portHeader", str, None, doc="header to put the receiving port in")
    charset_default: str = key("charset.default", charset, "utf-8", doc="charset of messages")
    charset_port: dict[str, str] = key("charset.port.", charset, prefix=True,
                                       doc="charset.port.<port> = charset for that port")
    batch_size: int = key("batchSize", positive_integer, 100, doc="most events per channel transaction")
    read_buffer_bytes: int = key("readBufferBytes", positive_integer, 1024,
                                 doc="accepted for Flume compatibility; unused")
    read_buffer_size: int = key("readBufferSize", positive_integer, 1024,
                                doc="the guide's spelling of readBufferBytes; unused")
    num_processors: int | None = key("numProcessors", positive_integer, None,
                                     doc="accepted for Flume compatibility; unused")

    def listen_ports(self) -> list[int]:
        return self.ports

    def problems(self) -> list[tuple[str, str]]:
        return super().problems() + [(f"charset.port.{port}", "expected charset.port.<port number>")
                                     for port in self.charset_port if not port.isdigit()]


@dataclass(frozen=True)
class SyslogUdpConfig(HostPortKeys, SyslogClientConfig):
    pass


class _ClientHeaders:
    """clientIPHeader / clientHostnameHeader values per peer; reverse DNS answers are cached."""

    def __init__(self, config: SyslogClientConfig) -> None:
        self.ip_header = config.client_ip_header
        self.name_header = config.client_hostname_header
        self._names: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.ip_header or self.name_header)

    async def for_peer(self, ip: str) -> dict[str, str]:
        headers = {}
        if self.ip_header:
            headers[self.ip_header] = ip
        if self.name_header:
            name = self._names.get(ip)
            if name is None:
                name = await reverse_name(ip)
                if len(self._names) > 10_000:
                    self._names.clear()
                self._names[ip] = name
            headers[self.name_header] = name
        return headers


def _add_headers(events: list[Event], extra: dict[str, str]) -> None:
    for event in events:
        event.headers.update(extra)


SyslogTcpConfigT = TypeVar("SyslogTcpConfigT", bound="SyslogTcpBaseConfig")


class _SyslogTcpBase(ListeningSource[SyslogTcpConfigT]):
    """TCP plumbing shared by syslogtcp and multiport_syslogtcp: read, frame, parse, deliver."""

    # Most events per channel transaction (multiport's batchSize); None: what the channels take.
    batch_size: int | None = None

    def __init__(self, name: str, config: SyslogTcpConfigT, processor) -> None:
        super().__init__(name, config, processor)
        self.client_headers = _ClientHeaders(config)
        self.server: TcpServer = server_for(self, self._framer, self._deliver, config,
                                            ssl_context=tls.server_context(config))

    def _framer(self, connection: Connection) -> SyslogStream:
        raise NotImplementedError

    async def _deliver(self, connection: Connection, events: list[Event]) -> bool:
        """Hand the events of one read over (backpressure while the channel is full)."""
        if self.client_headers:
            _add_headers(events, await self.client_headers.for_peer(connection.peer_ip))
        return await deliver_until_accepted(self, events, self.server.stopped, self.batch_size)


class SyslogStream:
    """A connection's syslog messages as events: its framer (LF or octet counting, state kept across
    reads) and the source's parser; `parse_stream` frames and parses a read in one pass."""

    __slots__ = ("framer", "parse_all", "parse_stream")

    def __init__(self, max_size: int, parse_all: Callable[[list[bytes]], list[Event]],
                 parse_stream: Callable[[SyslogFramer, bytes], list[Event]] | None = None) -> None:
        self.framer = SyslogFramer(max_size)
        self.parse_all = parse_all
        self.parse_stream = parse_stream

    @property
    def partial(self) -> bool:
        return self.framer.pending > 0

    def feed(self, data: bytes) -> list[Event]:
        if self.parse_stream is not None:
            return self.parse_stream(self.framer, data)
        return self.parse_all(self.framer.feed(data))

    def flush(self) -> list[Event]:
        return self.parse_all(self.framer.flush())


class SyslogTcpSource(_SyslogTcpBase[SyslogTcpConfig]):
    def __init__(self, name: str, config: SyslogTcpConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.parser = SyslogUtilsParser(self.config.keep_fields)

    def _framer(self, connection: Connection) -> SyslogStream:
        return SyslogStream(self.config.event_size, self.parser.parse_all, self.parser.parse_stream)


class MultiportSyslogTcpSource(_SyslogTcpBase[MultiportSyslogTcpConfig]):
    def __init__(self, name: str, config: MultiportSyslogTcpConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.parser = MultiportSyslogParser(self.config.keep_fields)
        self.batch_size = self.config.batch_size
        self.port_header = self.config.port_header
        self._charsets: dict[int, str] = {}

    async def start(self) -> None:
        await super().start()
        per_port = {int(port): name for port, name in self.config.charset_port.items()}
        for configured, bound in zip(self.config.ports, self.bound_ports, strict=True):
            self._charsets[bound] = per_port.get(configured, self.config.charset_default)

    def _framer(self, connection: Connection) -> SyslogStream:
        local_port = connection.transport.get_extra_info("sockname")[1]
        return SyslogStream(self.config.event_size, partial(self._parse, local_port))

    def _parse(self, local_port: int, frames: list[bytes]) -> list[Event]:
        charset_name = self._charsets[local_port]
        parse = self.parser.parse
        events = []
        for frame in frames:
            try:
                events.append(parse(frame, charset_name))
            except UnicodeDecodeError:
                self.counters.event_read_fail += 1
                events.append(Event(bytes(frame), {STATUS: INVALID}))
        if self.port_header:
            _add_headers(events, {self.port_header: str(local_port)})
        return events


class SyslogUdpSource(ListeningSource[SyslogUdpConfig]):
    transport = "UDP"

    def __init__(self, name: str, config: SyslogUdpConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.parser = SyslogUtilsParser(config.keep_fields)
        self.client_headers = _ClientHeaders(config)
        self.server = udp_server.server_for(self, self._events, reuse_port=config.reuse_port)
        self.bound_ports: list[int] = []

    async def _events(self, datagrams: list[Datagram]) -> list[Event]:
        """One datagram, up to its first LF, is one message (Flume's syslogudp)."""
        events = self.parser.parse_all([payload.partition(b"\n")[0] for payload, _, _ in datagrams])
        if self.client_headers:
            for event, (_, ip, _) in zip(events, datagrams, strict=True):
                event.headers.update(await self.client_headers.for_peer(ip))
        return events

