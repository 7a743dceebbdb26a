"""Reading a file's bytes from where the spec says they are.

ConfigMap and Secret keys are read with the official Kubernetes client (in a thread: it is
synchronous); http(s) URLs are streamed with aiohttp, so a large download never sits in memory;
hdfs:// URLs are read through WebHDFS only when a copy is unavoidable (the operator uses them in
place when it can, see staging.py).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from kubeflume_operator.shelljob.spec import Source

if TYPE_CHECKING:
    import kubernetes

CHUNK = 1 << 20


class SourceUnavailable(Exception):
    """A source that cannot be read now: missing ConfigMap/Secret/key, HTTP error, missing HDFS file."""


def hdfs_path(url: str) -> str:
    """The path part of hdfs://authority/path."""
    return urlsplit(url).path or "/"


async def read_kubernetes_object(kind: str, namespace: str, name: str, *,
                                 core: kubernetes.client.CoreV1Api) -> dict[str, bytes]:
    """Every key of a ConfigMap (data and binaryData) or Secret, decoded to bytes."""
    from kubernetes.client.exceptions import ApiException

    def read() -> Any:
        if kind == "ConfigMap":
            return core.read_namespaced_config_map(name, namespace)
        return core.read_namespaced_secret(name, namespace)

    try:
        obj = await asyncio.to_thread(read)
    except ApiException as error:
        if error.status == 404:
            raise SourceUnavailable(f"{kind} {namespace}/{name} does not exist") from error
        raise SourceUnavailable(f"cannot read {kind} {namespace}/{name}: HTTP {error.status} {error.reason}") from error
    if kind == "Secret":
        return {key: base64.b64decode(value) for key, value in (obj.data or {}).items()}
    binary = {key: base64.b64decode(value) for key, value in (obj.binary_data or {}).items()}
    return {**binary, **{key: value.encode() for key, value in (obj.data or {}).items()}}


async def read_kubernetes_key(kind: str, namespace: str, name: str, key: str, *,
                              core: kubernetes.client.CoreV1Api) -> bytes:
    data = await read_kubernetes_object(kind, namespace, name, core=core)
    if key not in data:
        raise SourceUnavailable(f"{kind} {namespace}/{name} has no key {key!r}")
    return data[key]


async def read_small(source: Source, namespace: str | None, *, core: kubernetes.client.CoreV1Api | None) -> bytes:
    """Inline text, or a ConfigMap/Secret key (objects are at most 1 MiB, so bytes are fine)."""
    if source.inline is not None:
        return source.inline
    if namespace is None or core is None:
        raise SourceUnavailable(f"{source.describe()}: ConfigMap and Secret sources need a Kubernetes namespace")
    kind, reference = ("ConfigMap", source.config_map) if source.config_map else ("Secret", source.secret)
    if reference is None:
        raise SourceUnavailable(f"{source.describe()}: not a ConfigMap or Secret key")
    name, key = reference
    return await read_kubernetes_key(kind, namespace, name, key, core=core)


async def stream_http(session: aiohttp.ClientSession, url: str) -> AsyncIterator[bytes]:
    """The body of a GET, chunk by chunk; errors before the first byte raise SourceUnavailable."""
    try:
        response = await session.get(url)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise SourceUnavailable(f"{url}: {type(error).__name__}: {error}") from error
    async with response:
        if response.status != 200:
            raise SourceUnavailable(f"{url}: HTTP {response.status} {response.reason}")
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk


async def first_chunk_checked(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start the stream now (so a 404 surfaces before anything is written) and replay it."""
    first = await anext(chunks, b"")

    async def replay() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return replay()
