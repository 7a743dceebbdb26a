"""Properties of memory channel transactions: whatever the interleaving, nothing is lost or duplicated."""

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.model import resolve_component
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event

CAPACITY = 8
TRANSACTION_CAPACITY = 4


def memory_channel(keep_alive: float) -> MemoryChannel:
    params = {"capacity": str(CAPACITY), "transactionCapacity": str(TRANSACTION_CAPACITY),
              "keep-alive": str(keep_alive)}
    settings_, problems = resolve_component(MemoryChannel, params)
    assert not problems
    return MemoryChannel("c1", settings_)


def drain(channel: MemoryChannel) -> list[bytes]:
    async def take_all() -> list[bytes]:
        found: list[bytes] = []
        while True:
            tx = channel.transaction()
            events = tx.take(TRANSACTION_CAPACITY)
            await tx.commit()
            if not events:
                return found
            found += [event.body for event in events]

    return asyncio.run(take_all())


# One step of a client: open a transaction, or act on one of the open ones (chosen by index).
operations = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("put"), st.integers(0, 5), st.integers(1, 5)),
    st.tuples(st.just("take"), st.integers(0, 5), st.integers(1, 5)),
    st.tuples(st.just("commit"), st.integers(0, 5)),
    st.tuples(st.just("rollback"), st.integers(0, 5)),
)


class Model:
    """Drives interleaved transactions and records what was committed on each side."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel
        self.open: list = []
        self.next_id = 0
        self.stored: list[bytes] = []  # bodies of committed puts
        self.delivered: list[bytes] = []  # bodies of committed takes

    async def run(self, steps) -> None:
        for step in steps:
            if step[0] == "open":
                self.open.append(self.channel.transaction())
            elif self.open:
                await getattr(self, step[0])(self.open[step[1] % len(self.open)], *step[2:])
            assert len(self.channel._queue) + self.channel._in_flight_takes <= CAPACITY
        for tx in self.open:
            tx.rollback()

    async def put(self, tx, count: int) -> None:
        events = [Event(str(self.next_id + i).encode()) for i in range(count)]
        self.next_id += count
        try:
            tx.put_all(events)
        except ChannelError:
            assert len(tx.puts) + count > TRANSACTION_CAPACITY

    async def take(self, tx, count: int) -> None:
        try:
            tx.take(count)
        except ChannelError:
            assert len(tx.takes) == TRANSACTION_CAPACITY

    async def commit(self, tx) -> None:
        self.open.remove(tx)
        try:
            await tx.commit()
        except ChannelFull:
            tx.rollback()
            return
        self.stored += [event.body for event in tx.puts]
        self.delivered += [event.body for event in tx.takes]

    async def rollback(self, tx) -> None:
        self.open.remove(tx)
        tx.rollback()


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60))
def test_interleaved_transactions_never_lose_or_duplicate_events(steps):
    channel = memory_channel(keep_alive=0)
    model = Model(channel)
    asyncio.run(model.run(steps))
    remaining = drain(channel)
    assert Counter(model.delivered + remaining) == Counter(model.stored)
    assert len(set(model.stored)) == len(model.stored)
    assert channel.counters.put_success == len(model.stored)


@settings(max_examples=60, deadline=None)
@given(
    producers=st.lists(st.lists(st.integers(1, TRANSACTION_CAPACITY), max_size=8), min_size=1, max_size=3),
    # The consumer rolls back on True; it must commit sometimes, or producers would wait forever.
    consumer_rollbacks=st.lists(st.booleans(), min_size=1, max_size=20).filter(lambda flags: not all(flags)),
)
def test_concurrent_producers_and_consumers_deliver_everything_once_in_order(producers, consumer_rollbacks):
    """Producers wait for room (keep-alive) while a consumer takes, sometimes rolling back;
    each producer's events come out exactly once and in the order that producer committed them."""
    channel = memory_channel(keep_alive=30)
    total = sum(sum(batches) for batches in producers)
    delivered: list[bytes] = []

    async def produce(number: int, batches: list[int]) -> None:
        sent = 0
        for size in batches:
            tx = channel.transaction()
            tx.put_all([Event(f"{number}-{sent + i}".encode()) for i in range(size)])
            await tx.commit()
            sent += size
            await asyncio.sleep(0)

    async def consume() -> None:
        turn = 0
        while len(delivered) < total:
            tx = channel.transaction()
            events = tx.take(TRANSACTION_CAPACITY)
            if events and consumer_rollbacks[turn % len(consumer_rollbacks)]:
                tx.rollback()
            else:
                await tx.commit()
                delivered.extend(event.body for event in events)
            turn += 1
            await asyncio.sleep(0)

    async def scenario() -> None:
        tasks = [produce(n, batches) for n, batches in enumerate(producers)]
        await asyncio.wait_for(asyncio.gather(*tasks, consume()), 60)

    asyncio.run(scenario())
    assert len(delivered) == total == len(set(delivered))
    for number, batches in enumerate(producers):
        mine = [body for body in delivered if body.startswith(f"{number}-".encode())]
        assert mine == [f"{number}-{i}".encode() for i in range(sum(batches))]
    assert channel.size == 0
