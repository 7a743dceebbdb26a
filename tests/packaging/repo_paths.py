"""Where the packaging tests find the repository's parts and the project's commands."""

import shutil
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubeflume"
CHART_CRDS = CHART / "charts" / "crds" / "crds"
OPERATOR_PACKAGE = REPO / "operator" / "kubeflume_operator"


def console_script(name: str) -> str:
    """The installed command `name` of this interpreter (pip puts it beside the interpreter's scripts)."""
    found = shutil.which(name, path=sysconfig.get_path("scripts")) or shutil.which(name)
    assert found, f"{name} is not installed: python3 -m pip install -e ."
    return found
