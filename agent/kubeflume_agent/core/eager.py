"""Running a coroutine eagerly: as far as it goes before it first has to wait, with no Task unless
it does (Python 3.12's eager tasks, for one call rather than a whole loop; the agent runs on 3.11
too). On the agent's hot paths, a TCP read or an HTTP request whose events the channel takes at
once, a Task and its scheduling would cost more than the work itself.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def run_eagerly(coroutine: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task | None:
    """Run `coroutine` now, as far as it goes without waiting; a Task finishes it only if it
    waits (returned)."""
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return None
    return loop.create_task(_finish(coroutine, awaited))


async def _finish(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    # a native coroutine: from Python 3.12 on, a Task refuses a generator-based one
    await carry_on(coroutine, awaited)


@types.coroutine
def carry_on(coroutine: Coroutine[Any, Any, T], awaited: Any) -> Generator[Any, Any, T]:
    """Await this to go on with a coroutine whose first step ran outside any Task (and gave
    `awaited`, what it waits for): what the awaiting Task sends or throws (a cancellation
    included) goes to the coroutine, and its result is this one's."""
    while True:
        try:
            sent = yield awaited
        except BaseException as error:  # the Task's cancellation included: the coroutine decides
            try:
                awaited = coroutine.throw(error)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = coroutine.send(sent)
            except StopIteration as done:
                return done.value
