"""Flume's escapes in hdfs.path / hdfs.filePrefix (BucketPath), checked against known dates."""

from __future__ import annotations

import socket

import pytest

from kubeflume_agent.sinks.hdfs.path import MissingTimestamp, PathTemplate, parse_time_zone

UTC = parse_time_zone("UTC")
# 2023-11-14 22:13:20.123 UTC, a Tuesday; 14:13:20 in Los Angeles (PST, -0800)
TS = "1700000000123"
HEADERS = {"timestamp": TS, "host": "web-1", "dc": "eu"}


def expand(template: str, headers=HEADERS, now_ms: int = 0, **options) -> str:
    options.setdefault("time_zone", UTC)
    return PathTemplate(template, **options).expand(headers, now_ms)


@pytest.mark.parametrize(("escape", "expected"), [
    ("%Y", "2023"), ("%y", "23"), ("%m", "11"), ("%n", "11"), ("%d", "14"), ("%e", "14"),
    ("%H", "22"), ("%k", "22"), ("%I", "10"), ("%l", "10"), ("%M", "13"), ("%S", "20"),
    ("%j", "318"), ("%a", "Tue"), ("%A", "Tuesday"), ("%b", "Nov"), ("%B", "November"),
    ("%c", "Tue Nov 14 22:13:20 2023"), ("%D", "11/14/23"), ("%p", "PM"), ("%z", "+0000"),
    ("%s", "1700000000"), ("%t", TS), ("%%", "%"),
])
def test_each_escape(escape, expected):
    assert expand(escape) == expected


def test_unpadded_forms_and_morning_hours():
    headers = {"timestamp": "1704157200000"}  # 2024-01-02 01:00:00 UTC
    assert expand("%e/%n/%k/%l/%p/%I/%j", headers) == "2/1/1/1/AM/01/002"


def test_headers_and_literals_combine():
    assert expand("/flume/%{dc}/%Y-%m-%d/%{host}") == "/flume/eu/2023-11-14/web-1"


def test_missing_header_expands_to_nothing_and_unknown_escape_too():
    assert expand("/a/%{nope}/b%Qc") == "/a//bc"


def test_time_zone_shifts_fields_and_offset():
    la = parse_time_zone("America/Los_Angeles")
    assert expand("%Y%m%d %H:%M %z", time_zone=la) == "20231114 14:13 -0800"


@pytest.mark.parametrize(("unit", "value", "expected"), [
    ("second", 15, "22:13:15"), ("minute", 10, "22:10:00"), ("hour", 6, "18:00:00"), ("minute", 1, "22:13:00"),
])
def test_rounding_down(unit, value, expected):
    assert expand("%H:%M:%S", round_unit=unit, round_value=value) == expected


def test_rounding_applies_to_t_and_s_as_in_flume():
    assert expand("%t %s", round_unit="minute", round_value=1) == "1699999980000 1699999980"


def test_local_timestamp_ignores_the_header():
    assert expand("%t", {}, now_ms=42, use_local_timestamp=True) == "42"


def test_missing_timestamp_is_a_clear_error():
    with pytest.raises(MissingTimestamp, match="timestamp interceptor"):
        expand("/%Y", {})


def test_unparsable_timestamp_is_a_clear_error():
    with pytest.raises(MissingTimestamp, match="epoch ms"):
        expand("/%Y", {"timestamp": "noon"})


def test_header_only_template_needs_no_timestamp():
    template = PathTemplate("/x/%{dc}")
    assert not template.needs_time
    assert template.expand({"dc": "us"}, 0) == "/x/us"


def test_static_template_is_known_up_front():
    assert PathTemplate("/flume/events").static == "/flume/events"
    assert PathTemplate("/flume/100%%").static == "/flume/100%"
    assert PathTemplate("/flume/%Y").static is None


def test_host_escapes():
    assert expand("%[localhost]") == socket.gethostname()
    assert expand("%[FQDN]") == socket.getfqdn()
    assert expand("%[IP]").count(".") == 3


def test_time_zone_names_are_checked():
    assert parse_time_zone("local") is None
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_time_zone("Mars/Olympus")
