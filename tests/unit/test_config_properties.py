"""Flume properties files -> AgentConfig, with the examples of Flume's user guide."""

import textwrap

import pytest

from kubeflume_agent.config.properties import (
    ConfigParseError,
    fingerprint,
    flume_conf,
    parse_properties,
    read_java_properties,
)

GUIDE_SINGLE_NODE = """
# example.conf: A single-node Flume configuration

# Name the components on this agent
a1.sources = r1
a1.sinks = k1
a1.channels = c1

# Describe/configure the source
a1.sources.r1.type = netcat
a1.sources.r1.bind = localhost
a1.sources.r1.port = 44444

# Describe the sink
a1.sinks.k1.type = logger

# Use a channel which buffers events in memory
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.channels.c1.transactionCapacity = 100

# Bind the source and sink to the channel
a1.sources.r1.channels = c1
a1.sinks.k1.channel = c1
"""

GUIDE_MULTIPLEXING = """
agent_foo.sources = avro-AppSrv-source1
agent_foo.sinks = hdfs-Cluster1-sink1 avro-forward-sink2
agent_foo.channels = mem-channel-1 file-channel-2
agent_foo.sources.avro-AppSrv-source1.type = avro
agent_foo.sources.avro-AppSrv-source1.bind = 0.0.0.0
agent_foo.sources.avro-AppSrv-source1.port = 10000
agent_foo.sources.avro-AppSrv-source1.channels = mem-channel-1 file-channel-2
agent_foo.sources.avro-AppSrv-source1.selector.type = multiplexing
agent_foo.sources.avro-AppSrv-source1.selector.header = State
agent_foo.sources.avro-AppSrv-source1.selector.mapping.CA = mem-channel-1
agent_foo.sources.avro-AppSrv-source1.selector.mapping.AZ = file-channel-2
agent_foo.sources.avro-AppSrv-source1.selector.mapping.NY = mem-channel-1 file-channel-2
agent_foo.sources.avro-AppSrv-source1.selector.optional.CA = mem-channel-1 file-channel-2
agent_foo.sources.avro-AppSrv-source1.selector.default = mem-channel-1
agent_foo.channels.mem-channel-1.type = memory
agent_foo.channels.file-channel-2.type = file
agent_foo.sinks.hdfs-Cluster1-sink1.channel = mem-channel-1
agent_foo.sinks.hdfs-Cluster1-sink1.type = hdfs
agent_foo.sinks.hdfs-Cluster1-sink1.hdfs.path = hdfs://namenode/flume/webdata
agent_foo.sinks.avro-forward-sink2.channel = file-channel-2
agent_foo.sinks.avro-forward-sink2.type = avro
agent_foo.sinks.avro-forward-sink2.hostname = 10.1.1.100
agent_foo.sinks.avro-forward-sink2.port = 10000
"""

GUIDE_FAILOVER = """
a1.sinkgroups = g1
a1.sinkgroups.g1.sinks = k1 k2
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 5
a1.sinkgroups.g1.processor.priority.k2 = 10
a1.sinkgroups.g1.processor.maxpenalty = 10000
"""

GUIDE_INTERCEPTORS = """
a1.sources = r1
a1.sinks = k1
a1.channels = c1
a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = org.apache.flume.interceptor.HostInterceptor$Builder
a1.sources.r1.interceptors.i1.preserveExisting = false
a1.sources.r1.interceptors.i1.hostHeader = hostname
a1.sources.r1.interceptors.i2.type = org.apache.flume.interceptor.TimestampInterceptor$Builder
a1.sinks.k1.filePrefix = FlumeData.%{CollectorHost}.%Y-%m-%d
a1.sinks.k1.channel = c1
"""


def test_single_node_example_of_the_user_guide():
    config = parse_properties(GUIDE_SINGLE_NODE)
    assert config.name == "a1"
    source = config.sources["r1"]
    assert (source.type, source.channels, source.params) == ("netcat", ["c1"], {"bind": "localhost", "port": "44444"})
    assert config.sinks["k1"].type == "logger" and config.sinks["k1"].channel == "c1"
    assert config.channels["c1"].params == {"capacity": "1000", "transactionCapacity": "100"}
    assert config.notes == []


