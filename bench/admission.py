"""How fast the admission webhook answers, through the real API server.

100 sequential server-side dry-run creates (`kubectl apply --dry-run=server` does the same
request) of a typical FlumeAgent of 10 components (2 sources, 4 interceptors, 2 channels,
2 sinks), each timed from the client: request, the API server's own admission chain, its HTTPS
call to the webhook served by the real operator process (`--webhook-listen`), and the answer.
The same requests with no webhook registered give the API server's own share; the difference is
what the webhook adds. A refused (invalid) FlumeAgent is timed too. The API server's own histogram
of its webhook calls (apiserver_admission_webhook_admission_duration_seconds, from its /metrics)
shows the webhook's share alone, in the server's buckets.

    KUBEFLUME_K8S_KIT=/path/to/k8s-kit python3 bench/admission.py         # starts a kit on free ports
    KUBEFLUME_TEST_KUBECONFIG=/tmp/kit/kubeconfig python3 bench/admission.py   # or reuse a running one

The target (issue 14): the webhook answers in under 50 ms at the 99th percentile.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the real-cluster helpers of tests/kubernetes: one way to get a cluster

from kubeflume_operator.main import local_configuration_name  # noqa: E402
from tests.kubernetes.cluster import (  # noqa: E402
    acquire_cluster,
    create_namespace,
    delete_namespace,
    ensure_crds,
    free_port,
    start_operator,
    wait_for,
)

WEBHOOKS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
TYPICAL_SPEC: dict[str, Any] = {
    "agentName": "collector",
    "sources": {
        "syslog": {"type": "syslogtcp", "host": "0.0.0.0", "port": 5140, "channels": ["mem", "disk"],
                   "selector": {"type": "replicating", "optional": "disk"},
                   "interceptors": [{"name": "ts", "type": "timestamp"},
                                    {"name": "host", "type": "host", "hostHeader": "collector"}]},
        "http": {"type": "http", "bind": "0.0.0.0", "port": 8080, "channels": ["mem"],
                 "interceptors": [{"name": "env", "type": "static", "key": "env", "value": "prod"},
                                  {"name": "drop-debug", "type": "regex_filter", "regex": "DEBUG",
                                   "excludeEvents": True}]},
    },
    "channels": {
        "mem": {"type": "memory", "capacity": 100000, "transactionCapacity": 1000},
        "disk": {"type": "file", "checkpointDir": "/var/lib/kubeflume/checkpoint",
                 "dataDirs": "/var/lib/kubeflume/data"},
    },
    "sinks": {
        "out": {"type": "file_roll", "channel": "mem", "sink": {"directory": "/var/log/flume"}},
        "backup": {"type": "logger", "channel": "disk"},
    },
}


def manifest(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": f"bench-{uuid.uuid4().hex[:8]}", "namespace": namespace}, "spec": spec}


def timed_dry_runs(api: kubernetes.client.CustomObjectsApi, namespace: str, spec: dict[str, Any],
                   count: int, *, refused: bool = False) -> list[float]:
    """Milliseconds of each of `count` sequential dry-run creates."""
    durations = []
    for _ in range(count):
        body = manifest(namespace, spec)
        start = time.perf_counter()
        try:
            api.create_namespaced_custom_object("kubeflume.io", "v1alpha1", namespace, "flumeagents", body,
                                                dry_run="All")
            outcome = "admitted"
        except ApiException as error:
            outcome = f"refused ({error.status})"
        durations.append((time.perf_counter() - start) * 1000)
        if outcome != ("refused (422)" if refused else "admitted"):
            raise SystemExit(f"unexpected outcome: {outcome}")
    return durations


def webhook_buckets(cluster: Any, rejected: bool) -> dict[str, float]:
    """The API server's cumulative histogram of its calls to our FlumeAgent webhook: bucket bound -> count."""
    text = cluster.raw("GET", "/metrics").decode()
    wanted = f'name="flumeagents.kubeflume.io",operation="CREATE",rejected="{str(rejected).lower()}"'
    buckets = {}
    for line in text.splitlines():
        if line.startswith("apiserver_admission_webhook_admission_duration_seconds_bucket{") and wanted in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    return buckets


def report_buckets(label: str, before: dict[str, float], after: dict[str, float]) -> None:
    counts = {bound: after.get(bound, 0) - before.get(bound, 0) for bound in after}
    total = counts.get("+Inf", 0)
    shown = ", ".join(f"<= {float(bound) * 1000:g} ms: {counts[bound]:.0f}" for bound in ("0.005", "0.025", "0.1")
                      if bound in counts)
    print(f"{label:<44} n={total:<4.0f} {shown}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(label: str, durations: list[float]) -> None:
    print(f"{label:<44} n={len(durations):<4} p50={statistics.median(durations):6.1f} ms  "
          f"p99={percentile(durations, 0.99):6.1f} ms  max={max(durations):6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="sequential admissions per series (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    args = parser.parse_args()
    invalid = copy.deepcopy(TYPICAL_SPEC)
    invalid["sources"]["http"]["type"] = "nosuch"
    with acquire_cluster() as cluster, tempfile.TemporaryDirectory() as logs:
        ensure_crds(cluster)
        namespace = f"bench-admission-{uuid.uuid4().hex[:6]}"
        create_namespace(cluster, namespace)
        api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
        try:
            timed_dry_runs(api, namespace, TYPICAL_SPEC, args.warmup)
            without = timed_dry_runs(api, namespace, TYPICAL_SPEC, args.count)
            operator = start_operator(cluster.kubeconfig, namespace, Path(logs),
                                      args=["--webhook-listen", f"127.0.0.1:{free_port()}"])
            name = local_configuration_name([namespace])
            try:
                wait_for(lambda: cluster.get(WEBHOOKS, None, name), "the webhook's registration", operator=operator)
                timed_dry_runs(api, namespace, TYPICAL_SPEC, args.warmup)
                before = webhook_buckets(cluster, False), webhook_buckets(cluster, True)
                admitted = timed_dry_runs(api, namespace, TYPICAL_SPEC, args.count)
                refused = timed_dry_runs(api, namespace, invalid, args.count, refused=True)
                after = webhook_buckets(cluster, False), webhook_buckets(cluster, True)
            finally:
                operator.stop()
        finally:
            delete_namespace(cluster, namespace)
        print(f"API server {cluster.server_version()}, a FlumeAgent of 10 components, sequential dry-run creates")
        report("no webhook (the API server alone)", without)
        report("with the webhook: admitted", admitted)
        report("with the webhook: refused (unknown type)", refused)
        print("the API server's own timing of its webhook calls (its histogram buckets):")
        report_buckets("  admitted", before[0], after[0])
        report_buckets("  refused", before[1], after[1])
        added = percentile(admitted, 0.99) - percentile(without, 0.99)
        print(f"the webhook adds {statistics.median(admitted) - statistics.median(without):.1f} ms at the median, "
              f"{added:.1f} ms at p99")
        return 0 if percentile(admitted, 0.99) < 50 and percentile(refused, 0.99) < 50 else 1


if __name__ == "__main__":
    raise SystemExit(main())
