"""A sink for crash tests: appends each event's body as a line to a file before the channel forgets it.

The agent under test loads it by Python path (`type = recording_sink:RecordingSink`, with this
directory on PYTHONPATH), as a user's own sink would be loaded. Each batch is written with one
`write` on an O_APPEND descriptor before `write()` returns, so a line is in the file (the page
cache survives SIGKILL) before the channel commits its take: every event the channel let go of
is on record, possibly twice. Once the take has committed, the same bodies are appended again
with a `+` in front (`committed`): an event recorded after its `+` line was delivered again after its take
committed, which the channel must never do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import key
from kubeflume_agent.core.event import Event
from kubeflume_agent.sinks.base import Sink, SinkKeys

COMMITTED = b"+"


@dataclass(frozen=True)
class RecordingSinkConfig(SinkKeys):
    path: str = key("path", str, required=True)


class RecordingSink(Sink[RecordingSinkConfig]):
    async def start(self) -> None:
        self._fd = os.open(self.config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        await super().start()

    async def stop(self) -> None:
        await super().stop()  # the takes still in flight commit first, and write their `+` lines
        os.close(self._fd)

    async def write(self, events: Sequence[Event]) -> None:
        os.write(self._fd, b"".join(event.body + b"\n" for event in events))

    def committed(self, events: Sequence[Event]) -> None:
        os.write(self._fd, b"".join(COMMITTED + event.body + b"\n" for event in events))
