"""Test servers: Debian's SSL-capable PostgreSQL, certificates, and small protocol-level fakes."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.connect.connection import connect
from runner.connect.target import Target

PASSWORD = "p@ss:w/rd%é"
ENCODED = "p%40ss%3Aw%2Frd%25%C3%A9"
ROLES = ("scram", "md5user", "clear", "trusty", "certuser")


def debian_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def require_debian_postgres() -> Path:
    bin_dir = debian_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        message = "no SSL-capable PostgreSQL: apt-get install postgresql openssl (as .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Certificates:
    directory: Path
    ca: Path  # signs the server's and the client's certificates
    wrong_ca: Path  # signs nothing we use
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=certuser
    client_key: Path


def make_certificates(directory: Path, owner: pwd.struct_passwd) -> Certificates:
    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=directory)

    for name in ("ca", "wrong-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=sqlplan test {name}",
                "-keyout", f"{name}.key", "-out", f"{name}.crt")  # fmt: skip
    for name, subject, extension in (
        ("server", "/CN=localhost", "subjectAltName=DNS:localhost"),
        ("client", "/CN=certuser", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")  # fmt: skip
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    os.chown(directory / "server.key", owner.pw_uid, owner.pw_gid)  # the server reads it
    return Certificates(
        directory, directory / "ca.crt", directory / "wrong-ca.crt", directory / "server.crt",
        directory / "server.key", directory / "client.crt", directory / "client.key",
    )  # fmt: skip


@dataclass
class Cluster:
    """A Debian PostgreSQL cluster on 127.0.0.1, started for a test module."""

    base: Path
    bin_dir: Path
    port: int
    owner: pwd.struct_passwd
    ssl: bool

    def run(self, *command: str | Path) -> None:
        extra: dict[str, Any] = {}
        if os.geteuid() == 0:
            extra = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(c) for c in command], check=True, capture_output=True, cwd=self.base, **extra
        )

    def admin_target(self) -> Target:
        return Target(
            host=str(self.base), port=self.port, user="admin", password=None, database="postgres"
        )

    def target(self, user: str, **settings: Any) -> Target:
        values: dict[str, Any] = {"host": "localhost", "port": self.port, "user": user, "password": PASSWORD,
                                  "database": "postgres", "source": "test"}  # fmt: skip
        values.update(settings)
        return Target(**values)

    def url(self, user: str, query: str, host: str = "localhost") -> str:
        return f"postgresql://{user}:{ENCODED}@{host}:{self.port}/postgres?{query}"

    def stop(self) -> None:
        self.run(self.bin_dir / "pg_ctl", "-D", self.base / "data", "-m", "immediate", "-w", "stop")


def cluster_owner() -> pwd.struct_passwd:
    """Who runs a test cluster and reads its key files: postgres when the tests run as root."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def start_cluster(bin_dir: Path, *, tls: Certificates | None) -> Cluster:
    owner = cluster_owner()
    base = Path(tempfile.mkdtemp(prefix="sqlplan-pg-"))
    base.chmod(0o755)  # ours: mkdtemp just made it
    os.chown(base, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(base, bin_dir, free_port(), owner, tls is not None)
    data = base / "data"
    cluster.run(
        bin_dir / "initdb", "-D", data, "-U", "admin", "--auth-local=trust", "--auth-host=reject"
    )
    settings = [
        f"port = {cluster.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{base}'",
        "password_encryption = 'scram-sha-256'", f"ssl = {'on' if tls else 'off'}",
    ]  # fmt: skip
    kind = "host"
    if tls is not None:
        kind = "hostssl"
        settings += [f"ssl_cert_file = '{tls.server_cert}'", f"ssl_key_file = '{tls.server_key}'",
                     f"ssl_ca_file = '{tls.ca}'"]  # fmt: skip
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n".join(settings) + "\n")
    methods = {
        "scram": "scram-sha-256",
        "md5user": "md5",
        "clear": "password",
        "trusty": "trust",
        "certuser": "cert",
    }
    lines = ["local all all trust"]
    lines += [
        f"{kind} all {role} 127.0.0.1/32 {method}"
        for role, method in methods.items()
        if tls or method != "cert"
    ]
    lines.append("host all all 127.0.0.1/32 reject")
    (data / "pg_hba.conf").write_text("\n".join(lines) + "\n")
    cluster.run(bin_dir / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "start")
    admin = connect(cluster.admin_target())
    try:
        for role in ROLES:
            encryption = "md5" if role == "md5user" else "scram-sha-256"
            admin.run(f"SET password_encryption = '{encryption}'")
            # DDL takes no bind parameters: the server quotes the values with format().
            sql = "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :role::text, :pw::text)"
            admin.run(admin.run(sql, role=role, pw=PASSWORD)[0][0])
    finally:
        admin.close()
    return cluster


def remove_cluster(cluster: Cluster) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.base, ignore_errors=True)


# --- protocol-level fakes ----------------------------------------------------------------------


