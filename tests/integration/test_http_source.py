"""The http source driven by curl: Flume's JSON and BLOB handlers, a handler given by Python path,
Flume's status codes, backpressure (503), TLS."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from kubeflume_agent.core.event import Event
from kubeflume_agent.sources.http import BadRequest
from tests.integration.source_harness import collect, memory_channel, running_source, take_all
from tests.tls import tls_files

pytestmark = pytest.mark.timeout(60)


class UpperHandler:
    """A custom handler, loaded by its dotted path: one event per line, upper-cased."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.header = settings.get("header", "kind")

    async def get_events(self, request) -> list[Event]:
        text = await request.text()
        if not text:
            raise BadRequest("nothing to upper-case")
        return [Event(line.upper().encode(), {self.header: "upper"}) for line in text.splitlines()]


async def curl(url: str, *args: str) -> tuple[int, bytes]:
    """(HTTP status, response body) from a real curl."""
    def run() -> tuple[int, bytes]:
        done = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args, url],
                              capture_output=True, check=True, timeout=30)
        body, _, status = done.stdout.rpartition(b"\n")
        return int(status), body
    return await asyncio.to_thread(run)


def url(source, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{source.bound_ports[0]}/"


JSON = "application/json"


async def test_json_array_of_events():
    payload = '[{"headers": {"host": "web1", "n": 1}, "body": "first"}, {"body": "caf\u00e9"}, {"headers": {"a": "b"}}]'
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        status, _ = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", payload.encode())
        events = await collect(channel, 3)
    assert status == 200
    assert events == [Event(b"first", {"host": "web1", "n": "1"}), Event("caf\u00e9".encode(), {}),
                      Event(b"", {"a": "b"})]
    assert source.counters.append_batch_accepted == 1 and source.counters.events_accepted == 3


async def test_utf16_request_body_is_reencoded_like_java(tmp_path):
    body_file = tmp_path / "events.json"
    body_file.write_bytes('[{"body": "h\u00e9"}]'.encode("utf-16-be"))  # no BOM: Java reads big-endian
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        status, _ = await curl(url(source), "-H", "Content-Type: application/json; charset=UTF-16",
                               "--data-binary", f"@{body_file}")
        [event] = await collect(channel, 1)
    assert status == 200
    assert event.body == b"\xfe\xff" + "h\u00e9".encode("utf-16-be")


@pytest.mark.parametrize(("body", "content_type", "status"), [
    ("[{\"body\": ", JSON, 400),  # malformed JSON
    ('{"body": "not in an array"}', JSON, 400),
    ("[1, 2]", JSON, 400),
    ('[{"body": "x"}]', "application/json; charset=ISO-8859-1", 500),  # only UTF-8/16/32
    ("null", JSON, 500),
])
async def test_flume_status_codes_for_bad_requests(body, content_type, status):
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        got, text = await curl(url(source), "-H", f"Content-Type: {content_type}", "--data-binary", body)
        assert got == status
        assert await take_all(channel) == []
    if status == 400:
        assert text.startswith(b"Bad request from client.")
        assert source.counters.event_read_fail == 1
    else:
        assert source.counters.generic_processing_fail == 1


async def test_full_channel_is_503_and_nothing_is_stored():
    full = memory_channel(capacity=2, transaction_capacity=10, keep_alive="0.05")
    three = '[{"body": "1"}, {"body": "2"}, {"body": "3"}]'
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}, full) as (source, channel):
        status, text = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", three)
        assert status == 503 and b"Channel might be full" in text
        assert channel.size == 0
        status, _ = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", '[{"body": "1"}]')
        assert status == 200
    assert source.counters.channel_write_fail == 1


async def test_methods():
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}) as (source, _):
        assert (await curl(url(source), "-X", "GET"))[0] == 405
        assert (await curl(url(source), "-X", "TRACE"))[0] == 403
        assert (await curl(url(source), "-X", "OPTIONS"))[0] == 403
    params = {"bind": "127.0.0.1", "port": "0", "enableGet": "true", "handler": "blob"}
    async with running_source("http", params) as (source, channel):
        assert (await curl(url(source) + "?a=1", "-X", "GET"))[0] == 200
        [event] = await collect(channel, 1)
    assert event == Event(b"", {"a": "1"})


async def test_blob_handler_and_mandatory_parameters(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00raw\xffbytes")
    params = {"bind": "127.0.0.1", "port": "0", "handler": "org.apache.flume.source.http.BLOBHandler",
              "handler.mandatoryParameters": "tenant"}
    async with running_source("http", params) as (source, channel):
        status, _ = await curl(url(source) + "?tenant=t1&x=y", "--data-binary", f"@{blob}")
        assert status == 200
        status, _ = await curl(url(source) + "?x=y", "--data-binary", "no tenant")
        assert status == 500
        [event] = await collect(channel, 1)
    assert event == Event(b"\x00raw\xffbytes", {"tenant": "t1", "x": "y"})


async def test_a_large_blob_arrives_whole(tmp_path):
    blob = tmp_path / "blob.bin"
    content = bytes(range(256)) * 12_000  # 3 MB: many reads of the request stream
    blob.write_bytes(content)
    async with running_source("http", {"bind": "127.0.0.1", "port": "0", "handler": "blob"}) as (source, channel):
        status, _ = await curl(url(source), "--data-binary", f"@{blob}")
        [event] = await collect(channel, 1)
    assert status == 200 and event.body == content


@pytest.mark.parametrize("count", [3, 200_000], ids=["small-body", "large-body"])
async def test_more_events_than_max_batch_events_is_413(tmp_path, count):
    body = tmp_path / "events.json"
    body.write_text("[" + ",".join(['{"headers": {}, "body": "x"}'] * count) + "]")
    params = {"bind": "127.0.0.1", "port": "0", "max-batch-events": "2"}
    async with running_source("http", params) as (source, channel):
        status, text = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", f"@{body}")
        assert status == 413 and b"max-batch-events" in text
        status, _ = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary",
                               '[{"body": "1"}, {"body": "2"}]')
        assert status == 200
        assert [e.body for e in await collect(channel, 2)] == [b"1", b"2"]
    assert source.counters.event_read_fail == 1


