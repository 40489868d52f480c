"""Fault injection: a proxy breaks the connection at every place of a multi-step plan (after
the Nth byte from the client, after the Kth message from the server), pipelined and not, plain
and over TLS. After every cut, the report must match what the database really holds: a step
reported committed is there whole, one rolled back or not run is not there at all, one in doubt
is either (never half a load), and there is never a traceback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, Database, start_sqlplan, wait_for_statement
from servers import (
    ENCODED,
    Cluster,
    Cutter,
    FakeServer,
    cluster_owner,
    make_certificates,
    remove_cluster,
    require_debian_postgres,
    start_cluster,
)

from runner.connect.connection import connect

ROWS_COPY, ROWS_FLIGHT = 40, 30
PLAN = (
    "sqlplan: 1\nname: faults\nsteps:\n"
    "  - name: Mark\n    batch: |\n"
    "      INSERT INTO marks VALUES (1, 'a');\n"
    "      INSERT INTO marks VALUES (1, 'b');\n"
    "  - execute: INSERT INTO marks VALUES ($1, $2)\n    params: [2, x]\n"
    "  - name: Copy\n    bulk_insert: INSERT INTO loaded (step, n) VALUES ($1, $2)\n    rows:\n"
    + "".join(f"      - [3, {i}]\n" for i in range(ROWS_COPY))
    + "  - name: Flight\n"
    "    bulk_insert: INSERT INTO loaded (step, n) VALUES ($1, $2) ON CONFLICT DO NOTHING\n"
    "    rows:\n"
    + "".join(f"      - [4, {i}]\n" for i in range(ROWS_FLIGHT))
    + "  - query: SELECT count(*) AS n FROM marks\n    row: '{n} marks'\n"
    "  - execute: INSERT INTO marks VALUES ($1, $2)\n    params: [6, y]\n"
)
# What each step leaves behind when it commits: (table, rows). Step 5 reads.
EFFECTS = {1: ("marks", 2), 2: ("marks", 1), 3: ("loaded", ROWS_COPY), 4: ("loaded", ROWS_FLIGHT), 6: ("marks", 1)}  # fmt: skip
SETUP = (
    "DROP TABLE IF EXISTS marks, loaded; CREATE TABLE marks (step int, note text);"
    "CREATE TABLE loaded (step int, n int, PRIMARY KEY (step, n))"
)


@dataclass
class Tally:
    cuts: int = 0
    committed: int = 0
    in_doubt: int = 0


def _fates(stderr: str) -> dict[int, str]:
    fates: dict[int, str] = {}
    for line in stderr.split("what the server confirmed:\n", 1)[-1].splitlines():
        match = re.match(r"  (committed|rolled back|not run|in doubt): (.*)", line)
        if match:
            for number in re.findall(r"step (\d+)", match.group(2))[
                : None if match.group(1) != "in doubt" else 1
            ]:
                fates[int(number)] = match.group(1)
    return fates


def _check_one(cli: Cli, con: Any, url: str, flags: list[str], tally: Tally) -> None:
    con.run("TRUNCATE marks, loaded")
    result = cli(
        "run", "plan.yaml", *flags, env={"DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"}
    )
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert result.exit_code in (0, 1, 5, 6), text
    held = {
        step: con.run(f"SELECT count(*) FROM {table} WHERE step = {step}")[0][0]
        for step, (table, _) in EFFECTS.items()
    }
    if result.exit_code == 0:
        fates = dict.fromkeys(range(1, 7), "committed")
    elif result.exit_code == 5:
        fates = dict.fromkeys(range(1, 7), "not run")  # no connection: nothing was sent
    else:
        fates = _fates(result.stderr)
        assert set(fates) == set(range(1, 7)), result.stderr
        named = int(re.search(r"step (\d+)", result.stderr.splitlines()[0]).group(1))  # type: ignore[union-attr]
        unconfirmed = [n for n, f in fates.items() if f != "committed"]
        assert unconfirmed, text
        # the step whose answer was awaited: the first one not confirmed, or the one before
        # it, committed, whose last answer (ReadyForQuery) never came
        assert named in (min(unconfirmed), min(unconfirmed) - 1), result.stderr
        assert fates[named] != "committed" or "once it had committed" in result.stderr, text
    assert (result.exit_code == 6) == ("in doubt" in fates.values()), result.stderr
    for step, (_, rows) in EFFECTS.items():
        fate = fates[step]
        assert held[step] in (0, rows), f"step {step} is half there: {held[step]} of {rows}\n{text}"
        if fate == "committed":
            assert held[step] == rows, f"step {step} reported committed, not there\n{text}"
        elif fate in ("rolled back", "not run"):
            assert held[step] == 0, f"step {step} reported {fate}, but there\n{text}"
    tally.cuts += 1
    tally.committed += sum(f == "committed" for f in fates.values())
    tally.in_doubt += sum(f == "in doubt" for f in fates.values())


def _sweep(
    cli: Cli,
    con: Any,
    upstream: Any,
    url_for: Any,
    flags: list[str],
    *,
    messages: bool,
    samples: int,
) -> Tally:
    """Run once whole to learn the sizes, then cut at sampled client bytes and at every server
    message (plain) or sampled server bytes (TLS)."""
    cli.write("plan.yaml", PLAN)
    whole = Cutter(upstream, messages=messages)
    with FakeServer(whole.handle) as proxy:
        _check_one(cli, con, url_for(proxy.port), flags, Tally())
    assert not whole.cut
    tally = Tally()
    stride = max(1, whole.client_sent // samples)
    cuts: list[dict[str, int]] = [{"client_bytes": n} for n in range(1, whole.client_sent, stride)]
    if messages:
        cuts += [{"server_messages": k} for k in range(1, whole.server_messages)]
    else:
        stride = max(1, whole.server_sent // samples)
        cuts += [{"server_bytes": n} for n in range(1, whole.server_sent, stride)]
    for cut in cuts:
        cutter = Cutter(upstream, messages=messages, **cut)
        with FakeServer(cutter.handle) as proxy:
            try:
                _check_one(cli, con, url_for(proxy.port), flags, tally)
            except AssertionError as e:
                raise AssertionError(f"cut {cut}: {e}") from None
    return tally


@pytest.fixture
def plain(database: Database) -> Iterator[Any]:
    con = connect(database.target)
    con.run(SETUP)
    try:
        yield con
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--no-pipeline"]], ids=["pipelined", "alone"])
def test_every_cut_of_a_plain_connection_is_reported_truly(
    cli: Cli, database: Database, plain: Any, flags: list[str]
) -> None:
    target = database.target

    def url(port: int) -> str:
        return f"postgresql://{target.user}@127.0.0.1:{port}/{target.database}?sslmode=disable"

    tally = _sweep(cli, plain, target.socket_path, url, flags, messages=True, samples=40)
    print(f"\ncuts ({flags or 'pipelined'}, plain): {tally}")
    assert tally.cuts > 60
    assert tally.in_doubt > 0  # some cuts fall between a commit and its answer


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[Cluster]:
    require_debian_postgres()
    owner = cluster_owner()
    directory = Path(tempfile.mkdtemp(prefix="sqlplan-faults-certs-"))
    directory.chmod(0o755)
    certs = make_certificates(directory, owner)
    cluster = start_cluster(require_debian_postgres(), tls=certs)
    try:
        yield cluster
    finally:
        remove_cluster(cluster)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--no-pipeline"]], ids=["pipelined", "alone"])
def test_every_cut_of_a_tls_connection_is_reported_truly(
    cli: Cli, tls_cluster: Cluster, flags: list[str]
) -> None:
    admin = connect(tls_cluster.admin_target())
    try:
        admin.run(SETUP)
        admin.run("GRANT ALL ON marks, loaded TO scram")
        tally = _sweep(
            cli,
            admin,
            ("127.0.0.1", tls_cluster.port),
            lambda port: f"postgresql://scram:{ENCODED}@localhost:{port}/postgres?sslmode=require",
            flags,
            messages=False,
            samples=30,
        )
    finally:
        admin.close()
    print(f"\ncuts ({flags or 'pipelined'}, TLS): {tally}")
    assert tally.cuts > 40


# --- a server restart mid-plan, and signals during a large load ----------------------------


@pytest.fixture
def plain_cluster() -> Iterator[Cluster]:
    cluster = start_cluster(require_debian_postgres(), tls=None)
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


def test_a_server_restart_mid_plan_is_reported_with_its_reason(
    cli: Cli, plain_cluster: Cluster
) -> None:
    admin = connect(plain_cluster.admin_target())
    admin.run("CREATE TABLE r (step int)")
    admin.close()
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: restart\nsteps:\n"
        "  - execute: INSERT INTO r VALUES ($1)\n    params: [1]\n"
        "  - name: Wait\n    query: SELECT pg_sleep(20) AS z\n    row: '{z}'\n"
        "  - execute: INSERT INTO r VALUES ($1)\n    params: [3]\n",
    )
    url = f"postgresql://admin@/postgres?host={plain_cluster.base}&port={plain_cluster.port}"

    def restart() -> None:
        probe = connect(plain_cluster.admin_target())
        try:
            wait_for_statement(probe.run, "SELECT pg_sleep%")
        finally:
            probe.close()
        plain_cluster.run(
            plain_cluster.bin_dir / "pg_ctl", "-D", plain_cluster.base / "data", "-m", "fast",
            "-w", "restart", "-l", plain_cluster.base / "server.log",
        )  # fmt: skip

    restarter = threading.Thread(target=restart)
    restarter.start()
    result = cli("run", "plan.yaml", env={"DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"})
    restarter.join(60)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines() == [
        'plan.yaml:7:5: error: step 2 "Wait": the connection to the server was lost before it '
        "committed (FATAL: terminating connection due to administrator command [57P01])",
        "what the server confirmed:",
        "  committed: step 1 (plan.yaml:4:5)",
        '  rolled back: step 2 "Wait" (plan.yaml:7:5)',
        "  not run: step 3 (plan.yaml:9:5)",
    ]
    admin = connect(plain_cluster.admin_target())
    try:
        assert admin.run("SELECT step FROM r") == [[1]]
    finally:
        admin.close()


def _restart_during(cluster: Cluster, like: str, mode: str) -> threading.Thread:
    """Restart the cluster (`pg_ctl restart -m mode`) once a statement like `like` runs."""

    def restart() -> None:
        probe = connect(cluster.admin_target())
        try:
            wait_for_statement(probe.run, like, seconds=30)
        finally:
            probe.close()
        cluster.run(
            cluster.bin_dir / "pg_ctl", "-D", cluster.base / "data", "-m", mode,
            "-w", "restart", "-l", cluster.base / "server.log",
        )  # fmt: skip

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


def test_a_restart_during_a_copy_shows_what_the_server_said(
    cli: Cli, plain_cluster: Cluster, million_rows: Path
) -> None:
    """The server's FATAL arrives while sqlplan is still writing the COPY's data: the write
    fails (reset by peer), and the FATAL waiting in the receive buffer is what is shown."""
    admin = connect(plain_cluster.admin_target())
    admin.run("CREATE TABLE big (n int, label text, spare text)")
    admin.close()
    shutil.copy(million_rows / "big.csv", cli.cwd / "big.csv")
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: copy\nsteps:\n"
        "  - name: Million\n    bulk_insert: INSERT INTO big (n, label) VALUES ($1, $2)\n"
        "    rows_from:\n      file: big.csv\n      fields: [n, label]\n",
    )
    url = f"postgresql://admin@/postgres?host={plain_cluster.base}&port={plain_cluster.port}"
    restarter = _restart_during(plain_cluster, "COPY%", "fast")
    result = cli("run", "plan.yaml", env={"DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"})
    restarter.join(60)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[0] == (
        'plan.yaml:5:5: error: step 1 "Million": the connection to the server was lost before '
        "it committed (FATAL: terminating connection due to administrator command [57P01])"
    ), result.stderr
    admin = connect(plain_cluster.admin_target())
    try:
        assert admin.run("SELECT count(*) FROM big") == [[0]]
    finally:
        admin.close()


def test_an_immediate_shutdown_during_a_pipeline_shows_its_warning(
    cli: Cli, plain_cluster: Cluster
) -> None:
    admin = connect(plain_cluster.admin_target())
    admin.run("CREATE TABLE r (step int)")
    admin.close()
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: restart\nsteps:\n"
        "  - execute: INSERT INTO r VALUES ($1)\n    params: [1]\n"
        "  - name: Wait\n    query: SELECT pg_sleep(20) AS z\n    row: '{z}'\n",
    )
    url = f"postgresql://admin@/postgres?host={plain_cluster.base}&port={plain_cluster.port}"
    restarter = _restart_during(plain_cluster, "SELECT pg_sleep%", "immediate")
    result = cli("run", "plan.yaml", env={"DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "0"})
    restarter.join(60)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines() == [
        'plan.yaml:7:5: error: step 2 "Wait": the connection to the server was lost before it '
        "committed (WARNING: terminating connection due to immediate shutdown command [57P01])",
        "what the server confirmed:",
        "  committed: step 1 (plan.yaml:4:5)",
        '  rolled back: step 2 "Wait" (plan.yaml:7:5)',
    ]
    admin = connect(plain_cluster.admin_target())
    try:
        assert admin.run("SELECT step FROM r") == [[1]]
    finally:
        admin.close()


MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_rows() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sqlplan-million-"))
    directory.chmod(0o755)
    with open(directory / "big.csv", "w") as f:
        f.write("n,label,spare\n")
        f.writelines(f"{i},row {i},x\n" for i in range(MILLION))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
@pytest.mark.parametrize("whole", [False, True], ids=["parsed", "sent-whole"])
def test_a_signal_during_a_million_row_load_rolls_it_back_and_says_so(
    database: Database, million_rows: Path, signum: int, code: int, whole: bool
) -> None:
    con = connect(database.target)
    con.run("CREATE TABLE big (n int, label text, spare text)")
    fields = "" if whole else "\n      fields: [n, label]"
    columns = "n, label, spare) VALUES ($1, $2, $3)" if whole else "n, label) VALUES ($1, $2)"
    plan = million_rows / f"load-{signum}-{whole}.yaml"
    plan.write_text(
        "sqlplan: 1\nname: load\nsteps:\n"
        "  - execute: INSERT INTO big (n) VALUES ($1)\n    params: [-1]\n"
        f"  - name: Million\n    bulk_insert: INSERT INTO big ({columns}\n"
        f"    rows_from:\n      file: big.csv{fields}\n"
    )
    process = start_sqlplan("run", str(plan), env={"DATABASE_URL": database.url})
    wait_for_statement(con.run, "COPY%", seconds=30)
    time.sleep(0.1)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    try:
        assert process.returncode == code, err
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        lines = err.splitlines()
        assert lines[1] == (
            f'{plan}:7:5: error: interrupted ({name}) at step 2 "Million": the running statement '
            "was cancelled and what it had not committed rolled back"
        )
        assert lines[-3:] == [
            "what the server confirmed:",
            f"  committed: step 1 ({plan}:4:5)",
            f'  rolled back: step 2 "Million" ({plan}:7:5)',
        ]
        assert con.run("SELECT count(*) FROM big") == [[1]]  # step 1 only: no partial load
    finally:
        con.close()


def test_a_signal_before_connecting_exits_at_once(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        # a server that accepts and never answers: sqlplan waits in connect
        with FakeServer(lambda conn, _: time.sleep(10)) as silent:
            env = {
                **os.environ,
                "DATABASE_URL": f"postgresql://u@127.0.0.1:{silent.port}/d?sslmode=disable",
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "runner", "run", str(plan)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and silent.connections == 0:
                time.sleep(0.02)
            process.send_signal(signum)
            _, err = process.communicate(timeout=20)
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        assert process.returncode == code
        assert err.splitlines()[-1] == f"sqlplan: interrupted ({name}); no step had started"
        assert "Aborted!" not in err


def test_a_second_signal_stops_at_once_and_says_what_is_in_doubt(database: Database) -> None:
    """The cancel request never reaches the server (the proxy swallows it): the first Ctrl-C
    waits for an answer that does not come; the second stops at once. The INSERT may still
    commit on the server after sqlplan is gone, so it is in doubt."""
    con = connect(database.target)
    con.run("CREATE TABLE slow (n int)")
    relay = Cutter(database.target.socket_path)

    def handle(conn: Any, number: int) -> None:
        if number == 1:
            relay.handle(conn, number)
        else:
            conn.recv(16)  # a CancelRequest, dropped

    plan = Path(tempfile.mkdtemp()) / "slow.yaml"
    plan.write_text(
        "sqlplan: 1\nname: slow\nsteps:\n"
        "  - execute: INSERT INTO slow SELECT $1::int FROM pg_sleep(3)\n    params: [1]\n"
    )
    try:
        with FakeServer(handle) as proxy:
            url = f"postgresql://{database.target.user}@127.0.0.1:{proxy.port}/{database.target.database}?sslmode=disable"
            process = start_sqlplan("run", str(plan), env={"DATABASE_URL": url})
            wait_for_statement(con.run, "INSERT INTO slow%")
            process.send_signal(signal.SIGINT)
            time.sleep(0.3)
            assert process.poll() is None  # the first one waits for the server's answer
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
            assert time.monotonic() - started < 2  # at once, not after the 3 s statement
        assert process.returncode == 130
        lines = err.splitlines()
        assert lines[1] == (
            f"{plan}:4:5: error: interrupted (Ctrl-C) at step 1: stopped at once, without the "
            "server's answer"
        )
        assert lines[2] == "what the server confirmed:"
        assert lines[3].startswith(f"  in doubt: step 1 ({plan}:4:5): its commit was sent")
        assert lines[3].endswith("e.g. SELECT count(*) FROM slow")
        # the server did finish the statement, and committed it at the Sync it had received
        deadline = time.monotonic() + 10
        while con.run("SELECT count(*) FROM slow")[0][0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert con.run("SELECT count(*) FROM slow") == [[1]]
    finally:
        con.close()
