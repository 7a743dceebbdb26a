"""The documentation: generated pages match their sources, and every relative link resolves."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from repo_paths import REPO, console_script

from kubeflume_agent.config.properties import flume_conf

GENERATOR = REPO / "docs" / "gen_reference.py"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    files = sorted((REPO / "docs").rglob("*.md"))
    readme = REPO / "README.md"
    return [readme, *files] if readme.exists() else files


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True, timeout=60)


def test_generated_pages_are_up_to_date() -> None:
    check = generate("--check")
    assert check.returncode == 0, check.stderr


def test_check_names_a_page_that_drifted(tmp_path: Path) -> None:
    assert generate("--output", str(tmp_path)).returncode == 0
    assert generate("--check", "--output", str(tmp_path)).returncode == 0
    page = tmp_path / "components.md"
    page.write_text(page.read_text().replace("| yes |", "|  |", 1) + "edited by hand\n")
    check = generate("--check", "--output", str(tmp_path))
    assert check.returncode == 1
    assert "components.md" in check.stderr
    assert page.read_text().endswith("edited by hand\n"), "--check must not rewrite pages"


def test_every_component_in_the_registry_is_documented() -> None:
    from kubeflume_agent.core import registry

    page = (REPO / "docs" / "components.md").read_text()
    for kind in registry.KINDS:
        for alias in registry.aliases(kind):
            assert f"`{alias}`" in page, f"{kind} {alias} missing from docs/components.md"


@pytest.mark.parametrize("document", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(document: Path) -> None:
    text = FENCE.sub("", document.read_text())
    for target in LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue
        path = (document.parent / unquote(parts.path)).resolve() if parts.path else document
        assert path.exists(), f"{document.name}: link to missing {target}"
        if parts.fragment and path.suffix == ".md":
            assert parts.fragment in anchors(path), f"{document.name}: no heading for #{parts.fragment} in {path.name}"


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", document.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in HEADING.findall(text)}


def code_blocks(document: Path, language: str) -> list[str]:
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", document.read_text(), re.MULTILINE | re.DOTALL)
            if lang == language]


def test_migration_guide_shows_one_agent_three_ways(tmp_path: Path) -> None:
    """The flume.conf, its `config:` FlumeAgent and the structured FlumeAgent validate cleanly with
    `kubeflume validate` and render the same flume.conf."""
    from kubeflume_agent.config.manifest import parse_manifest
    from kubeflume_agent.config.properties import parse_properties

    guide = REPO / "docs" / "migrating.md"
    (properties,) = code_blocks(guide, "properties")
    manifests = code_blocks(guide, "yaml")
    assert len(manifests) == 2
    files = [tmp_path / "flume.conf", tmp_path / "config-form.yaml", tmp_path / "structured.yaml"]
    for path, text in zip(files, [properties, *manifests], strict=True):
        path.write_text(text)
        done = subprocess.run([console_script("kubeflume"), "validate", str(path), "-n", "a1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{path.name}:\n{done.stdout}{done.stderr}"
    configs = [parse_properties(properties, "a1"), *(parse_manifest(yaml.safe_load(m)) for m in manifests)]
    rendered = {flume_conf(config) for config in configs}
    assert len(rendered) == 1


def test_metrics_page_names_every_flume_counter() -> None:
    from kubeflume_agent.core import counters

    page = (REPO / "docs" / "metrics.md").read_text()
    kinds = (counters.SourceCounters, counters.ChannelCounters, counters.SinkCounters)
    for name in {n for kind in kinds for n in kind().snapshot()}:
        assert f"`{name}`" in page, f"docs/metrics.md does not mention {name}"


# --- the hand-written pages say what the code does ----------------------------------------------

HAND_WRITTEN = [path for path in markdown_files() if path.name != "components.md" and "reference" not in path.parts]
COMMANDS = ("kubeflume", "kubeflume-agent", "kubeflume-operator")
REPOSITORY_DIRS = ("agent/", "operator/", "charts/", "crds/", "examples/", "tests/", "bench/", "docs/")
SHELL_SEPARATORS = {"&&", "||", "|", ";", "&"}
PLACEHOLDER = re.compile(r"<[^>]+>")
COMMAND_WORD = re.compile(r"(?:^|[\s;&|])kubeflume(?:-agent|-operator)?(?:\s|$)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# Functions of the operator whose argument at this position is a condition or Event reason.
REASON_ARGUMENT = {"set_condition": 3, "with_phase": 2, "set_phase": 1, "reject": 3, "report_waiting": 3,
                   "_finish": 2, "notify": 1}


def shell_commands(document: Path) -> list[tuple[str, list[str]]]:
    """(where, words) of each kubeflume command in the page's sh blocks and in inline code with a flag."""
    found = []
    blocks = [line for body in code_blocks(document, "sh") for line in body.replace("\\\n", " ").splitlines()]
    spans = [span for span in INLINE_CODE.findall(FENCE.sub("", document.read_text())) if " -" in span]
    for text in blocks + spans:
        if not COMMAND_WORD.search(text):
            continue
        lexer = shlex.shlex(PLACEHOLDER.sub("1", text), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:
            if word not in SHELL_SEPARATORS:
                command.append(word)
                continue
            if command and command[0] in COMMANDS:
                found.append((f"{document.name}: {' '.join(command)}", command))
            command = []
    return found


def parse_command(words: list[str]) -> None:
    """Parse `words` with the command's own argument parser (SystemExit on a wrong flag)."""
    from kubeflume_agent.cli import agent_arguments
    from kubeflume_operator import cli
    from kubeflume_operator.main import build_parser

    program, *argv = words
    if program == "kubeflume-agent":
        agent_arguments().parse_args(argv)
    elif program == "kubeflume-operator":
        build_parser().parse_args(argv)
    else:
        args, rest = cli.arguments().parse_known_args(argv)
        if args.command == "operator":
            build_parser().parse_args(argv[argv.index("operator") + 1:])
        else:
            assert not rest, f"unrecognized arguments: {rest}"


DOCUMENTED_COMMANDS = [command for document in HAND_WRITTEN for command in shell_commands(document)]


def test_the_pages_show_commands() -> None:
    assert len(DOCUMENTED_COMMANDS) > 10
    assert {words[0] for _, words in DOCUMENTED_COMMANDS} == set(COMMANDS)


@pytest.mark.parametrize("words", [words for _, words in DOCUMENTED_COMMANDS],
                         ids=[where for where, _ in DOCUMENTED_COMMANDS])
def test_documented_commands_take_their_flags(words: list[str]) -> None:
    try:
        parse_command(words)
    except SystemExit as error:
        pytest.fail(f"{' '.join(words)}: the command refuses these arguments ({error})")


@pytest.mark.parametrize("command", [["kubeflume"], ["kubeflume", "run"], ["kubeflume", "validate"],
                                     ["kubeflume", "operator"], ["kubeflume-agent"], ["kubeflume-operator"]],
                         ids=" ".join)
def test_every_command_prints_its_usage(command: list[str]) -> None:
    done = subprocess.run([console_script(command[0]), *command[1:], "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")


@pytest.mark.parametrize("document", HAND_WRITTEN, ids=lambda p: p.relative_to(REPO).as_posix())
def test_repository_paths_in_the_pages_exist(document: Path) -> None:
    text = document.read_text()
    words = [word for body in code_blocks(document, "sh") for word in body.split()]
    words += INLINE_CODE.findall(FENCE.sub("", text))
    for word in words:
        if word.startswith(REPOSITORY_DIRS) and not set(word) & set("{*<$"):
            assert (REPO / word).exists(), f"{document.name} names {word}, which is not in the repository"


def test_troubleshooting_explains_every_phase_condition_and_reason() -> None:
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    names = status_constants() | posted_reasons()
    assert {"Valid", "ApplyFailed", "Staging", "Rejected", "SourceUnavailable", "CleanedUp", "Timeout"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in page)
    assert missing == [], f"docs/troubleshooting.md does not explain {missing}"


def status_constants() -> set[str]:
    """The phases and condition types the status modules define."""
    from kubeflume_operator.flumeagent import status as agent_status
    from kubeflume_operator.shelljob import status as job_status

    return {value for module in (agent_status, job_status) for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str)}


def posted_reasons() -> set[str]:
    """Every literal reason the operator gives a condition or an Event (`reason=`, or the reason
    argument of the functions in REASON_ARGUMENT), read from its source."""
    reasons: set[str] = set()
    called: set[str] = set()
    for module in sorted((REPO / "operator" / "kubeflume_operator").rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            arguments = [keyword.value for keyword in node.keywords if keyword.arg == "reason"]
            if name in REASON_ARGUMENT and len(node.args) > REASON_ARGUMENT[name]:
                called.add(name)
                arguments.append(node.args[REASON_ARGUMENT[name]])
            reasons |= {constant.value for argument in arguments for constant in ast.walk(argument)
                        if isinstance(constant, ast.Constant) and isinstance(constant.value, str)}
    assert called == set(REASON_ARGUMENT), f"not called any more: {set(REASON_ARGUMENT) - called}; update the test"
    return reasons


def test_metrics_page_names_only_series_the_agent_serves() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from kubeflume_agent.core import counters
    from kubeflume_agent.runtime.metrics import FlumeCollector

    components = {"SOURCE.r1": counters.SourceCounters(), "CHANNEL.c1": counters.ChannelCounters(10),
                  "SINK.k1": counters.SinkCounters()}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlumeCollector(lambda: components, "a1"))
    served = set(re.findall(r"^(flume_\w+)\{", generate_latest(registry).decode(), re.MULTILINE))
    named = set(re.findall(r"\bflume_[a-z_]+[a-z]\b", (REPO / "docs" / "metrics.md").read_text()))
    assert len(named) > 5
    assert named - served == set(), f"docs/metrics.md names series the agent does not serve: {named - served}"


def test_install_page_lists_every_chart_value() -> None:
    page = (REPO / "docs" / "install.md").read_text()
    values = yaml.safe_load((REPO / "charts" / "kubeflume" / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}`" not in page and f"`{key}." not in page]
    assert missing == [], f"docs/install.md does not describe the chart values {missing}"
