"""ShellJob spec -> DistributedShell submission (pure), and the worker script's quoting (run by bash)."""

from __future__ import annotations

import re
import subprocess

import pytest

from kubeflume_operator.problems import describe
from kubeflume_operator.shelljob.launcher import worker_script
from kubeflume_operator.shelljob.spec import SpecError, parse_spec
from kubeflume_operator.shelljob.submission import location_problems, staging_plan, submission_context
from kubeflume_operator.yarn.distributedshell import StagedFile, UnsafeValue

APP = "application_1700000000000_0007"
HOME = "/user/alice"
FS = "hdfs://nn:8020"
STAGING = f"{HOME}/demo/{APP}"
HOSTILE = ["it's", '"double"', "$(touch pwned1)", "`touch pwned2`", "; touch pwned3 #", "a\nb", "*", "$HOME", "\\"]


def job_spec(kind: str, **fields) -> dict:
    return {
        "yarn": {"resourceManagers": ["http://rm:8088"], "webhdfs": ["http://nn:9870"], "defaultFS": FS},
        "applicationName": "demo",
        "jar": {"url": "hdfs:///jobs/app.jar", "mainClass": "demo.Main"},
        "files": [{"url": "https://repo/lib/dep-1.0.jar"}, {"url": "hdfs://nn:8020/libs/renamed.jar", "name": "x.jar"}],
        "applicationMaster": {"kind": kind, "jar": {"url": "hdfs:///apps/am.jar"}},
        **fields,
    }


def staged_for(plan) -> list[StagedFile]:
    return [StagedFile(p.name, p.uri(FS), p.type, 100 + i, 1_700_000_000_000 + i) for i, p in enumerate(plan)]


def build(kind: str, **fields):
    job = parse_spec(job_spec(kind, **fields), "ignored")
    plan = staging_plan(job, APP, HOME)
    staged = staged_for(plan)
    context = submission_context(job, APP, HOME, staged, {p.name: p.role for p in plan})
    spec = context["am-container-spec"]
    env = {e["key"]: e["value"] for e in spec["environment"]["entry"]}
    local = {e["key"]: e["value"] for e in spec["local-resources"]["entry"]}
    return plan, context, env, local, spec["commands"]["command"]


def test_dshell_uses_hdfs_files_in_place_and_announces_them_in_its_environment():
    plan, context, env, local, command = build(
        "dshell", archives=[{"url": "hdfs:///cache/venv.tar.gz"}, {"url": "https://h/conf.zip"}])
    paths = {p.name: (p.path, p.in_place) for p in plan}
    assert paths == {
        "AppMaster.jar": ("/apps/am.jar", True),
        "ExecScript": (f"{STAGING}/ExecScript", False),
        "app.jar": ("/jobs/app.jar", True),
        "dep-1.0.jar": (f"{STAGING}/dep-1.0.jar", False),
        "x.jar": (f"{STAGING}/x.jar", False),  # its HDFS name differs from the link name: copied
        "venv": ("/cache/venv.tar.gz", True),
        "conf": (f"{STAGING}/conf.zip", False),
    }
    assert env["DISTRIBUTEDJARLOCATION0"] == f"{FS}/jobs/app.jar"
    assert env["DISTRIBUTEDJARLOCATION1"] == f"{FS}{STAGING}/dep-1.0.jar"
    assert env["DISTRIBUTEDJARLOCATION2"] == f"{FS}{STAGING}/x.jar"
    assert env["DISTRIBUTEDARCHIVELOCATION0"] == f"{FS}/cache/venv.tar.gz"
    assert env["DISTRIBUTEDARCHIVELOCATION1"] == f"{FS}{STAGING}/conf.zip"
    assert (env["DISTRIBUTEDJARTIMESTAMP0"], env["DISTRIBUTEDJARLEN0"]) == ("1700000000002", "102")
    assert not any(re.search(r"(JAR|ARCHIVE)LOCATION[3-9]", key) for key in env)
    assert env["DISTRIBUTEDSHELLSCRIPTLOCATION"] == f"{FS}{STAGING}/ExecScript"
    assert env["CLASSPATH"].startswith("{{CLASSPATH}}<CPS>./*<CPS>")
    assert list(local) == ["AppMaster.jar"]
    assert local["AppMaster.jar"] == {"resource": f"{FS}/apps/am.jar", "type": "FILE", "visibility": "APPLICATION",
                                      "size": 100, "timestamp": 1_700_000_000_000}
    assert command.startswith("{{JAVA_HOME}}/bin/java -Xmx512m "
                              "org.apache.hadoop.yarn.applications.distributedshell.DshellApplicationMaster ")
    assert "--localized_files" not in command and "--appname" not in command
    assert command.endswith("1><LOG_DIR>/AppMaster.stdout 2><LOG_DIR>/AppMaster.stderr")
    assert context["application-id"] == APP and context["resource"] == {"memory": 512, "vCores": 1}


