"""FlumeAgent status: phases, conditions, rollouts and counters, without a cluster."""

from __future__ import annotations

import pytest

from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import handlers
from kubeflume_operator.flumeagent import status as agent_status
from kubeflume_operator.flumeagent.resources import CONFIG_HASH_ANNOTATION
from kubeflume_operator.flumeagent.status import Counters, PodView, Rollout
from tests.network import free_port


def deployment(desired=2, generation=3, **status) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": desired}, "status": status}


def test_rollout_of_a_deployment_mid_update():
    rollout = Rollout.of(deployment(observedGeneration=3, replicas=3, updatedReplicas=1, readyReplicas=2,
                                    availableReplicas=2), "Deployment")
    assert (rollout.desired, rollout.ready, rollout.available, rollout.updated) == (2, 2, 2, 1)
    assert rollout.surplus and not rollout.runs(None) and not rollout.complete(None)
    assert rollout.all_ready


def test_rollout_is_not_complete_before_the_controller_saw_the_spec():
    rollout = Rollout.of(deployment(observedGeneration=2, replicas=2, updatedReplicas=2, readyReplicas=2,
                                    availableReplicas=2), "Deployment")
    assert not rollout.current and not rollout.complete(None)


def test_pods_that_never_ran_do_not_complete_a_rollout():
    """What a Deployment reports for pods that stay Pending: updated, but neither ready nor available."""
    rollout = Rollout.of(deployment(observedGeneration=3, replicas=2, updatedReplicas=2), "Deployment")
    assert rollout.runs(None) and not rollout.complete(None)


def test_a_rollout_completes_only_for_the_config_on_its_pod_template():
    workload = deployment(observedGeneration=3, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    workload["spec"]["template"] = {"metadata": {"annotations": {CONFIG_HASH_ANNOTATION: "old"}}}
    rollout = Rollout.of(workload, "Deployment")
    assert rollout.complete("old") and not rollout.complete("new")


def test_rollout_of_a_daemonset():
    daemon_set = {"metadata": {"generation": 1}, "spec": {}, "status": {
        "observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
        "updatedNumberScheduled": 4, "numberReady": 3, "numberAvailable": 3}}
    rollout = Rollout.of(daemon_set, "DaemonSet")
    assert (rollout.desired, rollout.ready, rollout.available, rollout.updated) == (4, 3, 3, 4)
    assert rollout.runs(None) and not rollout.all_ready


READY = Rollout("Deployment", 2, 2, 2, 2, True, False)
HALF_READY = Rollout("Deployment", 2, 1, 1, 2, True, False)
NONE_READY = Rollout("Deployment", 2, 0, 0, 2, True, False)
ROLLING = Rollout("Deployment", 2, 2, 2, 1, True, False)


@pytest.mark.parametrize(("valid", "rollout", "was_complete", "expected"), [
    (False, READY, True, "Invalid"),
    (True, None, False, "Pending"),
    (True, ROLLING, True, "Progressing"),
    (True, READY, False, "Running"),
    (True, HALF_READY, True, "Degraded"),
    (True, HALF_READY, False, "Progressing"),
    (True, NONE_READY, False, "Pending"),
    (True, NONE_READY, True, "Degraded"),
])
def test_phase(valid, rollout, was_complete, expected):
    assert agent_status.phase(valid, rollout, was_complete=was_complete) == expected


def test_conditions_keep_their_transition_time_until_the_status_flips():
    first = conditions.set_condition(None, "Available", False, "ReplicasNotReady", "0/2", timestamp="T1")
    same = conditions.set_condition(first, "Available", False, "ReplicasNotReady", "1/2", timestamp="T2")
    flipped = conditions.set_condition(same, "Available", True, "AllReplicasReady", "2/2", timestamp="T3")
    assert same == [{"type": "Available", "status": "False", "reason": "ReplicasNotReady", "message": "1/2",
                     "lastTransitionTime": "T1"}]
    assert flipped[0]["lastTransitionTime"] == "T3" and flipped[0]["status"] == "True"


def test_rollout_conditions():
    complete = agent_status.rollout_conditions([], READY, generation=4)
    assert [(c["type"], c["status"], c["reason"]) for c in complete] == [
        ("Available", "True", "AllReplicasReady"), ("Progressing", "False", "RolloutComplete")]
    assert agent_status.completed(complete, 4) and not agent_status.completed(complete, 5)
    rolling = agent_status.rollout_conditions(complete, ROLLING, generation=4)
    assert conditions.find(rolling, "Progressing")["reason"] == "RollingOut"
    never_ready = conditions.find(agent_status.rollout_conditions([], NONE_READY, generation=4), "Progressing")
    assert (never_ready["status"], never_ready["reason"]) == ("True", "RollingOut")
    assert never_ready["message"] == "2/2 agent pods updated, 0/2 agent pods ready"


def test_pods_losing_readiness_after_a_complete_rollout_leave_progressing_alone():
    complete = agent_status.rollout_conditions([], READY, generation=4)
    degraded = agent_status.rollout_conditions(complete, HALF_READY, generation=4)
    assert conditions.find(degraded, "Progressing") == conditions.find(complete, "Progressing")
    assert conditions.find(degraded, "Available")["status"] == "False"


def test_counters_sum_flume_json_over_pods():
    pod_a = {
        "SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "10", "EventAcceptedCount": "9"},
        "SOURCE.r2": {"EventReceivedCount": "5", "EventAcceptedCount": "5"},
        "CHANNEL.c1": {"ChannelFillPercentage": "12.5"},
        "SINK.k1": {"EventDrainSuccessCount": "7"},
    }
    pod_b = {"SOURCE.r1": {"EventReceivedCount": "1", "EventAcceptedCount": "1"},
             "CHANNEL.c1": {"ChannelFillPercentage": "40.0"}, "SINK.k1": {"EventDrainSuccessCount": "not-a-number"}}
    counters = Counters.of([pod_a, pod_b])
    assert counters == Counters(received=16, accepted=15, delivered=7, channel_fill_percent=40.0)
    assert counters.as_status()["eventsDelivered"] == 7


async def test_a_pod_that_does_not_answer_is_reported_not_fatal():
    closed_port = free_port()  # nothing listens there any more
    pods = [PodView("agent-0", "127.0.0.1", True), PodView("agent-1", None, False)]
    counters, unreachable = await agent_status.scrape_pods(pods, closed_port)
    assert counters == Counters()
    assert len(unreachable) == 1 and unreachable[0].startswith("agent-0: ")


def test_pod_view_ready_only_when_the_ready_condition_is_true_and_not_terminating():
    pod = {"metadata": {"name": "p"}, "status": {"podIP": "10.0.0.5",
                                                  "conditions": [{"type": "Ready", "status": "True"}]}}
    assert PodView.of(pod) == PodView("p", "10.0.0.5", True)
    terminating = {**pod, "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not PodView.of(terminating).ready


def test_verdict_and_rollout_patch_functions_compose():
    body: dict = {"status": {"phase": "Running"}}
    handlers.record_verdict(body, valid=False, reason="InvalidConfig", message="1 problem(s)", generation=4)
    assert body["status"]["phase"] == "Invalid"
    handlers.record_rollout(body, rollout=READY)
    assert body["status"]["phase"] == "Invalid"  # a running agent does not hide a bad config
    handlers.record_verdict(body, valid=True, reason="Valid", message="ok", generation=5)
    assert body["status"]["phase"] == "Progressing"
    handlers.record_rollout(body, rollout=READY)
    assert body["status"]["phase"] == "Running"
    assert {c["type"] for c in body["status"]["conditions"]} == {"ConfigValid", "Available", "Progressing"}
