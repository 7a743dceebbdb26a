"""One validator for FlumeAgent and ShellJob manifests, with three callers.

The admission webhook, `kubeflume validate` and the reconcilers all call `problems_of`, so a
manifest is judged the same way wherever it is checked. Every problem is a `ConfigError` (the
agent's own idiom, see problems.py) located by its field path in the manifest
(`spec.sources.r1.type`, `spec.files[0].name`): the path `kubectl explain` and the editor show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeflume_agent.config.manifest import parse_manifest, spec_of
from kubeflume_agent.config.model import AgentConfig, ConfigError
from kubeflume_agent.config.validation import validate
from kubeflume_operator.flumeagent.resources import spec_problems
from kubeflume_operator.problems import at, where
from kubeflume_operator.shelljob.spec import SpecError, application_master_problems, parse_spec

# The agent config's section names -> the FlumeAgent spec's field names.
VALIDATED_KINDS = ("FlumeAgent", "ShellJob")
SECTIONS = {"sources": "sources", "channels": "channels", "sinks": "sinks", "sinkgroups": "sinkGroups"}
INTERCEPTOR_KEY = re.compile(r"^interceptors\.([^.]+)\.(.+)$")


@dataclass(frozen=True)
class Verdict:
    """Every problem of one manifest; the config too when it is a FlumeAgent (the reconciler renders it)."""

    problems: list[ConfigError]
    config: AgentConfig | None = None

    @property
    def errors(self) -> list[ConfigError]:
        return [problem for problem in self.problems if problem.is_error]

    @property
    def warnings(self) -> list[ConfigError]:
        return [problem for problem in self.problems if not problem.is_error]


def problems_of(manifest: Mapping[str, Any]) -> Verdict:
    """Every problem of a FlumeAgent or ShellJob manifest (an object as the API server holds it)."""
    kind = manifest.get("kind")
    if kind == "ShellJob":
        return Verdict(shelljob_problems(manifest))
    if kind == "FlumeAgent":
        return flumeagent_verdict(manifest)
    return Verdict([at("kind", f"{kind!r}: expected FlumeAgent or ShellJob")])


def flumeagent_verdict(manifest: Mapping[str, Any]) -> Verdict:
    """The agent's own checks plus those only Kubernetes has, each at its field path in the spec."""
    spec = spec_of(manifest)
    config = parse_manifest(manifest)
    found = validate(config) + spec_problems(spec, config)
    return Verdict([located(problem, spec) for problem in found], config)


def shelljob_problems(manifest: Mapping[str, Any]) -> list[ConfigError]:
    spec = spec_of(manifest)
    name = str(manifest.get("metadata", {}).get("name") or "shelljob")
    try:
        job = parse_spec(spec, name)
    except SpecError as error:
        return error.problems
    return application_master_problems(job)


def located(problem: ConfigError, spec: Mapping[str, Any]) -> ConfigError:
    """An agent-config problem (`sources.r1`, `type`) at its FlumeAgent field path (`spec.sources.r1.type`)."""
    section, _, name = problem.component.partition(".")
    if section not in SECTIONS:  # "agent" (the whole pipeline) or "spec" (the manifest's shape)
        return at(_join("spec", problem.key), problem.message, problem.severity)
    if spec.get("config") is not None:  # a flume.conf: its own key names the place
        return at("spec.config", f"{where(problem)}: {problem.message}", problem.severity)
    key = problem.key
    if section == "sources":
        key = _interceptor_position(key, spec.get("sources", {}).get(name))
    return at(_join("spec", SECTIONS[section], name, key), problem.message, problem.severity)


def _interceptor_position(key: str, source: Any) -> str:
    """`interceptors.ts.type` -> `interceptors[0].type`: the manifest lists interceptors in order."""
    match = INTERCEPTOR_KEY.match(key)
    items = source.get("interceptors") if isinstance(source, Mapping) else None
    if not match or not isinstance(items, list):
        return key
    names = [item.get("name") if isinstance(item, Mapping) else None for item in items]
    if match[1] not in names:
        return key
    return f"interceptors[{names.index(match[1])}].{match[2]}"


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def refusal(kind: str, name: str, errors: Sequence[ConfigError]) -> str:
    """The text of a refused admission: every error on a line of its own, as `kubeflume validate` prints."""
    lines = [f"{kind} {name} has {len(errors)} problem(s):", *(str(error) for error in errors)]
    return "\n".join(lines)
