"""Container log line formats and the joining of partial and multiline records, line by line."""

from __future__ import annotations

import calendar
import re

import pytest

from kubeflume_agent.protocols.container_logs import (
    LineAssembler,
    MalformedLine,
    Multiline,
    parse_cri,
    parse_docker,
    rfc3339_millis,
)

MS_2026 = calendar.timegm((2026, 12, 6, 15, 56, 59)) * 1000


def test_cri_lines_of_containerd_and_cri_o():
    full = parse_cri(b"2026-12-06T15:56:59.123456789Z stdout F hello  world ")
    assert full == ("stdout", MS_2026 + 123, b"hello  world ", False)
    assert parse_cri(b"2026-12-06T16:56:59.5+01:00 stderr P start of") == ("stderr", MS_2026 + 500, b"start of", True)
    assert parse_cri(b"2026-12-06T15:56:59Z stdout F") == ("stdout", MS_2026, b"", False)  # an empty line
    assert parse_cri(b"2026-12-06T15:56:59Z stdout P:x more")[3]


@pytest.mark.parametrize("line", [
    b"hello world", b"2026-12-06T15:56:59Z stdin F x", b"2026-12-06T15:56:59Z stdout", b"yesterday stdout F x",
    b"2026-12-06T15:56:59+0100 stdout F x", b"2026-13-06T15:56:59Z stdout F x", b"2026-12-06T15:56:59.1x2Z stdout F x",
])
def test_malformed_cri_lines_say_why(line):
    with pytest.raises(MalformedLine):
        parse_cri(line)


def test_docker_json_file_lines():
    full = parse_docker(b'{"log":"caf\\u00e9\\n","stream":"stderr","time":"2026-12-06T15:56:59.000000001Z"}')
    assert full == ("stderr", MS_2026, "café".encode(), False)
    assert parse_docker(b'{"log":"no newline","stream":"stdout","time":"2026-12-06T15:56:59Z"}')[3]
    for bad in (b"not json", b'{"stream":"stdout"}', b'{"log":"x\\n","stream":"tty"}', b"[1]"):
        with pytest.raises(MalformedLine):
            parse_docker(bad)


def test_rfc3339_fractions_and_offsets():
    assert rfc3339_millis(b"2026-12-06T15:56:59Z") == MS_2026
    assert rfc3339_millis(b"2026-12-06T15:56:59.9Z") == MS_2026 + 900
    assert rfc3339_millis(b"2026-12-06T13:26:59.042-02:30") == MS_2026 + 42


def feed_lines(assembler: LineAssembler, lines: list[bytes], now: float = 0.0, offset: int = 0):
    """Feed lines as a file holds them (each ended by LF); returns (records, end offset)."""
    out = []
    for line in lines:
        assembler.feed(offset, offset + len(line) + 1, line, now, out)
        offset += len(line) + 1
    return out, offset


def cri(stream: str, tag: str, text: str) -> bytes:
    return f"2026-12-06T15:56:59.{len(text):03d}000000Z {stream} {tag} {text}".encode()


def test_partial_lines_join_per_stream_and_pending_starts_say_where_they_began():
    assembler = LineAssembler("cri", max_bytes=1000, partial_timeout=60)
    lines = [cri("stdout", "P", "aa"), cri("stderr", "F", "err"), cri("stdout", "P", "bb")]
    out, end = feed_lines(assembler, lines)
    assert [r[0] for r in out] == [b"err"]
    assert assembler.pending_starts() == {"stdout": 0}
    more, _ = feed_lines(assembler, [cri("stdout", "F", "cc")], offset=end)
    assert [(r[0], r[2], r[1], r[3]) for r in more] == [(b"aabbcc", "stdout", 0, MS_2026 + 2)]
    assert assembler.pending_starts() == {}


def test_a_record_past_max_bytes_is_cut_never_dropped():
    assembler = LineAssembler("cri", max_bytes=5, partial_timeout=60)
    out, _ = feed_lines(assembler, [cri("stdout", "P", "abc"), cri("stdout", "P", "def"), cri("stdout", "F", "g"),
                                    cri("stdout", "F", "0123456789AB")])
    assert [(r[0], r[5]) for r in out] == [(b"abc", True), (b"defg", False),
                                              (b"01234", True), (b"56789", True), (b"AB", True)]


