"""A ShellJob's spec, parsed and checked: every problem is reported at once, as a list.

`parse_spec` checks what any run needs (the local runner's too); `cluster_problems` adds what
only a YARN submission needs (the cluster addresses, the AM jar, what the chosen AM can do).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubeflume_agent.config.model import ConfigError
from kubeflume_operator.problems import at, describe_all
from kubeflume_operator.yarn import distributedshell as ds
from kubeflume_operator.yarn.archives import FORMATS, archive_format

LINK_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JAVA_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SOURCE_FIELDS = ("url", "configMap", "secret", "inline", "inlineBase64")
PROGRAM_FIELDS = ("command", "script", "jar")
DEFAULT_TIMEOUT_SECONDS = 600  # DistributedShell Client's -timeout default (600000 ms)


class SpecError(Exception):
    """The spec cannot run; `problems` says every reason, each at its field path."""

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        super().__init__(describe_all(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Source:
    """Where a file's bytes come from: exactly one of the fields is set."""

    url: str | None = None  # hdfs://, http://, https://
    config_map: tuple[str, str] | None = None  # (name, key)
    secret: tuple[str, str] | None = None
    inline: bytes | None = None

    @property
    def kind(self) -> str:
        if self.url is not None:
            return "hdfs" if self.url.startswith("hdfs://") else "http"
        if self.config_map is not None:
            return "configMap"
        return "secret" if self.secret is not None else "inline"

    @property
    def file_name(self) -> str | None:
        """The name the source itself suggests (last path segment or key), if any."""
        if self.url is not None:
            return posixpath.basename(urlsplit(self.url).path) or None
        ref = self.config_map or self.secret
        return ref[1] if ref else None

    def describe(self) -> str:
        if self.url is not None:
            return self.url
        if self.config_map is not None:
            return f"ConfigMap {self.config_map[0]} key {self.config_map[1]}"
        if self.secret is not None:
            return f"Secret {self.secret[0]} key {self.secret[1]}"
        return "inline text"


@dataclass(frozen=True)
class Localized:
    """A file or archive the worker container sees under `name` in its working directory."""

    name: str
    type: str  # FILE | ARCHIVE
    source: Source
    format: str | None = None  # archives: zip, jar, tar, tar.gz, tgz

    @property
    def staged_name(self) -> str:
        """The file name in HDFS: YARN picks the unpacker from it, dshell the link name."""
        return f"{self.name}.{self.format}" if self.type == "ARCHIVE" else self.name


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    vcores: int


@dataclass(frozen=True)
class Program:
    """What the worker container runs: a command (argv), a bash script, or a jar's main class."""

    kind: str  # command | script | jar
    command: tuple[str, ...] = ()
    script: str = ""
    jar: Localized | None = None
    main_class: str = ""
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cluster:
    resource_managers: tuple[str, ...]
    webhdfs: tuple[str, ...]
    default_fs: str
    user: str | None
    token_secret: str | None


@dataclass(frozen=True)
class ApplicationMaster:
    kind: ds.ApplicationMasterKind
    jar: Source | None
    main_class: str


@dataclass(frozen=True)
class ShellJobSpec:
    app_name: str
    cluster: Cluster | None
    queue: str
    program: Program
    files: tuple[Localized, ...]
    archives: tuple[Localized, ...]
    resources: Resources
    master: Resources
    containers: int
    application_master: ApplicationMaster
    priority: int
    node_label_expression: str | None
    max_app_attempts: int
    timeout_seconds: int
    env: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]

    @property
    def worker_resources(self) -> tuple[Localized, ...]:
        """Everything localized into the worker container: the job's jar first, then files, archives."""
        jar = (self.program.jar,) if self.program.jar else ()
        return (*jar, *self.files, *self.archives)


