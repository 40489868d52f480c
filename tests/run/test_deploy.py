"""Deploys at the protocol floor: a `once` plan's claim travels with its first steps, its
record and end with its last ones, so applying a plan whose steps share a round trip costs one
round trip after connecting, and finding it applied one too; several plans' history and
`status` are one query. Held against the whole path (history.claim(), which a run takes where
sqlplan.history is missing) and the one-step-at-a-time path over generated plans, and against
concurrent runs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import Cli, Database, start_sqlplan, wait_for_statement
from hypothesis import HealthCheck, given, settings
from ledger_plans import RESET, SETUP, GeneratedPlan, plans
from servers import FakeServer, TurnCounter

from runner.connect.connection import connect

CONNECT, TERMINATE = 1, 1  # trust over a plain socket: the startup message; Terminate

MIGRATION = """\
sqlplan: 1
name: {name}
once: true
steps:
  - batch: |
      CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
      CREATE INDEX {name}_name ON {name} (name);
"""


def _turns(cli: Cli, database: Database, *args: str) -> tuple[int, Any]:
    """The client's round trips for one command, login and Terminate included."""
    target = database.target
    counter = TurnCounter(target.socket_path)
    with FakeServer(counter.handle) as proxy:
        url = f"postgresql://{target.user}@127.0.0.1:{proxy.port}/{target.database}?sslmode=disable"
        result = cli(*args, env={"DATABASE_URL": url})
    return counter.settle(), result


def _history(database: Database) -> list[list[Any]]:
    return database.query(
        "SELECT plan, outcome, finished_at IS NOT NULL, duration IS NOT NULL "
        "FROM sqlplan.history ORDER BY id"
    )


@pytest.fixture
def history_table(cli: Cli, database: Database) -> None:
    """sqlplan.history made by an earlier deploy, as on any database after the first."""
    cli.write("first.yaml", MIGRATION.format(name="first"))
    assert cli("run", "first.yaml", env={"DATABASE_URL": database.url}).exit_code == 0


def test_a_migration_is_applied_in_one_turn_and_found_applied_in_one(
    cli: Cli, database: Database, history_table: None
) -> None:
    cli.write("items.yaml", MIGRATION.format(name="items"))
    turns, applied = _turns(cli, database, "run", "items.yaml")
    assert applied.exit_code == 0, applied.stderr
    assert turns == CONNECT + 1 + TERMINATE
    assert database.query("SELECT to_regclass('items_name') IS NOT NULL") == [[True]]
    assert _history(database)[-1] == ["items", "succeeded", True, True]
    # the claim's session lock was let go in the same flight: nothing of it is left
    assert database.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [[0]]

    turns, again = _turns(cli, database, "run", "items.yaml")
    assert again.exit_code == 0, again.stderr
    assert turns == CONNECT + 1 + TERMINATE
    assert re.search(r"plan items \(items.yaml\): skipped, applied \d{4}-", again.stderr)
    assert [row[1] for row in _history(database)] == ["succeeded", "succeeded"]


def test_steps_that_share_a_round_trip_carry_the_claim_and_the_record(
    cli: Cli, database: Database, history_table: None
) -> None:
    cli.write(
        "steps.yaml",
        "sqlplan: 1\nname: steps\nonce: true\nsteps:\n"
        "  - batch: CREATE TABLE marks (n int)\n"
        "  - execute: INSERT INTO marks VALUES ($1)\n    params: [1]\n    after: 'marked {count}'\n"
        "  - bulk_insert: INSERT INTO marks VALUES ($1)\n    rows: [[2], [3]]\n"
        "  - query: SELECT count(*) AS n FROM marks\n    row: '{n} marks'\n",
    )
    turns, result = _turns(cli, database, "run", "steps.yaml")
    assert (result.exit_code, result.stdout) == (0, "marked 1\n3 marks\n"), result.stderr
    # the query ends a round trip: its rows are checked before anything after it is sent
    assert turns == CONNECT + 1 + TERMINATE
    assert _history(database)[-1] == ["steps", "succeeded", True, True]


def test_a_step_that_goes_alone_costs_its_own_round_trip_and_no_more(
    cli: Cli, database: Database, history_table: None
) -> None:
    cli.write(
        "concurrently.yaml",
        "sqlplan: 1\nname: concurrently\nonce: true\nsteps:\n"
        "  - batch: CREATE TABLE c (n int)\n"
        "  - batch: CREATE INDEX CONCURRENTLY c_n ON c (n)\n",
    )
    turns, result = _turns(cli, database, "run", "concurrently.yaml")
    assert result.exit_code == 0, result.stderr
    # the claim with the first step; the index alone (it cannot run in a transaction block);
    # its record in a transaction of its own after it; the end stamped and the lock let go
    assert turns == CONNECT + 1 + 1 + 1 + 2 + TERMINATE
    assert _history(database)[-1] == ["concurrently", "succeeded", True, True]