def test_malformed_lines_pass_through_raw_with_the_reason():
    out, _ = feed_lines(LineAssembler("cri", max_bytes=100, partial_timeout=60), [b"garbage", cri("stdout", "F", "ok")])
    assert out[0][0] == b"garbage" and "stdout|stderr" in out[0][4]
    assert out[1][0] == b"ok" and out[1][4] is None


JAVA_TRACE = ['Exception in thread "main" java.lang.IllegalStateException: boom',
              "\tat com.example.App.run(App.java:42)", "\tat com.example.App.main(App.java:7)",
              "Caused by: java.io.IOException: disk", "\t... 2 more"]
PYTHON_TRACE = ["Traceback (most recent call last):", '  File "app.py", line 3, in <module>', "    main()",
                "ZeroDivisionError: division by zero"]


def multiline_assembler(max_lines: int = 500, flush_timeout: float = 5.0, max_bytes: int = 10_000):
    start = re.compile(rb"^(\d{4}-|Exception|Traceback)")
    return LineAssembler("cri", max_bytes=max_bytes, partial_timeout=60,
                         multiline=Multiline(start, max_lines, flush_timeout))


def test_java_and_python_traces_become_one_record_each_per_stream():
    assembler = multiline_assembler()
    lines = [cri("stdout", "F", "2026-12-06 starting")]
    for java, python in zip(JAVA_TRACE, [*PYTHON_TRACE, ""], strict=True):
        lines.append(cri("stderr", "F", java))
        if python:
            lines.append(cri("stdout", "F", python))
    lines.append(cri("stdout", "F", "2026-12-06 next"))
    lines.append(cri("stderr", "F", "2026-12-06 after the trace"))
    out, _ = feed_lines(assembler, lines)
    assert [(r[2], r[0].decode()) for r in out] == [
        ("stdout", "2026-12-06 starting"),
        ("stdout", "\n".join(PYTHON_TRACE)),
        ("stderr", "\n".join(JAVA_TRACE)),
    ]
    held = []
    assembler.flush(0.0, held, everything=True)
    assert sorted(r[0] for r in held) == [b"2026-12-06 after the trace", b"2026-12-06 next"]


def test_a_lone_last_line_is_flushed_after_the_timeout_and_max_lines_closes_a_record():
    assembler = multiline_assembler(max_lines=2, flush_timeout=5.0)
    out, _ = feed_lines(assembler, [cri("stdout", "F", "Traceback x"), cri("stdout", "F", "  one"),
                                    cri("stdout", "F", "  two")], now=100.0)
    assert [r[0] for r in out] == [b"Traceback x\n  one"]
    assembler.flush(104.9, out)
    assert len(out) == 1
    assembler.flush(105.0, out)
    assert [r[0] for r in out[1:]] == [b"  two"]


def test_replay_skips_what_was_delivered_and_rebuilds_what_was_not():
    lines = [cri("stdout", "P", "aa"), cri("stderr", "F", "err-1"), cri("stdout", "P", "bb"),
             cri("stderr", "F", "err-2"), b"garbage", cri("stdout", "F", "cc"), cri("stderr", "F", "err-3")]
    first = LineAssembler("cri", max_bytes=1000, partial_timeout=60)
    out = []
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for line, start, end in list(zip(lines, offsets, offsets[1:], strict=False))[:4]:
        first.feed(start, end, line, 0.0, out)
    assert [r[0] for r in out] == [b"err-1", b"err-2"]
    read_to, pending = offsets[4], first.pending_starts()
    restarted = first.fresh()
    restarted.replay(read_to, pending)
    replayed = []
    for line, start, end in zip(lines, offsets, offsets[1:], strict=False):
        if start >= min(pending.values()):
            restarted.feed(start, end, line, 0.0, replayed)
    assert [r[0] for r in replayed] == [b"garbage", b"aabbcc", b"err-3"]
