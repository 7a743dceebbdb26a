"""One validator, three callers: every problem of a manifest at its field path in the manifest."""

from __future__ import annotations

import subprocess
import sys

import yaml

from kubeflume_operator.problems import describe
from kubeflume_operator.validation import problems_of, refusal


def flumeagent(spec: dict) -> dict:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent", "metadata": {"name": "demo"}, "spec": spec}


PIPELINE = {
    "sources": {"r1": {"type": "netcat", "bind": "0.0.0.0", "port": 5140, "channels": ["c1"],
                       "interceptors": [{"name": "ts", "type": "timestamp"}, {"name": "bad", "type": "nope"}]}},
    "channels": {"c1": {"type": "memory", "colour": "blue"}},
    "sinks": {"k1": {"type": "null", "channel": "c2"}},
    "sinkGroups": {"g1": {"sinks": ["k9"]}},
}


def test_agent_problems_are_located_by_their_field_paths_in_the_spec():
    verdict = problems_of(flumeagent({**PIPELINE, "workload": "DaemonSet", "replicas": 2}))
    assert [describe(p).split(":")[0] for p in verdict.errors] == [
        "spec.sources.r1.interceptors[1].type", "spec.sinks.k1.channel", "spec.sinkGroups.g1.sinks", "spec.replicas"]
    assert [describe(p) for p in verdict.warnings] == ["spec.channels.c1.colour: unknown key (ignored, as Flume does)"]


def test_an_unknown_source_type_names_the_field_and_the_known_types():
    spec = {**PIPELINE, "sources": {"r1": {"type": "nosuch", "channels": ["c1"]}}, "sinks": {}, "sinkGroups": {}}
    [error] = problems_of(flumeagent(spec)).errors
    assert describe(error).startswith("spec.sources.r1.type: unknown source type 'nosuch'; expected one of ")
    assert "netcat" in error.message


def test_a_flume_conf_in_the_spec_is_located_at_spec_config_with_its_own_key():
    conf = "a.sources = r1\na.channels = c1\na.sources.r1.type = nosuch\na.sources.r1.channels = c1\n" \
           "a.channels.c1.type = memory\n"
    [error] = problems_of(flumeagent({"config": conf, "agentName": "a"})).errors
    assert describe(error).startswith("spec.config: sources.r1.type: unknown source type 'nosuch'")


def test_kubernetes_only_problems_have_their_paths_too():
    spec = {"sources": {"r1": {"type": "netcat", "bind": "0.0.0.0", "port": 41414, "channels": ["c1"]}},
            "channels": {"c1": {"type": "memory"}}, "sinks": {"k1": {"type": "null", "channel": "c1"}}}
    [error] = problems_of(flumeagent(spec)).errors
    assert describe(error).startswith("spec.sources.r1.port: port 41414 is the agent's metrics port")


def test_shelljob_problems_share_the_idiom():
    job = {"kind": "ShellJob", "metadata": {"name": "j"},
           "spec": {"command": ["true"], "files": [{"url": "ftp://h/x"}], "containers": 0}}
    found = [describe(p) for p in problems_of(job).errors]
    assert any(p.startswith("spec.files[0].url: ") for p in found)
    assert any(p.startswith("spec.containers: ") for p in found)
    dshell = {"kind": "ShellJob", "metadata": {"name": "j"},
              "spec": {"command": ["true"], "containers": 3, "applicationMaster": {"kind": "dshell"}}}
    assert [describe(p) for p in problems_of(dshell).errors] == [
        "spec.containers: the dshell ApplicationMaster runs exactly one container"]


def test_a_refusal_lists_every_error_on_its_own_line_as_validate_prints_it():
    errors = problems_of(flumeagent(PIPELINE)).errors
    text = refusal("FlumeAgent", "demo", errors)
    lines = text.splitlines()
    assert lines[0] == "FlumeAgent demo has 3 problem(s):"
    assert lines[1:] == [str(error) for error in errors]
    assert lines[1].startswith("error: spec.sources.r1.interceptors[1].type: ")


def test_kubeflume_validate_prints_the_same_lines_for_a_manifest(tmp_path):
    path = tmp_path / "agents.yaml"
    job = {"apiVersion": "kubeflume.io/v1alpha1", "kind": "ShellJob", "metadata": {"name": "j"},
           "spec": {"command": ["true"], "script": "echo"}}
    path.write_text(yaml.safe_dump_all([flumeagent(PIPELINE), job]))
    done = subprocess.run([sys.executable, "-m", "kubeflume_operator.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    expected = [str(p) for p in problems_of(flumeagent(PIPELINE)).problems]
    assert all(line in done.stdout.splitlines() for line in expected)
    assert f"{path}: FlumeAgent demo: 3 errors, 1 warnings" in done.stdout
    assert "error: spec: give exactly one of command, script or jar" in done.stdout
    assert f"{path}: ShellJob j: 1 errors, 0 warnings" in done.stdout