class _Checker:
    """Collects problems while reading fields; each read returns a usable default on error."""

    def __init__(self) -> None:
        self.problems: list[ConfigError] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(at(path, message))

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int, minimum: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(f"{path}.{key}", f"must be an integer >= {minimum}, got {value!r}")
            return default
        return value

    def text(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is not None and (not isinstance(value, str) or "\0" in value):
            self.problem(f"{path}.{key}", f"must be a string without NUL characters, got {value!r}")
            return default
        return value

    def strings(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) and "\0" not in item for item in value):
            self.problem(f"{path}.{key}", "must be a list of strings")
            return ()
        return tuple(value)

    def mapping(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, Mapping):
            self.problem(f"{path}.{key}", "must be an object")
            return {}
        return value


def parse_spec(spec: Mapping[str, Any], default_name: str) -> ShellJobSpec:
    """The checked spec, or SpecError listing every problem."""
    check = _Checker()
    app_name = check.text(spec, "applicationName", "spec", default_name) or default_name
    if not LINK_NAME.fullmatch(app_name):
        check.problem("spec.applicationName", f"{app_name!r} is used as an HDFS directory name: "
                      "letters, digits and . _ + - only")
    am = _application_master(check, check.mapping(spec, "applicationMaster", "spec"))
    files = tuple(_localized(check, item, f"spec.files[{i}]", "FILE")
                  for i, item in enumerate(_list(check, spec, "files")))
    archives = tuple(_localized(check, item, f"spec.archives[{i}]", "ARCHIVE")
                     for i, item in enumerate(_list(check, spec, "archives")))
    program = _program(check, spec)
    parsed = ShellJobSpec(
        app_name=app_name,
        cluster=_cluster(check, spec["yarn"]) if isinstance(spec.get("yarn"), Mapping) else None,
        queue=check.text(spec, "queue", "spec", "default") or "default",
        program=program,
        files=files,
        archives=archives,
        resources=_resources(check, spec, "resources", 1024),
        master=_resources(check, spec, "master", 512),
        containers=check.integer(spec, "containers", "spec", 1, 1),
        application_master=am,
        priority=check.integer(spec, "priority", "spec", 0, 0),
        node_label_expression=check.text(spec, "nodeLabelExpression", "spec"),
        max_app_attempts=check.integer(spec, "maxAppAttempts", "spec", 1, 1),
        timeout_seconds=check.integer(spec, "timeoutSeconds", "spec", DEFAULT_TIMEOUT_SECONDS, 0),
        env=_env(check, spec),
        tags=check.strings(spec, "applicationTags", "spec"),
    )
    _check_names(check, parsed)
    if check.problems:
        raise SpecError(check.problems)
    return parsed


def application_master_problems(job: ShellJobSpec) -> list[ConfigError]:
    """What the chosen ApplicationMaster cannot do (the local runner keeps to the same limits)."""
    problems = []
    kind = job.application_master.kind
    if job.archives and not kind.localizes_archives:
        problems.append(at("spec.archives", f"the stock DistributedShell ApplicationMaster (kind {kind.name}) "
                           f"cannot localize archives into its worker container; use applicationMaster.kind "
                           f"{ds.DSHELL.name} ({ds.DSHELL.description}) or ship the files unpacked"))
    if kind.single_container and job.containers != 1:
        problems.append(at("spec.containers", f"the {kind.name} ApplicationMaster runs exactly one container"))
    return problems


def cluster_problems(job: ShellJobSpec) -> list[ConfigError]:
    """What stops this job from being submitted to YARN (empty when it can be)."""
    problems = []
    if job.cluster is None:
        problems.append(at("spec.yarn", "required to run on YARN (resourceManagers, webhdfs, user)"))
    else:
        if not job.cluster.resource_managers:
            problems.append(at("spec.yarn.resourceManagers", "at least one ResourceManager URL is required"))
        if not job.cluster.webhdfs:
            problems.append(at("spec.yarn.webhdfs", "at least one WebHDFS (NameNode) URL is required"))
    if job.application_master.jar is None:
        problems.append(at("spec.applicationMaster.jar", "the ApplicationMaster jar's location is required"))
    return problems + application_master_problems(job)


