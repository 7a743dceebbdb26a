"""Clients that cost nothing to run and would hold the agent's resources for ever: connections that
send half a frame and stop, HTTP requests whose headers trickle in a byte at a time, more
connections than `maxConnections`. A real agent process, real sockets; every wait polls with a
generous bound (no timed assertions)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import urllib.request
from pathlib import Path

import pytest
from crash_harness import wait_until

from kubeflume_agent.core.event import Event
from tests.integration.source_harness import collect, running_source, wait_for
from tests.integration.test_agent_cli import AGENT, Running, metrics
from tests.integration.test_thrift import OK, ApacheFlumeClient
from tests.network import free_port

pytestmark = pytest.mark.timeout(300)

HALF_FRAME_CLIENTS = 2_000
SLOW_HEADER_CLIENTS = 50
READ_TIMEOUT = 3
NEAR_BASELINE_KIB = 6 * 1024  # RSS after a flood, above the baseline before it


def agent_conf(thrift_port: int, http_port: int) -> str:
    return (
        "a1.sources = thrift web\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.thrift.type = thrift\na1.sources.thrift.bind = 127.0.0.1\na1.sources.thrift.port = {thrift_port}\n"
        f"a1.sources.thrift.readTimeout = {READ_TIMEOUT}\na1.sources.thrift.maxConnections = 5000\n"
        "a1.sources.thrift.channels = c1\n"
        f"a1.sources.web.type = http\na1.sources.web.bind = 127.0.0.1\na1.sources.web.port = {http_port}\n"
        f"a1.sources.web.readTimeout = {READ_TIMEOUT}\na1.sources.web.channels = c1\n"
        "a1.channels.c1.type = memory\na1.channels.c1.capacity = 100000\n"
        "a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n"
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def post_event(port: int, body: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps([{"body": body}]).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def half_frames(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each sending the first 100 bytes of a 1,000-byte Thrift frame."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        connection.sendall(struct.pack(">i", 1000) + b"\x82" * 100)
        connections.append(connection)
    return connections


def closed_by_peer(connection: socket.socket) -> bool:
    try:
        return connection.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def all_closed(connections: list[socket.socket]) -> bool:
    return all(closed_by_peer(c) for c in connections)


class SlowHeaders:
    """HTTP clients whose request headers arrive one byte at a time and never end."""

    def __init__(self, port: int, count: int) -> None:
        self.connections = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
        for connection in self.connections:
            connection.sendall(b"POST / HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
        self.closed: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        while not self.stop.wait(0.25) and len(self.closed) < len(self.connections):
            for index, connection in enumerate(self.connections):
                if index in self.closed:
                    continue
                try:
                    if closed_by_peer(connection):
                        self.closed.add(index)
                    else:
                        connection.send(b"a")
                except OSError:
                    self.closed.add(index)

    def all_closed(self) -> bool:
        return len(self.closed) == len(self.connections)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for connection in self.connections:
            connection.close()


def test_half_frames_and_slow_headers_are_closed_and_a_good_client_is_served_throughout(tmp_path):
    thrift_port, http_port, metrics_port = free_port(), free_port(), free_port()
    conf = tmp_path / "flume.conf"
    conf.write_text(agent_conf(thrift_port, http_port))
    agent = Running([*AGENT, "-n", "a1", "-f", str(conf), "--metrics-port", str(metrics_port),
                     "--metrics-bind", "127.0.0.1", "--no-reload-conf"], tmp_path)
    try:
        agent.wait_for_output(f"127.0.0.1:{http_port}")
        good = GoodClients(thrift_port, http_port)
        for _ in range(20):  # warm up before taking the baseline
            good.serve()
        baseline = rss_kib(agent.process.pid)
        first_peak = flood_until_closed(thrift_port, http_port, metrics_port, good, agent)
        after_first = rss_kib(agent.process.pid)
        second_peak = flood_until_closed(thrift_port, http_port, metrics_port, good, agent)
        after_second = rss_kib(agent.process.pid)
        report = metrics(metrics_port)["SOURCE.thrift"]
        assert report["ReadTimeoutCount"] == str(2 * HALF_FRAME_CLIENTS)
        assert report["EventReadFail"] == "0"  # timed out, not malformed
        # What a flood took is handed back: held connections cost little (a Protocol each, no task,
        # no timer), and what they freed returns to the system, so RSS comes back near its baseline,
        # flood after flood (it stayed some 14 MB above it when each held connection had a task).
        figures = {"baseline": baseline, "first_peak": first_peak, "after_first": after_first,
                   "second_peak": second_peak, "after_second": after_second}  # KiB
        assert after_first < baseline + NEAR_BASELINE_KIB, figures
        assert after_second < baseline + NEAR_BASELINE_KIB, figures
        good.serve()
    finally:
        code = agent.stop()
    assert code == 0, agent.stderr()
    log = agent.stderr()
    assert "no complete message within readTimeout = 3 s" in log
    assert log.count("readTimeout") < 40, "the timeouts are logged rate-limited"


class GoodClients:
    """A Thrift client and an HTTP client that each send one event per `serve()`, answered OK."""

    def __init__(self, thrift_port: int, http_port: int) -> None:
        self.thrift_port, self.http_port = thrift_port, http_port
        self.served = 0

    def serve(self) -> bool:
        self.served += 1
        client = ApacheFlumeClient(self.thrift_port)
        try:
            assert client.call("append", [Event(f"good {self.served}".encode())]) == OK
        finally:
            client.transport.close()
        assert post_event(self.http_port, f"good {self.served}") == 200
        return True


def flood_until_closed(thrift_port: int, http_port: int, metrics_port: int, good: GoodClients,
                       agent: Running) -> int:
    """2,000 half frames and 50 slow-header clients, held until the agent closed them all while
    the good clients are served all along; returns the agent's RSS (KiB) while they were held."""
    held = half_frames(thrift_port, HALF_FRAME_CLIENTS)
    slow = SlowHeaders(http_port, SLOW_HEADER_CLIENTS)
    try:
        peak = rss_kib(agent.process.pid)
        wait_until(lambda: good.serve() and all_closed(held) and slow.all_closed(), 180,
                   "the agent to close every half frame and slow header")
        assert metrics(metrics_port)["SOURCE.thrift"]["OpenConnectionCount"] == "0"
        return peak
    finally:
        slow.close()
        for connection in held:
            connection.close()


