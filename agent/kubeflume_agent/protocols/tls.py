"""TLS contexts from Flume's SSL keys, for the network sources (server side) and RPC sinks (client).

Flume reads Java keystores. What is supported here:

* server: `keystore` with `keystore-type PKCS12` (read with the `cryptography` package), or PEM
  files through the extra keys `ssl-certfile` (certificate chain) and `ssl-keyfile` (private key;
  defaults to the cert file). `keystore-type JKS`, Flume's default, cannot be read by Python:
  convert it once with `keytool -importkeystore -deststoretype PKCS12`; the config check says so.
* client: `trust-all-certs`, or `truststore` of type PKCS12 or PEM (a CA bundle), or the system
  CAs when neither is given. The server name is not checked against the certificate when the
  sink connects by IP address, as Flume's Netty client does not check it either.
* `include-protocols` / `exclude-protocols` (e.g. `TLSv1.2 TLSv1.3`; SSLv3 is always excluded)
  set the version range; `include-cipher-suites` / `exclude-cipher-suites` take OpenSSL names.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from kubeflume_agent.config.keys import Config, boolean, key, one_of, word_list

_STORE_TYPES = one_of("JKS", "PKCS12", "PEM")


@dataclass(frozen=True)
class TlsConfig(Config):
    """The SSL keys both ends have: TLS on or off, and which versions and ciphers."""

    use_ssl: bool = key("ssl", boolean, False, doc="use TLS")
    exclude_protocols: list[str] = key("exclude-protocols", word_list, ["SSLv3"], doc="TLS versions refused")
    include_protocols: list[str] = key("include-protocols", word_list, [], doc="TLS versions allowed")
    exclude_cipher_suites: list[str] = key("exclude-cipher-suites", word_list, [],
                                           doc="OpenSSL cipher names refused")
    include_cipher_suites: list[str] = key("include-cipher-suites", word_list, [],
                                           doc="OpenSSL cipher names allowed")


@dataclass(frozen=True)
class TlsServerConfig(TlsConfig):
    """A network source's SSL keys."""

    use_ssl: bool = key("ssl", boolean, False, doc="serve TLS")
    include_protocols: list[str] = key("include-protocols", word_list, [],
                                       doc="TLS versions allowed (all modern ones if empty)")
    keystore: str | None = key("keystore", str, None, doc="PKCS12 keystore with the server certificate and key")
    keystore_password: str = key("keystore-password", str, "", doc="password of the keystore")
    keystore_type: str = key("keystore-type", _STORE_TYPES, "jks", doc="PKCS12 (JKS must be converted, see docs)")
    ssl_certfile: str | None = key("ssl-certfile", str, None, doc="PEM certificate chain (instead of a keystore)")
    ssl_keyfile: str | None = key("ssl-keyfile", str, None, doc="PEM private key for ssl-certfile")


@dataclass(frozen=True)
class TlsClientConfig(TlsConfig):
    """An RPC sink's SSL keys."""

    use_ssl: bool = key("ssl", boolean, False, doc="connect with TLS")
    trust_all_certs: bool = key("trust-all-certs", boolean, False,
                                doc="accept any server certificate (testing only)")
    truststore: str | None = key("truststore", str, None, doc="PKCS12 truststore or PEM CA bundle")
    truststore_password: str = key("truststore-password", str, "", doc="password of the truststore")
    truststore_type: str = key("truststore-type", _STORE_TYPES, "jks", doc="PKCS12 or PEM (JKS must be converted)")


# For the sources that still list their keys one by one (syslog, http).
SERVER_KEYS = TlsServerConfig.keys()

_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_JKS_HINT = (
    "Java keystores (JKS) cannot be read here; convert it: keytool -importkeystore -srckeystore FILE "
    "-destkeystore FILE.p12 -deststoretype PKCS12, then set keystore-type PKCS12 "
    "(or give PEM files with ssl-certfile / ssl-keyfile)"
)


def validate_server(config: TlsServerConfig) -> list[tuple[str, str]]:
    if not config.use_ssl:
        return []
    if config.ssl_certfile:
        return []
    if not config.keystore:
        return [("keystore", "ssl is on: give keystore (PKCS12) or ssl-certfile/ssl-keyfile (PEM)")]
    if config.keystore_type == "jks":
        return [("keystore-type", _JKS_HINT)]
    return _protocol_problems(config)


def validate_client(config: TlsClientConfig) -> list[tuple[str, str]]:
    if not config.use_ssl or config.trust_all_certs or not config.truststore:
        return []
    if config.truststore_type == "jks":
        return [("truststore-type", _JKS_HINT)]
    return _protocol_problems(config)


def _protocol_problems(config: TlsConfig) -> list[tuple[str, str]]:
    unknown = [
        name for name in config.include_protocols + config.exclude_protocols
        if name.lower() not in _VERSIONS and name.lower() not in ("sslv3", "sslv2hello")
    ]
    return [("include-protocols", f"unknown TLS versions: {' '.join(unknown)}")] if unknown else []


def server_context(config: TlsServerConfig) -> ssl.SSLContext | None:
    """The server's SSL context, or None when `ssl` is off."""
    if not config.use_ssl:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if config.ssl_certfile:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile or None)
    else:
        assert config.keystore is not None, "validate_server asks for a keystore when there is no certfile"
        _load_pkcs12_identity(context, config.keystore, config.keystore_password)
    _restrict(context, config)
    return context


def client_context(config: TlsClientConfig) -> ssl.SSLContext | None:
    """The client's SSL context, or None when `ssl` is off."""
    if not config.use_ssl:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.trust_all_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.truststore:
        context.check_hostname = False
        if config.truststore_type == "pem":
            context.load_verify_locations(cafile=config.truststore)
        else:
            context.load_verify_locations(cadata=_pkcs12_certificates_pem(
                config.truststore, config.truststore_password))
    _restrict(context, config)
    return context


def _restrict(context: ssl.SSLContext, config: TlsConfig) -> None:
    excluded = {name.lower() for name in config.exclude_protocols}
    allowed = [v for name, v in _VERSIONS.items() if name not in excluded]
    included = {name.lower() for name in config.include_protocols}
    if included:
        allowed = [v for name, v in _VERSIONS.items() if name in included and name not in excluded]
    if allowed:
        context.minimum_version = max(min(allowed), context.minimum_version)
        context.maximum_version = max(allowed)
    ciphers = ":".join(config.include_cipher_suites) or "DEFAULT"
    for name in config.exclude_cipher_suites:
        ciphers += ":!" + name
    if ciphers != "DEFAULT":
        context.set_ciphers(ciphers)


def _read_pkcs12(path: str, password: str):
    try:
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise RuntimeError("PKCS12 keystores need the 'cryptography' package; or use PEM files") from error
    with open(path, "rb") as handle:
        return pkcs12.load_key_and_certificates(handle.read(), password.encode() if password else None)


def _load_pkcs12_identity(context: ssl.SSLContext, path: str, password: str) -> None:
    from cryptography.hazmat.primitives import serialization

    key, certificate, chain = _read_pkcs12(path, password)
    if key is None or certificate is None:
        raise ValueError(f"keystore {path} holds no private key with a certificate")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [certificate, *(chain or [])])
    # ssl only loads identities from files: write one readable by us alone, load it, delete it.
    fd, name = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        context.load_cert_chain(name)
    finally:
        os.unlink(name)


def _pkcs12_certificates_pem(path: str, password: str) -> str:
    from cryptography.hazmat.primitives import serialization

    _, certificate, chain = _read_pkcs12(path, password)
    certificates = [c for c in [certificate, *(chain or [])] if c is not None]
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)
