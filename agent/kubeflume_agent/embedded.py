"""The embedded agent: a channel and sinks inside a Python application, fed by the application's calls.

As in Flume's EmbeddedAgent, the application is the source. It configures one channel and one or
more sinks with Flume's embedded keys, then puts events; they are stored in the channel in
transactions (or refused, raising ChannelFull) and delivered by the sinks as in any agent:

    agent = EmbeddedAgent("app")
    agent.configure({"channel.type": "memory", "sinks": "k1",
                     "k1.type": "avro", "k1.hostname": "collector", "k1.port": "4141"})
    async with agent:
        await agent.put(b"hello", headers={"host": "web1"})

The keys become an ordinary AgentConfig run by an ordinary Agent, with Flume's component names
(`source-<name>`, `channel-<name>`, `sink-group-<name>`), so counters carry the names Flume gives
them. `BlockingEmbeddedAgent` offers the same with plain calls, for applications without asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from kubeflume_agent.config.model import AgentConfig, ConfigError
from kubeflume_agent.config.properties import build_config
from kubeflume_agent.config.validation import validate
from kubeflume_agent.core.counters import Counters
from kubeflume_agent.core.event import Event
from kubeflume_agent.runtime.agent import Agent, InvalidConfig
from kubeflume_agent.sources.base import Source

log = logging.getLogger(__name__)

SOURCE_TYPE = f"{__name__}:EmbeddedSource"
_SOURCE_TYPES = {"embedded", "org.apache.flume.agent.embedded.embeddedsource", SOURCE_TYPE.lower()}
_RESERVED_SINK_NAMES = {"source", "channel", "processor", "sinks"}

EventOrBody = Event | bytes | str


class EmbeddedSource(Source):
    """The agent's source: events come from the application's put calls, not from a server."""


# --- Flume's embedded keys -> AgentConfig ------------------------------------------------------------


def embedded_config(name: str, properties: Mapping[str, str]) -> AgentConfig:
    """The AgentConfig for Flume's embedded keys; problems only this translation sees are in `notes`.

    Keys: `channel.*`, `sinks` (names), `<sink>.*`, `processor.*` (the sink group's processor) and
    `source.*` (e.g. `source.interceptors`); `source.type` may only name the embedded source.
    """
    suffix = re.sub(r"[\s.]", "", name)  # Flume strips whitespace; a dot would split the keys
    source, channel, group = f"source-{suffix}", f"channel-{suffix}", f"sink-group-{suffix}"
    listed = properties.get("sinks", "").split()
    sinks = [sink for sink in listed if _usable_sink_name(sink)]
    homes = {"source": f"sources.{source}.", "channel": f"channels.{channel}.",
             "processor": f"sinkgroups.{group}.processor."}
    own = {"sources": source, "channels": channel, "sinks": " ".join(sinks),
           f"sources.{source}.type": SOURCE_TYPE, f"sources.{source}.channels": channel}
    if sinks:
        own |= {"sinkgroups": group, f"sinkgroups.{group}.sinks": " ".join(sinks)}
    problems = _structure_problems(properties, listed)
    for key, value in properties.items():
        if key in ("sinks", "source.type"):
            continue
        section, _, rest = key.partition(".")
        if section in sinks and rest:
            own[f"sinks.{key}"] = value
        elif section in homes and rest:
            own[homes[section] + rest] = value
        else:
            problems.append(ConfigError(key, "", "not an embedded agent key: expected channel.*, sinks, "
                                                 "<sink>.* for a sink listed in sinks, processor.* or source.*"))
    own |= {f"sinks.{sink}.channel": channel for sink in sinks}
    config = build_config(name, own)
    config.notes += problems
    return config


def _usable_sink_name(sink: str) -> bool:
    """Sink names prefix their keys, so they must not be taken for the other embedded keys."""
    return "." not in sink and sink.lower() not in _RESERVED_SINK_NAMES


def _structure_problems(properties: Mapping[str, str], sinks: list[str]) -> list[ConfigError]:
    """What Flume's EmbeddedAgentConfiguration checks before it translates the keys."""
    problems = []
    if not sinks:
        problems.append(ConfigError("sinks", "", "is required: the names of one or more sinks (sinks = k1 k2)"))
    problems += [ConfigError("sinks", "", f"{sink!r} cannot name a sink: names may not contain '.' nor be "
                                          f"one of {', '.join(sorted(_RESERVED_SINK_NAMES))}")
                 for sink in sinks if not _usable_sink_name(sink)]
    if properties.get("source.type", "embedded").strip().lower() not in _SOURCE_TYPES:
        problems.append(ConfigError("source", "type", "the application is this agent's source: leave "
                                                      "source.type out or set it to embedded"))
    if sum(map(_usable_sink_name, sinks)) > 1 and "processor.type" not in properties:
        problems.append(ConfigError("processor", "type", "is required with several sinks: failover or "
                                                         "load_balance"))
    return problems


def _user_terms(config: AgentConfig) -> Callable[[ConfigError], ConfigError]:
    """Relocate the agent's problems to the embedded keys a person wrote (`channel.capacity`)."""
    prefixes = ({f"sources.{n}": "source" for n in config.sources}
                | {f"channels.{n}": "channel" for n in config.channels}
                | {f"sinks.{n}": n for n in config.sinks}
                | {f"sinkgroups.{n}": "" for n in config.sinkgroups})

    def relocate(problem: ConfigError) -> ConfigError:
        prefix = prefixes.get(problem.component)
        if prefix is None:
            return problem
        component, _, key = f"{prefix}.{problem.key}".strip(".").partition(".")
        return dataclasses.replace(problem, component=component, key=key)

    return relocate


def _as_event(item: EventOrBody, headers: Mapping[str, str] | None = None) -> Event:
    """An Event as given, or one made of a body (bytes, or str as UTF-8) and a copy of `headers`."""
    if isinstance(item, Event):
        if headers is not None:
            raise TypeError("an Event carries its own headers; pass headers only with a bytes or str body")
        return item
    if isinstance(item, str):
        item = item.encode()
    elif not isinstance(item, bytes):
        raise TypeError(f"expected an Event, bytes or str, got {type(item).__name__}")
    return Event(item, dict(headers or {}))


# --- the agent ---------------------------------------------------------------------------------------


class EmbeddedAgent:
    """Flume's EmbeddedAgent on asyncio: `configure`, `start`, `put`/`put_all`, `stop` (or `async with`).

    Looser than Flume, which allows only memory or file channels and avro sinks: any channel, sink
    and sink processor type the agent knows (or a Python path to one) works here.
    """

    def __init__(self, name: str = "embedded", *, drain_timeout: float = 5.0) -> None:
        self.name = name
        self.drain_timeout = drain_timeout
        self.config: AgentConfig | None = None
        self._agent: Agent | None = None
        self._source: EmbeddedSource | None = None  # set while started

    def configure(self, properties: Mapping[str, str]) -> None:
        """Take Flume's embedded keys. Raises InvalidConfig listing every error at once; logs warnings."""
        if self._source is not None:
            raise RuntimeError(f"embedded agent {self.name} is started; stop it before configuring it")
        config = embedded_config(self.name, properties)
        problems = list(map(_user_terms(config), validate(config)))
        for warning in (p for p in problems if not p.is_error):
            log.warning("embedded agent %s: %s", self.name, warning)
        errors = [p for p in problems if p.is_error]
        if errors:
            raise InvalidConfig(errors)
        self.config = config

    async def start(self) -> None:
        """Start the channel and sinks; puts are accepted from now on."""
        if self.config is None:
            raise RuntimeError(f"embedded agent {self.name} is not configured")
        if self._source is not None:
            raise RuntimeError(f"embedded agent {self.name} is already started")
        agent = Agent(self.config, drain_timeout=self.drain_timeout)
        try:
            await agent.start()
        except BaseException:
            await agent.stop()  # the application lives on: release what did start (a channel's files)
            raise
        self._agent = agent
        (source,) = agent.sources.values()
        assert isinstance(source, EmbeddedSource), "the embedded config has one source, ours"
        self._source = source

    async def put(self, event: EventOrBody, headers: Mapping[str, str] | None = None) -> None:
        """Store one event, or raise ChannelFull (after the channel's keep-alive) and store nothing."""
        await self._started().deliver([_as_event(event, headers)])

    async def put_all(self, events: Iterable[EventOrBody]) -> None:
        """Store a batch in one transaction: all of it, or none of it and raise ChannelError (ChannelFull
        when there is no room, a plain ChannelError when it exceeds the channel's transactionCapacity)."""
        await self._started().deliver([_as_event(event) for event in events])

    async def stop(self) -> None:
        """Refuse further puts, give the sinks `drain_timeout` seconds to empty the channel, stop."""
        if self._source is None or self._agent is None:
            return
        self._source = None
        await self._agent.stop()

    def counters(self) -> dict[str, Counters]:
        """The running components' counters under Flume's names (`CHANNEL.channel-<name>`...)."""
        return self._agent.counters() if self._agent is not None else {}

    def _started(self) -> EmbeddedSource:
        if self._source is None:
            raise RuntimeError(f"embedded agent {self.name} is not started")
        return self._source

    async def __aenter__(self) -> EmbeddedAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class BlockingEmbeddedAgent:
    """The embedded agent for code without asyncio: plain calls that block until done.

    `start()` runs an event loop in a daemon thread; each call is handed to it and waits for the
    outcome, so ChannelFull reaches the caller. Calls may come from several threads at once.
    """

    def __init__(self, name: str = "embedded", *, drain_timeout: float = 5.0) -> None:
        self.agent = EmbeddedAgent(name, drain_timeout=drain_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ended: asyncio.Event | None = None

    def configure(self, properties: Mapping[str, str]) -> None:
        """See EmbeddedAgent.configure."""
        self.agent.configure(properties)

    def start(self) -> None:
        """Start the loop thread, then the agent in it."""
        if self._thread is not None:
            raise RuntimeError(f"embedded agent {self.agent.name} is already started")
        loop_ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(loop_ready),),
                                        name=f"kubeflume-embedded-{self.agent.name}", daemon=True)
        self._thread.start()
        self._loop = loop_ready.result()
        try:
            self._call(self.agent.start)
        except BaseException:
            self._end_loop()
            raise

    def put(self, event: EventOrBody, headers: Mapping[str, str] | None = None) -> None:
        """See EmbeddedAgent.put."""
        self._call(self.agent.put, event, headers)

    def put_all(self, events: Iterable[EventOrBody]) -> None:
        """See EmbeddedAgent.put_all."""
        self._call(self.agent.put_all, list(events))

    def stop(self) -> None:
        """Stop the agent (draining, see EmbeddedAgent.stop), then its loop thread."""
        if self._loop is None:
            return
        try:
            self._call(self.agent.stop)
        finally:
            self._end_loop()

    def counters(self) -> dict[str, Counters]:
        """See EmbeddedAgent.counters."""
        return self.agent.counters()

    async def _serve(self, loop_ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        """The loop thread's main: hand out the loop, then keep it running until `_end_loop`.

        Running it with asyncio.run gives the loop a full shutdown (leftover tasks, executor)."""
        self._ended = asyncio.Event()
        loop_ready.set_result(asyncio.get_running_loop())
        await self._ended.wait()

    def _call(self, function: Callable[..., Coroutine[Any, Any, None]], *args: object) -> None:
        if self._loop is None:
            raise RuntimeError(f"embedded agent {self.agent.name} is not started")
        asyncio.run_coroutine_threadsafe(function(*args), self._loop).result()

    def _end_loop(self) -> None:
        assert self._loop is not None and self._ended is not None and self._thread is not None, "started"
        self._loop.call_soon_threadsafe(self._ended.set)
        self._thread.join()
        self._loop = self._thread = self._ended = None

    def __enter__(self) -> BlockingEmbeddedAgent:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