async def test_max_connections_closes_the_longest_open_idle_connection():
    async with running_source("netcat", {"bind": "127.0.0.1", "port": "0", "maxConnections": "3"}) as (source, ch):
        port = source.bound_ports[0]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await wait_for(lambda: source.counters.open_connections == 3, what="three connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"served\n")
        assert await reader.readline() == b"OK\n"
        assert await idle[0][0].read() == b""  # the oldest one was closed
        assert [e.body for e in await collect(ch, 1)] == [b"served"]
        assert source.counters.connection_limit == 1
        assert source.counters.open_connections == 3
        for _, other in [*idle, (reader, writer)]:
            other.close()


async def test_a_half_line_is_dropped_at_read_timeout_and_whole_lines_keep_a_connection_open():
    params = {"bind": "127.0.0.1", "port": "0", "readTimeout": "0.5"}
    async with running_source("netcat", params) as (source, ch):
        port = source.bound_ports[0]
        steady_reader, steady = await asyncio.open_connection("127.0.0.1", port)
        stuck_reader, stuck = await asyncio.open_connection("127.0.0.1", port)
        stuck.write(b"never finished")
        for number in range(8):  # whole lines, on a connection open longer than readTimeout
            steady.write(f"line {number}\n".encode())
            assert await steady_reader.readline() == b"OK\n"
            await asyncio.sleep(0.1)
        assert await stuck_reader.read() == b""
        assert source.counters.read_timeouts == 1
        assert [e.body for e in await collect(ch, 8)] == [f"line {n}".encode() for n in range(8)]
        steady.write(b"still open\n")
        assert await steady_reader.readline() == b"OK\n"
        steady.close()
        stuck.close()
