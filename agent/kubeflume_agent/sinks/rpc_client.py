"""Flume's RPC client policies, for the avro and thrift sinks that chain agents into tiers.

`RpcSink` reads the keys both sinks share (Flume's AbstractRpcSink passes every sink key on to
its RpcClient, so the client keys below work on the sinks too):

* a single host: `hostname` + `port` (client.type `default`);
* `client.type = default_failover`: `hosts = h1 h2`, `hosts.h1 = host:port`...; hosts are tried
  in order, the client stays on the last one that worked, `max-attempts` (default: every host);
* `client.type = default_loadbalance`: `host-selector` round_robin | random, and with
  `backoff = true` a failing host is left out for min(`maxBackoff`, 1000 ms x 2^failures).

Each host keeps one connection, opened lazily within `connect-timeout`, dropped on any error
(reconnected on the next batch) and, with `reset-connection-interval` seconds, renewed
periodically so a load balancer in front of the next tier can rebalance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kubeflume_agent.config.keys import (
    InvalidValue,
    boolean,
    key,
    non_negative_integer,
    one_of,
    port_number,
    positive_integer,
    word_list,
)
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.counters import SinkCounters
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols import tls
from kubeflume_agent.sinks.base import Sink, SinkKeys

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKOFF_MS = 30_000


def host_and_port(text: str) -> tuple[str, int]:
    host, separator, port = text.strip().rpartition(":")
    if not separator or not host:
        raise InvalidValue(f"expected host:port, got {text!r}")
    return host.strip("[]"), port_number(port)


class Transport(Protocol):
    """One open connection speaking one RPC protocol."""

    async def append_batch(self, events: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...


OpenTransport = Callable[[str, int], Awaitable[Transport]]


class HostConnection:
    """The connection to one host: opened on demand, closed on error or when due for a reset."""

    def __init__(self, host: str, port: int, open_transport: OpenTransport, counters: SinkCounters, *,
                 connect_timeout: float, request_timeout: float, reset_interval: float) -> None:
        self.host = host
        self.port = port
        self.open_transport = open_transport
        self.counters = counters
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.reset_interval = reset_interval
        self.transport: Transport | None = None
        self._opened_at = 0.0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    async def append_batch(self, events: Sequence[Event]) -> None:
        if self.transport and self.reset_interval and time.monotonic() - self._opened_at >= self.reset_interval:
            await self.close()
        if self.transport is None:
            await self._open()
        assert self.transport is not None, "_open() connects or raises"
        try:
            await asyncio.wait_for(self.transport.append_batch(events), self.request_timeout)
        except BaseException:
            await self.close()  # the stream may be mid-frame: never reuse it
            raise

    async def _open(self) -> None:
        try:
            self.transport = await asyncio.wait_for(self.open_transport(self.host, self.port),
                                                    self.connect_timeout)
        except Exception:
            self.counters.connections_failed += 1
            raise
        self.counters.connections_created += 1
        self._opened_at = time.monotonic()

    async def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            self.counters.connections_closed += 1
            with contextlib.suppress(Exception):
                await transport.close()


class RpcClient:
    """Sends each batch through one host connection, following `client.type`."""

    def __init__(self, hosts: list[HostConnection], client_type: str, *, selector: str = "round_robin",
                 backoff: bool = False, max_backoff_ms: int = 0, max_attempts: int | None = None) -> None:
        self.hosts = hosts
        self.client_type = client_type
        self.random = selector == "random"
        self.backoff = backoff
        self.max_backoff = (max_backoff_ms or DEFAULT_MAX_BACKOFF_MS) / 1000
        self.max_attempts = max_attempts or len(hosts)
        self._current = 0
        self._failures = [0] * len(hosts)
        self._excluded_until = [0.0] * len(hosts)

    async def append_batch(self, events: Sequence[Event]) -> None:
        if self.client_type == "default_failover":
            await self._failover(events)
        elif self.client_type == "default_loadbalance":
            await self._load_balance(events)
        else:
            await self.hosts[0].append_batch(events)

    async def close(self) -> None:
        for host in self.hosts:
            await host.close()

    async def _failover(self, events: Sequence[Event]) -> None:
        last_error: Exception | None = None
        for _ in range(self.max_attempts):
            host = self.hosts[self._current]
            try:
                await host.append_batch(events)
                return
            except Exception as error:
                log.warning("failover: host %s failed, trying the next: %s", host, error)
                last_error = error
                self._current = (self._current + 1) % len(self.hosts)
        raise EventDeliveryError(f"failed to send the batch to any of {len(self.hosts)} hosts") from last_error

    def _order(self) -> list[int]:
        indexes = list(range(len(self.hosts)))
        if self.random:
            random.shuffle(indexes)
        else:
            indexes = indexes[self._current:] + indexes[:self._current]
            self._current = (self._current + 1) % len(indexes)
        if self.backoff:
            now = time.monotonic()
            indexes = [i for i in indexes if self._excluded_until[i] <= now]
        return indexes

    async def _load_balance(self, events: Sequence[Event]) -> None:
        last_error: Exception | None = None
        for index in self._order():
            try:
                await self.hosts[index].append_batch(events)
                self._failures[index] = 0
                return
            except Exception as error:
                log.warning("load balancing: host %s failed: %s", self.hosts[index], error)
                last_error = error
                self._failures[index] += 1
                penalty = min(self.max_backoff, 2 ** min(self._failures[index], 16))
                self._excluded_until[index] = time.monotonic() + penalty
        raise EventDeliveryError("unable to send the batch to any host") from last_error


@dataclass(frozen=True)
class RpcClientConfig(SinkKeys, tls.TlsClientConfig):
    """The keys of the avro and thrift sinks' client: where to connect, how long to wait, which hosts."""

    hostname: str | None = key("hostname", str, None, doc="host of the next agent (or use hosts)")
    port: int | None = key("port", port_number, None, doc="port of the next agent")
    batch_size: int = key("batch-size", positive_integer, 100, doc="events per appendBatch call")
    connect_timeout: int = key("connect-timeout", positive_integer, 20000, doc="ms to wait for a connection")
    request_timeout: int = key("request-timeout", positive_integer, 20000, doc="ms to wait for an answer")
    reset_connection_interval: int = key("reset-connection-interval", non_negative_integer, 0,
                                         doc="seconds after which the connection is renewed (0: never)")
    client_type: str = key("client.type", one_of("default", "default_failover", "default_loadbalance"), "default")
    hosts: list[str] = key("hosts", word_list, [], doc="host names (aliases) for failover / load balancing")
    host_addresses: dict[str, tuple[str, int]] = key("hosts.", host_and_port, prefix=True,
                                                     doc="hosts.<alias> = host:port")
    host_selector: str = key("host-selector", one_of("round_robin", "random"), "round_robin")
    backoff: bool = key("backoff", boolean, False, doc="load balancing: leave failing hosts out for a while")
    max_backoff: int = key("maxBackoff", non_negative_integer, 0,
                           doc="load balancing: longest exclusion, ms (0: 30000)")
    max_attempts: int | None = key("max-attempts", positive_integer, None,
                                   doc="failover: hosts tried per batch (default: all)")
    max_io_workers: int | None = key("maxIoWorkers", positive_integer, None,
                                     doc="accepted for Flume compatibility; unused")

    @property
    def reset_seconds(self) -> int:
        """Seconds after which a connection is renewed (0: never)."""
        return self.reset_connection_interval

    def destination(self) -> str:
        where = self.hostname or " ".join(self.hosts)
        return f"{where}:{self.port}" if where and self.port else where

    def addresses(self) -> list[tuple[str, int]]:
        if self.hosts:
            return [self.host_addresses[alias] for alias in self.hosts]
        assert self.hostname is not None and self.port is not None, "problems() asks for both"
        return [(self.hostname, self.port)]

    def problems(self) -> list[tuple[str, str]]:
        problems = tls.validate_client(self)
        if self.hosts:
            problems += [(f"hosts.{alias}", "is required (host:port) for every name in hosts")
                         for alias in self.hosts if alias not in self.host_addresses]
        else:
            problems += [(name, "is required (or give hosts)")
                         for name, value in (("hostname", self.hostname), ("port", self.port)) if value is None]
        return problems


RpcConfigT = TypeVar("RpcConfigT", bound=RpcClientConfig)


class RpcSink(Sink[RpcConfigT]):
    """Base of the avro and thrift sinks: keys, the client, and `write` = one appendBatch."""

    def __init__(self, name: str, config: RpcConfigT, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.ssl_context = tls.client_context(config)
        hosts = [
            HostConnection(host, port, self.open_transport, self.counters,
                           connect_timeout=config.connect_timeout / 1000,
                           request_timeout=config.request_timeout / 1000,
                           reset_interval=config.reset_seconds)
            for host, port in config.addresses()
        ]
        self.client = RpcClient(hosts, config.client_type, selector=config.host_selector,
                                backoff=config.backoff, max_backoff_ms=config.max_backoff,
                                max_attempts=config.max_attempts)

    async def open_transport(self, host: str, port: int) -> Transport:
        raise NotImplementedError

    async def write(self, events: Sequence[Event]) -> None:
        await self.client.append_batch(events)

    async def stop(self) -> None:
        await self.client.close()
        await super().stop()
