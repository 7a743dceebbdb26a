"""What the operator does with the Kubernetes API, read from the operator itself.

Two sources, so the chart's RBAC cannot silently fall behind the code:
- kopf's registry, after importing the operator: every resource a handler, timer, daemon or
  index watches (list/watch), and the resources it handles, which kopf patches (annotations,
  finalizer, status). kopf has no public listing of registered handlers; the registry's
  per-category attributes read here are the ones kopf's own reactor reads.
- every method of the official `kubernetes` client the operator's modules name: each method's
  HTTP verb and URL are taken from the client's own request builder, then turned into an RBAC
  (apiGroup, resource, verb).

Plus what kopf does on its own: CRD discovery, namespaces, Events, peering.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import subprocess
from collections.abc import Iterator

import kubernetes.client
import yaml

from tests.packaging.repo_paths import OPERATOR_PACKAGE, REPO, console_script

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

KOPF_CLUSTER_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("get", "list", "watch")}
KOPF_NAMESPACE_RULES = {("", "namespaces", "list"), ("", "namespaces", "watch")}
KOPF_EVENT_RULES = {("", "events", "create")}
PEERING_VERBS = ("get", "list", "watch", "patch")
HTTP_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update"}
PATH = re.compile(r"""(?:resource_path=|call_api\(\s*)'(/apis?/[^']+)'""")
METHOD = re.compile(r"""method='(GET|POST|PUT|PATCH|DELETE)'|call_api\(\s*'[^']+',\s*'(GET|POST|PUT|PATCH|DELETE)'""")


def required_rules(*, cluster_wide: bool, peering: bool) -> tuple[set[Rule], set[Rule]]:
    """(cluster-scoped rules, rules on namespaced objects) the operator needs."""
    # kopf lists and watches namespaces in both modes (it retries for a minute without the grant).
    client = client_rules()
    cluster_scoped = {rule for rule in client if rule[:2] in CLUSTER_SCOPED}
    cluster = KOPF_CLUSTER_RULES | KOPF_NAMESPACE_RULES | cluster_scoped | handed_out_rules()
    namespaced = KOPF_EVENT_RULES | kopf_rules() | (client - cluster_scoped)
    if peering:
        target = cluster if cluster_wide else namespaced
        plural = "clusterkopfpeerings" if cluster_wide else "kopfpeerings"
        target |= {("kopf.dev", plural, verb) for verb in PEERING_VERBS}
    return cluster, namespaced


