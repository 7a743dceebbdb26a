"""The operator's collaborators: settings read at startup, handed to every handler as `context=`."""

from __future__ import annotations

import kubernetes

from kubeflume_operator.context import OperatorContext, Settings
from kubeflume_operator.main import operator_registry


def test_settings_come_from_the_operator_environment_or_the_release():
    settings = Settings.from_environ({"KUBEFLUME_AGENT_IMAGE": "local/agent:dev", "KUBEFLUME_STATUS_INTERVAL": "2",
                                      "KUBEFLUME_SHELLJOB_POLL_INTERVAL": "0.5"})
    assert (settings.agent_image, settings.status_interval, settings.shelljob_poll_interval) == (
        "local/agent:dev", 2.0, 0.5)
    defaults = Settings.from_environ({})
    assert defaults.agent_image.startswith("ghcr.io/kubeflume/agent:")
    assert (defaults.status_interval, defaults.shelljob_poll_interval) == (15.0, 5.0)


def test_every_handler_is_bound_to_the_context_and_timers_run_at_its_intervals():
    context = OperatorContext.of(Settings(agent_image="a", status_interval=3.0, shelljob_poll_interval=0.25),
                                 kubernetes.client.ApiClient())
    registry = operator_registry(context)
    handlers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    assert {handler.id for handler in handlers} >= {"reconcile", "refresh_status", "drive_application", "remove"}
    assert all(handler.fn.keywords == {"context": context} for handler in handlers)
    intervals = {handler.id: handler.interval for handler in registry._spawning.get_all_handlers()}
    assert intervals == {"refresh_status": 3.0, "drive_application": 0.25}


def test_two_contexts_make_two_independent_registries():
    """Nothing is registered at import: each registry holds its own context's handlers only."""
    first = operator_registry(OperatorContext.of(Settings(agent_image="a"), kubernetes.client.ApiClient()))
    second = operator_registry(OperatorContext.of(Settings(agent_image="b"), kubernetes.client.ApiClient()))
    images = {handler.fn.keywords["context"].settings.agent_image
              for registry in (first, second) for handler in registry._changing.get_all_handlers()}
    assert images == {"a", "b"}
    assert len(first._changing.get_all_handlers()) == len(second._changing.get_all_handlers())
