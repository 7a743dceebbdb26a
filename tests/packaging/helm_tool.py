"""Lint and render a Helm chart with Helm's own Go library; runs inside the tool venv (Python 3.12).

helm-sdkpy embeds Helm's library and runs `helm lint`; it offers no offline render, so
helm-python-sdk (the same Helm library, another binding) renders the templates like
`helm template`. Reads a JSON request on stdin, prints one JSON answer on stdout.

Request: {"chart": path, "values": {...}, "release": name, "namespace": ns}
Answer:  {"lint": {"errors": [{"path", "message"}], "messages": [...]},
          "manifests": {template path: rendered text} or null, "render_error": str or null}

Against a cluster (helm-sdkpy's install and uninstall actions, as `helm install` / `helm uninstall`):
Request: {"action": "install" | "uninstall", "kubeconfig": path, "chart", "values", "release", "namespace"}
Answer:  {"release": what Helm answered} or {"error": str}
"""

import asyncio
import json
import sys

import helm_python
import helm_sdkpy

ERROR = 3  # Helm's support.ErrorSev


def lint(chart: str, values: dict) -> dict:
    """Gate on helm-sdkpy's verdict; take the messages' text from helm-python-sdk, because
    helm-sdkpy serializes each Go error as an empty object."""
    verdict = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(chart))
    detail = helm_python.lint(chart, values or None, strict=True)
    failed = bool(verdict.get("Errors")) or any(m["Severity"] >= ERROR for m in verdict["Messages"])
    texts = [{"path": m["path"], "severity": m["severity"], "message": m["error"]} for m in detail["messages"]]
    errors = [t for t in texts if t["severity"] >= ERROR]
    if failed and not errors:
        errors = [{"path": m["Path"], "severity": m["Severity"], "message": "(no text from helm-sdkpy)"}
                  for m in verdict["Messages"] if m["Severity"] >= ERROR]
    return {"failed": failed or bool(errors), "errors": errors, "messages": texts}


def render(request: dict) -> tuple[dict | None, str | None]:
    try:
        chart = helm_python.Chart.load(request["chart"])
        chart.validate_schema(request.get("values") or None)
        manifests = chart.render(
            request.get("values") or None,
            name=request.get("release", "kubeflume"),
            namespace=request.get("namespace", "kubeflume-system"),
            is_install=True,
        )
    except helm_python.HelmError as error:
        return None, str(error)
    return manifests, None


def on_cluster(request: dict) -> dict:
    """Install (without waiting: a cluster without kubelet never runs the pod) or uninstall a release."""
    config = helm_sdkpy.Configuration(namespace=request["namespace"], kubeconfig=request["kubeconfig"])
    try:
        if request["action"] == "install":
            release = asyncio.run(helm_sdkpy.Install(config).run(
                request["release"], request["chart"], request.get("values") or None, wait=False,
                disable_openapi_validation=False))
        else:
            release = asyncio.run(helm_sdkpy.Uninstall(config).run(request["release"], wait=False))
    except helm_sdkpy.HelmError as error:
        return {"error": str(error)}
    return {"release": release}


def main() -> None:
    request = json.load(sys.stdin)
    if request.get("action") in ("install", "uninstall"):
        json.dump(on_cluster(request), sys.stdout, default=str)
        return
    manifests, render_error = render(request)
    answer = {
        "lint": lint(request["chart"], request.get("values") or {}),
        "manifests": manifests,
        "render_error": render_error,
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
