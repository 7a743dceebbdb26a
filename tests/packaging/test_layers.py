"""The architecture as a test: no import circles, and no import from a lower layer into a higher one.

Every import counts, wherever it is written (module top, inside a function, under TYPE_CHECKING):
a lazy import hides a circle from the interpreter, not from a reader. The layer order of each
package is written down once, below; a module not listed there fails the test until it is placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import REPO

# Lowest layer first. A module belongs to the entry that is the longest prefix of its dotted name
# (relative to the package; "" is the package's own __init__). A module may import from lower
# layers and from its own entry; entries that share a layer are peers and may not import each other.
AGENT_LAYERS: tuple[tuple[str, ...], ...] = (
    ("",),
    ("config.keys",),  # how a component declares its keys: imports nothing of ours
    ("core",),  # event, errors, counters, the channel contract, the registry of names
    ("protocols",),  # wire and text formats
    ("channels",),
    ("interceptors", "selectors", "sources", "sinks"),
    ("sink_processors",),  # drive sinks
    ("config",),  # the config model, flume.conf and manifests, validation
    ("runtime",),  # the composition root
    ("cli", "embedded"),  # entry points
)

OPERATOR_LAYERS: tuple[tuple[str, ...], ...] = (
    ("",),
    ("problems", "conditions", "kube"),
    ("context",),
    ("yarn",),  # the YARN client: ResourceManager REST, DistributedShell, archives
    ("flumeagent", "shelljob"),
    ("validation",),  # kubeflume validate and the operator's checks of both resources
    ("flumeagent.handlers", "shelljob.handlers", "webhook"),  # kopf handlers
    ("main",),  # the operator process
    ("cli",),  # kubeflume validate / run
)


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` below `root`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the same tree that `name` imports, anywhere in its file."""
    found = set()
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as sorted names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def place(relative: str, layers: tuple[tuple[str, ...], ...]) -> tuple[int, str] | None:
    """(layer, entry) of a module by its longest matching entry, or None if no entry covers it."""
    best = None
    for level, entries in enumerate(layers):
        for entry in entries:
            covers = relative == entry or (entry != "" and relative.startswith(entry + "."))
            if covers and (best is None or len(entry) > len(best[1])):
                best = (level, entry)
    return best


def layer_problems(graph: dict[str, set[str]], package: str, layers: tuple[tuple[str, ...], ...]) -> list[str]:
    def relative(name: str) -> str:
        return name[len(package) + 1:] if name != package else ""

    problems = [f"{name}: not in any layer; place it in the layer list" for name in sorted(graph)
                if place(relative(name), layers) is None]
    for name in sorted(graph):
        source = place(relative(name), layers)
        for target in sorted(graph[name]):
            destination = place(relative(target), layers)
            if source is None or destination is None or destination[1] == source[1]:
                continue
            if destination[0] > source[0]:
                problems.append(f"{name} imports {target}, a higher layer")
            elif destination[0] == source[0]:
                problems.append(f"{name} imports {target}, a peer in the same layer")
    return problems


PACKAGES = [
    pytest.param(REPO / "agent", "kubeflume_agent", AGENT_LAYERS, id="agent"),
    pytest.param(REPO / "operator", "kubeflume_operator", OPERATOR_LAYERS, id="operator"),
]


@pytest.mark.parametrize(("root", "package", "layers"), PACKAGES)
def test_no_import_circles(root: Path, package: str, layers: tuple[tuple[str, ...], ...]) -> None:
    assert circles(import_graph(root, package)) == []


@pytest.mark.parametrize(("root", "package", "layers"), PACKAGES)
def test_every_import_points_down_the_layers(root: Path, package: str, layers: tuple[tuple[str, ...], ...]) -> None:
    assert layer_problems(import_graph(root, package), package, layers) == []


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_circle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def thing():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "from . import a\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.c"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b"]]


def test_upward_peer_and_unplaced_imports_are_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/base.py": "from pkg.high import top\n",
        "pkg/high/top.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.left import x\n",
        "pkg/left.py": "import pkg.right\n",
        "pkg/right.py": "",
        "pkg/stray.py": "",
    })
    layers = (("",), ("low",), ("left", "right"), ("high",))
    assert layer_problems(import_graph(tmp_path, "pkg"), "pkg", layers) == [
        "pkg.stray: not in any layer; place it in the layer list",
        "pkg.left imports pkg.right, a peer in the same layer",
        "pkg.low.base imports pkg.high.top, a higher layer",
    ]
