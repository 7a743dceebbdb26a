"""`kubeflume`: the product's command line.

    kubeflume run agent.yaml        run a FlumeAgent manifest as a local agent (or a ShellJob locally)
    kubeflume validate FILE         check a flume.conf or FlumeAgent/ShellJob manifests; every problem, exit 1 on errors
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
from kubeflume_agent.config.model import AgentConfig, ConfigError
from kubeflume_agent.config.properties import ConfigParseError, decode_flume_conf, parse_properties
from kubeflume_agent.config.validation import validate
from kubeflume_agent.runtime.agent import Agent
from kubeflume_operator.validation import VALIDATED_KINDS, problems_of


class UsageError(Exception):
    """A file the command cannot use; the message says why."""


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from error


def manifest_text(data: bytes, path: Path) -> str:
    """A YAML file's text: UTF-8, as YAML requires."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: byte {error.start} is not UTF-8; a manifest must be UTF-8") from None


def manifests_in(text: str, path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML text; each must be a manifest with a `kind`."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: {yaml_error_line(error)}") from error
    if not documents or not all(isinstance(doc, dict) and "kind" in doc for doc in documents):
        raise UsageError(f"{path}: expected FlumeAgent or ShellJob manifests")
    return documents


def choose_manifest(path: Path, name: str | None) -> dict[str, Any]:
    """The one manifest of the file, or the one named `name` (metadata.name) among several."""
    documents = manifests_in(manifest_text(read_bytes(path), path), path)
    if name is not None:
        documents = [doc for doc in documents if doc.get("metadata", {}).get("name") == name]
        if not documents:
            raise UsageError(f"{path}: no manifest named {name!r}")
    if len(documents) > 1:
        names = ", ".join(str(doc.get("metadata", {}).get("name")) for doc in documents)
        raise UsageError(f"{path} holds several manifests ({names}); choose one with --name")
    return documents[0]


def agent_config_of(manifest: dict[str, Any], path: Path) -> AgentConfig:
    if manifest.get("kind") != "FlumeAgent":
        raise UsageError(f"{path}: kind {manifest.get('kind')!r} is not an agent")
    return parse_manifest(manifest)


def problems_in_file(path: Path, agent_name: str | None = None) -> list[tuple[str, list[ConfigError]]]:
    """(what, problems) for each FlumeAgent and ShellJob manifest of a YAML file, or the agent of a flume.conf.

    Manifests go through the operator's validator, so problems carry their field paths
    (`spec.sources.r1.type`) exactly as the admission webhook and the reconciler report them.
    """
    data = read_bytes(path)
    text = decode_flume_conf(data)
    if path.suffix in (".yaml", ".yml") or text.lstrip().startswith(("apiVersion", "kind")):
        return [(f"{doc['kind']} {doc.get('metadata', {}).get('name')}", problems_of(doc).problems)
                for doc in manifests_in(manifest_text(data, path), path) if doc.get("kind") in VALIDATED_KINDS]
    try:
        config = parse_properties(text, agent_name)
    except ConfigParseError as error:
        raise UsageError(f"{path}: {error}") from error
    return [(f"agent {config.name}", validate(config))]


def yaml_error_line(error: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: where, then what."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def run_command(args: argparse.Namespace) -> int:
    manifest = choose_manifest(args.file, args.name)
    if manifest.get("kind") == "ShellJob":
        return run_shelljob(manifest, args.workdir)
    config = agent_config_of(manifest, args.file)
    if report_problems(validate(config)):
        return 1
    metrics = spec_of(manifest).get("metrics") or {}
    port = args.metrics_port if args.metrics_port is not None else int(metrics.get("port", DEFAULT_METRICS_PORT))
    agent = Agent(config, metrics_host=args.metrics_bind, metrics_port=port)

    def reload() -> AgentConfig:
        return agent_config_of(choose_manifest(args.file, args.name), args.file)

    return run_event_loop(lambda: serve(
        agent, watch=lambda: watch_config(args.file, reload, agent, args.reload_interval)
    ))


def run_shelljob(manifest: dict[str, Any], workdir: Path | None) -> int:
    from kubeflume_operator.shelljob.local import run_shelljob_locally

    status = asyncio.run(run_shelljob_locally(manifest, workdir))
    yaml.safe_dump({"status": status}, sys.stdout, sort_keys=False)
    return 0 if status.get("phase") == "Succeeded" else 1


def validate_command(args: argparse.Namespace) -> int:
    checked = problems_in_file(args.file, args.name)
    if not checked:
        raise UsageError(f"{args.file}: no FlumeAgent or ShellJob in this file")
    failed = False
    for what, problems in checked:
        failed |= report_problems(problems, out=sys.stdout)
        errors = sum(p.is_error for p in problems)
        print(f"{args.file}: {what}: {errors} errors, {len(problems) - errors} warnings")
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
    run.add_argument("--name", help="the manifest to run (metadata.name) when the file holds several")
    run.add_argument("--metrics-port", type=int, help="default: spec.metrics.port, else 41414")
    run.add_argument("--metrics-bind", default="127.0.0.1")
    run.add_argument("--reload-interval", type=float, default=2.0, help="seconds between checks of the file")
    run.add_argument("--workdir", type=Path, help="ShellJob: where to run (default: a new temporary directory)")
    run.set_defaults(handler=run_command)
    validate = commands.add_parser("validate", help="check a flume.conf, FlumeAgent or ShellJob manifests")
    validate.add_argument("file", type=Path)
    validate.add_argument("-n", "--name", help="the agent, when a flume.conf holds several")
    validate.set_defaults(handler=validate_command)
    operator = commands.add_parser("operator", help="run the Kubernetes operator", add_help=False)
    operator.add_argument("operator_args", nargs=argparse.REMAINDER)
    operator.set_defaults(handler=operator_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = arguments()
    # argparse's REMAINDER does not take a leading `-x`: `operator` hands its words on as they are.
    args, unknown = parser.parse_known_args(argv)
    if args.command == "operator":
        args.operator_args = argv[argv.index("operator") + 1:]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command != "operator":  # the operator's logging is kopf's (its -v/-q/--log-format): once per line
        setup_logging(args.log_level)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
