"""Every wire parser of the agent as a fuzz target, shared by tests/unit/test_fuzz_parsers.py (a few
thousand inputs, hypothesis) and bench/fuzz_parsers.py (at least 10^5 inputs each, seeded).

A target turns the bytes a client sent into events with the same functions the sources run, and
says which exceptions are its verdicts on bad input (the project's own error types); anything
else escaping is a crash. `valid(rng)` makes a well-formed input, so mutations of it reach deep
into the parser, and `stream` targets are fed in pieces: a valid stream cut at any byte boundary
must give the same events as the whole.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.avro_rpc import (
    AvroProtocol,
    Deflater,
    InflatingNettyFramer,
    NettyFramer,
    Requestor,
    Responder,
    Session,
    http_buffers,
    netty_frame,
    parse_http_buffers,
)
from kubeflume_agent.protocols.container_logs import MalformedLine, parse_cri, parse_docker
from kubeflume_agent.protocols.framing import FrameError, LengthPrefixedFramer, decode_budget, length_prefixed
from kubeflume_agent.protocols.lines import BoundedLineSplitter, TextLineSplitter
from kubeflume_agent.protocols.syslog import MultiportSyslogParser, SyslogFramer, SyslogUtilsParser
from kubeflume_agent.protocols.thrift_rpc import FLUME, FLUME_OG, PROTOCOLS, SCRIBE, SCRIBE_PROTOCOL, write_call
from kubeflume_agent.sources.avro import AvroSource, avro_events
from kubeflume_agent.sources.http import BadRequest, BlobHandler, JsonHandler, TooManyEvents, UnusableRequest
from kubeflume_agent.sources.http_server import HttpRequest, RequestReader, RequestRefused
from kubeflume_agent.sources.legacy import MAX_READS_PER_CALL, decode_og_stream, og_avro_event
from kubeflume_agent.sources.scribe import scribe_events
from kubeflume_agent.sources.tcp_server import DEFAULT_MAX_REQUEST_BYTES
from kubeflume_agent.sources.thrift import ThriftSource, decode_frame, thrift_events

MAX_EVENTS = 1_000  # max-batch-events of the fuzzed sources: small, so the decode budget is reached


def _events_summary(events: list[Event]) -> list[tuple[bytes, tuple]]:
    """Events as comparable values (body and sorted headers)."""
    return [(bytes(e.body), tuple(sorted((e.headers or {}).items()))) for e in events]


@dataclass
class Target:
    name: str
    parse: Callable[[list[bytes]], list[Event]]  # the input in the pieces it arrives in -> events
    errors: tuple[type[BaseException], ...]  # the verdicts on bad input
    valid: Callable[[random.Random], bytes]
    stream: bool = True  # a valid input cut anywhere gives the same events
    notes: list[str] = field(default_factory=list)

    def events(self, pieces: list[bytes]) -> list[tuple[bytes, tuple]]:
        return _events_summary(self.parse(pieces))


_LOOP = asyncio.new_event_loop()  # one loop for every input: the parsers' coroutines are short


def _run(coroutine):
    return _LOOP.run_until_complete(coroutine)


# --- random building blocks --------------------------------------------------------------------

def _text(rng: random.Random, most: int = 12) -> str:
    alphabet = "abcxyz019 -_.:é☃\u00ff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))


def _headers(rng: random.Random) -> dict[str, str]:
    return {_text(rng, 6) or "k": _text(rng) for _ in range(rng.randint(0, 3))}


def _body(rng: random.Random) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 24)))


# --- Avro: Netty frames and Avro RPC --------------------------------------------------------------

_AVRO = AvroProtocol.packaged("AvroSourceProtocol")
_AVRO_OG = AvroProtocol.packaged("FlumeOGEventAvroServer")


def _source(source_class, **params: str):
    """A source as the agent builds it (never started): its decoders, compiled ones included."""
    settings, _ = resolve(source_class.config_class, {"bind": "127.0.0.1", "port": "0", **params})
    return source_class("fuzzed", settings, None)


_AVRO_SOURCE = _source(AvroSource, **{"max-batch-events": str(MAX_EVENTS)})
_THRIFT_COMPACT = _source(ThriftSource, protocol="compact", **{"max-batch-events": str(MAX_EVENTS)})


def _avro_request(rng: random.Random) -> bytes:
    requestor = Requestor(_AVRO)
    if rng.random() < 0.5:
        event = {"headers": _headers(rng), "body": _body(rng)}
        return requestor.request("append", {"event": event})
    events = [{"headers": _headers(rng), "body": _body(rng)} for _ in range(rng.randint(0, 5))]
    return requestor.request("appendBatch", {"events": events})


def _avro_calls(payloads: list[bytes]) -> list[Event]:
    """What AvroSource does with each payload of one connection (its Responder, with the compiled
    appendBatch reader when it is built)."""
    responder, session, events = _AVRO_SOURCE.responder, Session(), []
    for payload in payloads:
        call = responder.read_call(payload, session)
        if call.reply is None:
            events += avro_events(call)
    return events


def _netty_payloads(pieces: list[bytes], framer: NettyFramer | None = None) -> list[bytes]:
    """The Avro source's framing: the payloads of the frames its framer finds as the pieces arrive
    (and, inflating, those it hands out a few at a time)."""
    framer = framer or NettyFramer(DEFAULT_MAX_REQUEST_BYTES)
    payloads = []
    for piece in pieces:
        frames = framer.feed(piece)
        while frames:
            payloads += [payload for _, payload in frames]
            frames = framer.more()
    return payloads


def _netty_frames_parse(pieces: list[bytes]) -> list[Event]:
    return [Event(payload) for payload in _netty_payloads(pieces)]


def _deflated_netty_frames_parse(pieces: list[bytes]) -> list[Event]:
    return [Event(payload) for payload in _netty_payloads(pieces, InflatingNettyFramer(DEFAULT_MAX_REQUEST_BYTES))]


def _deflated_netty_frames_valid(rng: random.Random) -> bytes:
    deflate = Deflater()
    return b"".join(deflate(netty_frame(serial, _avro_request(rng))) for serial in range(rng.randint(1, 3)))


def _netty_frames_valid(rng: random.Random) -> bytes:
    return b"".join(netty_frame(serial, _avro_request(rng)) for serial in range(rng.randint(1, 3)))


def _avro_rpc_parse(pieces: list[bytes]) -> list[Event]:
    return _avro_calls([b"".join(pieces)])


def _avro_session_call_parse(pieces: list[bytes]) -> list[Event]:
    """One call on a connection past its handshake: where the compiled appendBatch reader runs."""
    session = Session()
    session.connected, session.remote = True, _AVRO_SOURCE.responder.local
    call = _AVRO_SOURCE.responder.read_call(b"".join(pieces), session)
    return [] if call.reply is not None else avro_events(call)


def _avro_session_call_valid(rng: random.Random) -> bytes:
    requestor = Requestor(_AVRO)
    requestor.connected = True
    events = [{"headers": _headers(rng), "body": _body(rng)} for _ in range(rng.randint(0, 6))]
    return requestor.request("appendBatch", {"events": events})


def _avro_stream_parse(pieces: list[bytes]) -> list[Event]:
    return _avro_calls(_netty_payloads(pieces))


def _avro_stream_valid(rng: random.Random) -> bytes:
    requestor = Requestor(_AVRO)
    frames = []
    for serial in range(rng.randint(1, 3)):
        batch = [{"headers": _headers(rng), "body": _body(rng)} for _ in range(rng.randint(0, 4))]
        frames.append(netty_frame(serial, requestor.request("appendBatch", {"events": batch})))
        requestor.connected = True  # the handshake goes with the first call only
    return b"".join(frames)


# --- Thrift: ThriftSourceProtocol, compact and binary, framed --------------------------------------

def _thrift_valid(protocol: str) -> Callable[[random.Random], bytes]:
    factory = PROTOCOLS[protocol]

    def valid(rng: random.Random) -> bytes:
        calls = []
        for seqid in range(rng.randint(1, 3)):
            events = [FLUME.ThriftFlumeEvent(headers=_headers(rng), body=_body(rng))
                      for _ in range(rng.randint(0, 4))]
            if rng.random() < 0.3 and events:
                calls.append(write_call(factory, FLUME.ThriftSourceProtocol, "append", seqid, event=events[0]))
            else:
                calls.append(write_call(factory, FLUME.ThriftSourceProtocol, "appendBatch", seqid, events=events))
        return b"".join(map(length_prefixed, calls))
    return valid


def _framed_parse(factory, service, to_events, batch_reader=None) -> Callable[[list[bytes]], list[Event]]:
    """The Thrift sources' reading: their framer's frames, each decoded into one call (answer_frames)."""
    def parse(pieces: list[bytes]) -> list[Event]:
        framer, events = LengthPrefixedFramer(DEFAULT_MAX_REQUEST_BYTES, "Thrift frame"), []
        for frame in [frame for piece in pieces for frame in framer.feed(piece)]:
            call = decode_frame(frame, factory, service, decode_budget(MAX_EVENTS), batch_reader)
            if call.args is not None or call.events is not None:
                events += to_events(call)
        return events
    return parse


# --- Scribe ------------------------------------------------------------------------------------------

def _scribe_valid(rng: random.Random) -> bytes:
    calls = []
    for seqid in range(rng.randint(1, 3)):
        entries = [SCRIBE.LogEntry(category=_text(rng), message=_text(rng, 30)) for _ in range(rng.randint(0, 4))]
        calls.append(write_call(SCRIBE_PROTOCOL, SCRIBE.Scribe, "Log", seqid, messages=entries))
    return b"".join(map(length_prefixed, calls))


# --- Flume OG: thriftLegacy (unframed binary Thrift) and avroLegacy (Avro over HTTP) -----------------

def _og_thrift_parse(pieces: list[bytes]) -> list[Event]:
    """ThriftLegacySource's reading: a growing buffer decoded after each read."""
    buffer, events = b"", []
    for piece in pieces:
        buffer += piece
        found, _, buffer = decode_og_stream(buffer, PROTOCOLS["binary"])
        events += found
    return events


