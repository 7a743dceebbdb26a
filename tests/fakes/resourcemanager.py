"""A fake YARN ResourceManager speaking its REST API, for tests.

Follows Apache Hadoop's "ResourceManager REST API's" document (hadoop-yarn-project/hadoop-yarn/
hadoop-yarn-site/src/site/markdown/ResourceManagerRest.md) and the checklist at the end of the
team's reference `yarn-dshell-variant.md`:

- `POST /ws/v1/cluster/apps/new-application` -> 200, ids `application_<cluster ts>_<NNNN>` numbered
  from 1, `maximum-resource-capability`;
- `POST /ws/v1/cluster/apps` -> 202 + `Location`, empty body; the body is validated strictly (the
  `{"entry": [{"key", "value"}]}` maps of the DAOs' HashMaps: local-resources, environment,
  service-data, application-acls, credentials.tokens and .secrets; numbers given as strings
  tolerated; `{"command": ...}`); an id never issued is refused (400), the same id twice is
  accepted once (202, no second app);
- `GET /apps/{id}` -> `{"app": {...}}`, unknown id -> 404; `GET /apps/{id}/appattempts`;
- `GET/PUT /apps/{id}/state`: the first `PUT {"state": "KILLED"}` -> 202 with the current state,
  later ones -> 200 once KILLED; another target -> 400; a finished app keeps its final state;
- simple auth: no `user.name` (and no `X-Hadoop-Delegation-Token`) -> 401 AuthorizationException;
  a delegation token is accepted when it is one of `tokens` (token -> user), else 401;
- `standby_of=<active fake>`: every request -> 307 + `Location` on the active one, plain text body
  "This is standby RM. The redirect url is: ...", as RMWebAppFilter answers; Hadoop 3's filter
  appends the query string to the Location, Hadoop 2's (`getRequestURI()` only) does not:
  `standby_keeps_query=False` answers like the latter;
- delegation tokens in `am-container-spec.credentials` are cancelled when the application ends
  (the fake HDFS stops accepting them) unless `cancel-tokens-when-complete` is false, as the RM's
  DelegationTokenRenewer does;
- errors as `{"RemoteException": {...}}`; anything unexpected -> 503.

Applications move NEW -> NEW_SAVING -> SUBMITTED -> ACCEPTED -> RUNNING -> FINISHED. What
happens while RUNNING is chosen per fake:
- `Behaviour.RUN` (default): the fake plays the ApplicationMaster and the NodeManager. It checks
  the AM container's local resources against the fake HDFS (size and timestamp, as the NodeManager
  does: "changed on src filesystem"), reads the DistributedShell protocol the way the stock AM
  (`--localized_files`, `--appname`, `--homedir`) or the dshell variant (`DISTRIBUTEDJAR*` and
  `DISTRIBUTEDARCHIVE*` env vars: key = file name, archives up to the first dot) does, localizes
  the worker files and archives from the fake HDFS, and runs `bash ExecScript.sh` on this machine
  with kubeflume's local runner. SUCCEEDED iff every container exits 0, else FAILED with the AM's
  "Application Failure: ..." diagnostics and the container's stderr tail.
- `Behaviour.SCRIPTED`: no process; FINISHED with `final_status`/`diagnostics` after `run_seconds`.
While RUNNING the report shows `progress` and, when given, `tracking_url` (else a proxy URL).
- `Behaviour.STUCK`: stays ACCEPTED (an AM that never registers), then FAILED with the AM
  liveness-expiry diagnostics after `run_seconds`, or as soon as `am_liveness_expired` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from kubeflume_operator.shelljob.local import ContainerFile, localize, run_container
from tests.fakes.webhdfs import FakeWebHDFS

API = "/ws/v1/cluster"
CLUSTER_TIMESTAMP = 1700000000000
SEGMENT_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED")
TERMINAL = ("FINISHED", "FAILED", "KILLED")
STOCK_AM = "org.apache.hadoop.yarn.applications.distributedshell.ApplicationMaster"
DSHELL_AM = "DshellApplicationMaster"
STDERR_TAIL = 4096


class Behaviour(enum.Enum):
    RUN = "run"
    SCRIPTED = "scripted"
    STUCK = "stuck"


class RemoteError(Exception):
    def __init__(self, status: int, exception: str, message: str, java_package: str = "org.apache.hadoop.yarn") -> None:
        super().__init__(message)
        self.status, self.exception, self.message = status, exception, message
        self.java_class = f"{java_package}.{exception}"

    def response(self) -> web.Response:
        return web.json_response({"RemoteException": {"exception": self.exception, "message": self.message,
                                                       "javaClassName": self.java_class}}, status=self.status)


def bad_request(message: str) -> RemoteError:
    return RemoteError(400, "BadRequestException", message, "org.apache.hadoop.yarn.webapp")


class ContainerFailed(Exception):
    """A container (or the AM) could not start; the message is what YARN would say."""


@dataclass
class Application:
    id: str
    user: str
    context: dict[str, Any]
    state: str = "NEW"
    final_status: str = "UNDEFINED"
    diagnostics: str = ""
    progress: float = 0.0
    started: int = field(default_factory=lambda: int(time.time() * 1000))
    finished: int = 0
    kill_requested: bool = False
    workdir: Path | None = None
    task: asyncio.Task | None = None

    @property
    def am_container(self) -> str:
        return f"container_{self.id.removeprefix('application_')}_01_000001"


class FakeResourceManager:
    def __init__(
        self,
        hdfs: FakeWebHDFS | None = None,
        *,
        behaviour: Behaviour = Behaviour.RUN,
        final_status: str = "SUCCEEDED",
        diagnostics: str = "",
        run_seconds: float = 0.0,
        step_seconds: float = 0.05,
        strict: bool = True,
        tokens: dict[str, str] | None = None,
        standby_of: FakeResourceManager | None = None,
        standby_keeps_query: bool = True,
        progress: float = 10.0,
        tracking_url: str | None = None,
        max_memory_mb: int = 8192,
        max_vcores: int = 8,
        host: str = "127.0.0.1",
    ) -> None:
        self.hdfs = hdfs
        self.behaviour = behaviour
        self.final_status = final_status
        self.diagnostics = diagnostics
        self.run_seconds = run_seconds
        self.step_seconds = step_seconds
        self.strict = strict
        self.tokens = tokens or {}
        self.standby_of = standby_of
        self.standby_keeps_query = standby_keeps_query
        self.progress = progress
        self.tracking_url = tracking_url
        self.max_memory_mb, self.max_vcores = max_memory_mb, max_vcores
        self.host = host
        self.issued: list[str] = []
        self.apps: dict[str, Application] = {}
        self.submissions: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.submission_gate: asyncio.Event | None = None  # closed: POST /apps waits
        self.am_liveness_expired = asyncio.Event()  # set: a STUCK application fails now, not after run_seconds
        self.waiting_submissions = 0
        self._drop_waiting = False
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._root = Path(tempfile.mkdtemp(prefix="fake-rm-"))

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeResourceManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._errors])
        app.router.add_route("*", API + "{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        for app in self.apps.values():
            if app.task is not None:
                app.task.cancel()
        await asyncio.gather(*(a.task for a in self.apps.values() if a.task), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        shutil.rmtree(self._root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    # --- what tests use ---------------------------------------------------------------------

    def hold_submissions(self) -> None:
        """POST /apps waits (unprocessed) until `release_submissions()` or `drop_held_submissions()`."""
        self.submission_gate = asyncio.Event()

    def release_submissions(self) -> None:
        if self.submission_gate is not None:
            self.submission_gate.set()
        self.submission_gate = None

    def drop_held_submissions(self) -> None:
        """The held requests are never processed (their client is gone, e.g. a killed operator)."""
        self._drop_waiting = True
        self.release_submissions()

    def container_log(self, application_id: str, name: str = "stdout", container: int = 1) -> str:
        app = self.apps[application_id]
        assert app.workdir is not None, "no container ran"
        return (app.workdir / f"container_{container}" / "logs" / name).read_text()

    # --- HTTP -------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RemoteError as error:
            return error.response()
        except web.HTTPException:
            raise
        except Exception as error:  # the RM's GenericExceptionHandler: anything else is a 503
            return RemoteError(503, type(error).__name__, str(error), "java.lang").response()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests.append((request.method, path))
        if self.standby_of is not None:
            location = f"{self.standby_of.url}{request.rel_url if self.standby_keeps_query else request.path}"
            return web.Response(status=307, headers={"Location": location},
                                text=f"This is standby RM. The redirect url is: {location}")
        user = self._user(request)
        routes = {
            ("POST", "/apps/new-application"): lambda: self._new_application(),
            ("POST", "/apps"): lambda: self._submit(request, user),
        }
        if (request.method, path) in routes:
            return await routes[request.method, path]()
        match = re.fullmatch(r"/apps/(application_\d+_\d+)(/state|/appattempts)?", path)
        if match is None:
            raise RemoteError(404, "NotFoundException", f"java.lang.Exception: no such resource {path}",
                              "org.apache.hadoop.yarn.webapp")
        app = self.apps.get(match.group(1))
        if app is None:
            raise RemoteError(404, "NotFoundException", f"app with id: {match.group(1)} not found",
                              "org.apache.hadoop.yarn.webapp")
        suffix = match.group(2) or ""
        if suffix == "/state" and request.method == "PUT":
            return await self._put_state(request, app)
        if request.method != "GET":
            raise RemoteError(405, "WebApplicationException", f"{request.method} not allowed", "javax.ws.rs")
        if suffix == "/state":
            return web.json_response({"state": app.state})
        if suffix == "/appattempts":
            return web.json_response({"appAttempts": {"appAttempt": [self._attempt(app)]}})
        return web.json_response({"app": self._report(app)})

    def _user(self, request: web.Request) -> str:
        user = request.query.get("user.name")
        if user:
            return user
        token = request.headers.get("X-Hadoop-Delegation-Token")
        if token is not None:
            if token not in self.tokens:
                raise RemoteError(401, "AuthorizationException", f"invalid delegation token {token}",
                                  "org.apache.hadoop.security.authorize")
            return self.tokens[token]
        if self.strict:
            raise RemoteError(401, "AuthorizationException",
                              "Unable to obtain user name, user not authenticated",
                              "org.apache.hadoop.security.authorize")
        return "dr.who"

    async def _new_application(self) -> web.Response:
        application_id = f"application_{CLUSTER_TIMESTAMP}_{len(self.issued) + 1:04d}"
        self.issued.append(application_id)
        return web.json_response({"application-id": application_id, "maximum-resource-capability": {
            "memory": self.max_memory_mb, "vCores": self.max_vcores}})

    async def _submit(self, request: web.Request, user: str) -> web.Response:
        try:
            body = await request.json()
        except ValueError as error:
            raise bad_request(f"cannot parse the submission: {error}") from error
        if self.submission_gate is not None:
            self.waiting_submissions += 1
            try:
                await self.submission_gate.wait()
            finally:
                self.waiting_submissions -= 1
            if self._drop_waiting:
                raise web.HTTPServiceUnavailable()
        context = validate_submission(body)
        application_id = context["application-id"]
        if application_id not in self.issued:
            raise bad_request(f"application id {application_id} was not issued by new-application")
        self.submissions.append(body)
        if application_id not in self.apps:  # "This is an earlier submitted application": nothing to do
            app = Application(application_id, user, context)
            self.apps[application_id] = app
            app.task = asyncio.create_task(self._lifecycle(app))
        return web.Response(status=202, headers={"Location": f"{self.url}{API}/apps/{application_id}"})

    async def _put_state(self, request: web.Request, app: Application) -> web.Response:
        target = (await request.json()).get("state")
        if target != "KILLED":
            raise bad_request("Only 'KILLED' is allowed as a target state.")
        if app.state in TERMINAL:
            return web.json_response({"state": app.state})
        if not app.kill_requested:
            app.kill_requested = True
            if app.task is not None:
                app.task.cancel()
        return web.json_response({"state": app.state}, status=202)

    def _report(self, app: Application) -> dict[str, Any]:
        context = app.context
        finished = app.state in TERMINAL
        return {
            "id": app.id, "user": app.user, "name": context.get("application-name", ""),
            "queue": context.get("queue") or "default", "state": app.state, "finalStatus": app.final_status,
            "progress": app.progress, "trackingUI": "History" if finished else "ApplicationMaster",
            "trackingUrl": self._tracking_url(app, finished),
            "diagnostics": app.diagnostics, "clusterId": CLUSTER_TIMESTAMP,
            "applicationType": context.get("application-type") or "YARN",
            "applicationTags": ",".join(context.get("application-tags", {}).get("tag", [])),
            "priority": context.get("priority", 0), "startedTime": app.started, "finishedTime": app.finished,
            "elapsedTime": (app.finished or int(time.time() * 1000)) - app.started,
            "amContainerLogs": f"http://{self.host}:8042/node/containerlogs/{app.am_container}/{app.user}",
            "amHostHttpAddress": f"{self.host}:8042", "allocatedMB": -1, "allocatedVCores": -1,
            "runningContainers": 0 if finished else 1, "logAggregationStatus": "DISABLED",
            "unmanagedApplication": False,
        }

    def _tracking_url(self, app: Application, finished: bool) -> str:
        if self.tracking_url and app.state != "ACCEPTED":
            return self.tracking_url
        return f"{self.url}/{'cluster/app' if finished else 'proxy'}/{app.id}/"

    @staticmethod
    def _attempt(app: Application) -> dict[str, Any]:
        return {"id": 1, "startTime": app.started, "containerId": app.am_container,
                "nodeHttpAddress": "127.0.0.1:8042", "nodeId": "127.0.0.1:8041",
                "logsLink": f"http://127.0.0.1:8042/node/containerlogs/{app.am_container}/{app.user}"}

    # --- the application's life -------------------------------------------------------------

    async def _lifecycle(self, app: Application) -> None:
        try:
            for state in SEGMENT_STATES:
                app.state = state
                await asyncio.sleep(self.step_seconds)
            if self.behaviour is Behaviour.STUCK:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.am_liveness_expired.wait(), self.run_seconds)
                self._end(app, "FAILED", "FAILED", f"Application {app.id} failed 1 times due to ApplicationMaster "
                          f"for attempt appattempt_{app.id.removeprefix('application_')}_000001 timed out. "
                          "Failing the application.")
                return
            app.state, app.progress = "RUNNING", self.progress
            if self.behaviour is Behaviour.SCRIPTED:
                await asyncio.sleep(self.run_seconds)
                self._end(app, "FINISHED", self.final_status, self.diagnostics)
                return
            final_status, diagnostics = await self._run_master(app)
            self._end(app, "FINISHED", final_status, diagnostics)
        except asyncio.CancelledError:
            if app.kill_requested:
                self._end(app, "KILLED", "KILLED", f"Application killed by user. Application {app.id} was killed.")
            raise
        except ContainerFailed as error:
            self._end(app, "FAILED", "FAILED", f"Application {app.id} failed 1 times due to AM Container for "
                      f"appattempt_{app.id.removeprefix('application_')}_000001 exited: {error}. "
                      "Failing the application.")

    def _end(self, app: Application, state: str, final_status: str, diagnostics: str) -> None:
        app.state, app.final_status, app.diagnostics = state, final_status, diagnostics
        app.progress, app.finished = 100.0, int(time.time() * 1000)
        if app.context.get("cancel-tokens-when-complete", True) is not False and self.hdfs is not None:
            for token in app.context["am-container-spec"]["credentials"]["tokens"].values():
                self.hdfs.tokens.pop(token, None)

    async def _run_master(self, app: Application) -> tuple[str, str]:
        """The DistributedShell AM and the NodeManager, from the submission alone."""
        spec = app.context["am-container-spec"]
        command = spec["commands"]["command"]
        env = spec["environment"]
        self._check_am_command(command)
        for key, resource in spec["local-resources"].items():
            self._hdfs_file(resource["resource"], resource["size"], resource["timestamp"], key)
        if "AppMaster.jar" not in spec["local-resources"]:
            raise ContainerFailed("java.lang.ClassNotFoundException: AppMaster.jar is not localized")
        options = dict(re.findall(r"--(\w+) (\S+)", command))
        workers = self._worker_resources(app, command, options, env)
        containers = int(options.get("num_containers", "1"))
        app.workdir = self._root / app.id
        failed, last_error = 0, ""
        for index in range(1, containers + 1):
            exit_code, stderr = await self._run_worker(app.workdir / f"container_{index}", workers)
            if exit_code != 0:
                failed += 1
                last_error = (f"Exception from container-launch. Exit code: {exit_code}. Container exited with a "
                              f"non-zero exit code {exit_code}. Last {STDERR_TAIL} bytes of stderr :\n{stderr}")
        if failed:
            return "FAILED", (f"Application Failure: desired = {containers}, completed = {containers}, allocated = "
                              f"{containers}, failed = {failed}, diagnostics = {last_error}")
        return "SUCCEEDED", ""

    @staticmethod
    def _check_am_command(command: str) -> None:
        if not command.startswith("{{JAVA_HOME}}/bin/java ") or "<LOG_DIR>/AppMaster.stderr" not in command:
            raise ContainerFailed(f"not a DistributedShell AM command line: {command}")
        if STOCK_AM not in command and DSHELL_AM not in command:
            raise ContainerFailed(f"unknown ApplicationMaster class in {command}")

    def _hdfs_file(self, uri: str, size: Any, timestamp: Any, what: str) -> bytes:
        """The bytes of an hdfs:// URI, checked as the NodeManager checks a LocalResource."""
        assert self.hdfs is not None, "running containers needs the fake HDFS"
        parts = urlsplit(uri)
        if parts.scheme != "hdfs":
            raise ContainerFailed(f"{what}: unsupported resource URL {uri}")
        if not self.hdfs.exists(parts.path):
            raise ContainerFailed(f"java.io.FileNotFoundException: File does not exist: {parts.path}")
        status = self.hdfs.status(parts.path)
        if status["modificationTime"] != int(timestamp):
            raise ContainerFailed(f"java.io.IOException: Resource {uri} changed on src filesystem (expected "
                                  f"{timestamp}, was {status['modificationTime']}")
        if status["length"] != int(size):
            raise ContainerFailed(f"{what}: size {size} given, {status['length']} in HDFS")
        return self.hdfs.read(parts.path)

    def _worker_resources(self, app: Application, command: str, options: dict[str, str],
                          env: dict[str, str]) -> list[tuple[str, str, str, bytes]]:
        """(key, type, file name, bytes) of the worker container, as the chosen AM builds them."""
        script = env.get("DISTRIBUTEDSHELLSCRIPTLOCATION", "")
        if not script:
            raise ContainerFailed("No shell command or shell script specified to be executed by application master")
        resources = [("ExecScript.sh", "FILE", "ExecScript.sh", self._hdfs_file(
            script, env["DISTRIBUTEDSHELLSCRIPTLEN"], env["DISTRIBUTEDSHELLSCRIPTTIMESTAMP"], "ExecScript"))]
        if DSHELL_AM in command:
            resources += self._dshell_resources(env, "DISTRIBUTEDJAR", "FILE")
            resources += self._dshell_resources(env, "DISTRIBUTEDARCHIVE", "ARCHIVE")
        elif "localized_files" in options:
            directory = f"{options['homedir']}/{options['appname']}/{app.id}"
            for name in options["localized_files"].split(","):
                status = self.hdfs.status(f"{directory}/{name}") if self.hdfs.exists(f"{directory}/{name}") else None
                if status is None:
                    raise ContainerFailed(f"java.io.FileNotFoundException: {directory}/{name}")
                resources.append((name, "FILE", name, self.hdfs.read(f"{directory}/{name}")))
        return resources

    def _dshell_resources(self, env: dict[str, str], prefix: str, type_: str) -> list[tuple[str, str, str, bytes]]:
        found = []
        for key, location in env.items():
            if f"{prefix}LOCATION" not in key:
                continue
            suffix = key.split(f"{prefix}LOCATION")[1]
            try:
                timestamp = int(env[f"{prefix}TIMESTAMP{suffix}"])
                size = int(env[f"{prefix}LEN{suffix}"])
            except (KeyError, ValueError) as error:
                raise ContainerFailed(f"java.lang.NumberFormatException: {key}: {error}") from error
            file_name = location.rsplit("/", 1)[-1]
            link = file_name.split(".")[0] if type_ == "ARCHIVE" else file_name
            found.append((link, type_, file_name, self._hdfs_file(location, size, timestamp, key)))
        return found

    async def _run_worker(self, workdir: Path, resources: list[tuple[str, str, str, bytes]]) -> tuple[int, str]:
        cache = workdir.parent / f"{workdir.name}-filecache"
        cache.mkdir(parents=True)
        workdir.mkdir()
        files = []
        for index, (key, type_, file_name, data) in enumerate(resources):
            path = cache / str(index) / file_name
            path.parent.mkdir()
            path.write_bytes(data)
            files.append(ContainerFile(key, type_, file_name, path))
        localize(workdir, files)
        result = await run_container(workdir, ["bash", "ExecScript.sh"], env={"YARN_SHELL_ID": "1"})
        return (-1 if result.exit_code is None else result.exit_code), result.stderr_tail()


