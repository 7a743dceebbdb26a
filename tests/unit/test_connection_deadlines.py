"""connection_limits.Deadlines: every connection's deadline of a server on one timer, on a real
loop with short deadlines. Only the order of what passes is asserted, never how long it took."""

from __future__ import annotations

import asyncio

from kubeflume_agent.sources.connection_limits import Deadlines

SHORT = 0.01
LONG = 0.5  # far enough from SHORT that deadlines started together pass in the order of their durations


class Connection:
    """Records, in `passed`, when its deadline passes; wakes the test after `expected` deadlines."""

    def __init__(self, name: str, passed: list[str], done: asyncio.Event, expected: int) -> None:
        self.name = name
        self.passed = passed
        self.done = done
        self.expected = expected

    def deadline_passed(self) -> None:
        self.passed.append(self.name)
        if len(self.passed) >= self.expected:
            self.done.set()


def connections(*names: str, expected: int) -> tuple[list[Connection], list[str], asyncio.Event]:
    passed: list[str] = []
    done = asyncio.Event()
    return [Connection(name, passed, done, expected) for name in names], passed, done


async def test_deadlines_of_one_duration_pass_in_the_order_they_were_started_or_restarted():
    deadlines = Deadlines(asyncio.get_running_loop())
    (a, b, c), passed, done = connections("a", "b", "c", expected=3)
    for connection in (a, b, c):
        deadlines.start(connection, SHORT)
    deadlines.start(a, SHORT)  # restarted: now the last to pass
    assert a in deadlines and b in deadlines and c in deadlines
    await asyncio.wait_for(done.wait(), timeout=30)
    assert passed == ["b", "c", "a"]
    assert a not in deadlines and b not in deadlines and c not in deadlines


async def test_a_stopped_deadline_never_passes():
    deadlines = Deadlines(asyncio.get_running_loop())
    (stopped, kept), passed, done = connections("stopped", "kept", expected=1)
    deadlines.start(stopped, SHORT)
    deadlines.start(kept, SHORT)  # passes after `stopped` would have
    deadlines.stop(stopped)
    deadlines.stop(stopped)  # stopping twice is harmless
    assert stopped not in deadlines
    await asyncio.wait_for(done.wait(), timeout=30)
    await asyncio.sleep(0)
    assert passed == ["kept"]


async def test_a_shorter_deadline_started_later_passes_first():
    deadlines = Deadlines(asyncio.get_running_loop())
    (idle, lingering, begun), passed, done = connections("idle", "lingering", "begun", expected=3)
    deadlines.start(idle, LONG)  # the one timer is armed for this one...
    deadlines.start(lingering, SHORT)  # ...and moved earlier for this one
    deadlines.start(begun, LONG)
    await asyncio.wait_for(done.wait(), timeout=30)
    assert passed == ["lingering", "idle", "begun"]


async def test_a_connection_moved_to_another_duration_keeps_only_the_new_deadline():
    deadlines = Deadlines(asyncio.get_running_loop())
    (moved, other), passed, done = connections("moved", "other", expected=2)
    deadlines.start(moved, SHORT)
    deadlines.start(moved, LONG)  # e.g. a request begun on a lingering connection
    deadlines.start(other, SHORT)
    await asyncio.wait_for(done.wait(), timeout=30)
    assert passed == ["other", "moved"]


class Refused(Connection):
    """As the HTTP server: its first deadline passing answers 408, and lingers on a new deadline."""

    def __init__(self, deadlines: Deadlines, *args) -> None:
        super().__init__(*args)
        self.deadlines = deadlines

    def deadline_passed(self) -> None:
        super().deadline_passed()
        if len(self.passed) == 1:
            self.deadlines.start(self, SHORT)


async def test_a_connection_told_its_deadline_passed_can_start_another():
    deadlines = Deadlines(asyncio.get_running_loop())
    passed: list[str] = []
    done = asyncio.Event()
    connection = Refused(deadlines, "refused", passed, done, 2)
    deadlines.start(connection, SHORT)
    await asyncio.wait_for(done.wait(), timeout=30)
    assert passed == ["refused", "refused"]
    assert connection not in deadlines