def _og_thrift_valid(rng: random.Random) -> bytes:
    service, factory = FLUME_OG.ThriftFlumeEventServer, PROTOCOLS["binary"]
    calls = []
    for seqid in range(rng.randint(1, 4)):
        event = FLUME_OG.ThriftFlumeEvent(
            timestamp=rng.randint(0, 2 ** 40), priority=rng.randint(0, 5), body=_body(rng), nanos=rng.randint(0, 99),
            host=_text(rng), fields={_text(rng, 5): _body(rng) for _ in range(rng.randint(0, 2))})
        calls.append(write_call(factory, service, "append", seqid, evt=event))
    if rng.random() < 0.3:
        calls.append(write_call(factory, service, "close", 99))
    return b"".join(calls)


def _og_avro_parse(pieces: list[bytes]) -> list[Event]:
    """AvroLegacySource's handling of one HTTP request body."""
    responder = Responder(_AVRO_OG, MAX_READS_PER_CALL)
    call = responder.read_call(parse_http_buffers(b"".join(pieces)), Session())
    return [] if call.reply is not None else [og_avro_event(call)]


def _og_avro_valid(rng: random.Random) -> bytes:
    requestor = Requestor(_AVRO_OG)
    evt = {"timestamp": rng.randint(0, 2 ** 40), "priority": rng.choice(["FATAL", "ERROR", "WARN", "INFO"]),
           "body": _body(rng), "nanos": rng.randint(0, 99), "host": _text(rng),
           "fields": {_text(rng, 5): _body(rng) for _ in range(rng.randint(0, 2))}}
    return http_buffers(requestor.request("append", {"evt": evt}))


