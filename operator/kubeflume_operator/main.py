"""kubeflume-operator: the FlumeAgent and ShellJob controllers, run by kopf.

Every kopf setting that matters in production is set here explicitly rather than left to
defaults that change between kopf releases (see the team's operator reference, A7).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import kopf

from kubeflume_operator import GROUP
from kubeflume_operator.context import OperatorContext, Settings
from kubeflume_operator.flumeagent import handlers as flumeagent_handlers
from kubeflume_operator.shelljob import handlers as shelljob_handlers
from kubeflume_operator.webhook import admission
from kubeflume_operator.webhook.local import LocalWebhook
from kubeflume_operator.webhook.serving import ClusterWebhook, Listen, mounted_certificate_server


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


def operator_registry(context: OperatorContext, *, webhook: bool = False) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to `context`; kopf logs in as the official client does.

    The admission handlers only with a webhook server (kopf refuses to start without one).
    """
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    flumeagent_handlers.register(registry, context=context)
    shelljob_handlers.register(registry, context=context)
    if webhook:
        admission.register(registry)
    return registry


def webhook_server(args: argparse.Namespace, context: OperatorContext) -> kopf.WebhookServerProtocol | None:
    """The admission server the flags ask for (see webhook/serving.py), or None."""
    if args.webhook_listen is None:
        return None
    listen = args.webhook_listen
    if args.webhook_cert_dir is not None:
        return mounted_certificate_server(listen, args.webhook_cert_dir)
    if args.webhook_service is not None:
        namespace, _, service = args.webhook_service.partition("/")
        return ClusterWebhook(
            listen, configuration=args.webhook_configuration, secret_namespace=namespace,
            secret_name=args.webhook_secret or f"{service}-tls",
            hostnames=[f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"],
            core=context.core, admission=context.admission,
        )
    return LocalWebhook(
        listen, name=args.webhook_configuration or local_configuration_name(args.namespaces),
        namespaces=[] if args.all_namespaces else args.namespaces, failure_policy=args.webhook_failure_policy,
        timeout_seconds=args.webhook_timeout, admission=context.admission,
    )


def local_configuration_name(namespaces: Sequence[str] | None) -> str:
    """One configuration per set of served namespaces, so two local operators do not overwrite each other."""
    served = "-".join(re.sub(r"[^a-z0-9-]", "x", ns) for ns in namespaces) if namespaces else "all"
    return f"kubeflume-local-{served}"[:200] + f".{GROUP}"


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
    webhook = parser.add_argument_group("admission webhook")
    webhook.add_argument(
        "--webhook-listen", metavar="HOST:PORT", type=Listen.parse,
        help="serve the validating admission webhook here (HTTPS); without --webhook-service, a self-signed "
             "certificate and a ValidatingWebhookConfiguration pointing at this address, removed on exit",
    )
    webhook.add_argument(
        "--webhook-service", metavar="NAMESPACE/NAME",
        help="in a cluster: the Service in front of the webhook; its CA and certificate are kept in a Secret "
             "of that namespace and the CA is injected into --webhook-configuration",
    )
    webhook.add_argument("--webhook-configuration", metavar="NAME",
                         help="the ValidatingWebhookConfiguration (default for local runs: kubeflume-local-<ns>...)")
    webhook.add_argument("--webhook-secret", metavar="NAME", help="the certificates' Secret (default <service>-tls)")
    webhook.add_argument("--webhook-cert-dir", type=Path, metavar="DIR",
                         help="serve tls.crt/tls.key from DIR (cert-manager's Secret; its CA injector fills caBundle)")
    webhook.add_argument("--webhook-failure-policy", choices=admission.FAILURE_POLICIES, default="Fail",
                         help="local runs: what the API server does when the webhook does not answer (default Fail)")
    webhook.add_argument("--webhook-timeout", type=int, default=10, metavar="SECONDS",
                         help="local runs: how long the API server waits for an answer (1-30, default 10)")
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
    if args.webhook_listen is None and (args.webhook_service or args.webhook_cert_dir):
        parser.error("--webhook-service and --webhook-cert-dir need --webhook-listen")
    if args.webhook_service and not (args.webhook_configuration and "/" in args.webhook_service):
        parser.error("--webhook-service NAMESPACE/NAME needs --webhook-configuration (the chart's)")
    # log_prefix=None: kopf puts [namespace/name] before every per-object line (except in JSON,
    # where the object is a field of its own).
    kopf.configure(verbose=args.verbose, quiet=args.quiet, log_format=kopf.LogFormat[args.log_format.upper()],
                   log_prefix=None)
    context = OperatorContext.connect(Settings.from_environ())
    settings = operator_settings()
    settings.admission.server = webhook_server(args, context)
    kopf.run(
        registry=operator_registry(context, webhook=settings.admission.server is not None),
        settings=settings,
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
