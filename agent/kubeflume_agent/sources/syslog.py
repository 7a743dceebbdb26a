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

from typing import ClassVar

from kubeflume_agent.config.keys import (
    InvalidValue,
    Key,
    Settings,
    charset,
    integer,
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
from kubeflume_agent.sources.base import REUSE_PORT_KEY, ListeningSource
from kubeflume_agent.sources.tcp_server import (
    CONNECTION_KEYS,
    READ_SIZE,
    Connection,
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


_CLIENT_KEYS = (
    Key("keepFields", parse_keep_fields, frozenset(), doc="none, all, or priority version timestamp hostname"),
    Key("clientIPHeader", str, None, doc="header to put the client's IP address in"),
    Key("clientHostnameHeader", str, None, doc="header to put the client's host name in (reverse DNS)"),
    REUSE_PORT_KEY,
)
_TCP_KEYS = (*_CLIENT_KEYS, *CONNECTION_KEYS, *tls.SERVER_KEYS)


class _ClientHeaders:
    """clientIPHeader / clientHostnameHeader values per peer; reverse DNS answers are cached."""

    def __init__(self, settings: Settings) -> None:
        self.ip_header = settings["clientIPHeader"]
        self.name_header = settings["clientHostnameHeader"]
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


class _SyslogTcpBase(ListeningSource):
    """TCP plumbing shared by syslogtcp and multiport_syslogtcp: read, frame, parse, deliver."""

    address_key = "host"

    # Most events per channel transaction (multiport's batchSize); None: what the channels take.
    batch_size: int | None = None

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.client_headers = _ClientHeaders(settings)
        self.server = server_for(self, self._serve, ssl_context=tls.server_context(tls.server_config(settings)))

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        return tls.validate_server(tls.server_config(settings))

    def _parse(self, frames: list[bytes], connection: Connection) -> list[Event]:
        raise NotImplementedError

    def _events(self, framer: SyslogFramer, data: bytes, connection: Connection) -> list[Event]:
        """The events of the frames `data` completes."""
        return self._parse(framer.feed(data), connection)

    async def _serve(self, connection: Connection) -> None:
        framer = SyslogFramer(self.settings["eventSize"])
        extra = await self.client_headers.for_peer(connection.peer_ip) if self.client_headers else None
        read = connection.read
        stopped = self.server.stopped
        while connection.open:
            data = await read(READ_SIZE, midway=framer.pending > 0)
            events = self._events(framer, data, connection) if data else self._parse(framer.flush(), connection)
            if events:
                connection.busy = True
                if extra:
                    _add_headers(events, extra)
                if not await deliver_until_accepted(self, events, stopped, self.batch_size):
                    return
                connection.busy = False
            if not data:
                return


class SyslogTcpSource(_SyslogTcpBase):
    keys: ClassVar = (
        Key("host", str, required=True, doc="address to bind"),
        Key("port", port_number, required=True),
        Key("eventSize", event_size, 2500, doc="longest message in bytes; longer ones are cut (Incomplete)"),
        *_TCP_KEYS,
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.parser = SyslogUtilsParser(settings["keepFields"])

    def _parse(self, frames: list[bytes], connection: Connection) -> list[Event]:
        return self.parser.parse_all(frames)

    def _events(self, framer: SyslogFramer, data: bytes, connection: Connection) -> list[Event]:
        return self.parser.parse_stream(framer, data)


class MultiportSyslogTcpSource(_SyslogTcpBase):
    batch_size_key = "batchSize"
    keys: ClassVar = (
        Key("host", str, required=True, doc="address to bind"),
        Key("ports", port_list, required=True, doc="space-separated ports"),
        Key("eventSize", event_size, 2500),
        Key("portHeader", str, None, doc="header to put the receiving port in"),
        Key("charset.default", charset, "utf-8", doc="charset of messages"),
        Key("charset.port.", charset, prefix=True, doc="charset.port.<port> = charset for that port"),
        Key("batchSize", positive_integer, 100, doc="most events per channel transaction"),
        Key("readBufferBytes", positive_integer, 1024, doc="accepted for Flume compatibility; unused"),
        Key("readBufferSize", positive_integer, 1024, doc="the guide's spelling of readBufferBytes; unused"),
        Key("numProcessors", positive_integer, None, doc="accepted for Flume compatibility; unused"),
        *_TCP_KEYS,
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.parser = MultiportSyslogParser(settings["keepFields"])
        self.batch_size = settings["batchSize"]
        self.port_header = settings["portHeader"]
        self._charsets: dict[int, str] = {}

    @classmethod
    def configured_ports(cls, settings: Settings) -> list[int]:
        return settings["ports"]

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        problems = super().validate_settings(settings)
        for port in settings["charset.port."]:
            if not port.isdigit():
                problems.append((f"charset.port.{port}", "expected charset.port.<port number>"))
        return problems

    async def start(self) -> None:
        await super().start()
        per_port = {int(port): name for port, name in self.settings["charset.port."].items()}
        default = self.settings["charset.default"]
        for configured, bound in zip(self.settings["ports"], self.bound_ports, strict=True):
            self._charsets[bound] = per_port.get(configured, default)

    def _parse(self, frames: list[bytes], connection: Connection) -> list[Event]:
        local_port = connection.writer.get_extra_info("sockname")[1]
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


class SyslogUdpSource(ListeningSource):
    address_key = "host"
    transport = "UDP"
    keys: ClassVar = (
        Key("host", str, required=True, doc="address to bind"),
        Key("port", port_number, required=True),
        *_CLIENT_KEYS,
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.parser = SyslogUtilsParser(settings["keepFields"])
        self.client_headers = _ClientHeaders(settings)
        self.server = udp_server.server_for(self, self._events)
        self.bound_ports: list[int] = []

    async def _events(self, datagrams: list[Datagram]) -> list[Event]:
        """One datagram, up to its first LF, is one message (Flume's syslogudp)."""
        events = self.parser.parse_all([payload.partition(b"\n")[0] for payload, _, _ in datagrams])
        if self.client_headers:
            for event, (_, ip, _) in zip(events, datagrams, strict=True):
                event.headers.update(await self.client_headers.for_peer(ip))
        return events