def test_a_directory_of_applied_plans_is_read_in_one_turn(
    cli: Cli, database: Database, history_table: None
) -> None:
    (cli.cwd / "deploy").mkdir()
    for name in ("a1", "a2", "a3"):
        cli.write(f"deploy/{name}.yaml", MIGRATION.format(name=name))
    assert cli("run", "deploy", env={"DATABASE_URL": database.url}).exit_code == 0
    turns, again = _turns(cli, database, "run", "deploy")
    assert again.exit_code == 0, again.stderr
    assert again.stderr.count(": skipped, applied ") == 3, again.stderr
    assert turns == CONNECT + 1 + TERMINATE
    # one pending among applied ones: the read, then the pending plan's flight
    cli.write("deploy/a4.yaml", MIGRATION.format(name="a4"))
    turns, more = _turns(cli, database, "run", "deploy")
    assert more.exit_code == 0, more.stderr
    assert turns == CONNECT + 1 + 1 + TERMINATE


@pytest.mark.parametrize("table", [True, False])
def test_status_is_one_turn_for_any_number_of_plans(
    cli: Cli, database: Database, table: bool
) -> None:
    (cli.cwd / "deploy").mkdir()
    for name in ("s1", "s2", "s3", "s4"):
        cli.write(f"deploy/{name}.yaml", MIGRATION.format(name=name))
    if table:
        assert cli("run", "deploy/s1.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    turns, status = _turns(cli, database, "status", "deploy")
    assert status.exit_code == 0, status.stderr
    assert turns == CONNECT + 1 + TERMINATE
    states = [line.split()[0] for line in status.stdout.splitlines()]
    assert states == (["applied"] if table else ["pending"]) + ["pending"] * 3


def test_a_plan_applied_changed_or_running_is_decided_from_the_flight(
    cli: Cli, database: Database, history_table: None
) -> None:
    cli.write("items.yaml", MIGRATION.format(name="items"))
    assert cli("run", "items.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    cli.write("items.yaml", MIGRATION.format(name="items").replace("(name)", "(name, id)"))
    turns, changed = _turns(cli, database, "run", "items.yaml")
    assert changed.exit_code == 8
    assert "changed since it was applied" in changed.stderr
    assert turns == CONNECT + 1 + TERMINATE
    assert database.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'") == [[1]]
    turns, allowed = _turns(cli, database, "run", "--allow-changed", "items.yaml")
    assert allowed.exit_code == 0, allowed.stderr
    assert "changed since (skipped: --allow-changed)" in allowed.stderr
    assert turns == CONNECT + 1 + TERMINATE


def test_concurrent_deploys_apply_a_plan_once(cli: Cli, database: Database) -> None:
    """Eight runs of one plan at once, the history table new: one applies it; each other
    finds it applied (skipped), or being applied (refused, exit 8). Its work is there once,
    and the history has one success and no other entry."""
    database.query("CREATE TABLE applied (n int)")
    cli.write(
        "once.yaml",
        "sqlplan: 1\nname: raced\nonce: true\nsteps:\n"
        "  - execute: INSERT INTO applied SELECT $1 FROM pg_sleep(0.2)\n    params: [1]\n",
    )
    env = {"DATABASE_URL": database.url}
    runs = [start_sqlplan("run", str(cli.cwd / "once.yaml"), env=env) for _ in range(8)]
    outcomes = [(r.communicate(timeout=60)[1], r.returncode) for r in runs]
    codes = sorted(code for _, code in outcomes)
    assert database.query("SELECT count(*) FROM applied") == [[1]], outcomes
    assert codes.count(0) >= 1, outcomes
    assert set(codes) <= {0, 8}, outcomes
    for err, code in outcomes:
        assert "Traceback" not in err
        if code == 8:
            assert "has not finished: another run is applying it" in err, err
    assert [row[1] for row in _history(database)] == ["succeeded"]


# --- the flight against the other paths, over generated plans -------------------------------

_FAST = settings(
    max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def _normal(text: str) -> str:
    """What differs between two runs of one plan: times, and the way of looking in doubt."""
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", text)
    return re.sub(r"\d+(\.\d+)? ?(ms|s)\b", "<t>", text)


def _deploy(
    cli: Cli, con: Any, database: Database, plan: GeneratedPlan, *flags: str, whole_path: bool
) -> tuple[int, str, str, list[Any], list[Any]]:
    con.run(RESET)
    con.run("DROP SCHEMA IF EXISTS sqlplan CASCADE")
    if not whole_path:  # the table there: the claim travels with the first steps
        cli.write("made.yaml", "sqlplan: 1\nname: made\nonce: true\nsteps:\n  - batch: SELECT\n")
        assert cli("run", "made.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    result = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": database.url})
    rows = con.run(
        "SELECT 't', step, k FROM t UNION ALL SELECT 'u', step, k FROM u ORDER BY 1, 2, 3"
    )
    history = con.run(
        "SELECT outcome, finished_at IS NOT NULL, error IS NOT NULL FROM sqlplan.history "
        "WHERE plan = 'generated' ORDER BY id"
    )
    return result.exit_code, result.stdout, _normal(result.stderr), list(rows), list(history)


@pytest.mark.parametrize("flags", [(), ("--no-pipeline",)])
@pytest.mark.parametrize("end", ["ROLLBACK", "PREPARE TRANSACTION 'p1'", "COMMIT"])
def test_a_block_the_plan_does_not_commit_keeps_its_record(
    cli: Cli, database: Database, flags: tuple[str, ...], end: str
) -> None:
    """A last step that ends the plan's block without committing it (ROLLBACK, PREPARE
    TRANSACTION) would undo a record sent inside the block: the record goes after it."""
    cli.write("made.yaml", "sqlplan: 1\nname: made\nonce: true\nsteps:\n  - batch: SELECT\n")
    assert cli("run", "made.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: ends\nonce: true\nsteps:\n  - batch: BEGIN\n  - batch: {end}\n",
    )
    first = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": database.url})
    if end.startswith("PREPARE") and first.exit_code != 0:
        assert "prepared transactions are disabled" in first.stderr  # max_prepared_transactions 0
        return
    assert first.exit_code == 0, first.stderr
    assert _history(database)[-1] == ["ends", "succeeded", True, True]
    again = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": database.url})
    assert again.exit_code == 0, again.stderr
    assert "skipped, applied" in again.stderr


def test_the_flight_leaves_what_the_whole_path_leaves(cli: Cli, database: Database) -> None:
    """Generated `once` plans (every kind, blocks, failing statements, retries, settings) run
    three ways: the claim in the first steps' flight; one step at a time (the claim in a
    round trip of its own); and the whole path, where sqlplan.history does not exist yet. The
    output, the exit code, the rows left and the history's entries are the same."""
    con = connect(database.target)
    con.run(SETUP)
    try:

        @_FAST
        @given(plan=plans(max_segments=4))
        def check(plan: GeneratedPlan) -> None:
            text = plan.text.replace("name: generated\n", "name: generated\nonce: true\n", 1)
            cli.write("plan.yaml", text)
            flight = _deploy(cli, con, database, plan, whole_path=False)
            alone = _deploy(cli, con, database, plan, "--no-pipeline", whole_path=False)
            whole = _deploy(cli, con, database, plan, whole_path=True)
            assert "Traceback" not in flight[2] + alone[2] + whole[2]
            assert flight == whole, f"{text}\n--- flight:\n{flight}\n--- whole path:\n{whole}"
            assert flight == alone, f"{text}\n--- flight:\n{flight}\n--- one by one:\n{alone}"
            if flight[0] == 0:
                assert flight[4] == [["succeeded", True, False]]
                assert {int(r[1]) for r in flight[3]} <= {k for k, v in plan.kept.items() if v}

        check()
    finally:
        con.close()


def test_a_killed_deploy_leaves_its_claim_to_a_take_over(cli: Cli, database: Database) -> None:
    """The claim commits before the steps run, in the same flight: a run killed in its steps
    leaves a `running` entry that refuses the next run, as the whole path's claim does."""
    cli.write("first.yaml", MIGRATION.format(name="first"))
    assert cli("run", "first.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    cli.write(
        "slow.yaml",
        "sqlplan: 1\nname: slow\nonce: true\nsteps:\n  - batch: SELECT pg_sleep(30)\n",
    )
    process = start_sqlplan("run", str(cli.cwd / "slow.yaml"), env={"DATABASE_URL": database.url})
    try:
        wait_for_statement(database.query, "SELECT pg_sleep(30)%")
        assert [row[1] for row in _history(database)] == ["succeeded", "running"]
    finally:
        process.kill()
        process.communicate(timeout=10)
    database.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    )
    busy = cli("run", "slow.yaml", env={"DATABASE_URL": database.url})
    assert busy.exit_code == 8
    assert "has not finished" in busy.stderr
    cli.write("slow.yaml", "sqlplan: 1\nname: slow\nonce: true\nsteps:\n  - batch: SELECT 1\n")
    taken = cli("run", "--take-over", "slow.yaml", env={"DATABASE_URL": database.url})
    assert taken.exit_code == 0, taken.stderr
    assert [row[1] for row in _history(database)] == ["succeeded", "abandoned", "succeeded"]