def handed_out_rules() -> set[Rule]:
    """What the operator grants agents through a ClusterRole: it must hold it cluster-wide itself."""
    from kubeflume_operator.flumeagent.resources import NAMESPACE_READER_RULES, POD_READER_RULES

    return {(group, resource, verb) for rule in POD_READER_RULES + NAMESPACE_READER_RULES for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@functools.cache
def kopf_rules() -> frozenset[Rule]:
    from kubeflume_operator.context import OperatorContext, Settings
    from kubeflume_operator.main import operator_registry

    context = OperatorContext.of(Settings(agent_image="unused"), kubernetes.client.ApiClient())
    registry = operator_registry(context)
    rules: set[Rule] = set()
    watched = [registry._indexing, registry._watching, registry._spawning, registry._changing]
    for category in watched:
        for handler in category.get_all_handlers():
            group, plural = resource_of(handler.selector)
            rules |= {(group, plural, "list"), (group, plural, "watch")}
    for category in (registry._spawning, registry._changing):
        for handler in category.get_all_handlers():
            group, plural = resource_of(handler.selector)
            rules.add((group, plural, "patch"))
            if has_status_subresource(group, plural):
                rules.add((group, f"{plural}/status", "patch"))
    return frozenset(rules)


def resource_of(selector: object) -> tuple[str, str]:
    name = selector.plural or selector.any_name  # type: ignore[attr-defined]
    assert isinstance(name, str) and name == name.lower(), (
        f"handler selector {selector} must name its resource by plural for the RBAC check")
    return selector.group or "", name  # type: ignore[attr-defined]


@functools.cache
def crd_status_subresources() -> frozenset[tuple[str, str]]:
    found = set()
    for path in (REPO / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and any("status" in v.get("subresources", {}) for v in crd["spec"]["versions"]):
                found.add((crd["spec"]["group"], crd["spec"]["names"]["plural"]))
    return frozenset(found)


def has_status_subresource(group: str, plural: str) -> bool:
    return (group, plural) in crd_status_subresources()


# Calls made only by `--webhook-listen` without a Service: a developer's own kubeconfig, never the chart's account.
LOCAL_ONLY_MODULES = frozenset({"kubeflume_operator.webhook.local"})
# Calls made only when the operator keeps the webhook's certificate itself (the chart's default):
# its Secret in the operator's own namespace and the caBundle of the chart's configuration.
WEBHOOK_CERTIFICATE_MODULES = frozenset({"kubeflume_operator.webhook.serving"})
# Kinds without a namespace the operator writes: granted by the ClusterRole in both modes.
CLUSTER_SCOPED = frozenset({("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
                            ("rbac.authorization.k8s.io", "clusterroles"),
                            ("rbac.authorization.k8s.io", "clusterrolebindings")})


@functools.cache
def webhook_certificate_rules() -> tuple[frozenset[Rule], frozenset[Rule]]:
    """(cluster-scoped rules, rules in the operator's own namespace) for keeping the webhook's certificate."""
    rules = client_rules(WEBHOOK_CERTIFICATE_MODULES)
    cluster = frozenset(rule for rule in rules if rule[:2] in CLUSTER_SCOPED)
    return cluster, rules - cluster


@functools.cache
def client_rules(modules: frozenset[str] | None = None) -> frozenset[Rule]:
    """RBAC rules for every typed-client method the operator's source calls (in `modules`; default: the
    modules every deployment of the operator runs)."""
    rules = set()
    for module, api, method, arguments in client_calls():
        if modules is None and module in LOCAL_ONLY_MODULES | WEBHOOK_CERTIFICATE_MODULES:
            continue
        if modules is not None and module not in modules:
            continue
        function = getattr(getattr(kubernetes.client, api), method)
        if api == "CustomObjectsApi":
            rules.add(custom_object_rule(module, function, arguments))
        else:
            rules.add(rule_for(function))
    return frozenset(rules)


def client_calls() -> Iterator[tuple[str, str, str, list[ast.expr]]]:
    """(module, API class, method, the call's arguments) for every client method the operator names.

    The class comes from `x = kubernetes.client.CoreV1Api()` in the same module; a method name only
    one API class has needs no such hint. The arguments are those of the call, or of the call the
    method is handed to (`asyncio.to_thread(api.method, *args)`)."""
    owners = client_method_owners()
    for path in OPERATOR_PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(OPERATOR_PACKAGE.parent).with_suffix("").parts)
        receivers = {target.id: api for target, api in api_assignments(tree)}
        arguments = call_arguments(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr not in owners:
                continue
            known = receivers.get(node.value.id) if isinstance(node.value, ast.Name) else None
            candidates = [known] if known in owners[node.attr] else owners[node.attr]
            assert len(candidates) == 1, (f"{path.name}:{node.lineno}: {node.attr} exists in "
                                          f"{', '.join(candidates)}; assign the API object to a name first")
            yield module, candidates[0], node.attr, arguments.get(node, [])


def call_arguments(tree: ast.AST) -> dict[ast.expr, list[ast.expr]]:
    """Method reference -> the positional arguments it is called with, directly or through a helper."""
    found: dict[ast.expr, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found[node.func] = list(node.args)
            if node.args:
                found.setdefault(node.args[0], list(node.args[1:]))
    return found


def custom_object_rule(module: str, method: object, arguments: list[ast.expr]) -> Rule:
    """CustomObjectsApi takes the group and plural as arguments: read them from the call, resolving
    names with the operator module's own constants."""
    namespace = importlib.import_module(module)
    parameters = [p for p in inspect.signature(method).parameters if p != "self"]
    values = {}
    for parameter, argument in zip(parameters, arguments, strict=False):
        if isinstance(argument, ast.Constant):
            values[parameter] = argument.value
        elif isinstance(argument, ast.Name) and hasattr(namespace, argument.id):
            values[parameter] = getattr(namespace, argument.id)
    assert {"group", "plural"} <= values.keys(), (
        f"{module}: {method.__name__} must get its group and plural as literals or module constants")
    _, resource, verb = rule_for(method)
    return values["group"], resource.replace("{plural}", values["plural"]), verb


def api_assignments(tree: ast.AST) -> Iterator[tuple[ast.Name, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.endswith("Api") and hasattr(kubernetes.client, name):
                yield from ((target, name) for target in node.targets if isinstance(target, ast.Name))


@functools.cache
def client_method_owners() -> dict[str, list[str]]:
    """Request method name -> the typed API classes (CoreV1Api, AppsV1Api...) that have it."""
    owners: dict[str, list[str]] = {}
    for class_name, api in inspect.getmembers(kubernetes.client, inspect.isclass):
        if not class_name.endswith("Api") or class_name == "ApiClient":
            continue
        for name, _ in inspect.getmembers(api, inspect.isfunction):
            if not name.startswith("_") and hasattr(api, f"{name}_with_http_info") and name != "get_api_group":
                owners.setdefault(name, []).append(class_name)
    return owners


def rule_for(method: object) -> Rule:
    """The RBAC rule a client method needs, from the HTTP request the client builds for it."""
    owner = getattr(kubernetes.client, method.__qualname__.split(".")[0])  # type: ignore[attr-defined]
    name = method.__name__  # type: ignore[attr-defined]
    source = inspect.getsource(getattr(owner, f"{name}_with_http_info"))
    serializer = getattr(owner, f"_{name}_serialize", None)
    if serializer is not None:
        source += inspect.getsource(serializer)
    path, http_method = PATH.search(source).group(1), next(m for m in METHOD.search(source).groups() if m)
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    if http_method == "GET":
        verb = "get" if named else "list"
    elif http_method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = HTTP_VERBS[http_method]
    return group, resource, verb


def operator_cli_flags() -> set[str]:
    """Every option `kubeflume-operator --help` lists."""
    done = subprocess.run([console_script("kubeflume-operator"), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout))
