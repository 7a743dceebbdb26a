"""The loops that drive pollable sources and sink processors, with Flume's backoff.

A runner calls `process()` until it is stopped. READY: call again at once (after yielding to the
event loop, so one busy pipeline cannot starve the others). BACKOFF or an error: wait
min(n x 1 s, 5 s) for the n-th consecutive time, as Flume's runners do, except that a sink runner
waiting on empty channels sleeps until a commit wakes it (no polling), and takes a lone event at
once but lets a stream of small commits gather for up to LINGER_SECONDS (see SinkRunner._linger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator

from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.signal import Signal, wait_any, wait_until
from kubeflume_agent.core.status import Status
from kubeflume_agent.sink_processors.builtin import SinkProcessor
from kubeflume_agent.sources.base import PollableSource

log = logging.getLogger(__name__)

BACKOFF_INCREMENT = 1.0
MAX_BACKOFF = 5.0
# A sink runner woken by small commits twice within 2 x LINGER_SECONDS waits up to LINGER_SECONDS
# for more before taking (see SinkRunner._linger): one take and one write per few requests, not per request.
LINGER_SECONDS = 0.005

_size = operator.attrgetter("size")
_settled = operator.attrgetter("settled")


class Runner:
    """Owns one task calling `_step()`; stops only between steps, so no transaction is cut."""

    name = "runner"

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # kept by start: idle waits happen per batch
        self._stopping = asyncio.Event()
        self._stop_signal = Signal()  # wakes a runner idling on its channels' signals
        self._failures = 0
        self.last_error = ""  # the latest failure of a step, for a drain's report

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        self._stop_signal.notify()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                status = await self._step()
            except Exception as error:  # a component's failure must not end the runner
                self._failures += 1
                self.last_error = str(error)
                if self._failures == 1 or self._failures % 10 == 0:
                    log.warning("%s failed (%d in a row): %s", self.name, self._failures, error)
                await self._pause(self._backoff())
                continue
            if status is Status.READY:
                self._failures = 0
                await self._after_ready()
            else:
                self._failures += 1
                await self._idle()

    async def _after_ready(self) -> None:
        """Between two steps that have work: let the others on the event loop have a turn."""
        await asyncio.sleep(0)

    def _backoff(self) -> float:
        return min(self._failures * BACKOFF_INCREMENT, MAX_BACKOFF)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _step(self) -> Status:
        raise NotImplementedError

    async def _idle(self) -> None:
        await self._pause(self._backoff())


class PollableSourceRunner(Runner):
    def __init__(self, source: PollableSource) -> None:
        super().__init__()
        self.source = source
        self.name = f"source {source.name}"

    async def _step(self) -> Status:
        return await self.source.process()


class SinkRunner(Runner):
    def __init__(self, processor: SinkProcessor, channels: list[Channel], *,
                 linger: float = LINGER_SECONDS) -> None:
        super().__init__()
        self.processor = processor
        self.channels = channels
        self.name = "sink " + ",".join(sink.name for sink in processor.sinks)
        self._whole_batch = min(sink.batch_size for sink in processor.sinks)
        self._wake_signals = (*(channel.data_available for channel in channels), self._stop_signal)
        self._linger_seconds = linger
        self._stream_seconds = 2 * linger
        self._woken_at = -self._stream_seconds  # loop time of the latest wake-up from empty channels
        self._draining = False

    async def _step(self) -> Status:
        return await self.processor.process()

    async def _after_ready(self) -> None:
        """A whole batch waiting: take it at once. Sources put a read's worth of events each turn;
        if the sink took only one batch per turn, a fast sender would fill the channel (memory)
        instead of its own socket buffers. Channels emptied, with no take left to settle: wait for
        events now rather than after a step that would find none (a sender pacing single events
        wakes the sink thousands of times a second)."""
        if self._has_whole_batch():
            return
        if self._holds_events() or not all(map(_settled, self.processor.sinks)):
            await asyncio.sleep(0)
        else:
            await self._wait_for_events()

    async def _idle(self) -> None:
        """An empty channel: sleep until events arrive; otherwise back off (Flume's backoff)."""
        if self._holds_events():
            await self._pause(self._backoff())
        else:
            await self._wait_for_events()

    async def _wait_for_events(self) -> None:
        """Sleep until a commit (or stop) wakes the runner: nothing else can give it work, so
        there is no timer to arm and cancel at every wait. Then linger if events come in a stream."""
        if not self._stopping.is_set():
            await wait_any(self._wake_signals, None, loop=self._loop)
            await self._linger()
        self._failures = 0

    async def _linger(self) -> None:
        """Woken by less than a whole batch again within twice the linger: events come in a stream
        of small commits (an HTTP client waiting for each answer), so let up to `linger` seconds of
        it gather before taking it, rather than waking and writing once per commit. A lone event is
        taken at once; a whole batch, a stop or a drain ends the linger."""
        assert self._loop is not None, "runner not started"
        now = self._loop.time()
        in_stream = now - self._woken_at < self._stream_seconds
        self._woken_at = now
        if in_stream and not self._must_take():
            await wait_until(self._wake_signals, self._must_take, self._linger_seconds, loop=self._loop)

    def _must_take(self) -> bool:
        return self._has_whole_batch() or self._draining or self._stopping.is_set()

    def _has_whole_batch(self) -> bool:
        return max(map(_size, self.channels)) >= self._whole_batch

    def _holds_events(self) -> bool:
        return any(map(_size, self.channels))

    async def drain(self, timeout: float) -> bool:
        """Wait until the channels are empty (True) or `timeout` seconds pass (False)."""
        self._draining = True  # no more lingering: take what is there at once
        self._stop_signal.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._holds_events():
            if loop.time() >= deadline or self._task is None or self._task.done():
                return False
            await asyncio.sleep(0.02)
        return True
