"""sqlplan's own log-in (connect/handshake.py, connect/scram.py) against PostgreSQL's: SCRAM,
MD5 and cleartext passwords of any text, channel binding under every certificate signature
algorithm the server can compute a hash for, the key share offered in the TLS handshake, and
servers that misbehave. Debian's PostgreSQL with TLS; fake servers for what no real one does."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import (
    PASSWORD,
    Cluster,
    FakeServer,
    TurnCounter,
    _read_exact,
    _read_startup,
    cluster_owner,
)

from runner.connect.connection import connect
from runner.connect.handshake import SSL_REQUEST
from runner.connect.scram import end_point_hash
from runner.connect.target import Target
from runner.errors import ConnectError


def _admin(cluster: Cluster, *statements: str, **params: object) -> list[list[object]]:
    con = connect(cluster.admin_target())
    try:
        rows: list[list[object]] = []
        for statement in statements:
            rows = con.run(statement, **params) or []
        return rows
    finally:
        con.close()


def _reload(cluster: Cluster, **server_settings: str | None) -> None:
    """ALTER SYSTEM each setting (None: RESET), then reload and wait for it to take."""
    for name, value in server_settings.items():
        if value is None:
            _admin(cluster, f"ALTER SYSTEM RESET {name}")
        else:
            statement = _admin(cluster, f"SELECT format('ALTER SYSTEM SET {name} = %L', CAST(:v AS text))", v=value)[0][0]  # fmt: skip
            _admin(cluster, str(statement))
    _admin(cluster, "SELECT pg_reload_conf()")
    time.sleep(0.3)  # the postmaster rereads the files and the TLS settings on SIGHUP


def _mechanism(target: Target) -> str | None:
    con = connect(target)
    try:
        assert con.run("SELECT current_user") == [[target.user]]
        auth = getattr(con, "auth", None)
        return auth.mechanism_name if auth is not None else None
    finally:
        con.close()


# Any text but NUL (which no password can hold) and lone surrogates (not text): what SASLprep
# maps, what it prohibits (then both sides use the bytes as given), bidirectional text.
passwords = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=16
)


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(password=passwords)
def test_any_password_logs_in_as_the_server_hashed_it(ssl_server: Cluster, password: str) -> None:
    """The server SASLpreps and hashes the password when it is set; the client must arrive at
    the same key (SCRAM, with and without channel binding) or the same digest (MD5), and a
    different password must fail."""
    try:
        for role, encryption in (("scram", "scram-sha-256"), ("md5user", "md5"), ("clear", "scram-sha-256")):  # fmt: skip
            statement = _admin(ssl_server, "SELECT format('ALTER ROLE %I PASSWORD %L', CAST(:r AS text), CAST(:p AS text))",
                               r=role, p=password)[0][0]  # fmt: skip
            _admin(ssl_server, f"SET password_encryption = '{encryption}'", str(statement))
        for binding in ("require", "disable"):
            target = ssl_server.target("scram", password=password, sslmode="require", channel_binding=binding)  # fmt: skip
            assert _mechanism(target) == ("SCRAM-SHA-256-PLUS" if binding == "require" else "SCRAM-SHA-256")  # fmt: skip
        for role in ("md5user", "clear"):
            assert _mechanism(ssl_server.target(role, password=password, sslmode="require")) is None
        for role in ("scram", "md5user", "clear"):
            with pytest.raises(ConnectError, match=r"password authentication failed .*\[28P01\]"):
                _mechanism(ssl_server.target(role, password=password + "x", sslmode="require"))
    finally:
        for role, encryption in (("scram", "scram-sha-256"), ("md5user", "md5"), ("clear", "scram-sha-256")):  # fmt: skip
            statement = _admin(ssl_server, "SELECT format('ALTER ROLE %I PASSWORD %L', CAST(:r AS text), CAST(:p AS text))",
                               r=role, p=PASSWORD)[0][0]  # fmt: skip
            _admin(ssl_server, f"SET password_encryption = '{encryption}'", str(statement))


# openssl req options for a self-signed server certificate -> the hash tls-server-end-point
# uses (None: the algorithm names no single hash, so there is nothing to bind to).
SIGNATURES = {
    "rsa-sha256": (["-newkey", "rsa:2048", "-sha256"], "sha256"),
    "rsa-sha512": (["-newkey", "rsa:2048", "-sha512"], "sha512"),
    "ecdsa-p384-sha384": (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-sha384"],
        "sha384",
    ),
    "ecdsa-p256-sha224": (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha224"],
        "sha224",
    ),
    "rsa-pss-sha384": (
        [
            "-newkey",
            "rsa:2048",
            "-sha384",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:-1",
        ],
        "sha384",
    ),
    "ed25519": (["-newkey", "ed25519"], None),
}


@pytest.mark.parametrize("name", SIGNATURES)
def test_channel_binding_under_each_signature_algorithm(ssl_server: Cluster, name: str) -> None:
    """The binding data is the server certificate hashed as its signature algorithm says; the
    server computes the same and refuses the log-in if the two differ."""
    options, expected_hash = SIGNATURES[name]
    directory = Path(tempfile.mkdtemp(prefix="sqlplan-sig-"))  # where the server can read
    directory.chmod(0o755)
    subprocess.run(["openssl", "req", "-x509", *options, "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", "server.key", "-out", "server.crt"],
                   cwd=directory, check=True, capture_output=True)  # fmt: skip
    (directory / "server.key").chmod(0o600)
    owner = cluster_owner()
    os.chown(directory / "server.key", owner.pw_uid, owner.pw_gid)
    der = ssl.PEM_cert_to_DER_cert((directory / "server.crt").read_text())
    fingerprint = subprocess.run(["openssl", "x509", "-in", "server.crt", "-noout", "-fingerprint", f"-{expected_hash or 'sha256'}"],
                                 cwd=directory, check=True, capture_output=True, text=True).stdout  # fmt: skip
    if expected_hash is None:
        assert end_point_hash(der) is None
    else:
        assert end_point_hash(der) == bytes.fromhex(fingerprint.split("=", 1)[1].strip().replace(":", ""))  # fmt: skip
    _reload(ssl_server, ssl_cert_file=str(directory / "server.crt"), ssl_key_file=str(directory / "server.key"))  # fmt: skip
    try:
        assert _presented(ssl_server) == der  # the server took the new certificate
        require = ssl_server.target("scram", sslmode="require", channel_binding="require")
        if expected_hash is None:
            with pytest.raises(
                ConnectError, match="gives no hash to bind to; no password was sent"
            ):
                _mechanism(require)
            # without binding ('n'): the server cannot compute a hash for it either
            assert _mechanism(ssl_server.target("scram", sslmode="require")) == "SCRAM-SHA-256"
        else:
            assert _mechanism(require) == "SCRAM-SHA-256-PLUS"
    finally:
        _reload(ssl_server, ssl_cert_file=None, ssl_key_file=None)
        shutil.rmtree(directory, ignore_errors=True)
    assert _mechanism(ssl_server.target("scram", sslmode="require", channel_binding="require")) == "SCRAM-SHA-256-PLUS"  # fmt: skip


def _presented(cluster: Cluster) -> bytes:
    """The certificate the server presents in the TLS handshake (DER)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", cluster.port)) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        with context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_server_without_p256_gets_every_group(ssl_server: Cluster) -> None:
    """The first handshake offers a P-256 key share only; a server configured without P-256
    fails it, and the attempt is made again with every group, as libpq offers them."""
    _reload(ssl_server, ssl_ecdh_curve="secp384r1")
    try:
        assert _mechanism(ssl_server.target("scram", sslmode="require", channel_binding="require")) == "SCRAM-SHA-256-PLUS"  # fmt: skip
    finally:
        _reload(ssl_server, ssl_ecdh_curve=None)


