"""Serving the webhook in a cluster: kopf's WebhookServer with our certificate.

Two ways, chosen by the operator's flags (local runs: local.py):
- `ClusterWebhook` (the chart's default): the CA and serving certificate live in a Secret the
  operator makes on first start (and renews near expiry); its CA goes into the `caBundle` of the
  chart's ValidatingWebhookConfiguration, which names the operator's Service.
- `mounted_certificate_server` (the chart with cert-manager): the certificate cert-manager keeps
  in a mounted Secret; its CA injector fills the caBundle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import kopf
import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from kubeflume_operator.webhook import certificates

logger = logging.getLogger(__name__)
CA_CERT_KEY, CA_KEY_KEY, CERT_KEY, KEY_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
RECHECK_SECONDS = 60.0  # a `helm upgrade` resets the chart's caBundle: put ours back


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return cls(host.strip("[]"), int(port))


@contextlib.contextmanager
def certificate_files(certs: certificates.Certificates) -> Iterator[tuple[Path, Path]]:
    """The serving certificate and key as files (what ssl and kopf load), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kubeflume-webhook-") as directory:
        cert, key = Path(directory, CERT_KEY), Path(directory, KEY_KEY)
        cert.write_bytes(certs.cert)
        key.touch(mode=0o600)
        key.write_bytes(certs.key)
        yield cert, key


def server(listen: Listen, cert: Path, key: Path, *, cadata: bytes | None) -> kopf.WebhookServer:
    return kopf.WebhookServer(addr=listen.host, port=listen.port, certfile=str(cert), pkeyfile=str(key),
                              cadata=cadata)


class ClusterWebhook:
    """A kopf admission server on the certificate kept in a Secret, whose CA it injects (see module doc)."""

    def __init__(self, listen: Listen, *, configuration: str, secret_namespace: str, secret_name: str,
                 hostnames: Sequence[str], core: kubernetes.client.CoreV1Api,
                 admission: kubernetes.client.AdmissionregistrationV1Api) -> None:
        self.listen, self.configuration = listen, configuration
        self.store = SecretStore(core, secret_namespace, secret_name)
        self.hostnames = list(hostnames)
        self.admission = admission

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        certs = await asyncio.to_thread(self.store.certificates_for, self.hostnames)
        keeper: asyncio.Task[None] | None = None
        try:
            with certificate_files(certs) as (cert, key):
                inner = server(self.listen, cert, key, cadata=certs.ca_cert)
                async with inner:
                    async for client_config in inner(fn):
                        if keeper is None:  # listening now: the API server may call us
                            await asyncio.to_thread(self.inject, certs.ca_cert)
                            keeper = asyncio.create_task(self.keep_injected(certs.ca_cert))
                        yield client_config
        finally:
            if keeper is not None:
                keeper.cancel()

    def inject(self, ca_cert: bytes) -> bool:
        """Put our CA into every webhook of the configuration; False when it was there already."""
        current = self.admission.read_validating_webhook_configuration(self.configuration)
        bundle = base64.b64encode(ca_cert).decode()
        stale = [index for index, webhook in enumerate(current.webhooks or [])
                 if webhook.client_config.ca_bundle != bundle]
        if not stale:
            return False
        operations = [{"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}
                      for index in stale]
        self.admission.patch_validating_webhook_configuration(self.configuration, operations,
                                                              _content_type=JSON_PATCH)
        logger.info(f"Injected the webhook CA into the ValidatingWebhookConfiguration {self.configuration}")
        return True

    async def keep_injected(self, ca_cert: bytes) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                await asyncio.to_thread(self.inject, ca_cert)
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                # the next round tries again; the webhook keeps serving meanwhile
                logger.warning(f"Cannot check the caBundle of {self.configuration}: {error}")


class SecretStore:
    """The webhook's CA and serving certificate, kept in a Secret of the operator's namespace."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> None:
        self.core, self.namespace, self.name = core, namespace, name

    def certificates_for(self, hostnames: Sequence[str]) -> certificates.Certificates:
        """The stored certificates if they serve `hostnames`; else new ones (the CA kept if there is one)."""
        stored = self.read()
        if stored is not None and stored.serves(hostnames):
            return stored
        if stored is not None:
            fresh = certificates.issue(hostnames, ca_cert=stored.ca_cert, ca_key=stored.ca_key)
        else:
            fresh = certificates.self_signed(hostnames)
        return self.write(fresh, replace=stored is not None)

    def read(self) -> certificates.Certificates | None:
        try:
            secret = self.core.read_namespaced_secret(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
        if not all(key in data for key in (CA_CERT_KEY, CA_KEY_KEY, CERT_KEY, KEY_KEY)):
            return None
        return certificates.Certificates(data[CA_CERT_KEY], data[CA_KEY_KEY], data[CERT_KEY], data[KEY_KEY])

    def write(self, certs: certificates.Certificates, *, replace: bool) -> certificates.Certificates:
        """Store `certs`; when another replica stored its own first, use those instead."""
        data = {CA_CERT_KEY: certs.ca_cert, CA_KEY_KEY: certs.ca_key, CERT_KEY: certs.cert, KEY_KEY: certs.key}
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=self.name, labels={"app.kubernetes.io/managed-by": "kubeflume-operator"}),
            type="kubernetes.io/tls", data={key: base64.b64encode(value).decode() for key, value in data.items()})
        try:
            if replace:
                self.core.patch_namespaced_secret(self.name, self.namespace, body)
            else:
                self.core.create_namespaced_secret(self.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            stored = self.read()
            if stored is None:
                raise
            return stored
        return certs


def mounted_certificate_server(listen: Listen, directory: Path) -> kopf.WebhookServer:
    """cert-manager's Secret mounted at `directory`: kopf reloads it when cert-manager renews it."""
    return kopf.WebhookServer(addr=listen.host, port=listen.port, certfile=str(directory / CERT_KEY),
                              pkeyfile=str(directory / KEY_KEY))
