"""The documentation: generated pages match their sources, and every relative link resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from repo_paths import REPO, console_script

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
    from kubeflume_agent.runtime import registry

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
    rendered = {config.to_properties() for config in configs}
    assert len(rendered) == 1


def test_metrics_page_names_every_flume_counter() -> None:
    from kubeflume_agent.runtime import counters

    page = (REPO / "docs" / "metrics.md").read_text()
    kinds = (counters.SourceCounters, counters.ChannelCounters, counters.SinkCounters)
    for name in {n for kind in kinds for n in kind().snapshot()}:
        assert f"`{name}`" in page, f"docs/metrics.md does not mention {name}"
