"""Schema checks of crds/ and examples/: what `kubectl apply` would accept, without a cluster.

Every CRD is checked against the Kubernetes API schema (kubernetes-validate) and against the
structural-schema rules the API server enforces; every example manifest against the Kubernetes
schema of its kind or, for our own kinds, against the openAPIV3Schema of its CRD (jsonschema).
FlumeAgent examples must also be valid pipelines for the agent's own config model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.validation import validate

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
EXAMPLE_FILES = sorted([*(REPO / "examples").glob("*.yaml"), *(REPO / "examples").glob("*.yml")])
K8S_VERSION = kubernetes_validate.latest_version()


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every version of every CRD."""
    schemas = {}
    for path in CRD_FILES:
        for crd in documents(path):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field schema below `node`, with its path (items as `[]`, map values as `{}`)."""
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")
    if isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"]
        yield from schema_nodes(node["items"], f"{path}[]")


def test_there_is_something_to_check():
    assert CRD_FILES and EXAMPLE_FILES
    assert ("kubeflume.io/v1alpha1", "FlumeAgent") in crd_schemas()


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_is_a_valid_kubernetes_object(path):
    for crd in documents(path):
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_schema_is_structural_and_described(path):
    """The API server rejects non-structural schemas; users read the descriptions (kubectl explain).

    tests/kubernetes/test_crds.py applies them to a real API server, which checks more than this.
    """
    for crd in documents(path):
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            assert schema["type"] == "object"
            # The API server allows nothing under `metadata` but its type (it describes it itself).
            assert set(schema["properties"].get("metadata", {})) <= {"type"}, f"{path.name}: .metadata"
            for field_path, node in schema_nodes(schema):
                if field_path == ".metadata":
                    continue
                free_form = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
                assert node.get("type") or free_form, f"{path.name}: {field_path} has no type"
                assert node.get("description"), f"{path.name}: {field_path} has no description"
            assert "status" in version.get("subresources", {}), f"{path.name}: no status subresource"


def test_flumeagent_crd_names_and_columns():
    crd = documents(REPO / "crds" / "flumeagents.yaml")[0]
    assert crd["spec"]["group"] == "kubeflume.io"
    assert crd["spec"]["names"]["shortNames"] == ["fa"]
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Ready", "Received", "Delivered",
                                                                         "Age"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_matches_its_schema(path):
    schemas = crd_schemas()
    for doc in documents(path):
        key = (doc["apiVersion"], doc["kind"])
        if key in schemas:
            jsonschema.validate(doc, schemas[key])
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", [p for p in EXAMPLE_FILES if any(d["kind"] == "FlumeAgent" for d in documents(p))],
                         ids=lambda p: p.name)
def test_flumeagent_example_is_a_valid_pipeline(path):
    for doc in documents(path):
        if doc["kind"] == "FlumeAgent":
            errors = [str(problem) for problem in validate(parse_manifest(doc)) if problem.is_error]
            assert errors == [], f"{path.name} {doc['metadata']['name']}"


def test_the_schema_rejects_what_it_should():
    schema = crd_schemas()[("kubeflume.io/v1alpha1", "FlumeAgent")]
    base = documents(REPO / "examples" / "agent.yaml")[0]
    for broken_spec in (
        {**base["spec"], "workload": "ReplicaSet"},
        {**base["spec"], "replicas": -1},
        {**base["spec"], "sources": {"r1": {"channels": ["c1"]}}},  # no type
        {**base["spec"], "metrics": {"port": 70000}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**base, "spec": broken_spec}, schema)
