"""Where the packaging tests find the repository's parts."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubeflume"
CHART_CRDS = CHART / "charts" / "crds" / "crds"
OPERATOR_PACKAGE = REPO / "operator" / "kubeflume_operator"
