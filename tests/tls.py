"""TLS material for tests of the sources and sinks that speak TLS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trustme


@contextlib.contextmanager
def tls_files(host: str = "127.0.0.1") -> Iterator[tuple[str, str, str]]:
    """A fresh CA and a server certificate for `host`, as PEM files: (certificate chain, key, CA)."""
    authority = trustme.CA()
    certificate = authority.issue_cert(host)
    with certificate.cert_chain_pems[0].tempfile() as cert, certificate.private_key_pem.tempfile() as key, \
            authority.cert_pem.tempfile() as ca:
        yield cert, key, ca
