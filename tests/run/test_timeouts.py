"""lock_timeout and statement_timeout, per plan, per step and from --lock-timeout, applied as
SET LOCAL inside each step's transaction (what a transaction-mode pooler keeps), and retry of
a step whose transaction failed on a lock timeout. The values are checked against what the
server itself makes of the same setting."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from conftest import Cli, Database, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import FakeServer, TurnCounter

from runner.connect.connection import connect


def _env(database: Database) -> dict[str, str]:
    return {"DATABASE_URL": database.url}


SHOW = (
    "  - query: SELECT current_setting('lock_timeout') AS l, "
    "current_setting('statement_timeout') AS s\n    row: '{l} {s}'\n"
)


def _server_reads(con: Any, name: str, value: str | None) -> str:
    """What the server shows for `name` once set to `value` (None: the session's own)."""
    con.run("BEGIN")
    try:
        if value is not None:
            con.run("SELECT set_config(:n, :v, true)", n=name, v=value)
        return str(con.run("SELECT current_setting(:n)", n=name)[0][0])
    finally:
        con.run("ROLLBACK")


def _server_takes(con: Any, name: str, value: str) -> bool:
    con.run("BEGIN")
    try:
        con.run("SELECT set_config(:n, :v, true)", n=name, v=value)
        return True
    except Exception:
        return False
    finally:
        con.run("ROLLBACK")


DURATIONS = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(min_value=0, max_value=5000),
        st.sampled_from(["", "us", "ms", "s", "min", "h"]),
    ),
)


@given(
    plan_level=st.none() | DURATIONS,
    cli_level=st.none() | st.integers(min_value=1, max_value=10**5).map(lambda n: f"{n}ms"),
    step_level=st.none() | DURATIONS,
)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_step_sees_the_setting_that_wins_and_the_next_step_the_session_s(
    cli: Cli, database: Database, con: Any, *, plan_level: Any, cli_level: Any, step_level: Any
) -> None:
    """The step's own value wins over --lock-timeout, which wins over the plan's; the server
    shows it as it shows the same value set by hand; a step that runs outside any transaction
    (VACUUM) gets none, and nothing leaks past the step's transaction."""
    head = "sqlplan: 1\nname: t\n"
    if plan_level is not None:
        head += f"lock_timeout: {json.dumps(plan_level)}\n"
    step = SHOW + (
        f"    lock_timeout: {json.dumps(step_level)}\n" if step_level is not None else ""
    )
    cli.write("plan.yaml", head + "steps:\n" + step + "  - batch: VACUUM\n" + SHOW)
    args = ("--lock-timeout", cli_level) if cli_level is not None else ()
    result = cli("run", "plan.yaml", *args, env=_env(database))
    given_values = [
        v if isinstance(v, str) else f"{v}ms" for v in (plan_level, step_level) if v is not None
    ]
    refused = [v for v in given_values if not _server_takes(con, "lock_timeout", v)]
    if refused:  # sqlplan refuses, before connecting, what the server would refuse
        assert result.exit_code == 3, result.stderr
        assert "is longer than PostgreSQL allows for a timeout" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    wins = next((v for v in (step_level, cli_level, plan_level) if v is not None), None)
    if isinstance(wins, int):
        wins = f"{wins}ms"
    session = _server_reads(con, "statement_timeout", None)
    later = plan_level if cli_level is None else cli_level
    later = f"{later}ms" if isinstance(later, int) else later
    assert result.stdout.splitlines() == [
        f"{_server_reads(con, 'lock_timeout', wins)} {session}",
        f"{_server_reads(con, 'lock_timeout', later)} {session}",
    ]


def test_settings_travel_with_pipelined_steps_in_one_round_trip(
    cli: Cli, database: Database, con: Any
) -> None:
    plan = (
        "sqlplan: 1\nname: t\nlock_timeout: 1500ms\nstatement_timeout: 1min\nsteps:\n"
        "  - batch: CREATE TABLE IF NOT EXISTS t (n int)\n"
        "  - execute: INSERT INTO t VALUES ($1)\n    params: [1]\n"
        "  - execute: INSERT INTO t VALUES ($1)\n    params: [2]\n    lock_timeout: 2s\n" + SHOW
    )
    cli.write("plan.yaml", plan)
    target = database.target
    outputs = []
    for flags in ([], ["--no-pipeline"]):
        con.run("DROP TABLE IF EXISTS t")
        counter = TurnCounter(target.socket_path)
        with FakeServer(counter.handle) as proxy:
            url = f"postgresql://{target.user}@127.0.0.1:{proxy.port}/{target.database}?sslmode=disable"
            result = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": url})
        assert result.exit_code == 0, result.stderr
        outputs.append((result.stdout, counter.settle()))
        assert con.run("SELECT n FROM t ORDER BY n") == [[1], [2]]
    (piped, piped_turns), (alone, alone_turns) = outputs
    assert piped == alone == "1500ms 1min\n"
    assert piped_turns < alone_turns  # the pipelined run still shares round trips
    print(f"\nround trips with settings: pipelined {piped_turns}, alone {alone_turns}")


