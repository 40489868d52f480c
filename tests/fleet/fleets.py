"""What the fleet tests share: databases made on the session's embedded server, a targets file
naming them, their state read back, and proxies that stall or cut a target's connection."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from runner.connect.connection import connect
from runner.connect.target import Target, with_database

# A migration (once), a bulk load and a query with an expectation: the three plans.
MIGRATION = """\
sqlplan: 1
name: accounts_v1
once: true
steps:
  - batch: |
      CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, plan text NOT NULL);
"""
LOAD = """\
sqlplan: 1
name: load_accounts
steps:
  - name: the first accounts
    bulk_insert: INSERT INTO accounts (id, owner, plan) VALUES ($1, $2, $3)
    rows:
      - [1, ada, free]
      - [2, grace, pro]
      - [3, edsger, free]
"""
QUERY = """\
sqlplan: 1
name: count_accounts
steps:
  - query: SELECT count(*) AS n FROM accounts
    expect:
      rows:
        - {n: 3}
    row: "accounts: {n}"
"""


class Fleet:
    """`count` databases on the embedded server, dropped at the end."""

    def __init__(self, server_target: Target, count: int, prefix: str = "f") -> None:
        self.admin = server_target
        tag = uuid.uuid4().hex[:8]
        self.names = [f"{prefix}_{tag}_{i:03d}" for i in range(count)]
        con = connect(server_target)
        try:
            for name in self.names:
                con.run(f"CREATE DATABASE {name}")
        finally:
            con.close()

    def target(self, index: int) -> Target:
        return with_database(self.admin, self.names[index])

    def url(self, index: int) -> str:
        return self.target(index).url(mask_password=False)

    def lines(
        self, urls: dict[int, str] | None = None, labels: dict[int, str] | None = None
    ) -> str:
        """A targets file: `tNNN URL [labels]` per database (`urls`: some replaced)."""
        out = []
        for i in range(len(self.names)):
            url = (urls or {}).get(i, self.url(i))
            out.append(f"t{i:03d} {url} {(labels or {}).get(i, '')}".rstrip())
        return "\n".join(out) + "\n"

    def query(self, index: int, sql: str) -> list[list[object]]:
        con = connect(self.target(index))
        try:
            return list(con.run(sql) or [])
        finally:
            con.close()

    def accounts(self, index: int) -> list[object] | None:
        """The accounts table's ids, or None when there is no such table."""
        con = connect(self.target(index))
        try:
            if not con.run("SELECT to_regclass('accounts') IS NOT NULL")[0][0]:
                return None
            return [row[0] for row in con.run("SELECT id FROM accounts ORDER BY id")]
        finally:
            con.close()

    def drop(self) -> None:
        con = connect(self.admin)
        try:
            for name in self.names:
                con.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            con.close()


class Proxy:
    """A loopback TCP proxy to a unix socket that can be told to stall (swallow what the
    client sends after its log-in) or to cut the connection right after the client sent
    bytes holding `cut_after` for the `nth` time (what the server answers never arrives)."""

    def __init__(
        self, upstream: str, *, stall: bool = False, cut_after: bytes | None = None, nth: int = 1
    ) -> None:
        self.upstream, self.stall, self.cut_after, self.nth = upstream, stall, cut_after, nth
        self.seen = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = False
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.upstream)
        self.socks += [conn, up]
        logged_in = threading.Event()
        back = threading.Thread(target=self._back, args=(up, conn, logged_in), daemon=True)
        back.start()
        first = True
        try:
            while data := conn.recv(65536):
                cancel = first and data[4:8] == b"\x04\xd2\x16\x2e"
                first = False
                if self.stall and logged_in.is_set() and not cancel:
                    continue  # swallowed: the server never hears of it
                up.sendall(data)
                if self.cut_after is not None and self.cut_after in data:
                    self.seen += 1
                if self.cut_after is not None and self.cut_after in data and self.seen == self.nth:
                    time.sleep(0.3)  # the server runs it all, and its answer is dropped
                    self.cut = True
                    self._close(conn, up)
                    return
        except OSError:
            pass
        self._close(conn, up)

    def _back(self, up: socket.socket, conn: socket.socket, logged_in: threading.Event) -> None:
        try:
            while data := up.recv(65536):
                if self.cut:
                    return
                if b"Z\x00\x00\x00\x05" in data:
                    logged_in.set()
                conn.sendall(data)
        except OSError:
            pass

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.listener.close()
        self._close(*self.socks)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for sock in held:
            sock.close()


def refused_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_plans(directory: Path) -> list[str]:
    names = []
    for name, text in (
        ("1_migration.yaml", MIGRATION),
        ("2_load.yaml", LOAD),
        ("3_query.yaml", QUERY),
    ):
        (directory / name).write_text(text)
        names.append(name)
    return names
