"""Flume properties files (`a1.sources = r1 ...`) <-> AgentConfig.

Reads a flume.conf the way Flume does: Java properties syntax, the agent chosen by name, only
listed components kept, `${...}` substitution on values (environment, config filters, other keys).
Renders an AgentConfig back to a flume.conf in a stable order, so equal configs hash equally.

The file's bytes (`decode_flume_conf`): Flume reads it with a FileReader, so in the JVM's default
charset, which is UTF-8 on today's Linux JVMs and ISO-8859-1 on older Latin-1 ones, and
`java.util.Properties` files are ISO-8859-1 by definition. A file that is valid UTF-8 is read as
UTF-8 (so a UTF-8 value such as `café` means what its author typed); any other file is read as
ISO-8859-1, where every byte is a character, so a Latin-1 byte in a comment or a value never stops
the agent. `\\uXXXX` escapes work in both.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from kubeflume_agent.config.model import (
    SEVERITY_WARNING,
    AgentConfig,
    ChannelConfig,
    ComponentConfig,
    ConfigError,
    SinkConfig,
    SinkGroupConfig,
    SourceConfig,
)

SECTIONS = ("sources", "channels", "sinks", "sinkgroups", "configfilters")


class ConfigParseError(ValueError):
    """The file cannot be read as an agent's config at all (e.g. no agent of that name)."""


def decode_flume_conf(data: bytes) -> str:
    """A flume.conf's text: UTF-8 if the bytes are valid UTF-8 (a leading BOM dropped), else
    ISO-8859-1 (see the module's docstring)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def read_flume_conf(path: Path) -> str:
    """The text of the flume.conf at `path`; raises ConfigParseError (one line) if it cannot be read."""
    try:
        return decode_flume_conf(path.read_bytes())
    except OSError as error:
        raise ConfigParseError(f"cannot read {path}: {error.strerror or error}") from error


# --- Java properties syntax ------------------------------------------------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str):
    """Physical lines joined where a line ends in an odd number of backslashes."""
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            pending += line[:-1]
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _split_key_value(line: str) -> tuple[str, str]:
    """Java's rule: the key ends at the first unescaped '=', ':' or whitespace."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest).rstrip()


def read_java_properties(text: str) -> dict[str, str]:
    """Parse Java properties text; a key given twice keeps its last value, as Java does."""
    return dict(_split_key_value(line) for line in _logical_lines(text))