def _list(check: _Checker, spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key) or []
    if not isinstance(value, list):
        check.problem(f"spec.{key}", "must be a list")
        return []
    return value


def _source(check: _Checker, item: Mapping[str, Any], path: str) -> Source:
    given = [field for field in SOURCE_FIELDS if item.get(field) is not None]
    if len(given) != 1:
        check.problem(path, f"give exactly one source of {', '.join(SOURCE_FIELDS)} (got {given or 'none'})")
        return Source(inline=b"")
    field = given[0]
    value = item[field]
    if field == "url":
        scheme = urlsplit(str(value)).scheme
        if scheme not in ("hdfs", "http", "https") or not urlsplit(str(value)).path.strip("/"):
            check.problem(f"{path}.url", f"{value!r}: expected an hdfs://, http:// or https:// URL of a file")
        return Source(url=str(value))
    if field in ("configMap", "secret"):
        if not isinstance(value, Mapping) or not value.get("name") or not value.get("key"):
            check.problem(f"{path}.{field}", "needs name and key")
            return Source(inline=b"")
        ref = (str(value["name"]), str(value["key"]))
        return Source(config_map=ref) if field == "configMap" else Source(secret=ref)
    if field == "inline":
        return Source(inline=str(value).encode())
    try:
        return Source(inline=base64.b64decode(str(value), validate=True))
    except binascii.Error as error:
        check.problem(f"{path}.inlineBase64", f"not valid base64: {error}")
        return Source(inline=b"")


def _localized(check: _Checker, item: Any, path: str, type_: str) -> Localized:
    if not isinstance(item, Mapping):
        check.problem(path, "must be an object with a source")
        return Localized("invalid", type_, Source(inline=b""))
    source = _source(check, item, path)
    suggested = source.file_name or ""
    fmt = None
    if type_ == "ARCHIVE":
        fmt = check.text(item, "format", path) or archive_format(suggested)
        if fmt not in FORMATS:
            check.problem(f"{path}.format", f"one of {', '.join(FORMATS)} is needed (the source name "
                          f"{suggested!r} does not tell)")
        default_name = ds.archive_link(suggested)
    else:
        default_name = suggested
    name = check.text(item, "name", path) or default_name
    if not name:
        check.problem(f"{path}.name", f"required for {source.describe()} (it has no file name)")
    elif not LINK_NAME.fullmatch(name):
        check.problem(f"{path}.name", f"{name!r}: letters, digits and . _ + - only, not starting with '.'")
    elif type_ == "ARCHIVE" and "." in name:
        check.problem(f"{path}.name", f"{name!r}: an archive's link name cannot contain '.' (the dshell "
                      "ApplicationMaster links an archive under its file name up to the first dot)")
    return Localized(name or "invalid", type_, source, fmt)


def _program(check: _Checker, spec: Mapping[str, Any]) -> Program:
    given = [field for field in PROGRAM_FIELDS if spec.get(field)]
    args = check.strings(spec, "args", "spec")
    if len(given) != 1:
        check.problem("spec", f"give exactly one of command, script or jar (got {given or 'none'})")
        return Program("command", command=("true",))
    if given[0] == "command":
        command = check.strings(spec, "command", "spec")
        return Program("command", command=command or ("true",), args=args)
    if given[0] == "script":
        return Program("script", script=check.text(spec, "script", "spec") or "", args=args)
    jar = spec["jar"]
    localized = _localized(check, jar, "spec.jar", "FILE")
    main_class = check.text(jar, "mainClass", "spec.jar") if isinstance(jar, Mapping) else None
    if not main_class or not JAVA_CLASS.fullmatch(main_class):
        check.problem("spec.jar.mainClass", f"a Java class name is required, got {main_class!r}")
    return Program("jar", jar=localized, main_class=main_class or "", args=args)


