"""Where a ShellJob's application is killed and cleaned: the status's record first, the spec only without one."""

from __future__ import annotations

import pytest

from kubeflume_operator.shelljob import placement
from kubeflume_operator.shelljob.spec import parse_spec

APP = "application_1700000000000_0003"
RECORDED_DIRECTORY = f"/user/alice/first-name/{APP}"


def spec(**yarn) -> dict:
    return {"yarn": {"resourceManagers": ["http://rm-b:8088"], "webhdfs": ["http://nn-b:9870"], "user": "bob",
                     **yarn},
            "applicationName": "second-name", "command": ["true"]}


def recorded_status() -> dict:
    cluster = parse_spec({**spec(), "yarn": {"resourceManagers": ["http://rm-a:8088", "http://rm-a2:8088"],
                                             "webhdfs": ["http://nn-a:9870"], "user": "alice",
                                             "delegationTokenSecret": "tokens-a"}}, "job").cluster
    assert cluster is not None
    return {"applicationId": APP, "phase": "Running", **placement.record(cluster, RECORDED_DIRECTORY)}


def test_the_record_holds_what_killing_and_cleaning_need():
    status = recorded_status()
    assert status["cluster"] == {"resourceManagers": ["http://rm-a:8088", "http://rm-a2:8088"],
                                 "webhdfs": ["http://nn-a:9870"], "defaultFS": "hdfs://nn-a:8020",
                                 "user": "alice", "delegationTokenSecret": "tokens-a"}
    assert status["stagingDirectory"] == RECORDED_DIRECTORY


@pytest.mark.parametrize("current_spec", [spec(), {"command": ["true"], "script": "true"}, {}],
                         ids=["another-cluster", "invalid", "empty"])
def test_the_recorded_cluster_wins_over_whatever_the_spec_says_now(current_spec):
    where = placement.locate(recorded_status(), current_spec, "job")
    assert where is not None
    assert where.application_id == APP
    assert where.cluster.resource_managers == ("http://rm-a:8088", "http://rm-a2:8088")
    assert where.cluster.webhdfs == ("http://nn-a:9870",)
    assert (where.cluster.user, where.cluster.token_secret) == ("alice", "tokens-a")
    assert where.staging_directory == RECORDED_DIRECTORY


def test_a_status_from_an_older_operator_falls_back_to_the_spec():
    where = placement.locate({"applicationId": APP, "phase": "Running"}, spec(), "job")
    assert where is not None
    assert where.cluster.resource_managers == ("http://rm-b:8088",) and where.cluster.user == "bob"
    assert where.staging_directory is None and where.app_name == "second-name"  # <home>/second-name/<id>


@pytest.mark.parametrize("current_spec", [{"command": ["true"], "script": "true"}, {"command": ["true"]},
                                          spec(resourceManagers=[])], ids=["invalid", "no-cluster", "no-rm"])
def test_without_a_record_or_a_usable_spec_nothing_says_where(current_spec):
    assert placement.locate({"applicationId": APP, "phase": "Running"}, current_spec, "job") is None


@pytest.mark.parametrize("directory", ["/user/alice", "/user/alice/first-name", "relative/first-name/" + APP,
                                       f"/user/alice/first-name/{APP}/..", f"/user/alice/../{APP}"])
def test_a_recorded_directory_that_is_not_the_applications_own_is_not_trusted(directory):
    status = {**recorded_status(), "stagingDirectory": directory}
    where = placement.locate(status, spec(), "job")  # deleted recursively: never above the application
    assert where is not None and where.staging_directory is None
    assert where.cluster.resource_managers == ("http://rm-b:8088",)


def test_no_application_means_nothing_to_locate():
    assert placement.locate({"phase": "Pending"}, spec(), "job") is None
