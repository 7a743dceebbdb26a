"""The CRDs (crds/ and the chart's copies) on a real API server: accepted, structural, served."""

from __future__ import annotations

import pytest

from tests.kubernetes.cluster import CRD_DIR, FLUMEAGENTS, REPO, SHELLJOBS, Cluster, crd_files, crd_names

pytestmark = pytest.mark.kubernetes

CHART_CRD_DIR = REPO / "charts" / "kubeflume" / "charts" / "crds" / "crds"


@pytest.mark.parametrize("folder", [CRD_DIR, CHART_CRD_DIR], ids=["crds", "chart"])
def test_kubectl_apply_client_side_and_server_side_accept_the_crds(cluster: Cluster, folder) -> None:
    files = crd_files(folder)
    arguments = [argument for path in files for argument in ("-f", str(path))]
    client_side = cluster.kubectl("apply", *arguments)
    server_side = cluster.kubectl("apply", "--server-side", "--force-conflicts", *arguments)
    for name in crd_names(files):
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in client_side.stdout
        assert f"customresourcedefinition.apiextensions.k8s.io/{name} serverside-applied" in server_side.stdout
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{name}" for name in crd_names(files)])
    for name in crd_names(files):
        crd = cluster.get("apiextensions.k8s.io/v1/customresourcedefinitions", None, name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("NonStructuralSchema", "False") == "False", crd["status"]["conditions"]
        assert conditions["NamesAccepted"] == "True"


def test_the_custom_resources_are_served_with_their_short_names(cluster: Cluster, crds: list[str],
                                                                 namespace: str) -> None:
    assert sorted(crds) == ["flumeagents.kubeflume.io", "shelljobs.kubeflume.io"]
    resources = cluster.kubectl("api-resources", "--api-group=kubeflume.io", "-o", "name").stdout.split()
    assert sorted(resources) == ["flumeagents.kubeflume.io", "shelljobs.kubeflume.io"]
    for resource in (FLUMEAGENTS, SHELLJOBS):
        assert cluster.list(resource, namespace) == []
    assert "No resources found" in cluster.kubectl("get", "fa,sj", "-n", namespace).stderr
