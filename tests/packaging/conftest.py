"""Fixtures for packaging tests: a small tool venv with Helm's library, built once per checkout."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from repo_paths import CHART, REPO

HELM_VENV = REPO / ".tools" / "helm"
HELM_TOOL = Path(__file__).with_name("helm_tool.py")
# helm-sdkpy runs `helm lint`; helm-python-sdk renders offline (helm-sdkpy has no template action).
HELM_PACKAGES = ("helm-sdkpy==0.1.32", "helm-python-sdk==0.2.2")
PYTHON_312 = ["python3.12"]
PYTHON_312_ENV = {**os.environ, "PYENV_VERSION": "3.12.1"}


def _build_helm_venv() -> Path:
    python = HELM_VENV / "bin" / "python"
    marker = HELM_VENV / "installed.txt"
    wanted = "\n".join(HELM_PACKAGES)
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    try:
        subprocess.run([*PYTHON_312, "-m", "venv", "--clear", str(HELM_VENV)], env=PYTHON_312_ENV,
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        pytest.fail(f"the Helm tests need Python 3.12 (`PYENV_VERSION=3.12.1 python3.12`) to build "
                    f"{HELM_VENV} for helm-sdkpy; it could not run: {detail}")
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *HELM_PACKAGES],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"pip could not install {', '.join(HELM_PACKAGES)} into {HELM_VENV}:\n{install.stderr}")
    marker.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def helm_python() -> Path:
    """The tool venv's interpreter (Python 3.12 with helm-sdkpy and helm-python-sdk)."""
    return _build_helm_venv()


@pytest.fixture(scope="session")
def helm(helm_python: Path) -> Callable[..., dict[str, Any]]:
    """`helm(chart, values)` -> {"lint": ..., "manifests": ..., "render_error": ...} (see helm_tool.py)."""

    def run(chart: Path = CHART, values: dict[str, Any] | None = None, **request: Any) -> dict[str, Any]:
        payload = json.dumps({"chart": str(chart), "values": values or {}, **request})
        done = subprocess.run([str(helm_python), str(HELM_TOOL)], input=payload,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"helm_tool.py failed:\n{done.stderr}"
        return json.loads(done.stdout)

    return run

