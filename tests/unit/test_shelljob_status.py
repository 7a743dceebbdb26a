"""Phases from YARN's state and final status, and the conditions that go with them."""

from __future__ import annotations

import pytest

from kubeflume_operator.shelljob import status


@pytest.mark.parametrize(("state", "final_status", "phase"), [
    ("NEW", "UNDEFINED", "Submitted"), ("NEW_SAVING", "UNDEFINED", "Submitted"),
    ("SUBMITTED", "UNDEFINED", "Submitted"),
    ("ACCEPTED", "UNDEFINED", "Accepted"), ("RUNNING", "UNDEFINED", "Running"),
    ("FINISHED", "SUCCEEDED", "Succeeded"),
    ("FINISHED", "FAILED", "Failed"), ("FINISHED", "UNDEFINED", "Failed"), ("FINISHED", "ENDED", "Failed"),
    ("FINISHED", "KILLED", "Killed"), ("FAILED", "FAILED", "Failed"), ("KILLED", "KILLED", "Killed"),
])
def test_only_finished_and_succeeded_is_success(state, final_status, phase):
    assert status.phase_of(state, final_status) == phase


def test_conditions_follow_the_phase_and_keep_their_transition_time():
    running = status.with_phase({}, status.RUNNING, "Running", "app is RUNNING", 3)
    by_type = {c["type"]: c for c in running["conditions"]}
    assert {t: c["status"] for t, c in by_type.items()} == {
        "Submitted": "True", "Running": "True", "Complete": "False", "Failed": "False"}
    assert by_type["Running"]["observedGeneration"] == 3
    assert "completionTime" not in running
    done = status.with_phase(running, status.FAILED, "Failed", "exit 3", 3)
    after = {c["type"]: c for c in done["conditions"]}
    assert after["Submitted"]["status"] == "True"  # it was submitted, and stays so
    assert after["Submitted"]["lastTransitionTime"] == by_type["Submitted"]["lastTransitionTime"]
    assert (after["Running"]["status"], after["Failed"]["status"]) == ("False", "True")
    assert done["completionTime"]
