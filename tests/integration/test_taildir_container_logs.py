"""Taildir on a node's container logs, written as the kubelet writes them: CRI and docker lines,
partial lines, multiline records, rotation, copy-truncate and restarts, with exact positions."""

from __future__ import annotations

import datetime
import json
import socket

import pytest
from kubelet_logs import RUNTIME_PIECE, KubeletLogs
from source_harness import memory_channel, running_source, take_all, wait_for

from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.runtime.agent import Agent

UID = "0f6c8a8e-3b1a-4a55-9d2e-5d1c0c6f0a11"
CID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904aa5c0f6c8a8e3b1a4a559d2e"


def container_params(tmp_path, **extra) -> dict[str, str]:
    return {
        "filegroups": "containers", "filegroups.containers": str(tmp_path / "containers" / r".*\.log"),
        "positionFile": str(tmp_path / "state" / "taildir_position.json"), "lineFormat": "cri",
        "fileHeader": "true", "backoffSleepIncrement": "1", "maxBackoffSleep": "2", "writePosInterval": "0",
        "batchSize": "7", **{key: str(value) for key, value in extra.items()},
    }


async def poll_events(source, channel):
    """process() until a poll sends nothing new; the events that arrived."""
    events = []
    for _ in range(1000):
        accepted = source.counters.events_accepted
        await source.process()
        events += await take_all(channel)
        if source.counters.events_accepted == accepted:
            return events
    raise AssertionError("the source never caught up")


def bodies(events) -> list[str]:
    return [e.body.decode() for e in events]


@pytest.fixture
def node(tmp_path):
    return KubeletLogs(tmp_path)


