"""The HTTP server's request reader (llhttp) and what a handler reads of a request: header fields
kept as sent and decoded on demand, the Content-Type's charset, the head and body bounds."""

from __future__ import annotations

import pytest

from kubeflume_agent.sources.http_server import HttpRequest, RequestReader, RequestRefused


def read(data: bytes, *, max_head: int = 8192, max_body: int = 1 << 20) -> list[HttpRequest]:
    requests: list[HttpRequest] = []
    reader = RequestReader(remote="10.0.0.1", max_head=max_head, max_body=max_body, on_request=requests.append,
                           on_begin=lambda: None, on_continue=lambda: None)
    reader.feed(data)
    return requests


def test_headers_are_lower_cased_and_repeated_ones_joined_as_before():
    [request] = read(b"POST /in?app=web&app=db HTTP/1.1\r\nHost: agent\r\nX-Tag: a\r\nx-tag: b\r\n"
                     b"Content-Type: Application/JSON; Charset=\"UTF-16\"\r\nContent-Length: 2\r\n\r\nab")
    assert request.headers == {"host": "agent", "x-tag": "a, b",
                               "content-type": 'Application/JSON; Charset="UTF-16"', "content-length": "2"}
    assert request.field(b"x-tag") == b"a, b" and request.field(b"absent") == b""
    assert (request.content_type, request.charset) == ("application/json", "UTF-16")
    assert (request.method, request.path, request.query, request.body) == ("POST", "/in", {"app": "web"}, b"ab")
    assert (request.remote, request.keep_alive, request.version) == ("10.0.0.1", True, "1.1")


def test_a_request_without_content_type_has_no_charset_and_latin_1_values_survive():
    [request] = read(b"POST / HTTP/1.0\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    assert request.charset is None and request.content_type == ""
    assert request.headers["x-name"] == "caf\u00e9"
    assert (request.keep_alive, request.version) == (False, "1.0")


def test_the_charset_of_each_request_is_its_own_when_pipelined():
    def post(content_type: bytes) -> bytes:
        return b"POST / HTTP/1.1\r\nContent-Type: " + content_type + b"\r\nContent-Length: 1\r\n\r\nx"

    requests = read(post(b"application/json; charset=utf-32") + post(b"application/json") +
                    post(b"text/plain;format=x; charset=ISO-8859-1"))
    assert [r.charset for r in requests] == ["utf-32", None, "ISO-8859-1"]


def test_a_head_over_the_bound_in_one_read_is_refused_400():
    with pytest.raises(RequestRefused) as refused:
        read(b"POST / HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 200 + b"\r\n\r\n", max_head=100)
    assert refused.value.status == 400 and "head larger than 100" in refused.value.reason


def test_a_declared_body_over_the_bound_is_refused_413_before_it_is_read():
    with pytest.raises(RequestRefused) as refused:
        read(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", max_body=1000)
    assert refused.value.status == 413