# --- syslog --------------------------------------------------------------------------------------

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _rfc3164(rng: random.Random) -> bytes:
    return (f"<{rng.randint(0, 191)}>{rng.choice(_MONTHS)} {rng.randint(1, 28):2d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} host{rng.randint(0, 9)} "
            f"app[{rng.randint(1, 999)}]: {_text(rng, 40)}").encode()


def _rfc5424(rng: random.Random) -> bytes:
    fraction = rng.choice(["", ".1", ".123456"])
    zone = rng.choice(["Z", "+02:00", "-05:30"])
    return (f"<{rng.randint(0, 191)}>1 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{fraction}{zone} "
            f"host app {rng.randint(1, 999)} ID{rng.randint(0, 9)} - {_text(rng, 40)}").encode()


def _syslog_lines(make: Callable[[random.Random], bytes]) -> Callable[[random.Random], bytes]:
    return lambda rng: b"".join(make(rng) + b"\n" for _ in range(rng.randint(1, 6)))


def _octet_counted(rng: random.Random) -> bytes:
    messages = [rng.choice((_rfc3164, _rfc5424))(rng) for _ in range(rng.randint(1, 6))]
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


def _syslog_parse(pieces: list[bytes]) -> list[Event]:
    """The syslogtcp source: framer (LF or octet counting, eventSize 2500), then SyslogUtils."""
    framer, parser, events = SyslogFramer(2500), SyslogUtilsParser(), []
    for piece in pieces:
        events += parser.parse_all(framer.feed(piece))
    return events + parser.parse_all(framer.flush())