def test_inside_the_plan_s_block_a_step_s_settings_end_with_the_step(
    cli: Cli, database: Database, con: Any
) -> None:
    plan = (
        "sqlplan: 1\nname: t\nsteps:\n  - batch: BEGIN\n"
        + SHOW.replace("row:", "lock_timeout: 3s\n    row:")
        + SHOW
        + "  - batch: COMMIT\n"
    )
    cli.write("plan.yaml", plan)
    for flags in ([], ["--no-pipeline"]):
        result = cli("run", "plan.yaml", *flags, env=_env(database))
        assert result.exit_code == 0, result.stderr
        session = _server_reads(con, "lock_timeout", None)
        assert result.stdout == f"3s {_server_reads(con, 'statement_timeout', None)}\n{session} 0\n"


def _holding(database: Database, seconds: float) -> threading.Thread:
    """A transaction that holds ACCESS EXCLUSIVE on `t` for `seconds`, from another session."""
    locked = threading.Event()

    def hold() -> None:
        other = connect(database.target)
        try:
            other.run("BEGIN")
            other.run("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            locked.set()
            time.sleep(seconds)
            other.run("COMMIT")
        finally:
            other.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


UPDATE = """\
sqlplan: 1
name: u
steps:
  - name: Touch
    execute: UPDATE t SET n = n + 1 WHERE n >= $1
    params: [0]
    lock_timeout: 100ms
    after: "{count} touched"
"""


def test_a_lock_timeout_fails_the_step_instead_of_queueing(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    cli.write("plan.yaml", UPDATE)
    holder = _holding(database, 1.5)
    started = time.monotonic()
    result = cli("run", "plan.yaml", "--format", "json", env=_env(database))
    took = time.monotonic() - started
    holder.join()
    assert result.exit_code == 1
    [plan] = json.loads(result.stdout)["plans"]
    assert plan["error"]["sqlstate"] == "55P03"
    assert plan["steps"][0]["status"] == "rolled back"
    assert "its transaction was rolled back: nothing it did was kept" in result.stderr
    assert took < 1.4  # it did not wait for the holder
    assert database.query("SELECT n FROM t") == [[1]]


def _retrying(cli: Cli, database: Database, hold: float, attempts: int) -> tuple[Result, float]:
    database.query("DROP TABLE IF EXISTS t; CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    cli.write(
        "plan.yaml",
        UPDATE + f"    retry: {{attempts: {attempts}, backoff: 150ms}}\n    before: touching\n",
    )
    holder = _holding(database, hold)
    started = time.monotonic()
    result = cli("run", "plan.yaml", "--format", "json", env=_env(database))
    took = time.monotonic() - started
    holder.join()
    return result, took


def test_a_retry_runs_the_step_again_until_the_lock_is_free(cli: Cli, database: Database) -> None:
    result, _ = _retrying(cli, database, hold=0.4, attempts=5)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["plans"][0]["output"] == ["touching", "1 touched"]  # `before` once
    retries = [line for line in result.stderr.splitlines() if line.endswith("[retry]")]
    assert retries, result.stderr
    assert retries[0] == (
        'plan.yaml:9:5: warning: step 1 "Touch" failed on lock_timeout [55P03] (attempt 1 of 5),'
        " and was rolled back; running it again in 0.15s [retry]"
    )
    assert document["plans"][0]["steps"][0]["attempts"] == len(retries) + 1
    assert database.query("SELECT n FROM t") == [[2]]  # once, whatever the attempts


def test_a_retry_gives_up_after_its_attempts(cli: Cli, database: Database) -> None:
    result, took = _retrying(cli, database, hold=3, attempts=3)
    assert result.exit_code == 1
    retries = [line for line in result.stderr.splitlines() if line.endswith("[retry]")]
    assert [r.split("(attempt ")[1][:6] for r in retries] == ["1 of 3", "2 of 3"]
    assert "running it again in 0.3s" in retries[1]  # the backoff doubles
    assert took >= 0.1 * 3 + 0.15 + 0.3
    assert json.loads(result.stdout)["plans"][0]["error"]["sqlstate"] == "55P03"


@pytest.mark.parametrize(
    ("step", "code"),
    [
        ("  - batch: CREATE INDEX CONCURRENTLY i ON t (n)\n    lock_timeout: 1s\n", "setting-outside-transaction"),
        ("  - batch: BEGIN; UPDATE t SET n = 1\n    statement_timeout: 1s\n", "setting-outside-transaction"),
        ("  - batch: BEGIN\n  - batch: UPDATE t SET n = 1\n    retry: {attempts: 2}\n", "retry-in-block"),
        ("  - batch: VACUUM t\n    retry: {attempts: 2}\n", "setting-outside-transaction"),
        ("  - batch: SELECT 1\n    lock_timeout: 5 sec\n", "value"),
    ],
)  # fmt: skip
def test_settings_where_they_cannot_hold_are_refused(cli: Cli, step: str, code: str) -> None:
    cli.write("plan.yaml", "sqlplan: 1\nname: t\nsteps:\n" + step)
    result = cli("check", "plan.yaml")
    assert result.exit_code == 1
    assert f"[{code}]" in result.stdout, result.stdout


def test_a_bad_lock_timeout_option_is_a_usage_error(cli: Cli) -> None:
    cli.write("plan.yaml", "sqlplan: 1\nname: t\nsteps:\n  - batch: SELECT 1\n")
    result = cli("run", "plan.yaml", "--lock-timeout", "5 seconds")
    assert result.exit_code == 2
    assert "'5 seconds' is not a duration" in result.stderr


@pytest.mark.parametrize(
    "value",
    ["2147483647", "2147483648", "2147483647ms", "2147483648ms", "2147483.647s", "2147483.648s",
     "35791min", "35792min", "596h", "597h", "24d", "25d", "0", "0.4ms", "1us"],
)  # fmt: skip
def test_the_longest_timeout_is_the_server_s(cli: Cli, con: Any, value: str) -> None:
    """At the edge of what PostgreSQL takes, sqlplan's check says what the server says."""
    written = value if not value.isdigit() else int(value)
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: t\nlock_timeout: {json.dumps(written)}\nsteps:\n  - batch: SELECT 1\n",
    )
    sent = value if not value.isdigit() else f"{value}ms"
    assert (cli("check", "plan.yaml").exit_code == 0) == _server_takes(con, "lock_timeout", sent)


def test_the_example_plan_runs(cli: Cli, database: Database) -> None:
    from conftest import ROOT

    example = ROOT / "plans" / "examples" / "timeouts.yaml"
    result = cli("run", str(example), env=_env(database))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Column added.\nlock_timeout 2s, statement_timeout 1min\n"


def test_a_lock_timeout_in_force_answers_the_lock_timeout_warning(cli: Cli) -> None:
    step = "  - batch: ALTER TABLE books ALTER COLUMN year TYPE bigint\n"
    cases = [
        ("", "", True),
        ("lock_timeout: 2s\n", "", False),
        ("", "    lock_timeout: 500ms\n", False),
        ("lock_timeout: 2s\n", "    lock_timeout: 0\n", True),  # the step turns it off
    ]
    for plan_level, step_level, warned in cases:
        cli.write("plan.yaml", f"sqlplan: 1\nname: t\n{plan_level}steps:\n{step}{step_level}")
        result = cli("check", "plan.yaml")
        assert ("[lock-timeout]" in result.stdout) == warned, (
            plan_level,
            step_level,
            result.stdout,
        )


def test_a_deferred_constraint_failing_at_sqlplan_s_commit_is_the_step_s_failure(
    cli: Cli, database: Database
) -> None:
    """A step that sqlplan puts in a transaction of its own (for its settings) meets a
    deferred constraint only at that COMMIT: reported as the step's failure, rolled back."""
    database.query(
        "CREATE TABLE parent (id int PRIMARY KEY);"
        "CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)"
    )
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: t\nlock_timeout: 1s\nsteps:\n"
        "  - execute: INSERT INTO child VALUES ($1)\n    params: [7]\n    after: inserted\n"
        "  - batch: SELECT 1\n",
    )
    violates = 'insert or update on table "child" violates foreign key constraint "child_p_fkey"'
    for flags, said in (
        ([], "step 1 failed: "),
        (["--no-pipeline"], "step 1: its COMMIT failed: "),
    ):
        result = cli("run", "plan.yaml", *flags, env=_env(database))
        assert (result.exit_code, result.stdout) == (1, "" if not flags else "inserted\n")
        assert result.stderr.startswith(f"plan.yaml:5:5: error: {said}{violates}"), result.stderr
        assert "  rolled back: step 1 (plan.yaml:5:5)\n  not run: step 2" in result.stderr
        assert database.query("SELECT count(*) FROM child") == [[0]]
