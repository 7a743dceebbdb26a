"""Fixtures for packaging tests: a small tool venv with Helm's library, built once per checkout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helm_venv import build_helm_venv, run_helm_tool
from repo_paths import CHART


@pytest.fixture(scope="session")
def helm_python() -> Path:
    """The tool venv's interpreter (Python 3.12 with helm-sdkpy and helm-python-sdk)."""
    return build_helm_venv()


@pytest.fixture(scope="session")
def helm(helm_python: Path) -> Callable[..., dict[str, Any]]:
    """`helm(chart, values)` -> {"lint": ..., "manifests": ..., "render_error": ...} (see helm_tool.py)."""

    def run(chart: Path = CHART, values: dict[str, Any] | None = None, **request: Any) -> dict[str, Any]:
        return run_helm_tool(helm_python, {"chart": str(chart), "values": values or {}, **request})

    return run

