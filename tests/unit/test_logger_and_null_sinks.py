"""The logger sink logs Flume's exact lines (hex dump and all); the null sink takes and forgets."""

from __future__ import annotations

import logging

import pytest

from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.logger import LoggerSink
from kubeflume_agent.sinks.null import NullSink
from tests.integration.source_harness import config_for, memory_channel

LOGGER = "kubeflume_agent.sinks.logger"
PAD = "   "  # one missing byte in a hex dump row


async def sink_with(type_name: str, params: dict[str, str], events: list[Event]):
    """A sink built as the agent builds it, on a memory channel holding `events`."""
    sink_class, settings = config_for("sink", type_name, params)
    assert sink_class.config_problems(settings) == []
    channel = memory_channel()
    await channel.start()
    async with channel.transaction() as tx:
        tx.put_all(events)
    sink = sink_class("k1", settings, channel)
    await sink.start()
    return sink, channel


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


async def test_logger_logs_each_event_as_flume_does(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink, channel = await sink_with("logger", {}, [Event(b"hello", {"host": "web1", "n": "1"}),
                                                   Event(b"Hello world!\r")])
    assert isinstance(sink, LoggerSink)
    assert await sink.process() is Status.READY
    assert channel.size == 0
    assert logged(caplog) == [
        "Event: { headers:{host=web1, n=1} body: 68 65 6C 6C 6F " + PAD * 11 + "hello }",
        # the line Flume's user guide shows for `telnet ... Hello world!`
        "Event: { headers:{} body: 48 65 6C 6C 6F 20 77 6F 72 6C 64 21 0D          Hello world!. }",
    ]


async def test_logger_shows_at_most_max_bytes_to_log(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    body = bytes(range(65, 65 + 26))  # A..Z
    sink, _ = await sink_with("logger", {}, [Event(body)])
    await sink.process()
    sink, _ = await sink_with("logger", {"maxBytesToLog": "3"}, [Event(body)])
    await sink.process()
    sink, _ = await sink_with("logger", {"maxBytesToLog": "20"}, [Event(body + b"\x00\xff")])
    await sink.process()
    default, three, twenty = logged(caplog)
    assert default == ("Event: { headers:{} body: 41 42 43 44 45 46 47 48 49 4A 4B 4C 4D 4E 4F 50 "
                       "ABCDEFGHIJKLMNOP }")
    assert three == "Event: { headers:{} body: 41 42 43 " + PAD * 13 + "ABC }"
    # a second hex dump row keeps its offset, as Commons IO's HexDump prints it
    assert twenty == ("Event: { headers:{} body: 41 42 43 44 45 46 47 48 49 4A 4B 4C 4D 4E 4F 50 ABCDEFGHIJKLMNOP\n"
                      "00000010 51 52 53 54 " + PAD * 12 + "QRST }")


async def test_logger_dots_unprintable_bytes_and_handles_an_empty_body(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink, _ = await sink_with("logger", {}, [Event(b"\x00a\x7f\xc3\xa9"), Event(b"", {"k": "v"})])
    await sink.process()
    assert logged(caplog) == [
        "Event: { headers:{} body: 00 61 7F C3 A9 " + PAD * 11 + ".a... }",
        "Event: { headers:{k=v} body: }",
    ]


async def test_logger_takes_batch_size_events_per_call(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink, channel = await sink_with("logger", {"batchSize": "4"}, [Event(b"%d" % i) for i in range(6)])
    assert await sink.process() is Status.READY
    assert (len(logged(caplog)), channel.size) == (4, 2)
    assert await sink.process() is Status.READY
    assert await sink.process() is Status.BACKOFF
    assert len(logged(caplog)) == 6
    assert sink.counters.drain_success == 6


async def test_logger_still_drains_when_info_is_off(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    sink, channel = await sink_with("logger", {}, [Event(b"quiet")])
    assert await sink.process() is Status.READY
    assert (logged(caplog), channel.size, sink.counters.drain_success) == ([], 0, 1)


async def test_null_sink_takes_and_counts_everything(caplog):
    caplog.set_level(logging.INFO, logger="kubeflume_agent.sinks.null")
    sink, channel = await sink_with("org.apache.flume.sink.NullSink", {"logEveryNEvents": "100"},
                                    [Event(b"x") for _ in range(250)])
    assert isinstance(sink, NullSink) and sink.batch_size == 100
    assert [await sink.process() for _ in range(4)] == [Status.READY] * 3 + [Status.BACKOFF]
    assert channel.size == 0
    counters = sink.counters
    assert (counters.drain_attempt, counters.drain_success, counters.event_write_fail) == (250, 250, 0)
    assert (counters.batch_complete, counters.batch_underflow, counters.batch_empty) == (2, 1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "Null sink k1 successful processed 100 events.",
        "Null sink k1 successful processed 200 events.",
    ]


async def test_null_sink_logs_once_per_multiple_even_with_large_batches(caplog):
    caplog.set_level(logging.INFO, logger="kubeflume_agent.sinks.null")
    sink, _ = await sink_with("null", {"batchSize": "70", "logEveryNEvents": "25"}, [Event(b"x") for _ in range(140)])
    while await sink.process() is Status.READY:
        pass
    # 70 passes 25 and 50; 140 passes 75, 100 and 125: one line per batch that crossed a multiple
    assert [r.getMessage() for r in caplog.records] == [
        "Null sink k1 successful processed 70 events.",
        "Null sink k1 successful processed 140 events.",
    ]