def _escape(text: str, is_key: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if is_key:
        text = re.sub(r"([=: #!])", r"\\\1", text)
    elif text.startswith((" ", "#", "!")):
        text = "\\" + text
    return text


# --- ${...} substitution -----------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\{([^${}]+)\}")
_FILTER_REFERENCE = re.compile(r"""^([A-Za-z0-9_]+)\[(?:'([-_a-zA-Z0-9]+)'|"([-_a-zA-Z0-9]+)"|([-_a-zA-Z0-9]+))\]$""")


def _run_external_filter(command: str, key: str, charset: str) -> str | None:
    """Flume's `external` config filter: `<command> <key>`, one line of stdout, exit code 0."""
    try:
        done = subprocess.run([*command.split(), key], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode(charset, "replace").strip()


class _Substitutor:
    def __init__(self, properties: Mapping[str, str], agent: str, environ: Mapping[str, str]) -> None:
        self.properties = properties
        self.environ = environ
        self.filters = self._filters(agent)

    def _filters(self, agent: str) -> dict[str, tuple[str, dict[str, str]]]:
        prefix = f"{agent}.configfilters."
        names = self.properties.get(f"{agent}.configfilters", "").split()
        filters = {}
        for name in names:
            own = {k[len(prefix) + len(name) + 1:]: v for k, v in self.properties.items()
                   if k.startswith(f"{prefix}{name}.")}
            filters[name] = (own.get("type", "").lower(), own)
        return filters

    def _resolve(self, reference: str) -> str | None:
        if reference.startswith("env:"):
            return self.environ.get(reference[4:])
        filtered = _FILTER_REFERENCE.match(reference)
        if filtered and filtered.group(1) in self.filters:
            kind, params = self.filters[filtered.group(1)]
            key = filtered.group(2) or filtered.group(3) or filtered.group(4)
            if kind == "env" or kind.endswith("environmentvariableconfigfilter"):
                return self.environ.get(key)
            if kind == "external" or kind.endswith("externalprocessconfigfilter"):
                return _run_external_filter(params.get("command", ""), key, params.get("charset", "UTF-8"))
            return None
        if reference in self.environ:
            return self.environ[reference]
        return self.properties.get(reference)

    def __call__(self, value: str) -> str:
        if "${" not in value:
            return value
        for _ in range(10):  # nested references resolve inside out; unresolved ones stay as written
            replaced = _REFERENCE.sub(lambda m: self._resolve(m.group(1)) or m.group(0), value)
            if replaced == value:
                break
            value = replaced
        return value


# --- properties -> AgentConfig --------------------------------------------------------------------


def agent_names(properties: Mapping[str, str]) -> list[str]:
    """Agents a properties file configures (prefixes of keys like `a1.sources`)."""
    names = []
    for key in properties:
        parts = key.split(".")
        if len(parts) >= 2 and parts[1] in SECTIONS and parts[0] not in names:
            names.append(parts[0])
    return names


def parse_properties(text: str, agent_name: str | None = None,
                     environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Parse a flume.conf. Without `agent_name`, the file must configure exactly one agent."""
    properties = read_java_properties(text)
    agents = agent_names(properties)
    if agent_name is None:
        if len(agents) != 1:
            found = ", ".join(agents) or "none"
            raise ConfigParseError(f"choose the agent to run with -n NAME (agents in this file: {found})")
        agent_name = agents[0]
    elif agent_name not in agents:
        raise ConfigParseError(
            f"no agent named {agent_name!r} in this file (agents in this file: {', '.join(agents) or 'none'})"
        )
    substitute = _Substitutor(properties, agent_name, os.environ if environ is None else environ)
    own = {key[len(agent_name) + 1:]: substitute(value)
           for key, value in properties.items() if key.startswith(agent_name + ".")}
    return build_config(agent_name, own)


def build_config(agent: str, own: Mapping[str, str]) -> AgentConfig:
    """An AgentConfig from one agent's keys, already without the `<agent>.` prefix and substituted."""
    config = AgentConfig(agent)
    listed = {section: own.get(section, "").split() for section in SECTIONS}
    for name in listed["sources"]:
        config.sources[name] = SourceConfig(name)
    for name in listed["channels"]:
        config.channels[name] = ChannelConfig(name)
    for name in listed["sinks"]:
        config.sinks[name] = SinkConfig(name)
    for name in listed["sinkgroups"]:
        config.sinkgroups[name] = SinkGroupConfig(name)
    for key, value in own.items():
        section, _, rest = key.partition(".")
        name, _, prop = rest.partition(".")
        if not rest and section in SECTIONS:
            continue  # the component lists themselves
        if section == "configfilters" and name in listed["configfilters"]:
            continue
        sections: dict[str, Mapping[str, object]] = {
            "sources": config.sources, "channels": config.channels,
            "sinks": config.sinks, "sinkgroups": config.sinkgroups,
        }
        target = sections.get(section, {}).get(name)
        if target is None or not prop:
            config.notes.append(ConfigError(
                "agent", key,
                f"{section}.{name} is not listed in {agent}.{section}; key ignored, as Flume does"
                if section in SECTIONS and prop else "not a key Flume reads; ignored",
                SEVERITY_WARNING,
            ))
            continue
        if not _assign(target, prop, value):
            config.notes.append(ConfigError(f"{section}.{name}", prop, "unknown key (ignored, as Flume does)",
                                            SEVERITY_WARNING))
    return config


def _assign(target, prop: str, value: str) -> bool:
    """Store one key on its component; False if the component has no such key."""
    if isinstance(target, SinkGroupConfig):
        if prop == "sinks":
            target.sinks = value.split()
        elif prop.startswith("processor."):
            target.processor[prop[len("processor."):]] = value
        else:
            return False
        return True
    if prop == "type":
        target.type = value
    elif isinstance(target, SourceConfig) and prop == "channels":
        target.channels = value.split()
    elif isinstance(target, SourceConfig) and prop.startswith("selector."):
        target.selector[prop[len("selector."):]] = value
    elif isinstance(target, SourceConfig) and prop == "interceptors":
        known = {i.name: i for i in target.interceptors}
        target.interceptors = [known.get(n) or ComponentConfig(n) for n in value.split()]
    elif isinstance(target, SourceConfig) and prop.startswith("interceptors."):
        name, _, key = prop[len("interceptors."):].partition(".")
        interceptor = next((i for i in target.interceptors if i.name == name), None)
        if interceptor is None:  # keys may come before the list; the list decides what is kept
            interceptor = ComponentConfig(name)
            target.interceptors.append(interceptor)
        if key == "type":
            interceptor.type = value
        else:
            interceptor.params[key] = value
    elif isinstance(target, SinkConfig) and prop == "channel":
        target.channel = value
    else:
        target.params[prop] = value
    return True


# --- AgentConfig -> properties --------------------------------------------------------------------


def flume_conf(config: AgentConfig) -> str:
    """A flume.conf for `config`: sections and keys in sorted order, interceptors in chain order."""
    lines: list[str] = [f"# Agent {config.name}, rendered by kubeflume"]

    def put(key: str, value: str) -> None:
        lines.append(f"{_escape(config.name + '.' + key, is_key=True)} = {_escape(value)}")

    for section, components in (("sources", config.sources), ("channels", config.channels),
                                ("sinks", config.sinks), ("sinkgroups", config.sinkgroups)):
        if components:
            put(section, " ".join(sorted(components)))
    for name in sorted(config.sources):
        source = config.sources[name]
        base = f"sources.{name}"
        put(f"{base}.type", source.type)
        put(f"{base}.channels", " ".join(source.channels))
        for key in sorted(source.params):
            put(f"{base}.{key}", source.params[key])
        for key in sorted(source.selector):
            put(f"{base}.selector.{key}", source.selector[key])
        if source.interceptors:
            put(f"{base}.interceptors", " ".join(i.name for i in source.interceptors))
        for interceptor in source.interceptors:
            put(f"{base}.interceptors.{interceptor.name}.type", interceptor.type)
            for key in sorted(interceptor.params):
                put(f"{base}.interceptors.{interceptor.name}.{key}", interceptor.params[key])
    for name in sorted(config.channels):
        channel = config.channels[name]
        put(f"channels.{name}.type", channel.type)
        for key in sorted(channel.params):
            put(f"channels.{name}.{key}", channel.params[key])
    for name in sorted(config.sinks):
        sink = config.sinks[name]
        put(f"sinks.{name}.type", sink.type)
        put(f"sinks.{name}.channel", sink.channel)
        for key in sorted(sink.params):
            put(f"sinks.{name}.{key}", sink.params[key])
    for name in sorted(config.sinkgroups):
        group = config.sinkgroups[name]
        put(f"sinkgroups.{name}.sinks", " ".join(group.sinks))
        for key in sorted(group.processor):
            put(f"sinkgroups.{name}.processor.{key}", group.processor[key])
    return "\n".join(lines) + "\n"


def fingerprint(config: AgentConfig) -> str:
    """A stable hash of the rendered config: equal configs give equal fingerprints."""
    return hashlib.sha256(flume_conf(config).encode()).hexdigest()[:16]