def _read_exact(sock: socket.socket | ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _read_startup(sock: socket.socket | ssl.SSLSocket) -> tuple[int, bytes]:
    length = struct.unpack("!i", _read_exact(sock, 4))[0]
    body = _read_exact(sock, length - 4)
    return struct.unpack("!i", body[:4])[0], body[4:]


def _error(code: str, message: str) -> bytes:
    body = (
        b"".join(
            k + v.encode() + b"\x00" for k, v in ((b"S", "FATAL"), (b"C", code), (b"M", message))
        )
        + b"\x00"
    )
    return b"E" + struct.pack("!i", len(body) + 4) + body


@dataclass
class FakeServer:
    """A loopback listener that runs `handle` for each connection in a thread."""

    handle: Callable[[socket.socket, int], None]
    port: int = 0  # 0: any free port
    host: str = "127.0.0.1"
    connections: int = 0
    notes: list[object] = field(default_factory=list)
    _listener: socket.socket | None = None

    def __enter__(self) -> FakeServer:
        self._listener = socket.create_server((self.host, self.port))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            number = self.connections
            threading.Thread(target=self._run, args=(conn, number), daemon=True).start()

    def _run(self, conn: socket.socket, number: int) -> None:
        try:
            with conn:
                conn.settimeout(10)
                self.handle(conn, number)
        except (OSError, ConnectionError) as e:
            self.notes.append(e)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()


_SSL_REQUEST = 80877103


def tls_endpoint_asking_for_a_password(
    certs: Certificates, seen: dict[str, Any]
) -> Callable[[socket.socket, int], None]:
    """Accepts TLS, records the SNI name, asks for a cleartext password, records what comes next."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)

    def remember_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        seen["sni"] = name

    context.sni_callback = remember_sni

    def handle(conn: socket.socket, _: int) -> None:
        code, _body = _read_startup(conn)
        assert code == _SSL_REQUEST
        conn.sendall(b"S")
        with context.wrap_socket(conn, server_side=True) as tls:
            _read_startup(tls)
            tls.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            try:
                seen["next"] = _read_exact(tls, 1)
            except (ConnectionError, OSError, ssl.SSLError):
                seen["next"] = b""

    return handle


def starting_up_then_proxy(times: int, upstream_port: int) -> Callable[[socket.socket, int], None]:
    """Answers 57P03 'the database system is starting up' `times` times, then proxies."""

    def handle(conn: socket.socket, number: int) -> None:
        if number <= times:
            code, _ = _read_startup(conn)
            if code == _SSL_REQUEST:
                conn.sendall(b"N")
                _read_startup(conn)
            conn.sendall(_error("57P03", "the database system is starting up"))
            return
        proxy(upstream_port)(conn, number)

    return handle


def proxy(upstream_port: int) -> Callable[[socket.socket, int], None]:
    """Relays bytes both ways to a server on 127.0.0.1."""

    def handle(conn: socket.socket, _: int) -> None:
        with socket.create_connection(("127.0.0.1", upstream_port)) as upstream:
            done = threading.Event()

            def pipe(source: socket.socket, sink: socket.socket) -> None:
                try:
                    while data := source.recv(65536):
                        sink.sendall(data)
                except OSError:
                    pass
                done.set()

            threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
            pipe(conn, upstream)
            done.wait(5)

    return handle


@dataclass
class Pooler:
    port: int
    process: subprocess.Popen[bytes]
    base: Path


def start_pgbouncer(cluster: Cluster, database: str, *, scram: bool = False) -> Pooler | None:
    """PgBouncer in transaction mode in front of `cluster`, as Neon's -pooler hosts are;
    trusting its clients, or asking them for SCRAM (`scram`: user scram, PASSWORD)."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        return None
    base = Path(tempfile.mkdtemp(prefix="sqlplan-pooler-"))
    base.chmod(0o755)  # ours: mkdtemp just made it
    port = free_port()
    users = f'"scram" "{PASSWORD}"\n' if scram else '"trusty" ""\n'
    (base / "users.txt").write_text(users, encoding="utf-8")
    (base / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host=127.0.0.1 port={cluster.port} dbname={database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = {'scram-sha-256' if scram else 'trust'}\nauth_file = {base}/users.txt\npool_mode = transaction\n"
        f"logfile = {base}/pgbouncer.log\nignore_startup_parameters = extra_float_digits\n"
    )
    os.chown(base, cluster.owner.pw_uid, cluster.owner.pw_gid)
    extra: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        extra = {"user": cluster.owner.pw_uid, "group": cluster.owner.pw_gid, "extra_groups": []}
    process = subprocess.Popen([binary, str(base / "pgbouncer.ini")], cwd=base,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **extra)  # fmt: skip
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return Pooler(port, process, base)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"pgbouncer did not start; see {base}/pgbouncer.log")


def stop_pgbouncer(pooler: Pooler) -> None:
    pooler.process.terminate()
    pooler.process.wait(10)
    shutil.rmtree(pooler.base, ignore_errors=True)


class TurnCounter:
    """A loopback TCP proxy to a server's unix socket (or TCP address) that counts the client's
    turns: bursts of data from the client with a reply from the server between them (round
    trips, in effect).

    To a unix socket the protocol is plain, and a reply counts only once it holds a message
    the client waits for (ReadyForQuery, an authentication request): answers the client asked
    for with a Flush, and reads while it is still sending, are no turn of its own."""

    def __init__(self, upstream_socket: str | tuple[str, int]) -> None:
        self.upstream_socket = upstream_socket
        self.turns = 0
        self._client_spoke_last = False
        self._lock = threading.Lock()
        self._plain = isinstance(upstream_socket, str)
        self._pending = b""
        self._answered = False  # the server has said something
        self._open = 0  # connections being relayed
        self._done = threading.Condition(self._lock)
        self.log: list[tuple[str, int]] = []  # ("client" | "server", bytes) per read, for messages

    def settle(self, timeout: float = 10) -> int:
        """The turns once every relayed connection has ended (both sides closed): a count
        read while the last burst is still in flight would miss it."""
        with self._done:
            self._done.wait_for(lambda: self._open == 0, timeout)
            return self.turns

    def _awaited(self, data: bytes) -> bool:
        """Whether the server's data completes a message the client waits for."""
        found = False
        if not self._answered and data[:1] in (b"N", b"S") and len(data) == 1:
            self._answered = True  # the one-byte answer to an SSLRequest
            return True
        self._answered = True
        self._pending += data
        while len(self._pending) >= 5:
            size = 1 + struct.unpack("!i", self._pending[1:5])[0]
            if len(self._pending) < size:
                break
            found = found or self._pending[:1] in (b"Z", b"R", b"E")
            self._pending = self._pending[size:]
        return found

    def _relay(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self.log.append(("client" if from_client else "server", len(data)))
                    if from_client and not self._client_spoke_last:
                        self.turns += 1
                    if from_client:
                        self._client_spoke_last = True
                    elif not self._plain or self._awaited(data):
                        self._client_spoke_last = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def handle(self, conn: socket.socket, _: int) -> None:
        family = socket.AF_UNIX if isinstance(self.upstream_socket, str) else socket.AF_INET
        with self._lock:
            self._open += 1
        try:
            with socket.socket(family, socket.SOCK_STREAM) as upstream:
                upstream.connect(self.upstream_socket)
                back = threading.Thread(target=self._relay, args=(upstream, conn, False), daemon=True)  # fmt: skip
                back.start()
                self._relay(conn, upstream, True)
                back.join(10)
        finally:
            with self._done:
                self._open -= 1
                self._done.notify_all()


class Cutter:
    """A loopback proxy that breaks the connection at a chosen place: after `client_bytes`
    bytes from the client, or after `server_messages` whole protocol messages (or
    `server_bytes` bytes, for TLS) from the server. It counts what passed, for sweeps."""

    def __init__(
        self,
        upstream: str | tuple[str, int],
        *,
        client_bytes: int | None = None,
        server_messages: int | None = None,
        server_bytes: int | None = None,
        messages: bool = True,  # False for TLS: the server's bytes are not protocol messages
    ) -> None:
        self.upstream = upstream
        self.messages = messages and server_bytes is None
        self.client_limit = client_bytes
        self.message_limit = server_messages
        self.byte_limit = server_bytes
        self.client_sent = 0  # bytes the client sent (all of them when nothing is cut)
        self.server_messages = 0
        self.server_sent = 0
        self.login_messages = 0  # messages up to the first ReadyForQuery: the log-in's
        self.cut = False

    def _open(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
            return sock
        return socket.create_connection(self.upstream)

    def _close(self, *socks: socket.socket) -> None:
        self.cut = True
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _from_client(self, conn: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                if (
                    self.client_limit is not None
                    and self.client_sent + len(data) >= self.client_limit
                ):
                    upstream.sendall(data[: self.client_limit - self.client_sent])
                    self.client_sent = self.client_limit
                    self._close(conn, upstream)
                    return
                self.client_sent += len(data)
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _from_server(self, upstream: socket.socket, conn: socket.socket) -> None:
        pending = b""
        try:
            while data := upstream.recv(65536):
                if not self.messages:
                    if (
                        self.byte_limit is not None
                        and self.server_sent + len(data) >= self.byte_limit
                    ):
                        conn.sendall(data[: self.byte_limit - self.server_sent])
                        self.server_sent = self.byte_limit
                        self._close(conn, upstream)
                        return
                    self.server_sent += len(data)
                    conn.sendall(data)
                    continue
                pending += data
                while len(pending) >= 5:  # whole messages: type, length, body
                    size = 1 + struct.unpack("!i", pending[1:5])[0]
                    if len(pending) < size:
                        break
                    if (
                        self.message_limit is not None
                        and self.server_messages >= self.message_limit
                    ):
                        self._close(conn, upstream)
                        return
                    conn.sendall(pending[:size])
                    if pending[:1] == b"Z" and not self.login_messages:
                        self.login_messages = self.server_messages + 1
                    pending = pending[size:]
                    self.server_messages += 1
                    self.server_sent += size
        except OSError:
            pass
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)

    def handle(self, conn: socket.socket, _: int) -> None:
        with self._open() as upstream:
            back = threading.Thread(target=self._from_server, args=(upstream, conn), daemon=True)
            back.start()
            self._from_client(conn, upstream)
            back.join(10)
