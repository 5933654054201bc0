"""TLS and mTLS for both OTLP front ends (`otlp.tls.*`), with certificates re-read on SIGHUP.

One `TlsCredentials` holds the current certificate material and hands each front end what its server
library needs:

- gRPC: dynamic server credentials. gRPC calls our fetcher at every new connection's handshake (from
  one of its own threads); it returns the material of a reload once, else None ("unchanged").
- HTTP (aiohttp): one listening `ssl.SSLContext` whose SNI callback, which OpenSSL runs at every
  ClientHello (with or without a server name), moves the connection onto the context of the current
  material: its certificate and its client-CA store both apply to that handshake.

So a reload changes what new connections get and leaves open ones alone. Material is checked by
loading it into an SSLContext before it replaces anything: a bad file (unparsable, key not matching
the certificate, a CA bundle without a certificate) keeps the previous material and names the key.
Turning TLS or client certificates on or off needs a restart (the listeners are built for one mode).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

_PEM_CERT = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


class TlsFiles(Protocol):
    """The `otlp.tls` section (receiver.app.config.TlsConfig)."""

    cert_file: str
    key_file: str
    client_ca_file: str


class TlsError(ValueError):
    """Certificate files that cannot be served; one line per problem, naming the `otlp.tls` key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """One consistent set of certificate files, read and validated."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext  # a server context built from exactly these bytes' files
    fingerprint: str  # SHA-256 of the leaf certificate (DER), to tell which certificate is served

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError([f"otlp.tls.{key}: cannot read {path}: {exc.strerror or exc}"]) from None


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        raise TlsError(
            [
                f"otlp.tls.cert_file / otlp.tls.key_file: {tls.cert_file} and {tls.key_file} are not a PEM "
                f"certificate chain and its unencrypted private key ({exc.reason or exc})"
            ]
        ) from None
    except OSError as exc:
        raise TlsError([f"otlp.tls.cert_file: cannot load {tls.cert_file}: {exc.strerror or exc}"]) from None
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(
                [f"otlp.tls.client_ca_file: {tls.client_ca_file} holds no usable PEM CA certificate ({exc})"]
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def read_material(tls: TlsFiles) -> TlsMaterial:
    """Read and validate the files named by `otlp.tls`; TlsError names the key of a bad one."""
    cert_chain = _read("cert_file", tls.cert_file)
    private_key = _read("key_file", tls.key_file)
    client_ca = _read("client_ca_file", tls.client_ca_file) if tls.client_ca_file else None
    context = _server_context(tls)
    text = cert_chain.decode("ascii", "replace")
    start = text.find(_PEM_CERT)
    end = text.find(_PEM_END, start)
    if start < 0 or end < 0:
        raise TlsError([f"otlp.tls.cert_file: {tls.cert_file} holds no PEM certificate"])
    leaf = ssl.PEM_cert_to_DER_cert(text[start : end + len(_PEM_END)])
    return TlsMaterial(cert_chain, private_key, client_ca, context, hashlib.sha256(leaf).hexdigest())


class TlsCredentials:
    """The certificate material both OTLP front ends serve; `reload` swaps it for new connections."""

    def __init__(self, material: TlsMaterial) -> None:
        self.material = material
        self._lock = threading.Lock()  # gRPC's fetcher runs on gRPC's threads
        self._grpc_pending: grpc.ServerCertificateConfiguration | None = None
        self._listening = material.context
        self._listening.sni_callback = self._select_context

    @classmethod
    def load(cls, tls: TlsFiles) -> TlsCredentials:
        return cls(read_material(tls))

    @property
    def mutual(self) -> bool:
        return self.material.mutual

    def describe(self) -> str:
        return "mtls" if self.mutual else "tls"

    # -- gRPC --------------------------------------------------------------------------------------

    @staticmethod
    def _grpc_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.private_key, material.cert_chain)], root_certificates=material.client_ca
        )

    def _fetch_grpc_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._grpc_pending = self._grpc_pending, None
        return pending

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self.material),
            self._fetch_grpc_configuration,
            require_client_authentication=self.mutual,
        )

    # -- HTTP --------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """The listening context (its SNI callback hands each handshake the current material)."""
        return self._listening

    def _select_context(self, connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self.material.context
        if connection.context is not current:
            connection.context = current

    # -- reload ------------------------------------------------------------------------------------

    def reload(self, tls: TlsFiles) -> bool:
        """Re-read the files; True when the served certificate changed. TlsError (previous material
        kept) when a file is bad or the change needs a restart."""
        if not tls.cert_file:
            raise TlsError(["otlp.tls.cert_file: turning TLS off needs a restart; the certificate is kept"])
        if bool(tls.client_ca_file) != self.mutual:
            raise TlsError(
                ["otlp.tls.client_ca_file: turning client certificates on or off needs a restart; kept as it was"]
            )
        material = read_material(tls)
        changed = material.fingerprint != self.material.fingerprint or material.client_ca != self.material.client_ca
        with self._lock:
            self._grpc_pending = self._grpc_configuration(material)
            self.material = material
        return changed
