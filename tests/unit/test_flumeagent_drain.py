"""Drain on scale-down, the pure part: what to do for each removed claim, and the drain Job."""

from __future__ import annotations

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_operator.flumeagent import drain, resources


def flume_agent(**spec_fields) -> dict:
    spec = {
        "agentName": "a1",
        "replicas": 1,
        "sources": {"r1": {"type": "syslogtcp", "channels": ["c1"], "host": "0.0.0.0", "port": 5140}},
        "channels": {"c1": {"type": "file", "checkpointDir": "/data/checkpoint", "dataDirs": "/data/data"}},
        "sinks": {"k1": {"type": "http", "channel": "c1", "endpoint": "http://collector:8080/"}},
        **spec_fields,
    }
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": "agg", "namespace": "logging", "uid": "u-1", "generation": 1}, "spec": spec}


def job(ordinal: int, phase: str = drain.RUNNING) -> drain.DrainJob:
    return drain.DrainJob(drain.job_name("agg", ordinal), ordinal, drain.claim_name("agg", ordinal), phase, None,
                          False)


def observed(replicas: int, claims: list[int], pods: list[int], jobs: list[drain.DrainJob]) -> drain.Observed:
    return drain.Observed(replicas, {o: drain.claim_name("agg", o) for o in claims}, set(pods),
                          {j.ordinal: j for j in jobs})


def test_a_removed_claim_is_drained_once_its_pod_is_gone():
    planned = drain.plan(observed(1, claims=[0, 1, 2], pods=[0, 1], jobs=[]), delete_claims=True)
    assert (planned.start, planned.waiting, planned.cancel, planned.delete_claims) == ([2], [1], [], [])


def test_a_claim_goes_only_after_its_job_succeeded_and_only_if_asked():
    state = observed(1, claims=[0, 1, 2], pods=[0], jobs=[job(1, drain.SUCCEEDED), job(2), ])
    assert [j.ordinal for j in drain.plan(state, delete_claims=True).delete_claims] == [1]
    assert drain.plan(state, delete_claims=False).delete_claims == []
    failed = observed(1, claims=[0, 1], pods=[0], jobs=[job(1, drain.FAILED)])
    assert drain.plan(failed, delete_claims=True).delete_claims == []
    assert drain.plan(failed, delete_claims=True).start == []


def test_scaling_up_cancels_the_drains_of_ordinals_back_in_service():
    state = observed(3, claims=[0, 1, 2], pods=[0], jobs=[job(1), job(2, drain.SUCCEEDED)])
    planned = drain.plan(state, delete_claims=True)
    assert [j.ordinal for j in planned.cancel] == [1, 2]
    assert planned.start == planned.delete_claims == []


def test_the_status_lists_each_drain_with_the_drain_agents_counts():
    done = drain.DrainJob("agg-drain-2", 2, "data-agg-2", drain.SUCCEEDED,
                          {"drained": True, "held": 70, "delivered": 70, "left": 0}, True)
    broken = drain.DrainJob("agg-drain-3", 3, "data-agg-3", drain.FAILED,
                            {"drained": False, "held": 9, "delivered": 0, "left": 9, "reason": "sink down"}, False)
    state = observed(1, claims=[0, 1, 3], pods=[0, 1], jobs=[done, broken])
    entries = drain.status_entries(state, drain.plan(state, delete_claims=True), {})
    assert entries == [
        {"ordinal": 1, "claim": "data-agg-1", "job": "", "phase": "Waiting"},
        {"ordinal": 2, "claim": "data-agg-2", "job": "agg-drain-2", "phase": "Succeeded", "claimDeleted": True,
         "held": 70, "delivered": 70, "left": 0},
        {"ordinal": 3, "claim": "data-agg-3", "job": "agg-drain-3", "phase": "Failed", "claimDeleted": False,
         "held": 9, "delivered": 0, "left": 9, "reason": "sink down"},
    ]
    condition = drain.draining_condition(None, entries)[0]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Draining", "True", "Draining")
    assert "data-agg-1 (waiting)" in condition["message"]
    idle = drain.draining_condition(None, entries[1:2])[0]
    assert (idle["status"], idle["reason"]) == ("False", "Idle")
    assert drain.draining_condition(None, entries[1:])[0]["reason"] == "DrainFailed"


def test_the_drain_job_runs_the_agent_pods_config_on_the_claim_with_sources_off():
    agent = flume_agent(drain={"timeoutSeconds": 120, "backoffLimit": 1})
    config = parse_manifest(agent)
    rendered = resources.render(agent, config, image="registry.test/agent:1")
    rendered_job = drain.render_job(agent, config, rendered, 2, timeout=120, backoff_limit=1)

    assert rendered_job["metadata"]["name"] == "agg-drain-2"
    assert rendered_job["metadata"]["annotations"] == {drain.ORDINAL_ANNOTATION: "2",
                                                       drain.CLAIM_ANNOTATION: "data-agg-2"}
    assert rendered_job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert rendered_job["spec"]["backoffLimit"] == 1
    pod = rendered_job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-agg-2"}} in pod["volumes"]
    (container,) = pod["containers"]
    agent_container = rendered.workload["spec"]["template"]["spec"]["containers"][0]
    assert container["volumeMounts"] == agent_container["volumeMounts"]  # the same paths on the claim
    assert container["image"] == "registry.test/agent:1"
    assert container["args"] == ["-n", "a1", "-f", "/etc/kubeflume/flume.conf", "--drain", "--drain-timeout", "120",
                                 "--drain-report", "/dev/termination-log", "--no-metrics"]
    assert "ports" not in container and "readinessProbe" not in container
    labels = rendered_job["spec"]["template"]["metadata"]["labels"]
    selector = resources.selector_labels("agg")
    assert not all(labels.get(key) == value for key, value in selector.items())  # no Service selects it
    assert labels[drain.DRAIN_OF_LABEL] == "agg"
    # the agent workload itself still has what the drain relies on
    assert rendered.workload["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert drain.has_claims(rendered)
