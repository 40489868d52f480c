"""Every wait is bounded: a network that silently drops every packet (a real black hole: a
network namespace whose link goes down, on this machine only), a server that trickles its
answers, a SYN nobody answers, and a cancel request into the void. sqlplan runs as a process
inside the namespace; the database is reached through a relay on the namespace's link."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, wait_for_statement
from servers import (
    Cluster,
    Cutter,
    FakeServer,
    remove_cluster,
    require_debian_postgres,
    start_cluster,
)

from runner.connect.connection import connect
from runner.connect.sockets import (
    KEEPALIVES_COUNT,
    KEEPALIVES_IDLE,
    KEEPALIVES_INTERVAL,
    TCP_USER_TIMEOUT_MS,
)
from runner.connect.target import parse_target

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out


@dataclass
class Namespace:
    name: str
    host_link: str
    host_address: str  # the relay listens here; sqlplan, inside, connects to it

    def down(self) -> None:
        """The link goes down: from now on every packet either way is dropped, silently."""
        subprocess.run(["ip", "link", "set", self.host_link, "down"], check=True)


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"sqlplan-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    return True


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if not _namespaces_work():
        message = "network namespaces need root and iproute2 (as .ci/run provides)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:6]
    name, host_link, inner_link = f"sqlplan-{tag}", f"sph{tag}", f"spn{tag}"
    octet = int(tag[:2], 16) % 250 + 1
    host_address, inner_address = f"10.231.{octet}.1", f"10.231.{octet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", inner_link)
        ip("link", "set", inner_link, "netns", name)
        ip("addr", "add", f"{host_address}/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        ip("-n", name, "addr", "add", f"{inner_address}/30", "dev", inner_link)
        ip("-n", name, "link", "set", inner_link, "up")
        ip("-n", name, "link", "set", "lo", "up")
        # a veth pair carries nothing until both ends have a carrier
        deadline = time.monotonic() + 10
        while Path(f"/sys/class/net/{host_link}/carrier").read_text().strip() != "1":
            assert time.monotonic() < deadline, "the link never came up"
            time.sleep(0.05)
        yield Namespace(name, host_link, host_address)
    finally:
        subprocess.run(["ip", "link", "delete", host_link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bounded = start_cluster(require_debian_postgres(), tls=None)
    admin = connect(bounded.admin_target())
    try:
        admin.run("CREATE TABLE marks (n int)")
        admin.run("GRANT ALL ON marks TO trusty")
    finally:
        admin.close()
    yield bounded
    remove_cluster(bounded)


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[Any]:
    """The cluster's admin connection, with `marks` empty; afterwards, what a test's vanished
    client left running on the server is ended."""
    con = connect(cluster.admin_target())
    con.run("TRUNCATE marks")
    try:
        yield con
    finally:
        con.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'trusty'")
        con.close()


def _relay(cluster: Cluster) -> Any:
    cutter = Cutter(("127.0.0.1", cluster.port))

    def handle(conn: socket.socket, number: int) -> None:
        conn.settimeout(None)
        cutter.handle(conn, number)

    return handle


def _inside(namespace: Namespace, plan: Path, url: str, *args: str) -> subprocess.Popen[str]:
    """`sqlplan run PLAN` as a process inside the namespace."""
    env = {**os.environ, "DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace.name, sys.executable, "-m", "runner", "run", str(plan), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


SLOW_PLAN = (
    "sqlplan: 1\nname: slow\nsteps:\n"
    # a query ends its round trip: step 1's answer is in before step 2 is sent
    "  - query: INSERT INTO marks VALUES ($1) RETURNING n\n    params: [1]\n    row: 'marked {n}'\n"
    "  - name: Wait\n    execute: INSERT INTO marks SELECT $1::int FROM pg_sleep(30)\n"
    "    params: [2]\n"
)


@pytest.mark.parametrize(
    "bounds",
    ["tcp_user_timeout=2000&keepalives_idle=1&keepalives_interval=1&keepalives_count=2",
     "keepalives_idle=1&keepalives_interval=1&keepalives_count=2&tcp_user_timeout=0"],
    ids=["user-timeout", "keepalives"],
)  # fmt: skip
def test_a_link_that_goes_silent_ends_the_run_within_its_bounds(
    namespace: Namespace, cluster: Cluster, admin: Any, tmp_path: Path, bounds: str
) -> None:
    """The server is busy with step 2 when the network goes silent: the keepalive probes (or
    the user timeout) find the peer gone within seconds, and the report says what is known:
    step 1 committed, step 2 in doubt (the server may still finish it)."""
    plan = tmp_path / "slow.yaml"
    plan.write_text(SLOW_PLAN)
    with FakeServer(_relay(cluster), host=namespace.host_address) as relay:
        url = f"postgresql://trusty@{namespace.host_address}:{relay.port}/postgres?sslmode=disable&{bounds}"
        process = _inside(namespace, plan, url)
        wait_for_statement(admin.run, "INSERT INTO marks SELECT%")
        assert process.poll() is None, process.communicate()
        # Let the server's (delayed) ACK of step 2 arrive: with data unacknowledged, the
        # kernel retransmits instead of probing, and only tcp_user_timeout bounds that (which
        # is why sqlplan sets it by default; the keepalives case turns it off).
        time.sleep(0.5)
        namespace.down()
        started = time.monotonic()
        _, err = process.communicate(timeout=60)
        elapsed = time.monotonic() - started
    assert elapsed < 10, (elapsed, err)
    assert process.returncode == 6, err
    lines = err.splitlines()
    assert lines[1].startswith(f'{plan}:8:5: error: step 2 "Wait": the connection to the server was lost after its commit was sent'), err  # fmt: skip
    assert lines[2:4] == ["what the server confirmed:", f"  committed: step 1 ({plan}:4:5)"]
    assert lines[4].startswith(f'  in doubt: step 2 "Wait" ({plan}:8:5)')


def test_a_cancel_into_a_silent_network_waits_a_bounded_time(
    namespace: Namespace, cluster: Cluster, admin: Any, tmp_path: Path
) -> None:
    """Keepalives off and the system's retransmission timeout (minutes): the first Ctrl-C's
    cancel request cannot reach the server, and its answer never comes; the run stops after
    the cancel's wait, reporting the step in doubt."""
    plan = tmp_path / "slow.yaml"
    plan.write_text(SLOW_PLAN)
    with FakeServer(_relay(cluster), host=namespace.host_address) as relay:
        url = f"postgresql://trusty@{namespace.host_address}:{relay.port}/postgres?sslmode=disable&keepalives=0&tcp_user_timeout=0"
        process = _inside(namespace, plan, url)
        wait_for_statement(admin.run, "INSERT INTO marks SELECT%")
        assert process.poll() is None, process.communicate()
        namespace.down()
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        elapsed = time.monotonic() - started
    assert 9 < elapsed < 16, (elapsed, err)
    assert process.returncode == 130, err
    lines = err.splitlines()
    assert lines[1] == (
        f'{plan}:8:5: error: interrupted (Ctrl-C) at step 2 "Wait": no answer came within '
        "10 s of the cancel request; stopped without it"
    ), err
    assert lines[3] == f"  committed: step 1 ({plan}:4:5)"
    assert lines[4].startswith(f'  in doubt: step 2 "Wait" ({plan}:8:5)')