def validate_submission(body: Any) -> dict[str, Any]:
    """The application-submission-context with its maps flattened; 400 for anything malformed."""
    if not isinstance(body, dict):
        raise bad_request("the submission must be a JSON object")
    for key, kind in (("application-id", str), ("application-name", str), ("am-container-spec", dict),
                      ("resource", dict)):
        if not isinstance(body.get(key), kind):
            raise bad_request(f"{key} is missing or not a {kind.__name__}")
    unknown = set(body) - SUBMISSION_FIELDS
    if unknown:
        raise bad_request(f"unknown fields in application-submission-context: {sorted(unknown)}")
    resource = body["resource"]
    _number(resource, "memory", "resource")
    _number(resource, "vCores", "resource")
    spec = body["am-container-spec"]
    commands = spec.get("commands")
    if not isinstance(commands, dict) or not isinstance(commands.get("command"), str):
        raise bad_request('am-container-spec.commands must be {"command": "..."}')
    local = _entry_map(spec.get("local-resources", {}), "local-resources")
    for key, value in local.items():
        if not isinstance(value, dict) or not isinstance(value.get("resource"), str):
            raise bad_request(f"local resource {key}: resource URL missing")
        if value.get("type") not in ("FILE", "ARCHIVE", "PATTERN"):
            raise bad_request(f"local resource {key}: type {value.get('type')!r}")
        if value.get("visibility") not in ("PUBLIC", "PRIVATE", "APPLICATION"):
            raise bad_request(f"local resource {key}: visibility {value.get('visibility')!r}")
        _number(value, "size", f"local resource {key}")
        _number(value, "timestamp", f"local resource {key}")
    env = _string_map(spec.get("environment", {}), "environment")
    for key in ("service-data", "application-acls"):
        _string_map(spec.get(key, {}), key)
    credentials = spec.get("credentials", {})
    if not isinstance(credentials, dict) or set(credentials) - {"tokens", "secrets"}:
        raise bad_request('am-container-spec.credentials must be {"tokens": {...}, "secrets": {...}}')
    flat_credentials = {key: _string_map(credentials.get(key, {}), f"credentials.{key}")
                        for key in ("tokens", "secrets")}
    for key in ("unmanaged-AM", "keep-containers-across-application-attempts", "cancel-tokens-when-complete"):
        if not isinstance(body.get(key, False), bool):
            raise bad_request(f"{key} must be a boolean")
    tags = body.get("application-tags", {"tag": []})
    if not isinstance(tags, dict) or not isinstance(tags.get("tag", []), list):
        raise bad_request('application-tags must be {"tag": [...]}')
    return {**body, "am-container-spec": {**spec, "local-resources": local, "environment": env,
                                          "credentials": flat_credentials}}


