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

from kubeflume_agent.config.keys import Key, Settings, boolean, one_of, word_list

_STORE_TYPES = one_of("JKS", "PKCS12", "PEM")

SERVER_KEYS = (
    Key("ssl", boolean, False, doc="serve TLS"),
    Key("keystore", str, None, doc="PKCS12 keystore with the server certificate and key"),
    Key("keystore-password", str, "", doc="password of the keystore"),
    Key("keystore-type", _STORE_TYPES, "jks", doc="PKCS12 (JKS must be converted, see docs)"),
    Key("ssl-certfile", str, None, doc="PEM certificate chain (instead of a keystore)"),
    Key("ssl-keyfile", str, None, doc="PEM private key for ssl-certfile"),
    Key("exclude-protocols", word_list, ["SSLv3"], doc="TLS versions refused"),
    Key("include-protocols", word_list, [], doc="TLS versions allowed (all modern ones if empty)"),
    Key("exclude-cipher-suites", word_list, [], doc="OpenSSL cipher names refused"),
    Key("include-cipher-suites", word_list, [], doc="OpenSSL cipher names allowed"),
)

CLIENT_KEYS = (
    Key("ssl", boolean, False, doc="connect with TLS"),
    Key("trust-all-certs", boolean, False, doc="accept any server certificate (testing only)"),
    Key("truststore", str, None, doc="PKCS12 truststore or PEM CA bundle"),
    Key("truststore-password", str, "", doc="password of the truststore"),
    Key("truststore-type", _STORE_TYPES, "jks", doc="PKCS12 or PEM (JKS must be converted)"),
    Key("exclude-protocols", word_list, ["SSLv3"], doc="TLS versions refused"),
    Key("include-protocols", word_list, [], doc="TLS versions allowed"),
    Key("exclude-cipher-suites", word_list, [], doc="OpenSSL cipher names refused"),
    Key("include-cipher-suites", word_list, [], doc="OpenSSL cipher names allowed"),
)

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


def validate_server(settings: Settings) -> list[tuple[str, str]]:
    if not settings["ssl"]:
        return []
    if settings["ssl-certfile"]:
        return []
    if not settings["keystore"]:
        return [("keystore", "ssl is on: give keystore (PKCS12) or ssl-certfile/ssl-keyfile (PEM)")]
    if settings["keystore-type"] == "jks":
        return [("keystore-type", _JKS_HINT)]
    return _protocol_problems(settings)


def validate_client(settings: Settings) -> list[tuple[str, str]]:
    if not settings["ssl"] or settings["trust-all-certs"] or not settings["truststore"]:
        return []
    if settings["truststore-type"] == "jks":
        return [("truststore-type", _JKS_HINT)]
    return _protocol_problems(settings)


def _protocol_problems(settings: Settings) -> list[tuple[str, str]]:
    unknown = [
        name for name in settings["include-protocols"] + settings["exclude-protocols"]
        if name.lower() not in _VERSIONS and name.lower() not in ("sslv3", "sslv2hello")
    ]
    return [("include-protocols", f"unknown TLS versions: {' '.join(unknown)}")] if unknown else []


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's SSL context, or None when `ssl` is off."""
    if not settings["ssl"]:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if settings["ssl-certfile"]:
        context.load_cert_chain(settings["ssl-certfile"], settings["ssl-keyfile"] or None)
    else:
        _load_pkcs12_identity(context, settings["keystore"], settings["keystore-password"])
    _restrict(context, settings)
    return context


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """The client's SSL context, or None when `ssl` is off."""
    if not settings["ssl"]:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings["trust-all-certs"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings["truststore"]:
        context.check_hostname = False
        if settings["truststore-type"] == "pem":
            context.load_verify_locations(cafile=settings["truststore"])
        else:
            context.load_verify_locations(cadata=_pkcs12_certificates_pem(
                settings["truststore"], settings["truststore-password"]))
    _restrict(context, settings)
    return context


def _restrict(context: ssl.SSLContext, settings: Settings) -> None:
    excluded = {name.lower() for name in settings["exclude-protocols"]}
    allowed = [v for name, v in _VERSIONS.items() if name not in excluded]
    included = {name.lower() for name in settings["include-protocols"]}
    if included:
        allowed = [v for name, v in _VERSIONS.items() if name in included and name not in excluded]
    if allowed:
        context.minimum_version = max(min(allowed), context.minimum_version)
        context.maximum_version = max(allowed)
    ciphers = ":".join(settings["include-cipher-suites"]) or "DEFAULT"
    for name in settings["exclude-cipher-suites"]:
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
