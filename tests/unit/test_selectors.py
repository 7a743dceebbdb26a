"""Channel selectors (reference a.4, c.2): which channels each event goes to, required or optional."""

import pytest

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.selectors import builtin as selectors


def channels(*names: str) -> dict[str, MemoryChannel]:
    """Named memory channels, in configuration order (as a source's `channels` lists them)."""
    made = {}
    for name in names:
        settings, problems = resolve(MemoryChannel.config_class, {})
        assert not problems
        made[name] = MemoryChannel(name, settings)
    return made


def selector(type_name: str, params: dict[str, str], channel_names: str = "c1 c2 c3"):
    selector_class = lookup("selector", type_name)
    settings, problems = resolve(selector_class.config_class, params)
    assert not [p for p in problems if p.severity == "error"], problems
    return selector_class(settings, channels(*channel_names.split()))


def routed(routes) -> list[tuple[str, list[bytes]]]:
    """Routes as (channel name, bodies), for readable comparisons."""
    return [(channel.name, [e.body for e in batch]) for channel, batch in routes]


def state(code: str | None, body: str) -> Event:
    return Event(body.encode(), {} if code is None else {"State": code})


@pytest.mark.parametrize(("name", "class_name"), [
    ("replicating", "ReplicatingSelector"),
    ("REPLICATING", "ReplicatingSelector"),
    ("multiplexing", "MultiplexingSelector"),
    ("load_balancing", "LoadBalancingSelector"),
    ("org.apache.flume.channel.ReplicatingChannelSelector", "ReplicatingSelector"),
    ("org.apache.flume.channel.MultiplexingChannelSelector", "MultiplexingSelector"),
    ("org.apache.flume.channel.LoadBalancingChannelSelector", "LoadBalancingSelector"),
])
def test_selector_names_and_flume_class_names_resolve(name, class_name):
    assert lookup("selector", name) is getattr(selectors, class_name)


# --- replicating -----------------------------------------------------------------------------


def test_replicating_sends_every_event_to_every_channel_all_required():
    batch = [Event(b"a"), Event(b"b")]
    required, optional = selector("replicating", {}).route(batch)
    assert routed(required) == [("c1", [b"a", b"b"]), ("c2", [b"a", b"b"]), ("c3", [b"a", b"b"])]
    assert optional == []


def test_replicating_optional_channels_get_every_event_best_effort():
    required, optional = selector("replicating", {"optional": "c3 c1"}).route([Event(b"a")])
    assert routed(required) == [("c2", [b"a"])]
    assert routed(optional) == [("c1", [b"a"]), ("c3", [b"a"])]


def test_replicating_accepts_any_sequence_of_events():
    required, _ = selector("replicating", {}, "c1").route((Event(b"a"), Event(b"b")))
    assert routed(required) == [("c1", [b"a", b"b"])]


def test_replicating_reports_its_optional_channels_for_validation():
    settings, _ = resolve(selectors.ReplicatingSelector.config_class, {"optional": "c2 c9"})
    assert settings.channel_references() == [("optional", ["c2", "c9"])]


# --- multiplexing ----------------------------------------------------------------------------

MULTIPLEXING = {
    "header": "State",
    "mapping.CA": "c1",
    "mapping.AZ": "c2 c3",
    "mapping.NY": "c1 c2",
    "optional.CA": "c1 c2",  # c1 is already required for CA: only c2 is optional
    "optional.XX": "c3",  # no mapping for XX: c3 is optional besides the default
    "default": "c3",
}


def test_multiplexing_routes_by_the_header_value():
    batch = [state("CA", "1"), state("AZ", "2"), state("NY", "3"), state("CA", "4")]
    required, _ = selector("multiplexing", MULTIPLEXING).route(batch)
    assert routed(required) == [("c1", [b"1", b"3", b"4"]), ("c2", [b"2", b"3"]), ("c3", [b"2"])]


def test_multiplexing_unmapped_missing_and_blank_values_go_to_the_default():
    batch = [state("TX", "unmapped"), state(None, "missing"), state("", "blank"), state("ca", "other case")]
    required, optional = selector("multiplexing", MULTIPLEXING).route(batch)
    assert routed(required) == [("c3", [b"unmapped", b"missing", b"blank", b"other case"])]
    assert optional == []


