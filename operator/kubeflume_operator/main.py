"""kubeflume-operator: the FlumeAgent and ShellJob controllers, run by kopf.

Every kopf setting that matters in production is set here explicitly rather than left to
defaults that change between kopf releases (see the team's operator reference, A7).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import kopf

from kubeflume_operator import GROUP
from kubeflume_operator.context import OperatorContext, Settings
from kubeflume_operator.flumeagent import handlers as flumeagent_handlers
from kubeflume_operator.shelljob import handlers as shelljob_handlers


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Handler progress and failures become Kubernetes Events; our own messages are posted
    # explicitly with kopf.info/kopf.warn, so logger lines are not duplicated as Events.
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    # Our own annotation prefix and finalizer name: the objects say who manages them.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Reconnect watches that go silent behind load balancers; bound every other API call.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.request_timeout = 60
    # Retry a failed handler after 30 s (kopf's default is 60 s).
    settings.execution.default_backoff = 30
    settings.execution.max_workers = 8
    return settings


def operator_registry(context: OperatorContext) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to `context`; kopf logs in as the official client does."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    flumeagent_handlers.register(registry, context=context)
    shelljob_handlers.register(registry, context=context)
    return registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeflume-operator", description="Run the kubeflume operator (FlumeAgent and ShellJob)."
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS",
        help="serve this namespace (repeatable; kopf globs such as 'team-*' are allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve the whole cluster")
    parser.add_argument(
        "--liveness", default="none", metavar="URL",
        help="serve kopf's liveness endpoint here for a pod's probe, e.g. http://0.0.0.0:8080/healthz "
             "(the Helm chart sets it); default none: no server, so operators on one machine never clash",
    )
    parser.add_argument(
        "--peering", metavar="NAME",
        help="coordinate with other operator replicas through this KopfPeering (default: standalone)",
    )
    parser.add_argument(
        "--priority", type=int, default=0,
        help="peering priority; the replica with the highest priority is active (needs --peering)",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument(
        "--log-format", choices=[f.name.lower() for f in kopf.LogFormat], default="full",
        help="log line format (default full)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.priority and not args.peering:
        parser.error("--priority needs --peering")
    # log_prefix=None: kopf puts [namespace/name] before every per-object line (except in JSON,
    # where the object is a field of its own).
    kopf.configure(verbose=args.verbose, quiet=args.quiet, log_format=kopf.LogFormat[args.log_format.upper()],
                   log_prefix=None)
    context = OperatorContext.connect(Settings.from_environ())
    kopf.run(
        registry=operator_registry(context),
        settings=operator_settings(),
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        clusterwide=args.all_namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
