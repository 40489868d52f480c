"""TLS as libpq sets it up for a Target: which root, client certificate and key files, and the
SSLContext an sslmode asks for."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from ..errors import ConfigError
from .handshake import ALPN
from .target import Target


def ssl_context_for(target: Target, *, every_group: bool = False) -> ssl.SSLContext:
    """The TLS settings an sslmode asks for, with the client certificate if there is one.

    As libpq, `require` verifies the chain (as verify-ca) when there is a root certificate:
    `sslrootcert`, or ~/.postgresql/root.crt.

    Unless `every_group`, the key share offered is P-256 alone, which every TLS 1.3 server
    must accept (RFC 8446, 9.1). OpenSSL's default, X25519, costs a round trip (a
    HelloRetryRequest) with PostgreSQL up to 17, whose ssl_ecdh_curve is prime256v1."""
    mode = target.sslmode
    root, certificate, key = tls_files(target)
    if root is not None:
        if root == "system":
            context = ssl.create_default_context()
        elif os.path.isfile(root):
            # As libpq: the file's certificates are the only ones trusted, not the system's.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.load_verify_locations(cafile=root)
            except (ssl.SSLError, OSError, ValueError) as e:
                raise ConfigError(
                    f"root certificate file {root!r} holds no usable certificate "
                    f"(PEM is expected): {tls_reason(e)}"
                ) from None
            if not context.get_ca_certs():
                raise ConfigError(
                    f"root certificate file {root!r} holds no certificate (PEM is expected)"
                )
        elif os.path.exists(root):
            raise ConfigError(f"root certificate file {root!r} is not a plain file")
        else:
            raise ConfigError(
                f"root certificate file {root!r} does not exist: give one with sslrootcert=FILE, "
                "use the system's trusted roots with sslrootcert=system, or use sslmode=require"
            )
        context.check_hostname = mode == "verify-full"
    else:
        # Nothing is verified: no CA bundle to load (which costs 10-20 ms at every start).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if not every_group:
        context.set_ecdh_curve("prime256v1")
    if target.sslnegotiation == "direct":
        context.set_alpn_protocols([ALPN])
    if certificate is not None and key is not None:
        _check_key_permissions(key)
        try:
            context.load_cert_chain(certificate, key)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ConfigError(
                f"cannot load the client certificate {certificate!r} with key {key!r} "
                f"(PEM files are expected, the key unencrypted): {tls_reason(e)}"
            ) from None
    elif target.sslcert:
        raise ConfigError(f"client certificate file {target.sslcert!r} does not exist")
    return context


def tls_files(target: Target) -> tuple[str | None, str | None, str | None]:
    """(the root certificate file, when the chain is verified; the client certificate; its
    key), found as libpq finds them: with the target, what ssl_context_for's context is."""
    mode = target.sslmode
    default_root = Path.home() / ".postgresql" / "root.crt"
    verify = mode in ("verify-ca", "verify-full") or (
        mode == "require" and (target.sslrootcert or default_root.is_file())
    )
    root = (target.sslrootcert or str(default_root)) if verify else None
    certificate = target.sslcert or _default_client_file("postgresql.crt")
    key = None
    if certificate and os.path.isfile(certificate):
        key = target.sslkey or _default_client_file("postgresql.key") or certificate
    return root, certificate, key


def tls_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or error.strerror or str(error)
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def _default_client_file(name: str) -> str | None:
    path = Path.home() / ".postgresql" / name
    return str(path) if path.is_file() else None


def _check_key_permissions(key: str) -> None:
    """libpq refuses a private key others can read: u=rw (0600), or u=rw,g=r (0640) if root owns it."""
    try:
        info = os.stat(key)
    except OSError:
        raise ConfigError(f"private key file {key!r} does not exist") from None
    allowed = 0o037 if info.st_uid == 0 else 0o077
    if info.st_mode & allowed:
        raise ConfigError(
            f"private key file {key!r} has group or world access; it must be u=rw (0600) or less"
        )
