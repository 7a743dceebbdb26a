"""A self-signed CA and the webhook's serving certificate, made with `cryptography`.

The API server calls the webhook over HTTPS and checks its certificate against the
configuration's `caBundle`; nobody else needs to trust it, so the operator is its own CA.
kopf's own self-signed mode needs `certbuilder` (on an unmaintained `oscrypto`) and makes no
CA, so a restarted operator would need a new caBundle each time; here the CA lives as long as
its Secret and only the serving certificate is renewed.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
SERVING_COMMON_NAME = "kubeflume-webhook"  # at most 64 characters, unlike a Service's DNS name


@dataclass(frozen=True)
class Certificates:
    """PEM bytes: the CA certificate (the caBundle), and the serving certificate with its key."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes

    def serves(self, hostnames: Sequence[str], *, now: datetime.datetime | None = None) -> bool:
        """True when the serving certificate names every host, is signed by this CA and is not near expiry."""
        cert = x509.load_pem_x509_certificate(self.cert)
        ca = x509.load_pem_x509_certificate(self.ca_cert)
        moment = now or _now()
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        present = {str(n) for n in names.get_values_for_type(x509.DNSName)} | {
            str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        expiry = min(cert.not_valid_after_utc, ca.not_valid_after_utc)
        return {str(_name(h).value) for h in hostnames} <= present and expiry - moment > RENEW_BEFORE


def new_ca(common_name: str) -> tuple[bytes, bytes]:
    """(certificate, key) of a new CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def issue(hostnames: Sequence[str], *, ca_cert: bytes, ca_key: bytes) -> Certificates:
    """A serving certificate for `hostnames` (DNS names or IP addresses), signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVING_COMMON_NAME)])  # names: in the SAN
    cert = (
        _builder(subject, ca.subject, key.public_key(), SERVING_DAYS)
        .add_extension(x509.SubjectAlternativeName([_name(h) for h in hostnames]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return Certificates(ca_cert=ca_cert, ca_key=ca_key, cert=_pem(cert), key=_pem_key(key))


def self_signed(hostnames: Sequence[str], *, common_name: str = "kubeflume webhook CA") -> Certificates:
    """A new CA and a serving certificate for `hostnames`."""
    ca_cert, ca_key = new_ca(common_name)
    return issue(hostnames, ca_cert=ca_cert, ca_key=ca_key)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    start = _now() - datetime.timedelta(minutes=5)  # tolerate a little clock skew with the API server
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days)))


def _name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
