"""The keys the avro and thrift sources share: where they listen, TLS, connection limits, `threads`."""

from __future__ import annotations

from dataclasses import dataclass

from kubeflume_agent.config.keys import declared_key, key, non_negative_integer
from kubeflume_agent.protocols import tls
from kubeflume_agent.sources.base import BindPortKeys
from kubeflume_agent.sources.tcp_server import MAX_BATCH_EVENTS_KEY, ConnectionKeys


@dataclass(frozen=True)
class RpcSourceKeys(BindPortKeys, ConnectionKeys, tls.TlsServerConfig):
    threads: int = key("threads", non_negative_integer, 0,
                       doc="accepted for Flume compatibility; one event loop serves all")
    max_batch_events: int = declared_key(MAX_BATCH_EVENTS_KEY)