def test_multiplexing_example_keeps_selector_keys_below_selector():
    config = parse_properties(GUIDE_MULTIPLEXING, "agent_foo")
    source = config.sources["avro-AppSrv-source1"]
    assert source.selector == {
        "type": "multiplexing",
        "header": "State",
        "mapping.CA": "mem-channel-1",
        "mapping.AZ": "file-channel-2",
        "mapping.NY": "mem-channel-1 file-channel-2",
        "optional.CA": "mem-channel-1 file-channel-2",
        "default": "mem-channel-1",
    }
    assert source.channels == ["mem-channel-1", "file-channel-2"]
    assert config.sinks["hdfs-Cluster1-sink1"].params == {"hdfs.path": "hdfs://namenode/flume/webdata"}


def test_sink_group_processor_keys():
    config = parse_properties("a1.sinks = k1 k2\na1.channels = c1\n" + GUIDE_FAILOVER)
    group = config.sinkgroups["g1"]
    assert group.sinks == ["k1", "k2"]
    assert group.processor == {"type": "failover", "priority.k1": "5", "priority.k2": "10", "maxpenalty": "10000"}


def test_interceptors_keep_their_listed_order_and_keys():
    config = parse_properties(GUIDE_INTERCEPTORS)
    interceptors = config.sources["r1"].interceptors
    assert [i.name for i in interceptors] == ["i1", "i2"]
    assert interceptors[0].type == "org.apache.flume.interceptor.HostInterceptor$Builder"
    assert interceptors[0].params == {"preserveExisting": "false", "hostHeader": "hostname"}


def test_interceptor_list_decides_order_even_when_keys_come_first():
    config = parse_properties(textwrap.dedent("""
        a1.sources = r1
        a1.sources.r1.interceptors.b.type = host
        a1.sources.r1.interceptors.a.type = timestamp
        a1.sources.r1.interceptors = a b
    """))
    assert [i.name for i in config.sources["r1"].interceptors] == ["a", "b"]
    assert config.sources["r1"].interceptors[1].type == "host"


def test_environment_substitution_forms():
    text = textwrap.dedent("""
        a1.sources = r1
        a1.configfilters = f1
        a1.configfilters.f1.type = env
        a1.sources.r1.port = ${NC_PORT}
        a1.sources.r1.bind = ${env:BIND_ADDR}
        a1.sources.r1.path = /data/${f1['DATA_DIR']}/in
        a1.sources.r1.other = ${f1["DATA_DIR"]}-${f1[DATA_DIR]}
        a1.sources.r1.missing = ${NOT_SET_ANYWHERE}
    """)
    environ = {"NC_PORT": "44444", "BIND_ADDR": "10.0.0.1", "DATA_DIR": "logs"}
    params = parse_properties(text, environ=environ).sources["r1"].params
    assert params == {"port": "44444", "bind": "10.0.0.1", "path": "/data/logs/in", "other": "logs-logs",
                      "missing": "${NOT_SET_ANYWHERE}"}


def test_external_config_filter_runs_the_command(tmp_path):
    script = tmp_path / "secret.sh"
    script.write_text('#!/bin/sh\necho "value-of-$1"\n')
    script.chmod(0o755)
    text = textwrap.dedent(f"""
        a1.sources = r1
        a1.configfilters = f
        a1.configfilters.f.type = external
        a1.configfilters.f.command = {script}
        a1.sources.r1.password = ${{f['db_password']}}
    """)
    assert parse_properties(text, environ={}).sources["r1"].params["password"] == "value-of-db_password"


def test_reference_to_another_key_and_nested_references():
    text = "a1.sources = r1\nbase.dir = /var\na1.sources.r1.dir = ${base.dir}/spool\na1.sources.r1.x = ${${NAME}}\n"
    params = parse_properties(text, environ={"NAME": "base.dir"}).sources["r1"].params
    assert params == {"dir": "/var/spool", "x": "/var"}


def test_several_agents_need_a_name():
    text = "a1.sources = r1\na2.sources = r2\n"
    with pytest.raises(ConfigParseError, match="a1, a2"):
        parse_properties(text)
    assert list(parse_properties(text, "a2").sources) == ["r2"]
    with pytest.raises(ConfigParseError, match="no agent named 'a3'"):
        parse_properties(text, "a3")


