"""The webhook on a developer's machine or in tests: `kubeflume operator --webhook-listen 127.0.0.1:PORT`.

A new self-signed certificate for the listening address, and a ValidatingWebhookConfiguration of
our own whose `clientConfig.url` is that address, registered when the server listens and removed
when the operator exits (as kopf's managed admission does, but scoped to the served namespaces
and with the failure policy asked for). It runs with the developer's own kubeconfig: the chart's
service account is never granted the right to create webhook configurations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from kubeflume_operator.webhook import certificates
from kubeflume_operator.webhook.admission import webhooks
from kubeflume_operator.webhook.serving import Listen, certificate_files, server

logger = logging.getLogger(__name__)


class LocalWebhook:
    """A kopf admission server that registers its own ValidatingWebhookConfiguration (see module doc)."""

    def __init__(self, listen: Listen, *, name: str, namespaces: Sequence[str], failure_policy: str,
                 timeout_seconds: int, admission: kubernetes.client.AdmissionregistrationV1Api) -> None:
        self.listen, self.name, self.namespaces = listen, name, list(namespaces)
        self.failure_policy, self.timeout_seconds = failure_policy, timeout_seconds
        self.admission = admission

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        certs = certificates.self_signed([self.listen.host])
        with certificate_files(certs) as (cert, key):
            inner = server(self.listen, cert, key, cadata=certs.ca_cert)
            try:
                async with inner:
                    async for client_config in inner(fn):
                        await asyncio.to_thread(self.register, client_config)
                        yield client_config
            finally:
                await asyncio.to_thread(self.remove)

    def configuration(self, client_config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name, "labels": {"app.kubernetes.io/managed-by": "kubeflume-operator"}},
            "webhooks": webhooks(client_config, failure_policy=self.failure_policy,
                                 timeout_seconds=self.timeout_seconds, namespaces=self.namespaces),
        }

    def register(self, client_config: Mapping[str, Any]) -> None:
        body = self.configuration(client_config)
        try:
            # The client sends a dict as it is; its annotations only name the typed model.
            self.admission.create_validating_webhook_configuration(body)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 409:
                raise
            self.admission.patch_validating_webhook_configuration(self.name, body)
        logger.info(f"Registered the ValidatingWebhookConfiguration {self.name} for {client_config['url']}")

    def remove(self) -> None:
        try:
            self.admission.delete_validating_webhook_configuration(self.name)
        except ApiException as error:
            if error.status != 404:
                raise
        logger.info(f"Removed the ValidatingWebhookConfiguration {self.name}")
