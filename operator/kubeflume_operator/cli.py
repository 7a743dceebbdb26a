"""`kubeflume`: the product's command line.

    kubeflume run agent.yaml        run a FlumeAgent manifest as a local agent (or a ShellJob locally)
    kubeflume validate FILE         check a flume.conf or a FlumeAgent manifest; every problem, exit 1 on errors
    kubeflume operator [flags]      run the Kubernetes operator (same flags as kubeflume-operator)

It lives in the operator package because it knows both halves: agent manifests and ShellJobs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml
from kubeflume_agent.cli import (
    DEFAULT_METRICS_PORT,
    report_problems,
    run_event_loop,
    serve,
    setup_logging,
    watch_config,
)
from kubeflume_agent.config.manifest import parse_manifest, spec_of
from kubeflume_agent.config.model import AgentConfig
from kubeflume_agent.config.properties import ConfigParseError, parse_properties
from kubeflume_agent.runtime.agent import Agent


class UsageError(Exception):
    """A file the command cannot use; the message says why."""


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"{path}: {error}") from error
    if len(documents) != 1 or not isinstance(documents[0], dict) or "kind" not in documents[0]:
        raise UsageError(f"{path}: expected one FlumeAgent or ShellJob manifest")
    return documents[0]


def load_agent_config(path: Path, agent_name: str | None = None) -> AgentConfig:
    """A FlumeAgent manifest (.yaml/.yml) or a flume.conf, by content."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml") or text.lstrip().startswith(("apiVersion", "kind")):
        manifest = read_manifest(path)
        if manifest.get("kind") != "FlumeAgent":
            raise UsageError(f"{path}: kind {manifest.get('kind')!r} is not an agent")
        return parse_manifest(manifest)
    try:
        return parse_properties(text, agent_name)
    except ConfigParseError as error:
        raise UsageError(f"{path}: {error}") from error


def run_command(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.file)
    if manifest.get("kind") == "ShellJob":
        return run_shelljob(manifest, args.workdir)
    config = load_agent_config(args.file)
    if report_problems(config.validate()):
        return 1
    metrics = spec_of(manifest).get("metrics") or {}
    port = args.metrics_port if args.metrics_port is not None else int(metrics.get("port", DEFAULT_METRICS_PORT))
    agent = Agent(config, metrics_host=args.metrics_bind, metrics_port=port)
    return run_event_loop(lambda: serve(
        agent, watch=lambda: watch_config(args.file, lambda: load_agent_config(args.file), agent, args.reload_interval)
    ))


def run_shelljob(manifest: dict[str, Any], workdir: Path | None) -> int:
    from kubeflume_operator.yarn.local import run_shelljob_locally

    status = asyncio.run(run_shelljob_locally(manifest, workdir))
    yaml.safe_dump({"status": status}, sys.stdout, sort_keys=False)
    return 0 if status.get("phase") == "Succeeded" else 1


def validate_command(args: argparse.Namespace) -> int:
    config = load_agent_config(args.file, args.name)
    problems = config.validate()
    failed = report_problems(problems, out=sys.stdout)
    errors = sum(p.is_error for p in problems)
    print(f"{args.file}: agent {config.name}: {errors} errors, {len(problems) - errors} warnings")
    return 1 if failed else 0


def operator_command(args: argparse.Namespace) -> int:
    from kubeflume_operator.main import main as operator_main

    return operator_main(args.operator_args)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeflume", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a FlumeAgent or ShellJob manifest on this machine")
    run.add_argument("file", type=Path)
    run.add_argument("--metrics-port", type=int, help="default: spec.metrics.port, else 41414")
    run.add_argument("--metrics-bind", default="127.0.0.1")
    run.add_argument("--reload-interval", type=float, default=2.0, help="seconds between checks of the file")
    run.add_argument("--workdir", type=Path, help="ShellJob: where to run (default: a new temporary directory)")
    run.set_defaults(handler=run_command)
    validate = commands.add_parser("validate", help="check a flume.conf or FlumeAgent manifest")
    validate.add_argument("file", type=Path)
    validate.add_argument("-n", "--name", help="the agent, when a flume.conf holds several")
    validate.set_defaults(handler=validate_command)
    operator = commands.add_parser("operator", help="run the Kubernetes operator", add_help=False)
    operator.add_argument("operator_args", nargs=argparse.REMAINDER)
    operator.set_defaults(handler=operator_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
