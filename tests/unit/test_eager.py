"""core.eager: a delivery (a TCP read's, an HTTP request's) runs at once as far as it goes, a task only if it waits."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from kubeflume_agent.core.eager import run_eagerly


async def test_a_delivery_that_never_waits_runs_to_its_end_at_once_without_a_task():
    done = []

    async def deliver() -> None:
        done.append("stored")

    assert run_eagerly(deliver(), asyncio.get_running_loop()) is None
    assert done == ["stored"]


async def test_a_delivery_that_waits_is_finished_by_a_task_with_what_it_waited_for():
    room: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen = []

    async def deliver() -> None:
        seen.append("began")
        seen.append(await room)
        await asyncio.sleep(0)  # a bare yield too
        seen.append("ended")

    task = run_eagerly(deliver(), asyncio.get_running_loop())
    assert task is not None and seen == ["began"]
    room.set_result("room")
    await task
    assert seen == ["began", "room", "ended"]


async def test_cancelling_the_task_reaches_the_waiting_delivery():
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outcome = []

    async def deliver() -> None:
        try:
            await never
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    task = run_eagerly(deliver(), asyncio.get_running_loop())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]


async def test_the_task_runs_a_native_coroutine():
    """Python 3.12 (the images') makes no Task of a generator-based coroutine: a delivery that had
    to wait would raise TypeError there, though 3.11 accepts it."""
    room: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deliver() -> None:
        await room

    task = run_eagerly(deliver(), asyncio.get_running_loop())
    assert task is not None and inspect.iscoroutine(task.get_coro())
    room.set_result(None)
    await task
