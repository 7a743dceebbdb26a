"""The operator as a person runs it (`kubeflume operator`) against a real API server: its log, its ports."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.kubernetes.cluster import (
    CONFIGMAPS,
    FLUMEAGENTS,
    OPERATOR_CLI,
    Cluster,
    OperatorProcess,
    create_namespace,
    delete_namespace,
    launch_operator,
    namespace_name,
    wait_for,
)
from tests.kubernetes.conftest import OPERATOR_ENV
from tests.kubernetes.test_flumeagent import agent_spec, flume_agent

pytestmark = pytest.mark.kubernetes

LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] (?P<logger>\S+)\s+\[(?P<level>\w+)\s*\] (?P<message>.*)$")


def run_cli_operator(cluster: Cluster, namespace: str, log_dir: Path) -> OperatorProcess:
    """`kubeflume operator --namespace NS`: no liveness flag, as on a laptop."""
    return launch_operator(cluster.kubeconfig, log_dir, ["--namespace", namespace], command=OPERATOR_CLI,
                           env=OPERATOR_ENV)


def handled(cluster: Cluster, namespace: str, operator: OperatorProcess, name: str = "web-logs") -> None:
    cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec(), name))
    wait_for(lambda: cluster.get(CONFIGMAPS, namespace, f"{name}-config"), f"{namespace}/{name} handled",
             operator=operator)
    wait_for(lambda: "Creation is processed" in operator.log(), "the operator to log the creation",
             operator=operator)


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on, from /proc (its socket inodes in the LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_kubeflume_operator_logs_each_line_once_and_names_the_object(
        cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path) -> None:
    operator = run_cli_operator(cluster, namespace, tmp_path)
    try:
        handled(cluster, namespace, operator)
    finally:
        operator.stop()
    lines = operator.log().splitlines()
    unformatted = [line for line in lines if line.strip() and not LOG_LINE.match(line)]
    assert not unformatted, "lines in another format (printed twice?):\n" + "\n".join(unformatted[:10])
    messages = [LOG_LINE.match(line) for line in lines if line.strip()]
    assert sum("Creation is processed" in m["message"] for m in messages) == 1
    activities = [m["message"] for m in messages if m["message"].startswith("Activity ")]
    assert activities and len(activities) == len(set(activities)), activities  # each startup activity runs once
    per_object = [m for m in messages if m["logger"] == "kopf.objects"]
    assert per_object
    for message in per_object:
        assert message["message"].startswith(f"[{namespace}/web-logs] "), message.string


def test_two_local_operators_run_side_by_side_without_a_health_server(
        cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path) -> None:
    other = namespace_name("second-operator")
    create_namespace(cluster, other)
    first = run_cli_operator(cluster, namespace, tmp_path)
    second = run_cli_operator(cluster, other, tmp_path)
    try:
        handled(cluster, namespace, first)
        handled(cluster, other, second)
        for operator in (first, second):
            assert operator.process.poll() is None, operator.log_tail()
            assert listening_ports(operator.process.pid) == set()
    finally:
        first.stop()
        second.stop()
        delete_namespace(cluster, other)
