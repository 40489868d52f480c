"""One accounting of answers, held by generated plans (ledger_plans.py) against a real server.

1. Pipelined and one step at a time, a plan's run is the same: exit code, output, errors, the
   rows it leaves, and the settings each step sees.
2. Cut after every message the server sends (plain), or at sampled bytes (TLS), or through
   PgBouncer in transaction mode: every claim of the report holds in the database. A step
   reported committed left all its rows, one rolled back or not run left none, one in doubt
   left all or none, and the report is in doubt exactly when exit code 6 says so.

This is the fast profile; bench/ledger.py runs the long one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import Cli, Database, Result
from hypothesis import HealthCheck, given, settings
from ledger_plans import GRANTS, RESET, SETUP, GeneratedPlan, plans
from servers import (
    ENCODED,
    Cluster,
    Cutter,
    FakeServer,
    start_pgbouncer,
    stop_pgbouncer,
)

from runner.connect.connection import connect

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out

_FAST = settings(
    max_examples=6,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

_LEDGER = re.compile(r"  (committed|rolled back|not run|in doubt): (.*)")


def fates(stderr: str) -> dict[int, str]:
    """Each step's fate as the report's "what the server confirmed" gives it."""
    found: dict[int, str] = {}
    if "what the server confirmed:\n" not in stderr:
        return found
    for line in stderr.split("what the server confirmed:\n", 1)[1].splitlines():
        match = _LEDGER.match(line)
        if match is None:
            continue
        numbers = re.findall(r"step (\d+)", match.group(2))
        for number in numbers[: None if match.group(1) != "in doubt" else 1]:
            found[int(number)] = match.group(1)
    return found


def held(con: Any) -> dict[int, int]:
    rows = con.run(
        "SELECT step, count(*) FROM (SELECT step FROM t UNION ALL SELECT step FROM u) a GROUP BY step"
    )
    return {int(step): int(n) for step, n in rows}


@dataclass
class Tally:
    runs: int = 0
    claims: int = 0
    in_doubt: int = 0
    by_exit: dict[int, int] = field(default_factory=dict)


def check_claims(plan: GeneratedPlan, result: Result, rows: dict[int, int], tally: Tally) -> None:
    """Every claim the run made holds in the database."""
    exit_code, stderr = result.exit_code, result.stderr
    text = result.stdout + stderr
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    assert exit_code in (0, 1, 5, 6), text
    tally.runs += 1
    tally.by_exit[exit_code] = tally.by_exit.get(exit_code, 0) + 1
    if exit_code == 5:  # no connection: nothing was sent
        assert not rows, text
        return
    if exit_code == 0:
        for step, kept in plan.kept.items():
            assert rows.get(step, 0) == kept, (
                f"step {step}: {rows.get(step, 0)} rows, not {kept}\n{text}"
            )
        tally.claims += len(plan.kept)
        return
    claimed = fates(stderr)
    assert set(claimed) == set(plan.rows), f"the report misses steps\n{text}"
    assert (exit_code == 6) == ("in doubt" in claimed.values()), text
    for step, fate in claimed.items():
        there, whole = rows.get(step, 0), plan.rows[step]
        if fate == "committed":
            assert there == whole, (
                f"step {step} reported committed, {there} of {whole} rows there\n{plan.text}\n{text}"
            )
        elif fate in ("rolled back", "not run"):
            assert there == 0, (
                f"step {step} reported {fate}, {there} rows there\n{plan.text}\n{text}"
            )
        else:
            assert there in (0, whole), f"step {step} in doubt, half there\n{plan.text}\n{text}"
            tally.in_doubt += 1
        tally.claims += 1


# --- 1. pipelined and one step at a time: the same run ------------------------------------


@pytest.fixture
def tables(database: Database) -> Iterator[Any]:
    con = connect(database.target)
    con.run(SETUP)
    try:
        yield con
    finally:
        con.close()


@dataclass(frozen=True)
class Seen:
    exit_code: int
    stdout: str
    stderr: str
    rows: tuple[tuple[str, int, int], ...]


def run_seen(cli: Cli, con: Any, url: str, plan: GeneratedPlan, *flags: str) -> Seen:
    con.run(RESET)
    cli.write("plan.yaml", plan.text)
    result = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": url})
    rows = con.run(
        "SELECT 't', step, k FROM t UNION ALL SELECT 'u', step, k FROM u ORDER BY 1, 2, 3"
    )
    return Seen(result.exit_code, result.stdout, result.stderr, tuple(tuple(r) for r in rows))


def same_either_way(cli: Cli, con: Any, url: str, plan: GeneratedPlan, *flags: str) -> Seen:
    pipelined = run_seen(cli, con, url, plan, *flags)
    alone = run_seen(cli, con, url, plan, *flags, "--no-pipeline")
    assert "Traceback" not in pipelined.stderr + alone.stderr
    assert "internal error" not in pipelined.stderr + alone.stderr, pipelined.stderr
    assert pipelined == alone, f"{plan.text}\n--- pipelined:\n{pipelined}\n--- alone:\n{alone}"
    return pipelined


def test_a_plan_runs_the_same_pipelined_and_one_step_at_a_time(
    cli: Cli, database: Database, tables: Any
) -> None:
    @_FAST
    @given(plan=plans(), flags=st_flags())
    def check(plan: GeneratedPlan, flags: tuple[str, ...]) -> None:
        seen = same_either_way(cli, tables, database.url, plan, *flags)
        if seen.exit_code == 0:
            assert held(tables) == {k: v for k, v in plan.kept.items() if v}

    check()


def st_flags() -> Any:
    from hypothesis import strategies as st

    return st.sampled_from([(), ("--lock-timeout", "700ms"), ("--statement-timeout", "3s")])


# --- 2. every cut of the connection: every claim holds -------------------------------------


def sweep(
    cli: Cli,
    con: Any,
    plan: GeneratedPlan,
    upstream: str | tuple[str, int],
    url_for: Callable[[int], str],
    *,
    messages: bool,
    samples: int | None = None,
    most_cuts: int | None = None,
    tally: Tally,
) -> None:
    """Run whole to learn how much the server says, then cut after each message (or at
    sampled bytes) and hold the report to the database."""
    cli.write("plan.yaml", plan.text)
    env = {"SQLPLAN_CONNECT_RETRIES": "0"}
    con.run(RESET)
    whole = Cutter(upstream, messages=messages)
    with FakeServer(whole.handle) as proxy:
        result = cli("run", "plan.yaml", env={**env, "DATABASE_URL": url_for(proxy.port)})
    check_claims(plan, result, held(con), tally)
    if messages:
        # one cut inside the log-in (nothing sent: exit 5), then every one after it
        first = max(1, whole.login_messages - 1)
        cuts = [
            {"server_messages": k} for k in _bounded(range(first, whole.server_messages), most_cuts)
        ]
    else:
        # the log-in's bytes: those a plan of one empty step costs, less its step's answer
        cli.write("probe.yaml", "sqlplan: 1\nname: probe\nsteps:\n  - batch: SELECT\n")
        probe = Cutter(upstream, messages=False)
        with FakeServer(probe.handle) as proxy:
            cli("run", "probe.yaml", env={**env, "DATABASE_URL": url_for(proxy.port)})
        first = max(1, probe.server_sent - 200)
        stride = max(1, (whole.server_sent - first) // (samples or 40))
        cuts = [{"server_bytes": k} for k in range(first, whole.server_sent, stride)]
    for cut in cuts:
        con.run(RESET)
        cutter = Cutter(upstream, messages=messages, **cut)
        with FakeServer(cutter.handle) as proxy:
            result = cli("run", "plan.yaml", env={**env, "DATABASE_URL": url_for(proxy.port)})
        try:
            check_claims(plan, result, held(con), tally)
        except AssertionError as e:
            raise AssertionError(f"cut {cut}: {e}") from None


# At most this many cuts per plan in the tests: a generated plan with a long load answers
# thousands of messages, and each cut is a run (bench/ledger.py cuts at every one).
MOST_CUTS = 160


def _bounded(places: range, most: int | None) -> list[int]:
    """Every place when there are few (or no bound); else every one of the first and last
    fifty (the log-in, the first steps, the last commits) and an even spread between."""
    if most is None or len(places) <= most:
        return list(places)
    head, tail = list(places[:50]), list(places[-50:])
    middle = places[50:-50]
    stride = max(1, len(middle) // max(1, most - 100))
    return head + list(middle[::stride]) + tail


def test_every_cut_of_a_plain_connection_is_reported_truly(
    cli: Cli, database: Database, tables: Any
) -> None:
    target = database.target
    tally = Tally()

    def url(port: int) -> str:
        return f"postgresql://{target.user}@127.0.0.1:{port}/{target.database}?sslmode=disable"

    @_FAST
    @given(plan=plans(max_segments=4))
    def check(plan: GeneratedPlan) -> None:
        sweep(
            cli, tables, plan, target.socket_path, url, messages=True, most_cuts=MOST_CUTS,
            tally=tally,
        )  # fmt: skip

    check()
    print(f"\nplain: {tally}")
    assert tally.in_doubt > 0  # some cuts fall between a commit and its answer


def _tables_on(cluster: Cluster) -> Iterator[Any]:
    """A connection to a Debian cluster whose tables the generated plans use, granted to the
    SCRAM user the runs log in as."""
    con = connect(cluster.admin_target())
    con.run(SETUP)
    con.run(GRANTS.format(user="scram"))
    try:
        yield con
    finally:
        con.close()


@pytest.fixture
def tls_tables(ssl_server: Cluster) -> Iterator[Any]:
    yield from _tables_on(ssl_server)


def test_every_cut_of_a_tls_connection_is_reported_truly(
    cli: Cli, ssl_server: Cluster, tls_tables: Any
) -> None:
    tally = Tally()

    def url(port: int) -> str:
        return f"postgresql://scram:{ENCODED}@localhost:{port}/postgres?sslmode=require"

    @settings(_FAST, max_examples=2)
    @given(plan=plans(max_segments=3))
    def check(plan: GeneratedPlan) -> None:
        upstream = ("127.0.0.1", ssl_server.port)
        sweep(cli, tls_tables, plan, upstream, url, messages=False, samples=30, tally=tally)

    check()
    print(f"\nTLS: {tally}")


@pytest.fixture
def pooled_tables(plain_cluster: Cluster) -> Iterator[Any]:
    yield from _tables_on(plain_cluster)


def test_every_cut_through_pgbouncer_is_reported_truly(
    cli: Cli, plain_cluster: Cluster, pooled_tables: Any
) -> None:
    pooler = start_pgbouncer(plain_cluster, "postgres", scram=True)
    if pooler is None:
        pytest.skip("pgbouncer is not installed")
    tally = Tally()

    def url(port: int) -> str:
        return f"postgresql://scram:{ENCODED}@127.0.0.1:{port}/postgres?sslmode=disable"

    try:

        @settings(_FAST, max_examples=2)
        @given(plan=plans(max_segments=3))
        def check(plan: GeneratedPlan) -> None:
            upstream = ("127.0.0.1", pooler.port)
            sweep(
                cli,
                pooled_tables,
                plan,
                upstream,
                url,
                messages=True,
                most_cuts=MOST_CUTS,
                tally=tally,
            )

        check()
    finally:
        stop_pgbouncer(pooler)
    print(f"\nPgBouncer: {tally}")
