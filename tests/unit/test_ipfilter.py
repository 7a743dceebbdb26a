"""Flume's ipFilterRules: the syntax, first match wins, `*` wildcards, name rules by reverse DNS,
and peers no rule matches are accepted."""

from __future__ import annotations

import socket

import pytest

from kubeflume_agent.config.keys import InvalidValue
from kubeflume_agent.protocols.ipfilter import IpFilter, parse_rules


async def test_first_matching_rule_decides():
    rules = IpFilter(parse_rules("allow:ip:10.0.0.7, deny:ip:10.0.*, allow:ip:*"))
    assert await rules.accepts("10.0.0.7")
    assert not await rules.accepts("10.0.3.1")
    assert await rules.accepts("192.168.1.1")


async def test_a_peer_no_rule_matches_is_accepted():
    rules = IpFilter(parse_rules("deny:ip:10.*"))
    assert await rules.accepts("127.0.0.1")
    assert not await IpFilter(parse_rules("deny:ip:10.*,deny:ip:*")).accepts("127.0.0.1")


async def test_name_rules_use_the_reverse_name_of_the_peer():
    name = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]
    assert not await IpFilter(parse_rules(f"deny:name:{name},allow:ip:*")).accepts("127.0.0.1")
    assert await IpFilter(parse_rules("deny:name:*.invalid,allow:ip:*")).accepts("127.0.0.1")


@pytest.mark.parametrize("text", ["allow:127.*", "permit:ip:127.*", "deny:host:x", "allow:ip:"])
def test_malformed_rules_are_config_errors(text):
    with pytest.raises(InvalidValue, match="allow\\|deny:ip\\|name:pattern"):
        parse_rules(text)