def test_unlisted_components_are_ignored_with_a_warning():
    config = parse_properties("a1.sources = r1\na1.sources.r1.type = seq\na1.sources.r2.type = netcat\n")
    assert list(config.sources) == ["r1"]
    assert [(n.key, n.severity) for n in config.notes] == [("sources.r2.type", "warning")]


def test_java_properties_syntax():
    text = "\n".join([
        "# comment", "! also a comment", "key1=value1", "key2 : value2", "key3 value3",
        "key4 = line one \\", "    continues", "key\\ with\\ spaces = x\\ty", "unicode = \\u00e9t\\u00e9",
        "empty =", "trailing = kept   ",
    ])
    assert read_java_properties(text) == {
        "key1": "value1", "key2": "value2", "key3": "value3", "key4": "line one continues",
        "key with spaces": "x\ty", "unicode": "été", "empty": "", "trailing": "kept",
    }


def test_render_round_trips_and_is_stable():
    config = parse_properties(GUIDE_MULTIPLEXING, "agent_foo")
    rendered = flume_conf(config)
    again = parse_properties(rendered, "agent_foo")
    assert flume_conf(again) == rendered
    assert again.sources == config.sources and again.sinks == config.sinks and again.channels == config.channels
    assert fingerprint(again) == fingerprint(config)


def test_render_escapes_values_that_properties_syntax_would_change():
    config = parse_properties("a1.sources = r1\na1.sources.r1.type = seq\n")
    config.sources["r1"].params["weird"] = " leading space, back\\slash\nnewline"
    again = parse_properties(flume_conf(config))
    assert again.sources["r1"].params["weird"] == " leading space, back\\slash\nnewline"


def test_fingerprint_changes_with_any_value():
    base = parse_properties(GUIDE_SINGLE_NODE)
    changed = parse_properties(GUIDE_SINGLE_NODE.replace("capacity = 1000", "capacity = 2000"))
    assert fingerprint(base) != fingerprint(changed)
    reordered = parse_properties("\n".join(reversed(GUIDE_SINGLE_NODE.splitlines())))
    assert fingerprint(reordered) == fingerprint(base)


def test_a_flume_conf_is_utf8_when_it_is_valid_utf8_and_latin1_otherwise():
    from kubeflume_agent.config.properties import decode_flume_conf, read_java_properties

    assert read_java_properties(decode_flume_conf("k = café\n".encode()))["k"] == "café"
    assert read_java_properties(decode_flume_conf(b"# \xff\nk = caf\xe9\n"))["k"] == "café"
    assert read_java_properties(decode_flume_conf(b"\xef\xbb\xbfk = v\n")) == {"k": "v"}  # BOM dropped
    assert read_java_properties(decode_flume_conf(b"k = caf\\u00e9 \\u2603\n"))["k"] == "café ☃"


def test_any_bytes_read_as_a_flume_conf_parse_or_fail_with_one_line():
    """A config read error is one clear line, never a traceback: whatever the bytes, reading gives
    a config (whose validation lists problems) or a ConfigParseError of one line."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kubeflume_agent.config.properties import ConfigParseError, decode_flume_conf, parse_properties
    from kubeflume_agent.config.validation import validate

    valid = (b"a1.sources = r1\na1.channels = c1\na1.sinks = k1\na1.sources.r1.type = netcat\n"
             b"a1.sources.r1.bind = 0.0.0.0\na1.sources.r1.port = 44444\na1.sources.r1.channels = c1\n"
             b"a1.channels.c1.type = memory\na1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n")

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.one_of(st.binary(max_size=300),
                     st.tuples(st.integers(0, len(valid)), st.binary(max_size=12), st.integers(0, 8)).map(
                         lambda edit: valid[:edit[0]] + edit[1] + valid[edit[0] + edit[2]:])))
    def reads(data: bytes) -> None:
        if b"configfilters" in data:
            return  # a config filter runs commands: not for random bytes
        try:
            config = parse_properties(decode_flume_conf(data), "a1", environ={})
        except ConfigParseError as error:
            assert "\n" not in str(error)
            return
        for problem in validate(config):
            assert problem.message

    reads()
