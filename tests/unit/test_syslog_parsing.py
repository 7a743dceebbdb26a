"""Flume's two syslog parsers (SyslogUtils for syslogtcp/udp, SyslogParser for multiport) and the
TCP framer, with expected values computed independently (fixed UTC offsets, explicit epochs)."""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeflume_agent.config.keys import InvalidValue
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.syslog import (
    FRAME_PARSER_ACCELERATOR,
    MultiportSyslogParser,
    SyslogFramer,
    SyslogUtilsParser,
    Truncated,
    parse_keep_fields,
    rfc3164_millis,
)


@pytest.fixture
def berlin(monkeypatch):
    """The agent's default time zone matters to Flume's parsing: pin one with a known offset."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def utc_ms(*fields: int, millis: int = 0) -> str:
    return str(calendar.timegm((*fields, 0, 0, 0)) * 1000 + millis)


# Every SyslogUtils test runs on both implementations: the pure-Python reference and the compiled
# accelerator that `pip install` builds (protocols/_syslog_fast.pyx), which reads whole lists of frames.
IMPLEMENTATIONS = [pytest.param(None, id="python"), pytest.param(FRAME_PARSER_ACCELERATOR, id="compiled")]


@pytest.fixture(params=IMPLEMENTATIONS)
def parse(request):
    def parse_one(line: bytes, keep: str = "none") -> Event:
        (event,) = SyslogUtilsParser(parse_keep_fields(keep), accelerator=request.param).parse_all([line])
        return event
    return parse_one


def test_the_accelerator_is_built():
    """pip install compiles it (gcc and the Python headers are needed): without it syslog costs twice the CPU."""
    assert FRAME_PARSER_ACCELERATOR is not None, (
        "protocols/_syslog_fast.pyx is not compiled: run `pip install -e .` again in this checkout")


class TestSyslogUtilsTimestamps:
    def test_fraction_is_milliseconds_and_hides_the_zone(self, berlin, parse):
        event = parse(b"<165>1 2003-08-24T05:14:15.52-07:00 host app - - m")
        # Read as Berlin local time (CEST, UTC+2), offset -07:00 ignored; ".52" is 52 ms.
        assert event.headers["timestamp"] == utc_ms(2003, 8, 24, 3, 14, 15, millis=52)

    def test_fraction_beyond_milliseconds_is_truncated(self, berlin, parse):
        event = parse(b"<165>1 2003-01-24T05:14:15.123456Z host app - - m")
        assert event.headers["timestamp"] == utc_ms(2003, 1, 24, 4, 14, 15, millis=123)  # CET, UTC+1

    @pytest.mark.parametrize("accelerator", IMPLEMENTATIONS)
    def test_lines_of_one_second_keep_their_own_fractions(self, berlin, accelerator):
        parser = SyslogUtilsParser(accelerator=accelerator)
        events = parser.parse_all([b"<165>1 2003-01-24T05:14:15.%dZ h a" % digits for digits in (5, 123456, 999, 5)])
        stamps = [event.headers["timestamp"] for event in events]
        base = calendar.timegm((2003, 1, 24, 4, 14, 15, 0, 0, 0)) * 1000
        assert stamps == [str(base + 5), str(base + 123), str(base + 999), str(base + 5)]

    def test_zone_is_honoured_without_fraction(self, berlin, parse):
        event = parse(b"<165>1 2003-08-24T05:14:15-07:00 h a")
        assert event.headers["timestamp"] == utc_ms(2003, 8, 24, 12, 14, 15)
        assert parse(b"<165>1 2003-08-24T05:14:15Z h a").headers["timestamp"] == utc_ms(2003, 8, 24, 5, 14, 15)

    def test_no_zone_is_local_time(self, berlin, parse):
        assert parse(b"<165>1 2003-08-24T05:14:15 h a").headers["timestamp"] == utc_ms(2003, 8, 24, 3, 14, 15)

    def test_rfc3164_takes_the_current_year_and_rolls_at_the_edges(self):
        now = calendar.timegm((2026, 11, 24, 12, 0, 0, 0, 0, 0))
        assert rfc3164_millis(b"Nov 22 05:40:03", utc=True, now=now) == utc_ms(2026, 11, 22, 5, 40, 3)
        assert rfc3164_millis(b"Dec 31 23:00:00", utc=True, now=now) == utc_ms(2025, 12, 31, 23, 0, 0)
        early = calendar.timegm((2026, 1, 2, 0, 0, 0, 0, 0, 0))
        assert rfc3164_millis(b"Dec 30 23:00:00", utc=True, now=early) == utc_ms(2025, 12, 30, 23, 0, 0)
        late = calendar.timegm((2026, 12, 31, 12, 0, 0, 0, 0, 0))
        assert rfc3164_millis(b"Jan  1 00:10:00", utc=True, now=late) == utc_ms(2027, 1, 1, 0, 10, 0)
        assert rfc3164_millis(b"Feb 30 00:00:00", utc=True, now=now) is None


class TestSyslogUtilsHeadersAndBody:
    def test_rfc3164(self, parse):
        event = parse(b"<13>Nov  2 05:40:03 web1 app[4242]: hello")
        assert event.body == b"app[4242]: hello"
        assert {k: v for k, v in event.headers.items() if k != "timestamp"} == {
            "Facility": "1", "Severity": "5", "priority": "13", "host": "web1"}

    def test_rfc5424_with_nil_values(self, parse):
        event = parse(b"<191>1 - - app - - msg")
        assert event.headers == {"Facility": "23", "Severity": "7", "priority": "191", "version": "1"}
        assert event.body == b"app - - msg"

    @pytest.mark.parametrize("line", [b"plain text", b"<abc>x", b"<>x", b"<1234>x", b"13>x"])
    def test_bad_priority_is_invalid_with_the_raw_line(self, line, parse):
        assert parse(line) == Event(line, {"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"})

    def test_valid_priority_without_a_format_keeps_the_raw_line(self, parse):
        assert parse(b"<30>whatever") == Event(b"<30>whatever", {"Facility": "3", "Severity": "6"})

    def test_empty_message_gives_the_raw_line(self, parse):
        line = b"<13>Nov 22 05:40:03 web1 "
        assert parse(line).body == line

    def test_truncated_frame_is_incomplete_but_parsed(self):
        event = SyslogUtilsParser().parse(Truncated(b"<13>Nov 22 05:40:03 web1 app: cut her"))
        assert event.headers["flume.syslog.status"] == "Incomplete"
        assert event.headers["host"] == "web1" and event.body == b"app: cut her"

    @pytest.mark.parametrize("accelerator", IMPLEMENTATIONS)
    def test_no_stale_priority_after_a_good_event(self, accelerator):
        events = SyslogUtilsParser(accelerator=accelerator).parse_all([b"<1>1 2003-08-24T05:14:15Z h a", b"garbage"])
        assert "priority" not in events[1].headers  # Flume leaks "1" here

    @pytest.mark.parametrize(("keep", "body"), [
        ("true", b"<13>1 2003-08-24T05:14:15Z web1 app msg"),
        ("false", b"app msg"),
        ("timestamp", b"2003-08-24T05:14:15Z app msg"),
        ("priority version timestamp hostname", b"<13>1 2003-08-24T05:14:15Z web1 app msg"),
    ])
    def test_keep_fields(self, keep, body, parse):
        assert parse(b"<13>1 2003-08-24T05:14:15Z web1 app msg", keep).body == body

    def test_keep_fields_rejects_unknown_names(self):
        with pytest.raises(InvalidValue, match="colour"):
            parse_keep_fields("hostname colour")


class TestMultiportParser:
    parser = MultiportSyslogParser()

    def test_rfc5424_zone_and_fraction_are_honoured(self):
        event = self.parser.parse(b"<14>1 2003-10-11T22:14:15.5+02:00 web1 app - - hi", "utf-8")
        assert event.headers == {"Priority": "14", "Facility": "1", "Severity": "6", "Version": "1",
                                 "timestamp": utc_ms(2003, 10, 11, 20, 14, 15, millis=500), "host": "web1"}
        assert event.body == b"app - - hi"

    def test_rfc3164_is_utc(self):
        event = self.parser.parse(b"<14>Nov  2 05:40:03 web1 app: hi", "utf-8")
        assert event.headers["host"] == "web1" and event.body == b"app: hi"
        assert "Version" not in event.headers
        stamp = int(event.headers["timestamp"]) // 1000
        assert time.gmtime(stamp)[1:6] == (11, 2, 5, 40, 3)

    def test_nil_timestamp_is_now(self):
        before = int(time.time() * 1000)
        event = self.parser.parse(b"<14>1 - web1 app - - hi", "utf-8")
        assert before <= int(event.headers["timestamp"]) <= int(time.time() * 1000)

    @pytest.mark.parametrize("line", [b"no bracket", b"<1234567>x", b"<14>", b"<14>1 2003-10-11 nohost",
                                      b"<14>1 2003-10-11T22:14:15+0200 h m", b"<x>1 - h m"])
    def test_parse_errors_are_invalid_with_the_whole_line(self, line):
        assert self.parser.parse(line, "utf-8") == Event(line, {"flume.syslog.status": "Invalid"})

    def test_message_without_body_keeps_the_whole_line(self):
        line = b"<14>1 - web1 "
        assert self.parser.parse(line, "utf-8").body == line

    def test_charset_round_trip_and_decode_failure(self):
        line = "<14>Nov  2 05:40:03 h caf\u00e9".encode("latin-1")
        assert self.parser.parse(line, "iso8859-1").body == "caf\u00e9".encode("latin-1")
        with pytest.raises(UnicodeDecodeError):
            self.parser.parse(line, "utf-8")


class TestFramer:
    def test_lf_lines_and_blank_lines(self):
        framer = SyslogFramer(100)
        assert framer.feed(b"<1>a\n\n<2>b\n<3>c") == [b"<1>a", b"<2>b"]
        assert framer.feed(b"\n") == [b"<3>c"]

    def test_octet_counting_with_embedded_newlines(self):
        framer = SyslogFramer(100)
        assert framer.feed(b"7 <1>a\nb\n9 <2>hello\n") == [b"<1>a\nb", b"<2>hello"]

    def test_digit_lines_that_are_not_octet_counts_stay_lines(self):
        assert SyslogFramer(100).feed(b"123abc\n12345678901 x\n") == [b"123abc", b"12345678901 x"]

    def test_a_count_not_followed_by_a_syslog_message_is_a_line(self):
        """A plain "200 OK" line must not swallow the 200 bytes after it."""
        framer = SyslogFramer(100)
        assert framer.feed(b"200 OK done\n<13>next\n12 ") == [b"200 OK done", b"<13>next"]
        assert framer.feed(b"<13>counted!") == [b"<13>counted!"]

    def test_long_line_is_cut_and_the_rest_follows(self):
        frames = SyslogFramer(10).feed(b"0123456789abcdef\n")
        assert frames == [b"0123456789", b"abcdef"]
        assert type(frames[0]) is Truncated and type(frames[1]) is bytes

    def test_long_octet_frame_is_cut_and_its_rest_skipped_across_reads(self):
        framer = SyslogFramer(10)
        assert framer.feed(b"20 <123456789") == [b"<123456789"]
        assert framer.feed(b"abcde") == []
        assert framer.feed(b"fghij5 <1>x\n") == [b"<1>x"]

    def test_pending_data_never_exceeds_the_event_size(self):
        framer = SyslogFramer(50)
        for _ in range(100):
            framer.feed(b"x" * 37)
            assert framer.pending < 50

    def test_flush_returns_a_last_line_without_lf(self):
        framer = SyslogFramer(100)
        framer.feed(b"<1>last")
        assert framer.flush() == [b"<1>last"]
        assert framer.flush() == []

    @given(st.lists(st.builds(bytes.__add__, st.sampled_from([b"<", b"a"]),
                              st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))),
                    min_size=1, max_size=20),
           st.lists(st.booleans(), min_size=20, max_size=20), st.data())
    def test_any_split_of_the_stream_gives_the_same_frames(self, messages, counted, data):
        stream = b"".join((b"%d %s" % (len(m), m)) if use_count and m.startswith(b"<") else m + b"\n"
                          for m, use_count in zip(messages, counted, strict=False))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        framer = SyslogFramer(1000)
        frames = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            frames += framer.feed(stream[start:end])
        assert frames == messages

    @given(st.lists(st.binary(max_size=70).map(lambda b: b.translate(_NO_DIGITS_NOR_LF)), min_size=1, max_size=30),
           st.integers(10, 60), st.data())
    def test_long_lines_are_cut_alike_however_the_stream_is_split(self, lines, max_size, data):
        stream = b"".join(line + b"\n" for line in lines)
        expected = []
        for line in lines:
            while len(line) >= max_size:
                expected.append(Truncated(line[:max_size]))
                line = line[max_size:]
            if line:
                expected.append(line)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        framer = SyslogFramer(max_size)
        frames = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            frames += framer.feed(stream[start:end])
        assert frames == expected
        assert [type(frame) for frame in frames] == [type(frame) for frame in expected]


_NO_DIGITS_NOR_LF = bytes.maketrans(b"0123456789\n", b"abcdefghij ")


def test_events_with_the_same_header_do_not_share_their_headers():
    """The parser remembers the headers of a header it has seen; each event gets its own copy."""
    parser = SyslogUtilsParser()
    line = b"<13>Nov 22 05:40:03 host app: message"
    first, second = parser.parse(line), parser.parse(line)
    first.headers["added"] = "by an interceptor"
    truncated = parser.parse(Truncated(line))
    assert "added" not in second.headers and "flume.syslog.status" not in second.headers
    assert truncated.headers["flume.syslog.status"] == "Incomplete" and "added" not in truncated.headers
    assert first.headers["host"] == second.headers["host"] == "host"


# Pieces of syslog headers, the usual ones and their near misses, so the generated lines walk every
# branch of both parsers: the compiled one must read each line exactly as the Python reference does.
_PRIS = st.sampled_from([b"<13>", b"<0>", b"<191>", b"<007>", b"<999>", b"<1000>", b"<>", b"<x>", b"13>", b""])
_VERSIONS = st.sampled_from([b"1 ", b"", b"12 ", b" ", b"1", b"1\t", b"0 "])
_STAMPS = st.one_of(
    st.builds(lambda date, fraction, zone: date + fraction + zone,
              st.sampled_from([b"2026-11-22T05:00:00", b"2003-08-24T05:14:15", b"2026-13-40T25:61:61",
                               b"2026-11-22 05:00:00", b"2026-1-22T05:00:00"]),
              st.sampled_from([b"", b".5", b".52", b".123", b".123456", b".1234567", b"."]),
              st.sampled_from([b"", b"Z", b"+02:00", b"-07:00", b"+0200", b"+02", b"z"])),
    st.sampled_from([b"Nov 22 05:40:03", b"Nov  2 05:40:03", b"Feb 30 00:00:00", b"Nov   2 05:40:03",
                     b"Nov 222 05:40:03", b"Xyz 22 05:40:03", b"nov 22 05:40:03", b"Nov 22 5:40:03", b"-"]))
_HOSTS = st.sampled_from([b"host07", b"web-1.example.com", b"a@b", b"_x", b"-", b"-x", b".x", b"h:", b"", b"h\xc3\xa9"])
_GAPS = st.sampled_from([b" ", b" ", b" ", b"  ", b"\t", b""])
_MESSAGES = st.one_of(st.sampled_from([b"app[42]: seq=1 abc", b"", b"m\rx", b"- - msg", b"a\nb"]),
                      st.binary(max_size=30))


@given(st.lists(st.one_of(
    st.builds(lambda *parts: b"".join(parts), _PRIS, _VERSIONS, _STAMPS, _GAPS, _HOSTS, _GAPS, _MESSAGES),
    st.binary(max_size=60)), min_size=1, max_size=30), st.lists(st.booleans(), max_size=30))
def test_the_accelerator_gives_the_references_events(lines, cut):
    cut = [*cut, *[False] * len(lines)][:len(lines)]
    frames = [Truncated(line) if truncated else line for line, truncated in zip(lines, cut, strict=True)]
    compiled = SyslogUtilsParser(accelerator=FRAME_PARSER_ACCELERATOR).parse_all(frames)
    reference = SyslogUtilsParser(accelerator=None).parse_all(frames)
    assert compiled == reference
    assert [list(event.headers) for event in compiled] == [list(event.headers) for event in reference]
    assert all(type(event.body) is bytes for event in compiled)


_LINES = st.one_of(
    st.builds(lambda *parts: b"".join(parts), _PRIS, _VERSIONS, _STAMPS, _GAPS, _HOSTS, _GAPS, _MESSAGES),
    st.sampled_from([b"", b"200 OK", b"0 x", b"12 <13>Nov 22 05:40:03 h counted!", b"x" * 70]),
    st.binary(max_size=80))


@given(st.lists(_LINES, min_size=1, max_size=30), st.integers(10, 100), st.booleans(), st.data())
def test_the_accelerator_frames_and_parses_streams_as_the_reference(lines, max_size, octet_counting, data):
    """Whole reads parsed in one pass give the events of the Python framer and parser, however the
    stream is cut into reads (a line may be cut anywhere, long lines and octet counts included)."""
    stream = b"\n".join(lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reads = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    results = []
    for accelerator in (FRAME_PARSER_ACCELERATOR, None):
        parser, framer = SyslogUtilsParser(accelerator=accelerator), SyslogFramer(max_size, octet_counting)
        events = [event for read in reads if read for event in parser.parse_stream(framer, read)]
        results.append(events + parser.parse_all(framer.flush()))
    compiled, reference = results
    assert compiled == reference
    assert [list(event.headers) for event in compiled] == [list(event.headers) for event in reference]
