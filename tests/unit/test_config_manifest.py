"""FlumeAgent manifests -> AgentConfig: both forms give the same config as the flume.conf."""

import textwrap

import yaml

from kubeflume_agent.config.manifest import flatten, parse_manifest
from kubeflume_agent.config.properties import fingerprint, flume_conf, parse_properties
from kubeflume_agent.config.validation import validate

FLUME_CONF = """
a1.sources = r1
a1.channels = c1 c2
a1.sinks = k1 k2
a1.sinkgroups = g1
a1.sources.r1.type = netcat
a1.sources.r1.bind = 0.0.0.0
a1.sources.r1.port = 44444
a1.sources.r1.ack-every-event = false
a1.sources.r1.channels = c1 c2
a1.sources.r1.selector.type = multiplexing
a1.sources.r1.selector.header = state
a1.sources.r1.selector.mapping.CA = c1
a1.sources.r1.selector.default = c2
a1.sources.r1.interceptors = ts st
a1.sources.r1.interceptors.ts.type = timestamp
a1.sources.r1.interceptors.st.type = static
a1.sources.r1.interceptors.st.key = datacenter
a1.sources.r1.interceptors.st.value = NYC
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c2.type = memory
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = /data/out
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k2.type = logger
a1.sinks.k2.channel = c2
a1.sinkgroups.g1.sinks = k1
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 10
"""

STRUCTURED = """
apiVersion: kubeflume.io/v1alpha1
kind: FlumeAgent
metadata: {name: demo}
spec:
  agentName: a1
  sources:
    r1:
      type: netcat
      channels: [c1, c2]
      bind: 0.0.0.0
      port: 44444
      ack-every-event: false
      selector: {type: multiplexing, header: state, mapping: {CA: c1}, default: c2}
      interceptors:
        - {name: ts, type: timestamp}
        - {name: st, type: static, key: datacenter, value: NYC}
  channels:
    c1: {type: memory, capacity: 10000}
    c2: {type: memory}
  sinks:
    k1: {type: file_roll, channel: c1, sink: {directory: /data/out, rollInterval: 0}}
    k2: {type: logger, channel: c2}
  sinkGroups:
    g1: {sinks: [k1], processor: {type: failover, priority: {k1: 10}}}
"""


def test_structured_spec_equals_the_flume_conf():
    from_manifest = parse_manifest(yaml.safe_load(STRUCTURED))
    from_properties = parse_properties(FLUME_CONF)
    assert flume_conf(from_manifest) == flume_conf(from_properties)
    assert fingerprint(from_manifest) == fingerprint(from_properties)


def test_config_string_spec_equals_the_flume_conf():
    doc = {"kind": "FlumeAgent", "spec": {"config": FLUME_CONF}}
    assert flume_conf(parse_manifest(doc)) == flume_conf(parse_properties(FLUME_CONF))


def test_config_string_is_not_substituted_by_the_operator():
    """${VAR} is resolved by the agent in its pod, from the pod's environment, not where the operator runs."""
    doc = {"spec": {"config": "a1.sources = r1\na1.sources.r1.port = ${PORT}\n"}}
    assert parse_manifest(doc).sources["r1"].params["port"] == "${PORT}"


def test_spec_alone_is_accepted_and_agent_name_defaults():
    config = parse_manifest({"channels": {"c1": {"type": "memory"}}})
    assert config.name == "agent" and list(config.channels) == ["c1"]


def test_shape_problems_are_reported_not_raised():
    doc = yaml.safe_load(textwrap.dedent("""
        spec:
          sources: [r1]
          channels: {c1: memory}
          sinks: {k1: {type: logger, channel: c1}}
          sinkGroups: {g1: {sinks: [k1], colour: red}}
          config: "a1.sources = r1"
    """))
    found = {(p.component, p.key) for p in validate(parse_manifest(doc))}
    assert {("spec", "sources"), ("spec", "channels"), ("spec", "sinks"), ("spec", "sinkGroups")} <= found


def test_structured_problems_are_reported_together():
    doc = yaml.safe_load(textwrap.dedent("""
        spec:
          sources:
            r1: {type: netcat, channels: [c1], port: 44444, interceptors: {ts: {type: timestamp}}}
          channels: {c1: {type: memory}}
          sinks: {k1: {type: logger, channel: c1}}
          sinkGroups: {g1: {sinks: [k1], colour: red}}
    """))
    found = {(p.component, p.key, p.severity) for p in validate(parse_manifest(doc))}
    assert found == {
        ("sources.r1", "interceptors", "error"),
        ("sources.r1", "bind", "error"),
        ("sinkgroups.g1", "colour", "error"),
    }


def test_config_string_with_several_agents_needs_agent_name():
    doc = {"spec": {"config": "a1.channels = c1\na2.channels = c2\n"}}
    (problem,) = validate(parse_manifest(doc))
    assert problem.key == "config" and "a1, a2" in problem.message
    assert list(parse_manifest({"spec": {"agentName": "a2", **doc["spec"]}}).channels) == ["c2"]


def test_flatten_turns_yaml_values_into_flume_strings():
    assert flatten({"a": {"b": 1, "c": True}, "d": [1, "x"], "e": None, "f": 2.5}) == {
        "a.b": "1", "a.c": "true", "d": "1 x", "e": "", "f": "2.5",
    }


def test_the_quickstart_example_is_valid():
    from pathlib import Path

    doc = yaml.safe_load((Path(__file__).parents[2] / "examples" / "agent.yaml").read_text())
    assert [p for p in validate(parse_manifest(doc))] == []
