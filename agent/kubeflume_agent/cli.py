"""`kubeflume-agent`: run one agent from a flume.conf, with the same flags as `flume-ng agent`.

    kubeflume-agent -n a1 -f flume.conf [--metrics-port 41414] [--no-reload-conf]
    kubeflume-agent -n a1 -f flume.conf --drain [--drain-timeout 60] [--drain-report PATH]

SIGTERM and SIGINT stop the agent gracefully (sources first, sinks drain) and exit 0; SIGUSR1
stops only the sources (a pod's preStop), the sinks going on until SIGTERM. The config
file is polled for changes (like Flume, every 30 s by default); a changed config is applied by
restarting only the components that changed, and a config with errors is refused while the
running one keeps serving.

`--drain` runs the config with its sources off until every channel is empty (exit 0), or gives
up when no event has been delivered for `--drain-timeout` seconds (exit 3, with the reason); its
last line on stdout is a JSON report (see runtime.drain), also written to `--drain-report`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kubeflume_agent.config.model import AgentConfig, ConfigError
from kubeflume_agent.config.properties import ConfigParseError, parse_properties, read_flume_conf
from kubeflume_agent.config.validation import validate
from kubeflume_agent.runtime.agent import Agent, InvalidConfig
from kubeflume_agent.runtime.drain import DrainReport, drain

log = logging.getLogger("kubeflume")

DEFAULT_METRICS_PORT = 41414  # Flume's HTTP monitoring default
STOP_DRAIN_TIMEOUT = 5.0  # seconds sinks get to empty memory channels when the agent stops
DRAIN_TIMEOUT = 60.0  # with --drain: seconds without any delivery before the drain gives up
EXIT_NOT_DRAINED = 3


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def report_problems(problems: list[ConfigError], out=sys.stderr) -> bool:
    """Print every problem; True if any of them is an error."""
    for problem in problems:
        print(problem, file=out)
    return any(problem.is_error for problem in problems)


def tune_garbage_collector() -> None:
    """Events are small objects that live until a sink takes them. With CPython's default
    thresholds (a collection every 700 allocations) the collector re-scans what the channels hold
    thousands of times a second: about a third of the agent's CPU at 200,000 events/s. Freeze what
    start-up made (modules, config) out of its sight and collect the young generation less often;
    nothing here creates reference cycles on the hot path."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_event_loop(main) -> int:
    """Run `main()` on uvloop when it is installed (much faster sockets), else on asyncio."""
    tune_garbage_collector()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def _file_signature(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def watch_config(path: Path, load: Callable[[], AgentConfig], agent: Agent, interval: float) -> None:
    """Poll `path`; apply a changed config, refuse one with errors (the running one stays)."""
    signature = _file_signature(path)
    while True:
        await asyncio.sleep(interval)
        current = _file_signature(path)
        if current is None or current == signature:
            continue
        signature = current
        try:
            await agent.reload(load())
        except (ConfigParseError, InvalidConfig, OSError, ValueError) as error:
            log.error("config %s changed but cannot be applied; the running config stays:\n%s", path, error)
        else:
            log.info("config %s reloaded", path)


async def serve(agent: Agent, describe: bool = True,
                watch: Callable[[], Coroutine[Any, Any, None]] | None = None) -> int:
    """Start `agent`, serve until SIGTERM/SIGINT, stop it gracefully. Returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await agent.start()
    except InvalidConfig as error:
        report_problems(error.problems)
        return 1
    except OSError as error:
        log.error("agent %s could not start: %s", agent.config.name, error)
        await agent.stop()
        return 1
    if describe:
        print_endpoints(agent)
    watcher = loop.create_task(watch()) if watch else None
    quiescing: list[asyncio.Task[None]] = []  # at most one: a second SIGUSR1 changes nothing

    def quiesce() -> None:
        if not quiescing:
            quiescing.append(loop.create_task(agent.stop_sources()))

    loop.add_signal_handler(signal.SIGUSR1, quiesce)
    await stop.wait()
    for task in quiescing:
        await task
    log.info("stopping (signal received)")
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await agent.stop()
    return 0


async def drain_and_report(config: AgentConfig, *, timeout: float, report_path: Path | None,
                           agent_factory: Callable[[AgentConfig], Agent]) -> int:
    """`--drain`: empty the channels with the sources off; report on stdout (and `report_path`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        report = await drain(config, timeout=timeout, stop=stop, agent_factory=agent_factory)
    except OSError as error:
        report = DrainReport(config.name, reason=f"could not start: {error}")
    return publish_report(report, report_path)


def publish_report(report: DrainReport, report_path: Path | None, out=sys.stdout) -> int:
    """Print the report as the last line of stdout (and into `report_path`); the exit code it implies."""
    line = report.to_json()
    if report.drained:
        log.info("drained: %d events held, %d delivered", sum(report.held.values()), sum(report.delivered.values()))
    else:
        log.error("not drained: %s", report.reason)
    print(line, file=out, flush=True)
    if report_path is not None:
        try:
            report_path.write_text(line)
        except OSError as error:
            log.error("cannot write the drain report to %s: %s", report_path, error)
    return 0 if report.drained else EXIT_NOT_DRAINED


def print_endpoints(agent: Agent, out=sys.stdout) -> None:
    """Tell a person where the agent listens and where it writes."""
    print(f"agent {agent.config.name} is running", file=out)
    for name, source in agent.sources.items():
        print(f"  source {name}: {source.describe()}", file=out)
    for name, sink in agent.sinks.items():
        print(f"  sink {name}: {sink.describe()}", file=out)
    if agent.metrics_server is not None:
        print(f"  metrics: http://{agent.metrics_server.host}:{agent.metrics_server.port}/metrics", file=out)
    out.flush()


def _parse_system_properties(values: list[str]) -> dict[str, str]:
    """`-Dflume.monitoring.port=34545` style flags, so flume-ng command lines keep working."""
    return dict(value.partition("=")[::2] for value in values)


def agent_arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeflume-agent", description="Run a Flume agent from a flume.conf.")
    parser.add_argument("-n", "--name", required=True, help="the agent to run (the prefix of its keys)")
    parser.add_argument("-f", "--conf-file", required=True, type=Path, help="the flume.conf (properties) file")
    parser.add_argument("-c", "--conf", help="accepted for flume-ng compatibility; not used")
    parser.add_argument("--metrics-port", type=int, help=f"serve /metrics here (default {DEFAULT_METRICS_PORT})")
    parser.add_argument("--metrics-bind", default="0.0.0.0", help="address of the metrics server")
    parser.add_argument("--no-metrics", action="store_true", help="do not serve metrics")
    parser.add_argument("--no-reload-conf", action="store_true", help="do not watch the config file")
    parser.add_argument("--reload-interval", type=float, default=30.0, help="seconds between config checks")
    parser.add_argument("--drain-timeout", type=float,
                        help=f"seconds sinks may take to empty memory channels when stopping (default "
                             f"{STOP_DRAIN_TIMEOUT:g}); with --drain, seconds without any delivery before "
                             f"giving up (default {DRAIN_TIMEOUT:g})")
    parser.add_argument("--drain", action="store_true",
                        help="sources off: deliver what the channels hold, exit 0 when all are empty")
    parser.add_argument("--drain-report", type=Path, metavar="PATH",
                        help="with --drain, also write the JSON report here (e.g. /dev/termination-log)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("-D", dest="system_properties", action="append", default=[], metavar="KEY=VALUE",
                        help="flume-ng style properties; flume.monitoring.port sets the metrics port")
    return parser


def agent_main(argv: list[str] | None = None) -> int:
    args = agent_arguments().parse_args(argv)
    setup_logging(args.log_level)
    properties = _parse_system_properties(args.system_properties)
    metrics_port = (args.metrics_port if args.metrics_port is not None
                    else int(properties.get("flume.monitoring.port", DEFAULT_METRICS_PORT)))

    def load() -> AgentConfig:
        return parse_properties(read_flume_conf(args.conf_file), args.name)

    try:
        config = load()
    except ConfigParseError as error:
        print(f"error: {args.conf_file}: {error}", file=sys.stderr)
        return 1
    if report_problems(validate(config)):
        return 1
    if args.drain:
        def drain_agent(drain_config: AgentConfig) -> Agent:
            return Agent(drain_config, metrics_host=args.metrics_bind,
                         metrics_port=None if args.no_metrics else metrics_port)

        timeout = DRAIN_TIMEOUT if args.drain_timeout is None else args.drain_timeout
        return run_event_loop(lambda: drain_and_report(config, timeout=timeout, report_path=args.drain_report,
                                                        agent_factory=drain_agent))
    agent = Agent(config, metrics_host=args.metrics_bind, metrics_port=None if args.no_metrics else metrics_port,
                  drain_timeout=STOP_DRAIN_TIMEOUT if args.drain_timeout is None else args.drain_timeout)
    watch = None if args.no_reload_conf else (lambda: watch_config(args.conf_file, load, agent, args.reload_interval))
    return run_event_loop(lambda: serve(agent, watch=watch))


if __name__ == "__main__":
    sys.exit(agent_main())