def _cluster(check: _Checker, yarn: Mapping[str, Any]) -> Cluster:
    resource_managers = _urls(check, yarn, "resourceManagers", ("http", "https"))
    webhdfs = _urls(check, yarn, "webhdfs", ("http", "https"))
    default_fs = check.text(yarn, "defaultFS", "spec.yarn")
    if default_fs is None and webhdfs:
        default_fs = f"hdfs://{urlsplit(webhdfs[0]).hostname}:8020"
    elif default_fs is not None and (urlsplit(default_fs).scheme != "hdfs" or not urlsplit(default_fs).netloc
                                     or not ds.SAFE_WORD.fullmatch(default_fs)):
        check.problem("spec.yarn.defaultFS", f"{default_fs!r}: expected hdfs://<namenode or nameservice>[:port]")
    user = check.text(yarn, "user", "spec.yarn")
    if user is not None and not ds.SAFE_WORD.fullmatch(user):
        # The user's home directory is part of the ApplicationMaster's command line.
        check.problem("spec.yarn.user", f"{user!r}: may only contain letters, digits and . _ , : / = @ % + -")
    return Cluster(
        resource_managers=resource_managers,
        webhdfs=webhdfs,
        default_fs=(default_fs or "hdfs://localhost:8020").rstrip("/"),
        user=user,
        token_secret=check.text(yarn, "delegationTokenSecret", "spec.yarn"),
    )


def _urls(check: _Checker, yarn: Mapping[str, Any], key: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
    urls = check.strings(yarn, key, "spec.yarn")
    for url in urls:
        if urlsplit(url).scheme not in schemes or not urlsplit(url).netloc:
            check.problem(f"spec.yarn.{key}", f"{url!r}: expected {' or '.join(schemes)}://host:port")
    return tuple(url.rstrip("/") for url in urls)


def _resources(check: _Checker, spec: Mapping[str, Any], key: str, memory_mb: int) -> Resources:
    data = check.mapping(spec, key, "spec")
    return Resources(check.integer(data, "memoryMB", f"spec.{key}", memory_mb, 1),
                     check.integer(data, "vcores", f"spec.{key}", 1, 1))


def _application_master(check: _Checker, data: Mapping[str, Any]) -> ApplicationMaster:
    kind_name = data.get("kind", ds.STOCK.name)
    kind = ds.KINDS.get(kind_name)
    if kind is None:
        check.problem("spec.applicationMaster.kind", f"{kind_name!r}: one of {', '.join(ds.KINDS)}")
        kind = ds.STOCK
    main_class = check.text(data, "mainClass", "spec.applicationMaster") or kind.main_class
    if not JAVA_CLASS.fullmatch(main_class):
        check.problem("spec.applicationMaster.mainClass", f"{main_class!r} is not a Java class name")
    jar = data.get("jar")
    return ApplicationMaster(kind, _source(check, jar, "spec.applicationMaster.jar") if jar else None, main_class)


def _env(check: _Checker, spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    env = []
    for index, item in enumerate(_list(check, spec, "env")):
        path = f"spec.env[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            check.problem(path, "needs name and value")
            continue
        if not ENV_NAME.fullmatch(item["name"]):
            check.problem(f"{path}.name", f"{item['name']!r} is not a valid environment variable name")
            continue
        env.append((item["name"], check.text(item, "value", path, "") or ""))
    return tuple(env)


def _check_names(check: _Checker, job: ShellJobSpec) -> None:
    """Link names share the container's working directory and the staging directory."""
    seen: set[str] = set()
    for item in job.worker_resources:
        for name in {item.name, item.staged_name}:
            if name in ds.RESERVED_NAMES:
                check.problem("spec", f"{name!r} is used by the DistributedShell ApplicationMaster; rename it")
            elif name in seen:
                check.problem("spec", f"two files or archives are named {name!r}")
            seen.add(name)
