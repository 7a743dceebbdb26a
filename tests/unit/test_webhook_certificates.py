"""The webhook's CA and serving certificate: what a real TLS client accepts, and when they are renewed."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest

from kubeflume_operator.webhook import certificates
from kubeflume_operator.webhook.serving import Listen, certificate_files


def handshake(certs: certificates.Certificates, hostname: str) -> None:
    """A TLS handshake over a real socket: the server loads the pair, the client trusts only the CA."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with certificate_files(certs) as (cert, key):
        server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cadata=certs.ca_cert.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    failure: list[BaseException] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True):
                pass
        except (ssl.SSLError, OSError) as error:
            failure.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw, \
                client_context.wrap_socket(raw, server_hostname=hostname):
            pass
    finally:
        thread.join()
        listener.close()


def test_a_client_trusting_the_ca_accepts_the_certificate_for_each_name():
    certs = certificates.self_signed(["hook.kubeflume-system.svc", "127.0.0.1"])
    handshake(certs, "hook.kubeflume-system.svc")
    handshake(certs, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, "other.kubeflume-system.svc")


def test_a_long_service_name_fits_and_a_new_certificate_keeps_the_ca():
    name = "a-rather-long-release-name-kubeflume-webhook.a-rather-long-namespace-name.svc.cluster.local"
    first = certificates.self_signed([name])
    second = certificates.issue([name], ca_cert=first.ca_cert, ca_key=first.ca_key)
    assert second.ca_cert == first.ca_cert and second.cert != first.cert
    handshake(second, name)


def test_stored_certificates_are_reused_only_while_they_serve_the_names_and_are_not_near_expiry():
    certs = certificates.self_signed(["hook.ns.svc"])
    assert certs.serves(["hook.ns.svc"])
    assert not certs.serves(["hook.other.svc"])
    soon_expired = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=certificates.SERVING_DAYS - 10)
    assert not certs.serves(["hook.ns.svc"], now=soon_expired)
    foreign = certificates.self_signed(["hook.ns.svc"])
    mixed = certificates.Certificates(certs.ca_cert, certs.ca_key, foreign.cert, foreign.key)
    assert not mixed.serves(["hook.ns.svc"])


@pytest.mark.parametrize(("text", "expected"), [("127.0.0.1:9443", Listen("127.0.0.1", 9443)),
                                                ("0.0.0.0:443", Listen("0.0.0.0", 443)),
                                                ("[::1]:8443", Listen("::1", 8443))])
def test_listen_addresses(text, expected):
    assert Listen.parse(text) == expected


@pytest.mark.parametrize("text", ["9443", "host:", ":9443", "host:port"])
def test_bad_listen_addresses_are_refused(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        Listen.parse(text)