def test_multiplexing_optional_channels_exclude_the_required_ones():
    required, optional = selector("multiplexing", MULTIPLEXING).route([state("CA", "1"), state("NY", "2")])
    assert routed(required) == [("c1", [b"1", b"2"]), ("c2", [b"2"])]
    assert routed(optional) == [("c2", [b"1"])]


def test_multiplexing_optional_mapping_without_a_required_mapping_subtracts_the_default():
    # Flume: optional.<value> minus the required channels, which for an unmapped value are the default.
    required, optional = selector("multiplexing", MULTIPLEXING).route([state("XX", "1")])
    assert routed(required) == [("c3", [b"1"])]
    assert optional == []
    params = {**MULTIPLEXING, "optional.XX": "c2 c3"}
    required, optional = selector("multiplexing", params).route([state("XX", "1")])
    assert routed(required) == [("c3", [b"1"])]
    assert routed(optional) == [("c2", [b"1"])]


def test_multiplexing_without_a_default_only_optional_channels_are_tried():
    params = {"header": "State", "mapping.CA": "c1", "optional.TX": "c2"}
    required, optional = selector("multiplexing", params).route([state("TX", "1"), state("ZZ", "2")])
    assert required == []
    assert routed(optional) == [("c2", [b"1"])]


def test_multiplexing_routes_are_in_configuration_order_not_first_use():
    required, _ = selector("multiplexing", MULTIPLEXING).route([state("AZ", "1"), state("CA", "2")])
    assert [name for name, _ in routed(required)] == ["c1", "c2", "c3"]


def test_multiplexing_default_header_name_is_flume_selector_header():
    params = {"mapping.x": "c2", "default": "c1"}
    batch = [Event(b"1", {"flume.selector.header": "x"}), Event(b"2", {"State": "x"})]
    required, _ = selector("multiplexing", params).route(batch)
    assert routed(required) == [("c1", [b"2"]), ("c2", [b"1"])]


def test_multiplexing_keeps_the_route_cache_bounded():
    multiplexing = selector("multiplexing", MULTIPLEXING)
    for start in range(0, 12_000, 1000):
        multiplexing.route([state(f"v{i}", "x") for i in range(start, start + 1000)])
    assert len(multiplexing._routes) <= 10_000
    required, _ = multiplexing.route([state("v11999", "late"), state("CA", "known")])
    assert routed(required) == [("c1", [b"known"]), ("c3", [b"late"])]


def test_multiplexing_reports_every_channel_it_names_for_validation():
    settings, _ = resolve(selectors.MultiplexingSelector.config_class, MULTIPLEXING)
    assert sorted(settings.channel_references()) == sorted([
        ("default", ["c3"]), ("mapping.CA", ["c1"]), ("mapping.AZ", ["c2", "c3"]), ("mapping.NY", ["c1", "c2"]),
        ("optional.CA", ["c1", "c2"]), ("optional.XX", ["c3"]),
    ])


# --- load_balancing --------------------------------------------------------------------------


def test_load_balancing_round_robin_spreads_events_across_batches():
    balancer = selector("load_balancing", {})
    first, optional = balancer.route([Event(b"1"), Event(b"2"), Event(b"3"), Event(b"4")])
    assert routed(first) == [("c1", [b"1", b"4"]), ("c2", [b"2"]), ("c3", [b"3"])]
    assert optional == []
    second, _ = balancer.route([Event(b"5"), Event(b"6")])
    assert routed(second) == [("c2", [b"5"]), ("c3", [b"6"])]
    third, _ = balancer.route([Event(b"7")])
    assert routed(third) == [("c1", [b"7"])]


def test_load_balancing_random_sends_each_event_to_exactly_one_channel():
    balancer = selector("load_balancing", {"policy": "random"})
    batch = [Event(str(i).encode()) for i in range(300)]
    required, optional = balancer.route(batch)
    assert optional == []
    delivered = sorted(body for _, bodies in routed(required) for body in bodies)
    assert delivered == sorted(e.body for e in batch)
    # every channel is used: the chance that one of three gets none of 300 events is about 1e-52
    assert sorted(name for name, _ in routed(required)) == ["c1", "c2", "c3"]


def test_load_balancing_rejects_an_unknown_policy():
    _, problems = resolve(selectors.LoadBalancingSelector.config_class, {"policy": "least_busy"})
    assert [(p.key, p.severity) for p in problems] == [("policy", "error")]
