"""The ResourceManager REST client against the fake ResourceManager: auth, HA failover, kill protocol."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kubeflume_operator.yarn.resourcemanager import (
    ApplicationNotFound,
    NoResourceManagerAvailable,
    NotAuthorized,
    ResourceManagerClient,
    ResourceManagerError,
)
from tests.fakes.resourcemanager import Behaviour, FakeResourceManager
from tests.network import free_port


def minimal_context(application_id: str) -> dict:
    return {
        "application-id": application_id, "application-name": "t", "queue": "default",
        "am-container-spec": {"commands": {"command": "sleep 1"}, "local-resources": {"entry": []},
                              "environment": {"entry": [{"key": "A", "value": "1"}]}},
        "resource": {"memory": "512", "vCores": 1},  # numbers as strings are tolerated
    }


async def test_new_application_submit_report_and_resubmission():
    async with FakeResourceManager(behaviour=Behaviour.SCRIPTED, run_seconds=0.1) as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        new = await client.new_application()
        assert new.application_id == "application_1700000000000_0001"
        assert (new.max_memory_mb, new.max_vcores) == (8192, 8)
        await client.submit(minimal_context(new.application_id))
        await client.submit(minimal_context(new.application_id))  # after a crash: same id, no second app
        assert len(rm.apps) == 1 and len(rm.submissions) == 2
        report = await client.application(new.application_id)
        assert report["id"] == new.application_id and report["user"] == "alice"
        with pytest.raises(ApplicationNotFound):
            await client.application("application_1700000000000_0099")
        with pytest.raises(ResourceManagerError) as refused:
            await client.submit(minimal_context("application_1700000000000_0042"))
        assert refused.value.status == 400 and refused.value.exception == "BadRequestException"


async def test_without_user_name_the_resourcemanager_says_401():
    async with FakeResourceManager() as rm, ResourceManagerClient([rm.url]) as client:
        with pytest.raises(NotAuthorized) as refused:
            await client.new_application()
        assert refused.value.status == 401 and refused.value.exception == "AuthorizationException"


async def test_a_standby_redirect_and_a_dead_address_fail_over_to_the_active():
    async with FakeResourceManager() as active, FakeResourceManager(standby_of=active) as standby:
        dead = f"http://127.0.0.1:{free_port()}"
        async with ResourceManagerClient([dead, standby.url], user="alice") as client:
            new = await client.new_application()
        assert new.application_id in active.issued
        assert standby.requests == [("POST", "/apps/new-application")]


async def test_nothing_answers():
    async with ResourceManagerClient([f"http://127.0.0.1:{free_port()}"], user="alice") as client:
        with pytest.raises(NoResourceManagerAvailable):
            await client.new_application()


async def test_kill_waits_for_202_then_200_and_a_finished_app_keeps_its_state():
    async with FakeResourceManager(behaviour=Behaviour.SCRIPTED, run_seconds=30) as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        running = (await client.new_application()).application_id
        await client.submit(minimal_context(running))
        assert await client.kill(running) == "KILLED"
        puts = [r for r in rm.requests if r == ("PUT", f"/apps/{running}/state")]
        assert len(puts) >= 2  # 202 first, 200 once KILLED
        assert (await client.application(running))["finalStatus"] == "KILLED"
        assert await client.kill(running) == "KILLED"

        rm.behaviour, rm.run_seconds = Behaviour.SCRIPTED, 0
        done = (await client.new_application()).application_id
        await client.submit(minimal_context(done))
        while (await client.application(done))["state"] != "FINISHED":
            await asyncio.sleep(0.05)
        assert await client.kill(done) == "FINISHED"


async def test_only_killed_is_a_valid_target_state():
    async with FakeResourceManager(behaviour=Behaviour.SCRIPTED, run_seconds=30) as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        application_id = (await client.new_application()).application_id
        await client.submit(minimal_context(application_id))
        url = f"{rm.url}/ws/v1/cluster/apps/{application_id}/state?user.name=alice"
        async with aiohttp.ClientSession() as session, session.put(url, json={"state": "RUNNING"}) as response:
            body = await response.json()
        assert response.status == 400
        assert body["RemoteException"]["message"] == "Only 'KILLED' is allowed as a target state."


async def test_an_am_that_never_registers_stays_accepted_then_fails():
    async with FakeResourceManager(behaviour=Behaviour.STUCK, run_seconds=3600) as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        application_id = (await client.new_application()).application_id
        await client.submit(minimal_context(application_id))

        async def states_until(*wanted: str) -> list[str]:
            states = [(await client.application(application_id))["state"]]
            while states[-1] not in wanted:
                await asyncio.sleep(0.05)
                states.append((await client.application(application_id))["state"])
            return states

        before = await states_until("ACCEPTED", "RUNNING", "FAILED", "FINISHED", "KILLED")
        rm.am_liveness_expired.set()  # YARN's AM liveness monitor gives up on it
        after = await states_until("FAILED", "FINISHED", "KILLED")
        report = await client.application(application_id)
        assert before[-1] == "ACCEPTED" and "RUNNING" not in after
        assert report["finalStatus"] == "FAILED" and "timed out" in report["diagnostics"]


async def test_a_hadoop2_standby_redirect_without_the_query_keeps_the_user():
    """Hadoop 2's RMWebAppFilter drops the query string from its Location: user.name must survive."""
    async with FakeResourceManager() as active, FakeResourceManager(standby_of=active,
                                                                   standby_keeps_query=False) as standby:
        async with ResourceManagerClient([standby.url], user="alice") as client:
            application_id = (await client.new_application()).application_id
            await client.submit(minimal_context(application_id))
        assert active.apps[application_id].user == "alice"


@pytest.mark.parametrize(("field", "value"), [
    ("credentials", {"tokens": {"alias": "token"}, "secrets": {}}),  # a plain object is not a JAXB map
    ("credentials", {"tokens": {"entry": [{"key": "alias", "value": 7}]}}),
    ("environment", {"A": "1"}),
    ("application-acls", {"entry": [{"key": "VIEW_APP"}]}),
])
async def test_maps_of_the_submission_must_be_entry_lists(field, value):
    async with FakeResourceManager(behaviour=Behaviour.SCRIPTED) as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        context = minimal_context((await client.new_application()).application_id)
        context["am-container-spec"][field] = value
        with pytest.raises(ResourceManagerError) as refused:
            await client.submit(context)
        assert refused.value.status == 400 and field.split("-")[0] in refused.value.message
        assert rm.apps == {}


async def test_the_report_follows_the_scripted_progress_and_tracking_url():
    async with FakeResourceManager(behaviour=Behaviour.SCRIPTED, run_seconds=30, progress=42.5,
                                   tracking_url="http://am.example:4040/") as rm, \
            ResourceManagerClient([rm.url], user="alice") as client:
        application_id = (await client.new_application()).application_id
        await client.submit(minimal_context(application_id))
        while (report := await client.application(application_id))["state"] != "RUNNING":
            await asyncio.sleep(0.05)
        assert (report["progress"], report["trackingUrl"]) == (42.5, "http://am.example:4040/")
        await client.kill(application_id)
