"""What every source is: something that turns input into events and hands them, in batches, to
its channel processor. Event-driven sources own servers on the event loop; pollable sources are
called by a runner (`process()`), which backs off while they return BACKOFF.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from kubeflume_agent.config.keys import Config, Configurable, Key, boolean, key, port_number
from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.core.status import Status


class ChannelProcessor(Protocol):
    """Where a source hands its batches (runtime.channel_processor.ChannelProcessor wires it up)."""

    max_batch: int  # the most events one batch may hold

    async def process_batch(self, events: Sequence[Event]) -> None: ...


SourceConfigT = TypeVar("SourceConfigT", bound=Config)


class Source(Configurable[SourceConfigT]):
    """Turns input into events and hands them, in batches, to its channel processor.

    Built from its typed config: `class SequenceSource(PollableSource[SequenceSourceConfig])`.
    """

    def __init__(self, name: str, config: SourceConfigT, processor: ChannelProcessor) -> None:
        self.name = name
        self.config = config
        self.processor = processor
        self.counters = SourceCounters()
        self.warnings = RateLimitedWarnings()  # what a client can trigger at will is logged through this

    async def start(self) -> None:
        self.counters.started()

    async def stop(self) -> None:
        self.counters.stopped()

    async def deliver(self, events: Sequence[Event], *, single: bool = False) -> None:
        """Hand one batch to the channels as one transaction per channel, keeping the counters.

        `single`: the batch is one Flume `append` (AppendReceived/AppendAccepted instead of the
        batch counters). Raises ChannelError (ChannelFull when there is no room): nothing of the
        batch may then be acknowledged to the client.
        """
        self.count_received(len(events), single=single)
        await self.store(events, single=single)

    def count_received(self, count: int, *, single: bool = False) -> None:
        """Count a batch as received: once, however often `store` is then tried."""
        counters = self.counters
        counters.events_received += count
        if single:
            counters.append_received += 1
        else:
            counters.append_batch_received += 1

    async def store(self, events: Sequence[Event], *, single: bool = False) -> None:
        """Store a batch already counted as received: each refusal is a ChannelWriteFail."""
        counters = self.counters
        try:
            await self.processor.process_batch(events)
        except ChannelError:
            counters.channel_write_fail += 1
            raise
        counters.events_accepted += len(events)
        if single:
            counters.append_accepted += 1
        else:
            counters.append_batch_accepted += 1

    def describe(self) -> str:
        """One line for people: what this source is (and where it listens, for a listening source)."""
        return type(self).__name__

    @classmethod
    def listening_ports(cls, config: SourceConfigT) -> list[tuple[int, str]]:
        """The (port, "TCP" | "UDP") pairs this source listens on; the operator builds a Service."""
        return []


REUSE_PORT_KEY = Key("reusePort", boolean, False, doc="SO_REUSEPORT: several agent processes share the port")


class ConnectionConfig(Protocol):
    """What a TCP or HTTP source's typed config tells its server (each such config declares these keys)."""

    @property
    def reuse_port(self) -> bool: ...

    @property
    def read_timeout(self) -> float: ...

    @property
    def max_connections(self) -> int: ...


class Server(Protocol):
    """What a listening source needs of its server (sources.tcp_server.TcpServer, udp_server.UdpServer)."""

    async def start(self, host: str | None, ports: Sequence[int]) -> list[int]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ListeningConfig(Config):
    """Where a listening source listens. Flume names the address `bind` for most sources
    (BindPortKeys) and `host` for the syslog and legacy ones (HostPortKeys)."""

    def address(self) -> str:
        raise NotImplementedError

    def listen_ports(self) -> list[int]:
        raise NotImplementedError


@dataclass(frozen=True)
class BindPortKeys(ListeningConfig):
    """`bind` and `port`, declared once for the sources that spell them so."""

    bind: str = key("bind", str, required=True, doc="address to bind")
    port: int = key("port", port_number, required=True)

    def address(self) -> str:
        return self.bind

    def listen_ports(self) -> list[int]:
        return [self.port]


@dataclass(frozen=True)
class HostKeys(ListeningConfig):
    host: str = key("host", str, required=True, doc="address to bind")

    def address(self) -> str:
        return self.host


@dataclass(frozen=True)
class HostPortKeys(HostKeys):
    """`host` and `port`: the syslog and legacy sources' spelling of bind and port."""

    port: int = key("port", port_number, required=True)

    def listen_ports(self) -> list[int]:
        return [self.port]


ListeningConfigT = TypeVar("ListeningConfigT", bound=ListeningConfig)


class ListeningSource(Source[ListeningConfigT]):
    """A source that owns a server on one address (its config's `address()`, `listen_ports()`):
    bound at start, closed at stop. Subclasses make `self.server` in their __init__."""

    transport: ClassVar[str] = "TCP"
    server: Server

    def __init__(self, name: str, config: ListeningConfigT, processor: ChannelProcessor) -> None:
        super().__init__(name, config, processor)
        self.bound_ports: list[int] = []

    @classmethod
    def listening_ports(cls, config: ListeningConfigT) -> list[tuple[int, str]]:
        return [(port, cls.transport) for port in config.listen_ports()]

    async def start(self) -> None:
        self.bound_ports = await self.server.start(self.config.address(), self.config.listen_ports())
        await super().start()

    async def stop(self) -> None:
        await self.server.stop()
        await super().stop()

    def describe(self) -> str:
        host = self.config.address() or "0.0.0.0"
        where = " ".join(f"{host}:{port}" for port in self.bound_ports)
        return f"{type(self).__name__} {where}".strip()


class PollableSource(Source[SourceConfigT]):
    """A source the runtime polls. `process()` does one batch of work and reports READY/BACKOFF."""

    async def process(self) -> Status:
        raise NotImplementedError
