"""Flume's `ipFilterRules`: `allow|deny:ip|name:pattern`, comma-separated, first match wins.

Patterns use `*` as a wildcard (`allow:ip:127.*`, `deny:name:*.example.com`). A peer that no
rule matches is accepted, as with Netty's pattern rule handler Flume builds on; end the list with
`deny:ip:*` to refuse everyone else.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import socket
from dataclasses import dataclass

from kubeflume_agent.config.keys import InvalidValue


@dataclass(frozen=True)
class IpRule:
    allow: bool
    by_name: bool
    pattern: re.Pattern[str]


def parse_rules(text: str) -> tuple[IpRule, ...]:
    rules = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        action, _, rest = item.partition(":")
        kind, _, pattern = rest.partition(":")
        if action not in ("allow", "deny") or kind not in ("ip", "name") or not pattern:
            raise InvalidValue(f"expected allow|deny:ip|name:pattern, got {item!r}")
        rules.append(IpRule(action == "allow", kind == "name", re.compile(fnmatch.translate(pattern))))
    return tuple(rules)


class IpFilter:
    """Decides per peer address; host names are resolved only if a `name` rule needs them."""

    def __init__(self, rules: tuple[IpRule, ...]) -> None:
        self.rules = rules
        self._needs_names = any(rule.by_name for rule in rules)

    async def accepts(self, address: str) -> bool:
        name = await reverse_name(address) if self._needs_names else ""
        for rule in self.rules:
            if rule.pattern.match(name if rule.by_name else address):
                return rule.allow
        return True


async def reverse_name(address: str) -> str:
    """The peer's host name by reverse DNS, or "" (as Flume's clientHostnameHeader gives on failure)."""
    try:
        host, _ = await asyncio.get_running_loop().getnameinfo((address, 0), socket.NI_NAMEREQD)
    except (OSError, UnicodeError):
        return ""
    return host