def test_the_handshake_takes_one_round_trip_with_postgresql_defaults(ssl_server: Cluster) -> None:
    """PostgreSQL up to 17 asks for P-256 (ssl_ecdh_curve = prime256v1): a client offering
    X25519 first gets a HelloRetryRequest, one round trip more. Counted at the proxy: the
    client's bursts between answers, over the whole log-in."""
    if int(_admin(ssl_server, "SHOW server_version_num")[0][0]) // 10000 >= 18:  # type: ignore[call-overload]
        pytest.skip("PostgreSQL 18 accepts X25519 at once")
    counter = TurnCounter(("127.0.0.1", ssl_server.port))
    with FakeServer(counter.handle) as fake:
        connect(ssl_server.target("scram", port=fake.port, sslmode="require", channel_binding="require")).close()  # fmt: skip
        turns = counter.settle()
    # SSLRequest, ClientHello, then Finished + StartupMessage, SASLInitialResponse,
    # SASLResponse, Terminate: six bursts; with a HelloRetryRequest, seven.
    assert turns == 6, counter.log


def _fake(
    script: Callable[[ssl.SSLSocket | socket.socket], None],
) -> Callable[[socket.socket, int], None]:
    """A plaintext endpoint: reads the StartupMessage, then runs `script`."""

    def handle(conn: socket.socket, _: int) -> None:
        _read_startup(conn)
        script(conn)

    return handle


def _message(code: bytes, payload: bytes) -> bytes:
    return code + struct.pack("!i", len(payload) + 4) + payload


def _read_message(sock: ssl.SSLSocket | socket.socket) -> tuple[bytes, bytes]:
    code, length = struct.unpack("!ci", _read_exact(sock, 5))
    return code, _read_exact(sock, length - 4)


