"""ChunkedFifo against a plain deque: any mix of appends, pops and push-backs keeps the same order."""

from __future__ import annotations

from array import array
from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from kubeflume_agent.channels.fifo import ChunkedFifo

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 20)),
    st.tuples(st.just("pop"), st.integers(0, 25)),
    st.tuples(st.just("pop_and_push_back"), st.integers(0, 25)),
), max_size=60)


@given(operations)
def test_behaves_like_a_deque(steps):
    fifo: ChunkedFifo[list[int]] = ChunkedFifo(list)
    reference: deque[int] = deque()
    counter = 0
    for operation, size in steps:
        if operation == "append":
            chunk = list(range(counter, counter + size))
            counter += size
            fifo.append_chunk(chunk)
            reference.extend(chunk)
        else:
            taken = fifo.pop_front(size)
            expected = [reference.popleft() for _ in range(min(size, len(reference)))]
            assert list(taken) == expected
            if operation == "pop_and_push_back":
                fifo.push_front(taken)
                reference.extendleft(reversed(expected))
        assert len(fifo) == len(reference)
        assert list(fifo.snapshot()) == list(reference)


def test_a_whole_batch_comes_out_as_the_same_chunk_without_a_copy():
    fifo: ChunkedFifo[list[str]] = ChunkedFifo(list)
    batch = ["a", "b", "c"]
    fifo.append_chunk(batch)
    assert fifo.pop_front(10) is batch
    assert len(fifo) == 0 and fifo.pop_front(10) == []


def test_arrays_work_as_chunks():
    fifo: ChunkedFifo[array] = ChunkedFifo(lambda: array("q"))
    fifo.append_chunk(array("q", [1, 2, 3]))
    fifo.append_chunk(array("q", [4, 5]))
    assert fifo.pop_front(4) == array("q", [1, 2, 3, 4])
    assert fifo.snapshot() == array("q", [5])