SUBMISSION_FIELDS = {
    "application-id", "application-name", "queue", "priority", "am-container-spec", "unmanaged-AM",
    "max-app-attempts", "resource", "application-type", "keep-containers-across-application-attempts",
    "application-tags", "log-aggregation-context", "attempt-failures-validity-interval", "reservation-id",
    "am-black-listing-requests", "cancel-tokens-when-complete", "app-node-label-expression",
    "am-container-node-label-expression",
}


def _number(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    with contextlib.suppress(TypeError, ValueError):
        if not isinstance(value, bool):
            return int(value)
    raise bad_request(f"{where}: {key} must be a number, got {value!r}")


def _string_map(value: Any, where: str) -> dict[str, str]:
    entries = _entry_map(value, where)
    if not all(isinstance(v, str) for v in entries.values()):
        raise bad_request(f"{where}: values must be strings")
    return entries


def _entry_map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - {"entry"} or not isinstance(value.get("entry", []), list):
        raise bad_request(f'{where} must be {{"entry": [{{"key": ..., "value": ...}}]}}')
    entries = value.get("entry", [])
    if not all(isinstance(e, dict) and isinstance(e.get("key"), str) and "value" in e for e in entries):
        raise bad_request(f"{where}: every entry needs a key and a value")
    return {e["key"]: e["value"] for e in entries}