async def test_cri_lines_become_messages_with_stream_time_and_file(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    when = datetime.datetime(2026, 12, 6, 15, 56, 59, 123456, tzinfo=datetime.UTC)
    log.write("hello", when=when)
    log.write("oops", stream="stderr", when=when)
    log.write("x" * (2 * RUNTIME_PIECE + 10))  # split by the runtime into P, P, F
    async with running_source("TAILDIR", container_params(tmp_path)) as (source, channel):
        events = await poll_events(source, channel)
    assert bodies(events) == ["hello", "oops", "x" * (2 * RUNTIME_PIECE + 10)]
    assert events[0].headers == {"stream": "stdout", "timestamp": str(int(when.timestamp() * 1000)),
                                 "file": str(log.link)}
    assert events[1].headers["stream"] == "stderr"


async def test_a_restart_in_the_middle_of_a_partial_line_loses_and_repeats_nothing(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    log.write("before")
    log.write_piece("first half, ", partial=True)
    log.write("an error line in between", stream="stderr")
    log.write_piece("second part, ", partial=True)
    channel = memory_channel()
    params = container_params(tmp_path)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received = await poll_events(source, channel)
    assert bodies(received) == ["before", "an error line in between"]
    positions = json.loads((tmp_path / "state" / "taildir_position.json").read_text())
    assert positions[0]["pos"] == len(log.path.read_bytes().split(b"\n")[0]) + 1  # at the partial line's start
    log.write_piece("the end", partial=False)
    log.write("after")
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_events(source, channel)
    assert bodies(received) == ["before", "an error line in between", "first half, second part, the end", "after"]


async def test_rotation_keeps_every_line_once_and_a_cut_partial_line_in_two_parts(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    params = container_params(tmp_path, idleTimeout=0)
    async with running_source("TAILDIR", params) as (source, channel):
        log.write("one")
        received = await poll_events(source, channel)
        log.write("two")
        log.write_piece("cut by the ", partial=True)
        log.rotate()
        log.write_piece("rotation", partial=False)
        log.write("three")
        received += await poll_events(source, channel)
        received += await poll_events(source, channel)
    assert sorted(bodies(received)) == sorted(["one", "two", "cut by the ", "rotation", "three"])
    assert {e.headers["file"] for e in received} == {str(log.link)}


async def test_copy_truncate_of_a_container_log(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    params = container_params(tmp_path)
    for i in range(20):
        log.write(f"line {i}")
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_events(source, channel)
        log.write("line 20")  # not yet read when the copy is taken; the copy's name is not matched
        log.copy_truncate("0.log.20261206-155659")
        log.write("line 21")
        received += await poll_events(source, channel)
    # copy-truncate with an unmatched copy loses what was written between the last read and the
    # truncation (see sources/taildir.py); what follows arrives, nothing twice
    assert bodies(received) == [f"line {i}" for i in range(20)] + ["line 21"]


async def test_malformed_lines_pass_raw_and_long_records_are_cut_and_counted(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    log.write_raw(b"not a CRI line\n")
    log.write("y" * 25)
    log.write("ok")
    async with running_source("TAILDIR", container_params(tmp_path, maxLineBytes=10)) as (source, channel):
        events = await poll_events(source, channel)
        counters = source.counters.snapshot()
    assert bodies(events) == ["not a CRI line", "y" * 10, "y" * 10, "y" * 5, "ok"]
    assert "stdout|stderr" in events[0].headers["kubernetes.parseError"]
    assert "stream" not in events[0].headers
    assert counters["LineParseErrorCount"] == 1 and counters["EventCutCount"] == 3


async def test_docker_json_file_lines(tmp_path):
    path = tmp_path / "containers" / "web-1_shop_app-abc.log"
    path.parent.mkdir()
    lines = [{"log": "part one, ", "stream": "stdout", "time": "2026-12-06T15:56:59.1Z"},
             {"log": "warn\n", "stream": "stderr", "time": "2026-12-06T15:56:59.2Z"},
             {"log": "part two\n", "stream": "stdout", "time": "2026-12-06T15:56:59.3Z"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    async with running_source("TAILDIR", container_params(tmp_path, lineFormat="docker")) as (source, channel):
        events = await poll_events(source, channel)
    assert [(e.body, e.headers["stream"]) for e in events] == [(b"warn", "stderr"), (b"part one, part two", "stdout")]


JAVA_TRACE = ["2026-12-06 15:56:59 ERROR request failed", "java.lang.IllegalStateException: boom",
              "\tat com.example.Shop.pay(Shop.java:42)", "\tat com.example.Shop.main(Shop.java:7)"]
PYTHON_TRACE = ["Traceback (most recent call last):", '  File "shop.py", line 3, in <module>', "    pay()",
                "ZeroDivisionError: division by zero"]


async def test_multiline_traces_per_stream_with_positions_only_past_whole_records(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    params = container_params(tmp_path, **{"multiline.start": r"^(\d{4}-\d\d-\d\d |Traceback)",
                                           "multiline.flushTimeout": 600000})
    for java, python in zip(JAVA_TRACE, PYTHON_TRACE, strict=True):
        log.write(java, stream="stderr")
        log.write(python)
    channel = memory_channel()
    async with running_source("TAILDIR", params, channel) as (source, _):
        assert await poll_events(source, channel) == []  # both records may still grow
        log.write("2026-12-06 15:57:00 INFO next request", stream="stderr")
        received = await poll_events(source, channel)
    assert bodies(received) == ["\n".join(JAVA_TRACE)]
    log.write("Traceback (most recent call last):")  # ends the Python trace, after a restart
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_events(source, channel)
    assert bodies(received) == ["\n".join(JAVA_TRACE), "\n".join(PYTHON_TRACE)]
    assert [e.headers["stream"] for e in received] == ["stderr", "stdout"]


async def test_a_lone_last_line_is_not_held_for_ever(tmp_path, node):
    log = node.container("shop", "web-1", UID, "app", CID)
    log.write("Traceback (most recent call last):")
    params = container_params(tmp_path, **{"multiline.start": "^Traceback", "multiline.flushTimeout": 1})
    async with running_source("TAILDIR", params) as (source, channel):
        events = []
        while not events:
            events = await poll_events(source, channel)
    assert bodies(events) == ["Traceback (most recent call last):"]


async def test_an_agent_whose_api_server_is_unreachable_ships_with_file_name_metadata_and_says_so(tmp_path, node):
    """The whole agent: taildir cri -> kubernetes interceptor (its API on a closed port) -> file_roll."""



    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    log = node.container("shop", "web-1", UID, "app", CID)
    log.write("hello")
    out = tmp_path / "out"
    out.mkdir()
    agent = Agent(parse_properties(f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = TAILDIR
a1.sources.r1.channels = c1
a1.sources.r1.filegroups = c
a1.sources.r1.filegroups.c = {tmp_path / "containers"}/.*\\\\.log
a1.sources.r1.positionFile = {tmp_path / "state" / "positions.json"}
a1.sources.r1.lineFormat = cri
a1.sources.r1.fileHeader = true
a1.sources.r1.interceptors = k8s
a1.sources.r1.interceptors.k8s.type = kubernetes
a1.sources.r1.interceptors.k8s.kubeconfig = {kubeconfig}
a1.sources.r1.interceptors.k8s.nodeName = node-a
a1.channels.c1.type = memory
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out}
a1.sinks.k1.sink.serializer = avro_event
"""))
    await agent.start()
    try:
        counters = agent.counters()
        await wait_for(lambda: counters["SINK.k1"].drain_success == 1, what="the line delivered")
        k8s = counters["INTERCEPTOR.r1.k8s"].snapshot()
    finally:
        await agent.stop()
    assert k8s["EventFileNameOnlyCount"] == 1 and k8s["EventExcludedCount"] == 0