async def test_a_large_body_is_given_up_once_its_objects_exceed_what_events_can_hold(tmp_path):
    """One event whose headers hold 300 000 objects (2 MB): counting stops the parse (413) long
    before they are all built; parsed whole it would be a 400 (headers must be strings)."""
    body = tmp_path / "objects.json"
    body.write_text('[{"headers": {' + ",".join(f'"k{i}": {{}}' for i in range(300_000)) + '}, "body": "x"}]')
    async with running_source("http", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        status, text = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", f"@{body}")
        assert await take_all(channel) == []
    assert status == 413 and b"max-batch-events" in text


async def test_too_many_events_from_a_custom_handler_is_413():
    params = {"bind": "127.0.0.1", "port": "0", "handler": "tests.integration.test_http_source.UpperHandler",
              "max-batch-events": "2"}
    async with running_source("http", params) as (source, channel):
        assert (await curl(url(source), "--data-binary", "a\nb\nc"))[0] == 413
        assert await take_all(channel) == []


async def test_handler_by_python_path():
    params = {"bind": "127.0.0.1", "port": "0", "handler": "tests.integration.test_http_source.UpperHandler",
              "handler.header": "via"}
    async with running_source("http", params) as (source, channel):
        assert (await curl(url(source), "--data-binary", "ab\ncd"))[0] == 200
        assert (await curl(url(source), "--data-binary", ""))[0] == 400
        events = await collect(channel, 2)
    assert events == [Event(b"AB", {"via": "upper"}), Event(b"CD", {"via": "upper"})]


async def test_oversized_body_is_refused(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('[{"body": "' + "x" * 5000 + '"}]')
    params = {"bind": "127.0.0.1", "port": "0", "max-request-bytes": "1000"}
    async with running_source("http", params) as (source, channel):
        status, _ = await curl(url(source), "-H", f"Content-Type: {JSON}", "--data-binary", f"@{big}")
        assert status == 413
        assert await take_all(channel) == []


async def test_tls_with_curl():
    with tls_files("127.0.0.1") as (cert, key, ca):
        params = {"bind": "127.0.0.1", "port": "0", "enableSSL": "true", "ssl-certfile": cert, "ssl-keyfile": key}
        async with running_source("http", params) as (source, channel):
            status, _ = await curl(url(source, "https"), "--cacert", ca, "-H", f"Content-Type: {JSON}",
                                   "--data-binary", '[{"body": "over tls"}]')
            [event] = await collect(channel, 1)
    assert status == 200 and event.body == b"over tls"


async def curl_headers(url: str, *args: str) -> str:
    """The response's status line and headers, as curl -i shows them."""
    def run() -> str:
        done = subprocess.run(["curl", "-sS", "-i", "-o", "-", *args, url], capture_output=True, check=True,
                              timeout=30)
        return done.stdout.decode().split("\r\n\r\n", 1)[0]
    return await asyncio.to_thread(run)


async def test_send_server_version_false_drops_the_server_header_as_jetty_does():
    posted = ("-X", "POST", "-H", f"Content-Type: {JSON}", "--data", '[{"body": "x"}]')
    async with running_source("http", {"port": "0", "bind": "127.0.0.1"}) as (source, _):
        assert "\r\nServer: " in await curl_headers(url(source), *posted)
    quiet = {"port": "0", "bind": "127.0.0.1", "HttpConfiguration.sendServerVersion": "false"}
    async with running_source("http", quiet) as (source, channel):
        head = await curl_headers(url(source), *posted)
        assert head.startswith("HTTP/1.1 200") and "server:" not in head.lower()
        assert "server:" not in (await curl_headers(url(source), "-X", "POST", "--data", "[")).lower()  # 400
        assert [e.body for e in await take_all(channel)] == [b"x"]


async def test_a_refused_request_logs_one_line_with_the_client_and_the_reason(caplog):
    async with running_source("http", {"port": "0", "bind": "127.0.0.1"}) as (source, _):
        for _ in range(20):
            status, _ = await curl(url(source), "-X", "POST", "-H", f"Content-Type: {JSON}", "--data", "[{")
            assert status == 400
    refusals = [r.getMessage() for r in caplog.records if "(400)" in r.getMessage()]
    assert refusals[0].startswith("r1: refused a request from 127.0.0.1 (400): malformed JSON")
    assert len(refusals) == 5  # then rate-limited: the rest are counted, not logged
    assert source.counters.event_read_fail == 20


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00 TLS on the plain port\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
    b"POST / HTTP/1.1\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
])
async def test_a_request_malformed_below_the_handler_is_one_log_line_without_a_traceback(garbage, caplog):
    async with running_source("http", {"port": "0", "bind": "127.0.0.1"}) as (source, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(garbage)
        assert (await reader.read()).startswith(b"HTTP/1.0 400")
        writer.close()
        assert source.counters.event_read_fail == 1
    refusals = [r for r in caplog.records if "refused a request from 127.0.0.1 (400)" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info]
