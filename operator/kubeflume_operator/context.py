"""The operator's collaborators, built once at startup and passed keyword-only to handlers.

kopf hands its own collaborators (`settings`, `memo`, `logger`) to every handler as keyword
arguments; ours travel the same way (`context=`), bound when the handlers are registered. Nothing
is read from the environment at import: `Settings.from_environ` runs in `main()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

import kubernetes

from kubeflume_operator import kube

IMAGE_ENV = "KUBEFLUME_AGENT_IMAGE"
STATUS_INTERVAL_ENV = "KUBEFLUME_STATUS_INTERVAL"
POLL_INTERVAL_ENV = "KUBEFLUME_SHELLJOB_POLL_INTERVAL"
IMAGE_REPOSITORY = "ghcr.io/kubeflume/agent"


def release_image() -> str:
    """The agent image of this release, used when the operator is given none."""
    return f"{IMAGE_REPOSITORY}:{metadata.version('kubeflume')}"


@dataclass(frozen=True)
class Settings:
    """What the operator is told at startup: the Helm chart sets these in its Deployment's environment."""

    agent_image: str
    status_interval: float = 15.0  # seconds between refreshes of a FlumeAgent's status
    shelljob_poll_interval: float = 5.0  # seconds between two looks at a ShellJob's application

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            agent_image=environ.get(IMAGE_ENV) or release_image(),
            status_interval=float(environ.get(STATUS_INTERVAL_ENV, cls.status_interval)),
            shelljob_poll_interval=float(environ.get(POLL_INTERVAL_ENV, cls.shelljob_poll_interval)),
        )


@dataclass(frozen=True)
class OperatorContext:
    """Settings plus the API clients every handler and helper uses (one client, one connection pool)."""

    settings: Settings
    objects: kube.ObjectStore
    core: kubernetes.client.CoreV1Api
    batch: kubernetes.client.BatchV1Api
    custom_objects: kubernetes.client.CustomObjectsApi
    admission: kubernetes.client.AdmissionregistrationV1Api

    @classmethod
    def of(cls, settings: Settings, api_client: kubernetes.client.ApiClient) -> OperatorContext:
        return cls(
            settings=settings,
            objects=kube.ObjectStore.of(api_client),
            core=kubernetes.client.CoreV1Api(api_client),
            batch=kubernetes.client.BatchV1Api(api_client),
            custom_objects=kubernetes.client.CustomObjectsApi(api_client),
            admission=kubernetes.client.AdmissionregistrationV1Api(api_client),
        )

    @classmethod
    def connect(cls, settings: Settings) -> OperatorContext:
        """The context on the kubeconfig if there is one, else on the pod's service account."""
        kubernetes.config.load_config()
        return cls.of(settings, kubernetes.client.ApiClient())
