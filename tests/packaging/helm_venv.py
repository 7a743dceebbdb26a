"""A small tool venv with Helm's own library (Python 3.12), built once per checkout.

Used by the packaging tests (lint and render, tests/packaging/conftest.py) and by the Kubernetes
tests (install into a real cluster, tests/kubernetes); helm_tool.py runs inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HELM_VENV = REPO / ".tools" / "helm"
HELM_TOOL = Path(__file__).with_name("helm_tool.py")
# helm-sdkpy runs `helm lint` and installs; helm-python-sdk renders offline (helm-sdkpy has no template action).
HELM_PACKAGES = ("helm-sdkpy==0.1.32", "helm-python-sdk==0.2.2")
PYTHON_312 = ["python3.12"]
PYTHON_312_ENV = {**os.environ, "PYENV_VERSION": "3.12.1"}


def build_helm_venv() -> Path:
    """The tool venv's interpreter, made (or remade, when HELM_PACKAGES changed) first."""
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


def run_helm_tool(python: Path, request: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """One request to helm_tool.py (see its docstring); its JSON answer."""
    done = subprocess.run([str(python), str(HELM_TOOL)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"helm_tool.py failed:\n{done.stderr}"
    return json.loads(done.stdout)