def _scram_impostor(final: Callable[[bytes], bytes]) -> Callable[[socket.socket, int], None]:
    """Speaks SCRAM without knowing the password; `final(client_final)` is what it answers."""

    def script(conn: ssl.SSLSocket | socket.socket) -> None:
        conn.sendall(_message(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\x00\x00"))
        _, initial = _read_message(conn)
        nonce = initial.split(b"r=", 1)[1]
        salt = base64.b64encode(b"0123456789abcdef")
        conn.sendall(_message(b"R", struct.pack("!i", 11) + b"r=" + nonce + b"XYZ,s=" + salt + b",i=4096"))  # fmt: skip
        _, client_final = _read_message(conn)
        conn.sendall(final(client_final))
        conn.sendall(_message(b"Z", b"I"))

    return _fake(script)


IMPOSTORS = {
    "a wrong server signature": (
        lambda _: _message(b"R", struct.pack("!i", 12) + b"v=" + base64.b64encode(bytes(32))),
        "the server's SCRAM signature is wrong: it does not know the password",
    ),
    "AuthenticationOk without the server's proof": (
        lambda _: _message(b"R", struct.pack("!i", 0)),
        "the server ended SCRAM without proving that it knows the password",
    ),
    "an error in the server-final message": (
        lambda _: _message(b"R", struct.pack("!i", 12) + b"e=invalid-proof"),
        "the server refused SCRAM: invalid-proof",
    ),
}


@pytest.mark.parametrize("case", IMPOSTORS)
def test_a_server_that_cannot_prove_it_knows_the_password_is_refused(case: str) -> None:
    final, message = IMPOSTORS[case]
    with FakeServer(_scram_impostor(final)) as fake:
        target = Target(host="127.0.0.1", port=fake.port, user="u", password=PASSWORD, database="d", sslmode="disable")  # fmt: skip
        with pytest.raises(ConnectError, match=message):
            connect(target)


def test_an_authentication_method_sqlplan_does_not_speak_is_named() -> None:
    def gss(conn: ssl.SSLSocket | socket.socket) -> None:
        conn.sendall(_message(b"R", struct.pack("!i", 7)))  # AuthenticationGSS
        _read_exact(conn, 1)

    with FakeServer(_fake(gss)) as fake:
        target = Target(host="127.0.0.1", port=fake.port, user="u", password=PASSWORD, database="d", sslmode="disable")  # fmt: skip
        with pytest.raises(ConnectError, match=r"does not support \(AuthenticationRequest 7\)"):
            connect(target)


def test_a_remembered_server_takes_one_round_trip_fewer(ssl_server: Cluster, cache: Path) -> None:
    """The first log-in learns that the server asks for SCRAM; the next sends its first SCRAM
    message with the StartupMessage. Counted at a proxy, as the bursts of the client."""
    counter = TurnCounter(("127.0.0.1", ssl_server.port))
    turns = []
    with FakeServer(counter.handle) as fake:
        target = ssl_server.target("scram", port=fake.port, sslmode="require", channel_binding="require")  # fmt: skip
        for _ in range(3):
            before = counter.turns
            assert _mechanism(target) == "SCRAM-SHA-256-PLUS"
            turns.append(counter.settle() - before)
    # SSLRequest, ClientHello, Finished + StartupMessage (+ SCRAM first), [SCRAM first,]
    # SCRAM final, the query, Terminate
    assert turns == [7, 6, 6]
    (entry,) = (cache / "servers").iterdir()
    assert entry.read_text() == "SCRAM-SHA-256-PLUS,SCRAM-SHA-256"
    assert entry.stat().st_mode & 0o777 == 0o600
    assert (cache / "servers").stat().st_mode & 0o777 == 0o700


MEMORIES = {
    "nothing": None,
    "PLUS and plain": ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
    "plain only": ("SCRAM-SHA-256",),
    "unknown": ("SCRAM-SHA-1",),
}


@pytest.mark.parametrize("remembered", MEMORIES)
@pytest.mark.parametrize("binding", ["prefer", "require", "disable"])
@pytest.mark.parametrize("role", ["scram", "md5user", "clear", "trusty"])
def test_whatever_is_remembered_the_log_in_ends_as_without(
    ssl_server: Cluster, cache: Path, role: str, binding: str, remembered: str
) -> None:
    """A differential test: the outcome (the mechanism, or the refusal) of a log-in is the
    same whatever the memory says of the ssl_server, right or wrong; a log-in that succeeds
    corrects a wrong memory."""
    from runner.connect import memory

    target = ssl_server.target(role, sslmode="require", channel_binding=binding)

    def outcome() -> str | None:
        try:
            return _mechanism(target)
        except ConnectError as e:
            return str(e)

    memory.remember(target, True, ())
    expected = outcome()
    learned = memory.offered(target, True)
    mechanisms = MEMORIES[remembered]
    if mechanisms is not None:
        memory.remember(target, True, mechanisms)
    assert outcome() == expected
    if not (expected or "").startswith("cannot connect"):
        # a log-in that succeeds leaves the truth, whatever the memory said before
        assert memory.offered(target, True) == learned


def test_a_memory_others_could_write_is_not_read(ssl_server: Cluster, cache: Path) -> None:
    from runner.connect import memory

    target = ssl_server.target("scram", sslmode="require")
    assert _mechanism(target) == "SCRAM-SHA-256-PLUS"
    assert memory.offered(target, True) == ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
    (entry,) = (cache / "servers").iterdir()
    entry.chmod(0o666)
    assert memory.offered(target, True) == ()
