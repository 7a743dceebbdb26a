"""The line splitters against a plain model: however a stream is cut into reads, the lines (and
the refused ones) come out the same as from splitting the whole stream at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubeflume_agent.protocols.lines import TOO_LONG, BoundedLineSplitter, ReadLineSplitter

LIMIT = 8  # max-line-length, counting the LF: 7 characters fit

lines = st.lists(st.text(alphabet="ab\rä", max_size=12), max_size=12)
cuts = st.lists(st.integers(0, 200), max_size=10)


def in_reads(data: bytes, positions: list[int]) -> list[bytes]:
    points = sorted({min(p, len(data)) for p in positions})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def bounded_model(text: str, terminated: bool) -> list[bytes | None]:
    parts = text.split("\n")
    last = parts.pop()
    if not terminated and last:
        parts.append(last)
    return [TOO_LONG if len(part) > LIMIT - 1 else part.encode() for part in parts]


@given(lines, st.booleans(), cuts)
def test_bounded_splitter_matches_splitting_the_whole_stream(items, terminated, positions):
    text = "\n".join(items) + ("\n" if terminated else "")
    splitter = BoundedLineSplitter(LIMIT)
    out: list[bytes | None] = []
    for read in in_reads(text.encode(), positions):
        out += splitter.feed(read)
    out += splitter.flush()
    assert out == bounded_model(text, terminated)


@given(st.lists(st.text(alphabet="ab\r\n", max_size=10), max_size=10), cuts)
def test_readline_splitter_ends_lines_as_java_readline(items, positions):
    data = "".join(items).encode()
    splitter = ReadLineSplitter()
    out: list[bytes] = []
    for read in in_reads(data, positions):
        out += splitter.feed(read)
    out += splitter.finish()
    expected = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert out == expected