def test_an_unanswered_syn_takes_the_connect_timeout_once(
    namespace: Namespace, tmp_path: Path
) -> None:
    """The link is down before the run starts: the SYN goes nowhere. The attempt opened at
    start is the first attempt, and it takes connect_timeout, not twice that."""
    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    namespace.down()
    url = f"postgresql://trusty@{namespace.host_address}:5432/postgres?sslmode=disable&connect_timeout=2"
    started = time.monotonic()
    process = _inside(namespace, plan, url)
    _, err = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 5, err
    assert "timed out" in err, err
    assert elapsed < 3.5, (elapsed, err)


def _trickling(conn: socket.socket, _: int) -> None:
    """A server that answers the log-in one message every 3 s, forever."""
    conn.settimeout(None)
    conn.recv(4096)  # the StartupMessage
    conn.sendall(b"R\x00\x00\x00\x08\x00\x00\x00\x00")  # AuthenticationOk
    for index in range(100):
        time.sleep(3)
        name = f"p{index}".encode()
        body = name + b"\x00v\x00"
        conn.sendall(b"S" + (len(body) + 4).to_bytes(4, "big") + body)  # ParameterStatus


@pytest.mark.parametrize("how", ["url", "flag"])
def test_connect_timeout_bounds_the_whole_log_in(tmp_path: Path, how: str) -> None:
    """Each message comes within the timeout, the whole log-in never does: the attempt ends
    at the timeout, as libpq's connect_timeout ends it (psql: 5.1 s)."""
    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    with FakeServer(_trickling) as slow:
        url = f"postgresql://u@127.0.0.1:{slow.port}/d?sslmode=disable"
        args = ["--connect-timeout", "5"] if how == "flag" else []
        if how == "url":
            url += "&connect_timeout=5"
        env = {**os.environ, "DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"}
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(plan), *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 5, result.stderr
    assert "timed out" in result.stderr
    assert 4.5 < elapsed < 7, (elapsed, result.stderr)


def test_the_socket_carries_the_keepalives(cluster: Cluster) -> None:
    """sqlplan's defaults (found dead within about a minute), and the URL's values, are on
    the connection's socket as the kernel reports them."""
    base = f"postgresql://trusty@127.0.0.1:{cluster.port}/postgres?sslmode=disable"
    cases = {
        base: (1, KEEPALIVES_IDLE, KEEPALIVES_INTERVAL, KEEPALIVES_COUNT, TCP_USER_TIMEOUT_MS),
        base + "&keepalives_idle=7&keepalives_interval=3&keepalives_count=4&tcp_user_timeout=9000": (1, 7, 3, 4, 9000),
        base + "&keepalives=0": (0, None, None, None, TCP_USER_TIMEOUT_MS),
    }  # fmt: skip
    for url, (on, idle, interval, count, user_timeout) in cases.items():
        con = connect(parse_target(url))
        try:
            sock = con._usock
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == on
            if on:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == interval
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == count
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == user_timeout
            assert con.run("SELECT 1") == [[1]]
        finally:
            con.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [("keepalives_idle=soon", "invalid keepalives_idle 'soon' (seconds, a whole number)"),
     ("tcp_user_timeout=-1", "invalid tcp_user_timeout '-1' (milliseconds, a whole number)"),
     ("keepalives_count=1.5", "invalid keepalives_count '1.5' (probes, a whole number)")],
)  # fmt: skip
def test_a_bad_keepalive_value_is_a_configuration_error(
    tmp_path: Path, query: str, message: str
) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    env = {**os.environ, "DATABASE_URL": f"postgresql://u@127.0.0.1:9/d?{query}"}
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(plan)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines()[-1] == f"sqlplan: error: DATABASE_URL: {message}"