def _multiport_parse(pieces: list[bytes]) -> list[Event]:
    """multiport_syslogtcp: the same framing, Flume's SyslogParser with a UTF-8 port."""
    framer, parser, events = SyslogFramer(2500), MultiportSyslogParser(), []
    frames = [frame for piece in pieces for frame in framer.feed(piece)] + framer.flush()
    for frame in frames:
        try:
            events.append(parser.parse(frame, "utf-8"))
        except UnicodeDecodeError:  # the source stores it as an Invalid event and counts it
            events.append(Event(bytes(frame), {"flume.syslog.status": "Invalid"}))
    return events


# --- netcat -------------------------------------------------------------------------------------

def _netcat_parse(make_splitter) -> Callable[[list[bytes]], list[Event]]:
    def parse(pieces: list[bytes]) -> list[Event]:
        splitter, events = make_splitter(), []
        for piece in pieces:
            events += [Event(line if line is not None else b"<TOO LONG>") for line in splitter.feed(piece)]
        return events + [Event(line) for line in splitter.flush()]
    return parse


def _netcat_valid(codec: str) -> Callable[[random.Random], bytes]:
    return lambda rng: "".join(_text(rng, 70) + "\n" for _ in range(rng.randint(1, 8))).encode(codec)


# --- HTTP handlers ------------------------------------------------------------------------------

def _handler_request(body: bytes, charset: str = "utf-8", query: str = "") -> HttpRequest:
    """A request as the HTTP server hands it to the handlers."""
    fields = [(b"content-type", f"application/json; charset={charset}".encode())]
    return HttpRequest("POST", f"/?{query}", fields, body, "127.0.0.1")


_JSON = JsonHandler({}, MAX_EVENTS)
_BLOB = BlobHandler({"mandatoryParameters": "app"})
_MAX_HEAD, _MAX_BODY = 1024, 64 * 1024  # small, so the bounds are reached


def _json_parse(pieces: list[bytes]) -> list[Event]:
    return _run(_JSON.get_events(_handler_request(b"".join(pieces))))


def _json_document(rng: random.Random) -> bytes:
    import json

    return json.dumps([{"headers": _headers(rng), "body": _text(rng, 30)} for _ in range(rng.randint(0, 5))],
                      ensure_ascii=rng.random() < 0.5).encode()


def _blob_parse(pieces: list[bytes]) -> list[Event]:
    body = b"".join(pieces)
    query = "app=x" if body[:1] != b"?" else ""  # a body starting with ? stands for a missing parameter
    return _run(_BLOB.get_events(_handler_request(body, query=query)))


def _http_json_parse(pieces: list[bytes]) -> list[Event]:
    """The http source's path from bytes on the wire: the server's request reader (pipelined
    requests, Content-Length or chunked) and the JSON handler on every whole request."""
    requests: list[HttpRequest] = []
    reader = RequestReader(remote="127.0.0.1", max_head=_MAX_HEAD, max_body=_MAX_BODY, on_request=requests.append,
                           on_begin=lambda: None, on_continue=lambda: None)
    for piece in pieces:
        reader.feed(piece)
    return [event for request in requests for event in _run(_JSON.get_events(request))]


