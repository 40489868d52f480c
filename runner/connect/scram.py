"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS as libpq speaks them (RFC 5802, 7677; channel binding
tls-server-end-point, RFC 5929): the client's three messages and the check of the server's
signature. Pure hashlib and hmac; the caller sends and receives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata

SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"


class ScramError(Exception):
    """The server's side of the exchange does not hold together (or it said e=...)."""


class Scram:
    """One exchange. `binding`: the tls-server-end-point hash for SCRAM-SHA-256-PLUS; None for
    SCRAM-SHA-256, with `could_bind` saying whether the client could have bound (gs2 flag y) or
    not (n), as libpq decides. `verified`: the server proved that it knows the password."""

    def __init__(self, password: str, binding: bytes | None, *, could_bind: bool) -> None:
        self.mechanism_name = SCRAM_PLUS if binding is not None else SCRAM
        if binding is not None:
            self._gs2 = b"p=tls-server-end-point,,"
        else:
            self._gs2 = b"y,," if could_bind else b"n,,"
        self._binding = binding or b""
        self._password = saslprep(password)
        self._nonce = base64.b64encode(secrets.token_bytes(18))
        # The user name is the StartupMessage's; the server ignores this one (libpq sends none).
        self._first_bare = b"n=,r=" + self._nonce
        self._server_signature = b""
        self.verified = False

    def first(self) -> bytes:
        """client-first-message"""
        return self._gs2 + self._first_bare

    def final(self, server_first: bytes) -> bytes:
        """client-final-message, from the server-first-message."""
        fields = _attributes(server_first)
        nonce, salt, count = fields.get(b"r", b""), fields.get(b"s"), fields.get(b"i", b"")
        if b"m" in fields:
            raise ScramError("the server asks for a SCRAM extension that is not supported")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce) or salt is None:
            raise ScramError("the server's SCRAM challenge is malformed")
        if not count.isdigit() or int(count) < 1:
            raise ScramError("the server's SCRAM iteration count is not a positive number")
        try:
            salt_bytes = base64.b64decode(salt, validate=True)
        except ValueError:
            raise ScramError("the server's SCRAM salt is not base64") from None
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt_bytes, int(count))
        channel = base64.b64encode(self._gs2 + self._binding)
        without_proof = b"c=" + channel + b",r=" + nonce
        auth_message = self._first_bare + b"," + server_first + b"," + without_proof
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify(self, server_final: bytes) -> None:
        """The server-final-message proves the server knows the password (or says why not)."""
        fields = _attributes(server_final)
        if b"e" in fields:
            raise ScramError(f"the server refused SCRAM: {fields[b'e'].decode('utf-8', 'replace')}")
        try:
            signature = base64.b64decode(fields.get(b"v", b""), validate=True)
        except ValueError:
            signature = b""
        if not signature or not hmac.compare_digest(signature, self._server_signature):
            raise ScramError("the server's SCRAM signature is wrong: it does not know the password")
        self.verified = True


def _attributes(message: bytes) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {}
    for part in message.split(b","):
        name, equals, value = part.partition(b"=")
        if len(name) == 1 and equals:
            fields.setdefault(name, value)
    return fields


# RFC 3454 tables SASLprep (RFC 4013) uses, by code point ranges: mapped to nothing (B.1),
# non-ASCII spaces (C.1.2, mapped to a space). The prohibited ones are checked with stringprep.
def saslprep(password: str) -> bytes:
    """The password as SCRAM hashes it: SASLprep'd; as libpq, the password as given when it
    is ASCII or SASLprep refuses it (the server does the same on its side)."""
    raw = password.encode("utf-8", "surrogateescape")
    if password.isascii():
        return raw
    import stringprep

    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal:
        return raw
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
        stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
        stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9, stringprep.in_table_a1,
    )  # fmt: skip
    if any(test(c) for c in normal for test in prohibited):
        return raw
    right_to_left = any(stringprep.in_table_d1(c) for c in normal)  # RFC 3454 section 6
    if right_to_left and (
        any(stringprep.in_table_d2(c) for c in normal)
        or not (stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1]))
    ):
        return raw
    return normal.encode("utf-8")


# Signature algorithm OIDs (DER content bytes) -> the hash tls-server-end-point uses: the
# signature's own hash, SHA-256 in place of MD5 and SHA-1 (RFC 5929 section 4.1).
_RSA = bytes.fromhex("2a864886f70d0101")
_ECDSA = bytes.fromhex("2a8648ce3d0403")
_SIGNATURE_HASHES = {
    _RSA + b"\x04": "sha256", _RSA + b"\x05": "sha256", _RSA + b"\x0b": "sha256",
    _RSA + b"\x0c": "sha384", _RSA + b"\x0d": "sha512", _RSA + b"\x0e": "sha224",
    bytes.fromhex("2a8648ce3d0401"): "sha256",  # ecdsa-with-SHA1
    _ECDSA + b"\x01": "sha224", _ECDSA + b"\x02": "sha256", _ECDSA + b"\x03": "sha384",
    _ECDSA + b"\x04": "sha512",
    bytes.fromhex("2a8648ce380403"): "sha256",  # dsa-with-sha1
    bytes.fromhex("608648016503040301"): "sha224", bytes.fromhex("608648016503040302"): "sha256",
}  # fmt: skip
_RSA_PSS = _RSA + b"\x0a"
_HASHES = {
    bytes.fromhex("608648016503040201"): "sha256", bytes.fromhex("608648016503040202"): "sha384",
    bytes.fromhex("608648016503040203"): "sha512", bytes.fromhex("608648016503040204"): "sha224",
    bytes.fromhex("2b0e03021a"): "sha256",  # SHA-1
}  # fmt: skip


def end_point_hash(certificate: bytes) -> bytes | None:
    """tls-server-end-point: the server certificate (DER) hashed as its signature algorithm
    says; None when the algorithm names no single hash (Ed25519, say), as the server's own
    computation then fails too."""
    try:
        name = _signature_hash(certificate)
    except (IndexError, ValueError):
        return None
    return hashlib.new(name, certificate).digest() if name else None


def _signature_hash(der: bytes) -> str | None:
    _, start, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE {
    _, _, tbs_end = _tlv(der, start)  # tbsCertificate,
    _, alg_start, alg_end = _tlv(der, tbs_end)  # signatureAlgorithm SEQUENCE { OID, params }
    tag, oid_start, oid_end = _tlv(der, alg_start)
    oid = der[oid_start:oid_end]
    if tag != 0x06:
        raise ValueError("no OID")
    if oid != _RSA_PSS:
        return _SIGNATURE_HASHES.get(oid)
    # RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, ... }
    if oid_end >= alg_end:
        return "sha256"
    _, params_start, params_end = _tlv(der, oid_end)
    if params_start >= params_end or der[params_start] != 0xA0:
        return "sha256"
    _, explicit_start, _ = _tlv(der, params_start)
    _, hash_start, _ = _tlv(der, explicit_start)
    _, hash_oid_start, hash_oid_end = _tlv(der, hash_start)
    return _HASHES.get(der[hash_oid_start:hash_oid_end])


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, where the value starts, where it ends) of the DER element at `at`."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der):
        raise ValueError("truncated")
    return tag, at, at + length