def test_the_stock_am_gets_every_file_in_the_staging_directory_and_their_names():
    plan, _, env, _, command = build("distributedshell", containers=3, priority=2, master={"memoryMB": 700})
    workers = [p for p in plan if p.role == "worker"]
    assert all(p.path == f"{STAGING}/{p.name}" and not p.in_place for p in workers)
    assert not any(key.startswith("DISTRIBUTEDJAR") for key in env)
    assert ("{{JAVA_HOME}}/bin/java -Xmx700m org.apache.hadoop.yarn.applications.distributedshell.ApplicationMaster "
            "--container_memory 1024 --container_vcores 1 --num_containers 3 --priority 2 "
            f"--localized_files app.jar,dep-1.0.jar,x.jar --appname demo --homedir {HOME} ") in command


def test_optional_fields_reach_the_submission():
    _, context, *_ = build("dshell", queue="etl", applicationTags=["nightly", "team-a"], nodeLabelExpression="gpu",
                           maxAppAttempts=2)
    assert context["queue"] == "etl"
    assert context["application-tags"] == {"tag": ["nightly", "team-a"]}
    assert context["app-node-label-expression"] == "gpu"
    assert context["max-app-attempts"] == 2


def test_nothing_user_given_reaches_the_am_command_line_unchecked():
    _, _, env, _, command = build("dshell", args=HOSTILE, env=[{"name": "V", "value": v} for v in HOSTILE])
    assert all(h not in command for h in HOSTILE if len(h) > 1)
    assert not any(h in value for value in env.values() for h in HOSTILE if len(h) > 1)  # it goes in ExecScript
    for word in command.split(" "):
        assert re.fullmatch(r"[A-Za-z0-9._,:/=@%+{}<>-]+", word), word
    job = parse_spec(job_spec("distributedshell"), "x")
    plan = staging_plan(job, APP, HOME)
    with pytest.raises(UnsafeValue):
        submission_context(job, APP, "/user/$(id)", staged_for(plan), {p.name: p.role for p in plan})


def run_worker_script(directory, spec: dict) -> str:
    script = directory / "ExecScript.sh"
    script.write_text(worker_script(parse_spec(spec, "job"), "ns/job"))
    return subprocess.run(["bash", script.name], cwd=directory, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("program", [
    {"command": ["printf", "[%s]\\n"]},
    {"script": 'for a in "$@"; do printf "[%s]\\n" "$a"; done'},
])
def test_hostile_arguments_reach_the_program_verbatim(tmp_path, program):
    printed = run_worker_script(tmp_path, {**program, "args": HOSTILE})
    assert printed == "".join(f"[{value}]\n" for value in HOSTILE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ExecScript.sh"]  # nothing was touched


def test_hostile_environment_values_reach_the_program_verbatim(tmp_path):
    env = [{"name": f"V{i}", "value": value} for i, value in enumerate(HOSTILE)]
    printed = run_worker_script(tmp_path, {"command": ["env", "-0"], "env": env})
    names = {item["name"] for item in env}  # the machine's own variables (VIRTUAL_ENV...) left out
    seen = dict(item.split("=", 1) for item in printed.split("\0") if item.split("=", 1)[0] in names)
    assert seen == {f"V{i}": value for i, value in enumerate(HOSTILE)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ExecScript.sh"]


def test_delegation_tokens_go_as_an_entry_map_and_are_not_cancelled_at_the_end():
    job = parse_spec(job_spec("dshell"), "x")
    plan = staging_plan(job, APP, HOME)
    context = submission_context(job, APP, HOME, staged_for(plan), {p.name: p.role for p in plan},
                                 {"kubeflume-hdfs-delegation-token": "HAAFYWxpY2U"})
    assert context["am-container-spec"]["credentials"] == {
        "tokens": {"entry": [{"key": "kubeflume-hdfs-delegation-token", "value": "HAAFYWxpY2U"}]},
        "secrets": {"entry": []},
    }
    assert context["cancel-tokens-when-complete"] is False
    without = submission_context(job, APP, HOME, staged_for(plan), {p.name: p.role for p in plan})
    assert "credentials" not in without["am-container-spec"] and "cancel-tokens-when-complete" not in without


@pytest.mark.parametrize("hostile", ["/jobs/a b/app.jar", "/jobs/$(id)/app.jar", "/jobs/`id`/app.jar",
                                     '/jobs/"x"/app.jar', "/jobs/x;id/app.jar"])
def test_an_hdfs_location_used_in_place_is_refused_before_any_application(hostile):
    job = parse_spec(job_spec("dshell", jar={"url": f"hdfs://{hostile}", "mainClass": "demo.Main"}), "x")
    [problem] = map(describe, location_problems(job))
    assert "HDFS location" in problem and hostile in problem
    copied = parse_spec(job_spec("distributedshell", jar={"url": f"hdfs://{hostile}", "mainClass": "demo.Main"}),
                        "x")
    assert location_problems(copied) == []  # the stock AM gets a copy in the staging directory


@pytest.mark.parametrize(("field", "hostile"), [("defaultFS", "hdfs://nn:8020/$(id)"), ("user", "alice;id"),
                                                 ("user", "$(id)"), ("defaultFS", "hdfs://nn`id`")])
def test_cluster_values_that_reach_the_am_command_line_are_checked(field, hostile):
    data = job_spec("dshell")
    data["yarn"] = {**data["yarn"], field: hostile}
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "x")
    assert any(f"spec.yarn.{field}" in describe(p) for p in raised.value.problems)