def _http_json_valid(rng: random.Random) -> bytes:
    """One to three pipelined POSTs of JSON events, each with a Content-Length or chunked."""
    requests = []
    for _ in range(rng.randint(1, 3)):
        body = _json_document(rng)
        head = b"POST /?x=%d HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n" % rng.randint(0, 9)
        if rng.random() < 0.5:
            requests.append(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            continue
        chunks, rest = [], body
        while rest:
            size = rng.randint(1, 40)
            chunks.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
            rest = rest[size:]
        requests.append(head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(chunks) + b"0\r\n\r\n")
    return b"".join(requests)


# --- container log lines (taildir lineFormat) ---------------------------------------------------------

def _cri_valid(rng: random.Random) -> bytes:
    return (f"2026-12-06T10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999999):09d}Z "
            f"{rng.choice(['stdout', 'stderr'])} {rng.choice('PF')} {_text(rng, 40)}").encode()


def _docker_valid(rng: random.Random) -> bytes:
    import json

    return json.dumps({"log": _text(rng, 40) + rng.choice(["", "\n"]), "stream": rng.choice(["stdout", "stderr"]),
                       "time": f"2026-12-06T10:00:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z"}).encode()


def _line_parse(parse_line) -> Callable[[list[bytes]], list[Event]]:
    def parse(pieces: list[bytes]) -> list[Event]:
        stream, time_ms, message, partial = parse_line(b"".join(pieces))
        return [Event(message, {"stream": stream, "time": str(time_ms), "partial": str(partial)})]
    return parse


TARGETS = [
    Target("avro-netty-frames", _netty_frames_parse, (FrameError,), _netty_frames_valid),
    Target("avro-netty-frames-deflate", _deflated_netty_frames_parse, (FrameError,), _deflated_netty_frames_valid),
    Target("avro-rpc", _avro_rpc_parse, (FrameError,), lambda rng: _avro_request(rng), stream=False),
    Target("avro-rpc-after-handshake", _avro_session_call_parse, (FrameError,), _avro_session_call_valid,
           stream=False),
    Target("avro-source-stream", _avro_stream_parse, (FrameError,), _avro_stream_valid),
    Target("thrift-compact-framed",
           _framed_parse(PROTOCOLS["compact"], FLUME.ThriftSourceProtocol, thrift_events,
                         _THRIFT_COMPACT.batch_reader),
           (FrameError,), _thrift_valid("compact")),
    Target("thrift-binary-framed",
           _framed_parse(PROTOCOLS["binary"], FLUME.ThriftSourceProtocol, thrift_events),
           (FrameError,), _thrift_valid("binary")),
    Target("scribe", _framed_parse(SCRIBE_PROTOCOL, SCRIBE.Scribe, scribe_events),
           (FrameError,), _scribe_valid),
    Target("flume-og-thrift-unframed", _og_thrift_parse, (FrameError,), _og_thrift_valid),
    Target("flume-og-avro-http", _og_avro_parse, (FrameError,), _og_avro_valid, stream=False),
    Target("syslog-rfc3164", _syslog_parse, (), _syslog_lines(_rfc3164)),
    Target("syslog-rfc5424", _syslog_parse, (), _syslog_lines(_rfc5424)),
    Target("syslog-octet-counting", _syslog_parse, (), _octet_counted),
    Target("syslog-multiport", _multiport_parse, (), _syslog_lines(_rfc5424)),
    Target("netcat-lines-utf8", _netcat_parse(lambda: BoundedLineSplitter(64)), (), _netcat_valid("utf-8")),
    Target("netcat-lines-utf16", _netcat_parse(lambda: TextLineSplitter(64, "utf-16")), (),
           _netcat_valid("utf-16")),
    Target("http-json", _json_parse, (BadRequest, TooManyEvents, UnusableRequest), _json_document, stream=False),
    Target("http-json-on-the-wire", _http_json_parse, (RequestRefused, BadRequest, TooManyEvents, UnusableRequest),
           _http_json_valid),
    Target("http-blob", _blob_parse, (UnusableRequest,), lambda rng: b"blob " + _body(rng), stream=False),
    Target("cri-lines", _line_parse(parse_cri), (MalformedLine,), _cri_valid, stream=False),
    Target("docker-lines", _line_parse(parse_docker), (MalformedLine,), _docker_valid, stream=False),
]


# --- inputs ---------------------------------------------------------------------------------------

def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few random edits of `data`: flipped bits, bytes set to edge values, cuts, repeats, inserts."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randint(0, len(data)) if data else 0
        if choice < 0.3 and data:
            index = min(position, len(data) - 1)
            data[index] ^= 1 << rng.randint(0, 7)
        elif choice < 0.5 and data:
            data[min(position, len(data) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x20))
        elif choice < 0.65:
            del data[position:position + rng.randint(1, 16)]
        elif choice < 0.8:
            chunk = bytes(data[position:position + rng.randint(1, 16)])
            data[position:position] = chunk * rng.randint(1, 4)
        else:
            data[position:position] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def cut(rng: random.Random, data: bytes) -> list[bytes]:
    """`data` in pieces, cut at random byte boundaries (sometimes at every byte)."""
    if len(data) < 2 or rng.random() < 0.1:
        return [data[i:i + 1] for i in range(len(data))] or [data]
    points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def fuzz_input(rng: random.Random, target: Target) -> bytes:
    """Mostly mutations of a valid input (deep paths), sometimes random bytes or a cut valid one."""
    choice = rng.random()
    if choice < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    valid = target.valid(rng)
    if choice < 0.25:
        return valid[:rng.randint(0, len(valid))]
    return mutate(rng, valid)


def outcome(target: Target, pieces: list[bytes]) -> tuple[str, object]:
    """("events", summary) or ("refused", error type); raises whatever else escapes (a crash)."""
    try:
        return "events", target.events(pieces)
    except target.errors as error:
        return "refused", type(error).__name__
