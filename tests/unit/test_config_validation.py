"""validate(AgentConfig): every problem at once, located and explained."""

import textwrap

from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.config.validation import validate


def problems_of(text: str) -> set[tuple[str, str, str]]:
    config = parse_properties(textwrap.dedent(text))
    return {(p.component, p.key, p.severity) for p in validate(config)}


def messages_of(text: str) -> list[str]:
    return [str(p) for p in validate(parse_properties(textwrap.dedent(text)))]


VALID = """
    a1.sources = r1
    a1.channels = c1
    a1.sinks = k1
    a1.sources.r1.type = netcat
    a1.sources.r1.bind = 127.0.0.1
    a1.sources.r1.port = 44444
    a1.sources.r1.channels = c1
    a1.channels.c1.type = memory
    a1.sinks.k1.type = logger
    a1.sinks.k1.channel = c1
"""


def test_a_valid_config_has_no_problems():
    assert problems_of(VALID) == set()


def test_every_problem_is_reported_at_once():
    found = problems_of("""
        a1.sources = r1 r2 r3
        a1.channels = c1
        a1.sinks = k1 k2 k3
        a1.sources.r1.type = no-such-source
        a1.sources.r1.channels = c1
        a1.sources.r2.type = netcat
        a1.sources.r2.port = 4x
        a1.sources.r2.channels = c9
        a1.sources.r3.type = seq
        a1.channels.c1.type = memory
        a1.channels.c1.capacity = many
        a1.channels.c1.colour = blue
        a1.sinks.k1.type = logger
        a1.sinks.k1.channel = c1 c2
        a1.sinks.k2.type = null
        a1.sinks.k3.channel = c1
    """)
    assert found == {
        ("sources.r1", "type", "error"),  # unknown type
        ("sources.r2", "port", "error"),  # bad number
        ("sources.r2", "bind", "error"),  # required key missing
        ("sources.r2", "channels", "error"),  # undefined channel
        ("sources.r3", "channels", "error"),  # source with no channel
        ("channels.c1", "capacity", "error"),
        ("channels.c1", "colour", "warning"),  # unknown key: Flume ignores it
        ("sinks.k1", "channel", "error"),  # two channels
        ("sinks.k2", "channel", "error"),  # no channel
        ("sinks.k3", "type", "error"),  # no type
    }


def test_messages_say_what_is_wrong():
    messages = messages_of("""
        a1.sources = r1
        a1.channels = c1
        a1.sources.r1.type = netcat
        a1.sources.r1.bind = 0.0.0.0
        a1.sources.r1.port = 44444
        a1.sources.r1.channels = c2
        a1.channels.c1.type = memory
    """)
    assert messages == ["error: sources.r1.channels: channel 'c2' is not defined in a1.channels"]


def test_unknown_type_lists_the_alternatives():
    (message,) = messages_of("""
        a1.channels = c1
        a1.sinks = k1
        a1.channels.c1.type = memroy
        a1.sinks.k1.type = logger
        a1.sinks.k1.channel = c1
    """)
    assert "unknown channel type 'memroy'; expected one of" in message and "memory" in message


def test_agent_without_channels_or_components():
    assert problems_of("a1.sources = r1\na1.sources.r1.type = seq\na1.sources.r1.channels = c1\n") >= {
        ("agent", "channels", "error")
    }
    assert ("agent", "", "error") in problems_of("a1.channels = c1\na1.channels.c1.type = memory\n")


def test_flume_class_names_and_case_insensitive_aliases_resolve():
    assert problems_of(VALID.replace("type = netcat", "type = org.apache.flume.source.NetcatSource")
                       .replace("type = memory", "type = MEMORY")) == set()


def test_batch_size_above_transaction_capacity_is_refused():
    found = messages_of("""
        a1.sources = r1
        a1.channels = c1
        a1.sinks = k1
        a1.sources.r1.type = seq
        a1.sources.r1.batchSize = 500
        a1.sources.r1.channels = c1
        a1.channels.c1.type = memory
        a1.channels.c1.capacity = 1000
        a1.channels.c1.transactionCapacity = 100
        a1.sinks.k1.type = null
        a1.sinks.k1.batchSize = 200
        a1.sinks.k1.channel = c1
    """)
    assert found == [
        "error: sources.r1.batchSize: 500 exceeds the transactionCapacity (100) of channel c1; "
        "lower it or raise the channel's transactionCapacity",
        "error: sinks.k1.batchSize: 200 exceeds the transactionCapacity (100) of channel c1; "
        "lower it or raise the channel's transactionCapacity",
    ]


def test_memory_channel_transaction_capacity_above_capacity():
    assert ("channels.c1", "transactionCapacity", "error") in problems_of(
        VALID + "    a1.channels.c1.capacity = 10\n    a1.channels.c1.transactionCapacity = 20\n"
    )


def test_selector_and_interceptor_problems_are_located():
    found = problems_of(VALID + """
    a1.sources.r1.selector.type = multiplexing
    a1.sources.r1.selector.mapping.CA = c7
    a1.sources.r1.interceptors = i1 i2
    a1.sources.r1.interceptors.i1.type = timestamp
    a1.sources.r1.interceptors.i1.preserveExisting = maybe
    a1.sources.r1.interceptors.i2.type = nope
    """)
    assert found == {
        ("sources.r1", "selector.mapping.CA", "error"),
        ("sources.r1", "interceptors.i1.preserveExisting", "error"),
        ("sources.r1", "interceptors.i2.type", "error"),
    }


def test_sink_group_problems():
    found = problems_of(VALID + """
    a1.sinks = k1 k2
    a1.sinks.k2.type = null
    a1.sinks.k2.channel = c1
    a1.sinkgroups = g1 g2
    a1.sinkgroups.g1.sinks = k1 k2
    a1.sinkgroups.g1.processor.type = failover
    a1.sinkgroups.g2.sinks = k2 k9
    a1.sinkgroups.g2.processor.type = load_balance
    a1.sinkgroups.g2.processor.selector = round_robin
    """)
    assert found == {("sinkgroups.g2", "sinks", "error")}
    messages = messages_of(VALID + """
    a1.sinks = k1 k2
    a1.sinks.k2.type = null
    a1.sinks.k2.channel = c1
    a1.sinkgroups = g1 g2
    a1.sinkgroups.g1.sinks = k1 k2
    a1.sinkgroups.g2.sinks = k2
    """)
    assert "error: sinkgroups.g2.sinks: sink 'k2' already belongs to sink group g1; a sink may be in one group only" \
        in messages


def test_unresolved_environment_reference_is_a_warning_not_an_error():
    found = problems_of(VALID.replace("port = 44444", "port = ${AGENT_PORT}"))
    assert found == {("sources.r1", "port", "warning")}
