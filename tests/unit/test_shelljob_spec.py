"""ShellJob spec checks: every problem reported at once, the AM kinds' limits, names and values."""

from __future__ import annotations

import pytest

from kubeflume_operator.problems import describe
from kubeflume_operator.shelljob.spec import SpecError, cluster_problems, parse_spec

CLUSTER = {"resourceManagers": ["http://rm1:8088", "http://rm2:8088"], "webhdfs": ["http://nn1:9870"],
           "user": "alice"}
AM_JAR = {"url": "hdfs:///apps/dshell.jar"}


def spec(**fields) -> dict:
    return {"yarn": CLUSTER, "command": ["true"], "applicationMaster": {"kind": "dshell", "jar": AM_JAR}, **fields}


def problems_of(data: dict) -> list[str]:
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "job")
    return [describe(problem) for problem in raised.value.problems]


def test_defaults_follow_the_distributedshell_client():
    job = parse_spec(spec(), "nightly")
    assert job.app_name == "nightly"
    assert job.queue == "default"
    assert job.containers == 1
    assert job.timeout_seconds == 600
    assert job.max_app_attempts == 1
    assert (job.resources.memory_mb, job.master.memory_mb) == (1024, 512)
    assert job.cluster.default_fs == "hdfs://nn1:8020"
    assert job.cluster.resource_managers == ("http://rm1:8088", "http://rm2:8088")


def test_every_problem_is_reported_at_once():
    found = problems_of({
        "command": ["true"], "script": "echo",
        "files": [{"url": "ftp://host/x"}, {"inline": "no name"}],
        "archives": [{"url": "https://host/blob", "name": "a.b"}],
        "containers": 0,
        "env": [{"name": "BAD-NAME", "value": "x"}],
        "applicationMaster": {"kind": "oozie"},
    })
    text = "\n".join(found)
    for expected in ("exactly one of command, script or jar", "spec.files[0].url", "spec.files[1].name",
                     "spec.archives[0].format", "spec.archives[0].name", "spec.containers",
                     "spec.env[0].name", "spec.applicationMaster.kind"):
        assert expected in text
    assert len(found) >= 8


def test_archive_link_names_and_formats_follow_the_dshell_rules():
    job = parse_spec(spec(archives=[{"url": "hdfs:///c/model.v2.zip"}, {"url": "https://h/venv.tar.gz"},
                                    {"inline": "x", "name": "conf", "format": "tgz"}]), "job")
    assert [(a.name, a.format, a.staged_name) for a in job.archives] == [
        ("model", "zip", "model.zip"), ("venv", "tar.gz", "venv.tar.gz"), ("conf", "tgz", "conf.tgz")]


def test_names_must_not_collide_or_take_the_am_files():
    found = problems_of(spec(files=[{"inline": "a", "name": "data.zip"}, {"inline": "b", "name": "ExecScript.sh"}],
                             archives=[{"inline": "c", "name": "data", "format": "zip"}]))
    assert any("'data.zip'" in p for p in found)
    assert any("'ExecScript.sh'" in p for p in found)


@pytest.mark.parametrize("hostile", ["x; rm -rf /", "$(id)", "a b", "`id`", "../up", ".hidden", "a\nb", "trailing\n"])
def test_names_that_reach_paths_and_command_lines_are_refused(hostile):
    assert any("spec.files[0].name" in p for p in problems_of(spec(files=[{"inline": "x", "name": hostile}])))
    assert any("applicationName" in p for p in problems_of(spec(applicationName=hostile)))


@pytest.mark.parametrize("hostile", ["Main; id", "a.$(id)", "a b", "Main$Inner"])
def test_class_names_are_checked(hostile):
    found = problems_of(spec(jar={"url": "https://h/app.jar", "mainClass": hostile},
                             applicationMaster={"kind": "dshell", "jar": AM_JAR, "mainClass": hostile}, command=None))
    assert any("spec.jar.mainClass" in p for p in found)
    assert any("spec.applicationMaster.mainClass" in p for p in found)


def test_the_stock_am_refuses_archives_and_names_the_variant():
    job = parse_spec(spec(applicationMaster={"kind": "distributedshell", "jar": AM_JAR},
                          archives=[{"url": "hdfs:///x/dict.zip"}]), "job")
    [problem] = map(describe, cluster_problems(job))
    assert "cannot localize archives" in problem
    assert "dshell" in problem and "container_archives" in problem


def test_the_variant_runs_exactly_one_container():
    job = parse_spec(spec(containers=3), "job")
    assert any("exactly one container" in describe(p) for p in cluster_problems(job))


def test_yarn_needs_a_cluster_and_an_am_jar_but_the_local_runner_does_not():
    job = parse_spec({"command": ["true"]}, "job")
    found = [describe(p) for p in cluster_problems(job)]
    assert any("spec.yarn" in p for p in found)
    assert any("spec.applicationMaster.jar" in p for p in found)
