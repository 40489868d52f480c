"""Several plans per run, and `once` plans recorded in sqlplan.history: skipped once applied,
refused when changed, claimed under an advisory lock, and recorded in the same transaction as
their last step, so that what the history says is what the database holds, whatever breaks."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from conftest import ROOT, Cli, Database, Result, start_sqlplan, wait_for_statement
from servers import Cutter, FakeServer

from runner import __version__
from runner.connect.connection import connect
from runner.run.history import LOCK_KEY


def _env(database: Database) -> dict[str, str]:
    return {"DATABASE_URL": database.url}


def _plan(name: str, *steps: str, once: bool = False) -> str:
    head = f"sqlplan: 1\nname: {name}\n" + ("once: true\n" if once else "") + "steps:\n"
    return head + "".join(steps)


def _print(text: str) -> str:
    return f"  - query: SELECT {text} AS v\n    row: '{{v}}'\n"


def test_plans_run_in_the_order_given_on_one_connection(cli: Cli, database: Database) -> None:
    (cli.cwd / "dir").mkdir()
    (cli.cwd / "dir" / "sub").mkdir()
    for name in ("b", "a", "c"):  # a directory runs in name order
        cli.write(f"dir/{name}.yaml", _plan(name, _print(f"'{name} ' || pg_backend_pid()")))
    cli.write("dir/sub/z.yaml", _plan("z", _print("'z'")))  # not in a subdirectory
    cli.write("dir/notes.txt", "not a plan")
    cli.write("first.yaml", _plan("first", _print("'first ' || pg_backend_pid()")))
    result = cli("run", "first.yaml", "dir", env=_env(database))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["first", "a", "b", "c"]
    assert len({line.split()[1] for line in lines}) == 1  # one backend: one connection
    summary = [line for line in result.stderr.splitlines() if ": ok in " in line]
    assert [re.sub(r" \(.*", "", s) for s in summary] == [
        f"sqlplan: plan {n}" for n in ("first", "a", "b", "c")
    ]


def test_the_first_failure_stops_the_run_unless_keep_going(cli: Cli, database: Database) -> None:
    cli.write("1.yaml", _plan("one", "  - batch: CREATE TABLE IF NOT EXISTS kept (n int)\n"))
    cli.write("2.yaml", _plan("two", "  - batch: SELECT 1/0\n"))
    cli.write("3.yaml", _plan("three", "  - batch: INSERT INTO kept VALUES (3)\n"))
    result = cli("run", "1.yaml", "2.yaml", "3.yaml", env=_env(database))
    assert result.exit_code == 1
    assert "division by zero" in result.stderr
    assert "sqlplan: plan three (3.yaml): not run\n" in result.stderr
    assert database.query("SELECT count(*) FROM kept") == [[0]]
    result = cli("run", "--keep-going", "1.yaml", "2.yaml", "3.yaml", env=_env(database))
    assert result.exit_code == 1  # the first failure's code
    assert "sqlplan: plan two (2.yaml): failed (exit 1)\n" in result.stderr
    assert database.query("SELECT count(*) FROM kept") == [[1]]


def test_every_plan_is_valid_before_any_runs(cli: Cli, database: Database) -> None:
    cli.write("1.yaml", _plan("one", "  - batch: CREATE TABLE early (n int)\n"))
    cli.write("2.yaml", _plan("two", "  - batch: SELEC 1\n"))
    result = cli("run", "1.yaml", "2.yaml", env=_env(database))
    assert result.exit_code == 3
    assert result.stderr.startswith("2.yaml:4:12: error: ")
    assert database.query("SELECT to_regclass('early') IS NULL") == [[True]]


def test_a_var_is_given_to_the_plans_that_declare_it(cli: Cli, database: Database) -> None:
    cli.write("1.yaml", "sqlplan: 1\nname: one\nvars: {who: text}\n" + "steps:\n" + _print("$1").replace("    row", "    params: ['{who}']\n    row"))  # fmt: skip
    cli.write("2.yaml", _plan("two", _print("'no vars'")))
    result = cli("run", "1.yaml", "2.yaml", "--var", "who=me", env=_env(database))
    assert (result.exit_code, result.stdout) == (0, "me\nno vars\n"), result.stderr
    result = cli("run", "1.yaml", "2.yaml", "--var", "who=me", "--var", "wh0=x", env=_env(database))
    assert result.exit_code == 3
    assert "--var #2 (of 2) names a var the plan does not declare" in result.stderr


ONCE = _plan(
    "add_books",
    "  - batch: CREATE TABLE books (id int PRIMARY KEY, title text)\n",
    "  - execute: INSERT INTO books VALUES ($1, $2)\n    params: [1, Dune]\n    after: added\n",
    once=True,
)


def _history(database: Database) -> list[list[Any]]:
    return database.query(
        "SELECT plan, path, fingerprint, outcome, sqlplan_version, db_user = current_user,"
        " finished_at >= started_at, duration IS NOT NULL FROM sqlplan.history ORDER BY id"
    )


def test_a_once_plan_runs_once_and_the_history_says_so(cli: Cli, database: Database) -> None:
    cli.write("once.yaml", ONCE)
    first = cli("run", "once.yaml", env=_env(database))
    assert (first.exit_code, first.stdout) == (0, "added\n"), first.stderr
    shown = cli("show", "once.yaml").stdout
    full = re.search(r"fingerprint ([0-9a-f]{64})", shown)
    fingerprint = full.group(1) if full else None
    [row] = _history(database)
    assert row[:2] == ["add_books", "once.yaml"]
    assert fingerprint is None or row[2] == fingerprint
    assert row[2].startswith(first.fingerprint or "?")
    assert row[3:] == ["succeeded", __version__, True, True, True]
    again = cli("run", "once.yaml", env=_env(database))
    assert (again.exit_code, again.stdout) == (0, "")
    assert re.search(
        r"plan add_books \(once.yaml\): skipped, applied \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by ",
        again.stderr,
    ), again.stderr
    assert database.query("SELECT count(*) FROM books") == [[1]]
    assert len(_history(database)) == 1
    status = cli("status", "once.yaml", "--format", "json", env=_env(database))
    assert status.exit_code == 0, status.stderr
    document = json.loads(status.stdout)
    schema = json.loads((ROOT / "schemas" / "status.schema.json").read_text())
    jsonschema.validate(document, schema)
    [item] = document["plans"]
    assert (item["status"], item["applied"]["fingerprint"]) == ("applied", row[2])


def test_a_changed_plan_is_refused_with_exit_8_unless_allowed(cli: Cli, database: Database) -> None:
    cli.write("once.yaml", ONCE)
    assert cli("run", "once.yaml", env=_env(database)).exit_code == 0
    cli.write("once.yaml", ONCE.replace("Dune", "Emma"))
    cli.write("after.yaml", _plan("after", _print("'after'")))
    result = cli("run", "once.yaml", "after.yaml", env=_env(database))
    assert (result.exit_code, result.stdout) == (8, "")
    assert "once.yaml:1:1: error: plan 'add_books' changed since it was applied" in result.stderr
    assert "sqlplan: plan after (after.yaml): not run" in result.stderr
    status = cli("status", "once.yaml", "after.yaml", env=_env(database))
    assert status.stdout.startswith("changed   once.yaml (add_books): applied ")
    assert "not once  after.yaml (after): " in status.stdout
    allowed = cli("run", "--allow-changed", "once.yaml", "after.yaml", env=_env(database))
    assert (allowed.exit_code, allowed.stdout) == (0, "after\n")
    assert "changed since (skipped: --allow-changed)" in allowed.stderr
    assert database.query("SELECT title FROM books") == [["Dune"]]


def test_a_different_file_with_an_applied_name_is_told_from_an_edited_one(
    cli: Cli, database: Database
) -> None:
    """A new migration that reuses an applied plan's name is not "changed": it is another
    file, and --allow-changed (which would skip it for good) is not what to do."""
    cli.write("001.yaml", ONCE)
    assert cli("run", "001.yaml", env=_env(database)).exit_code == 0
    cli.write("002.yaml", ONCE.replace("Dune", "Emma"))
    result = cli("run", "002.yaml", env=_env(database))
    assert result.exit_code == 8
    assert "002.yaml:1:1: error: plan 'add_books' was applied " in result.stderr
    assert " from 001.yaml, and 002.yaml has the same name" in result.stderr
    assert "Give this plan a name of its own" in result.stderr
    assert "run with --allow-changed to skip it" not in result.stderr


def test_a_failed_once_plan_is_recorded_failed_and_runs_again(cli: Cli, database: Database) -> None:
    cli.write("once.yaml", ONCE.replace("[1, Dune]", "[one, Dune]"))
    result = cli("run", "once.yaml", env=_env(database))
    assert result.exit_code == 1
    assert [r[3] for r in _history(database)] == ["failed"]
    assert cli("status", "once.yaml", env=_env(database)).stdout.startswith("pending ")
    database.query("DROP TABLE books")
    cli.write("once.yaml", ONCE)
    assert cli("run", "once.yaml", env=_env(database)).exit_code == 0
    assert [r[3] for r in _history(database)] == ["failed", "succeeded"]


def test_two_once_plans_of_one_name_are_refused(cli: Cli, database: Database) -> None:
    cli.write("a.yaml", ONCE)
    cli.write("b.yaml", ONCE)
    result = cli("run", "a.yaml", "b.yaml", env=_env(database))
    assert result.exit_code == 3
    assert "b.yaml:1:1: error: plan name 'add_books' is also the name of a.yaml" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "last_step", "present"),
    [
        # plain statements: BEGIN, the record, the step, COMMIT
        ("wrapped", "  - execute: INSERT INTO marks VALUES ($1)\n    params: [2]\n", 2),
        # the plan's own block, ended by the last step: the record goes in before it
        ("inside", "  - batch: INSERT INTO marks VALUES (2); COMMIT\n", 2),
    ],
)
def test_the_record_commits_with_the_last_step_whatever_breaks(
    cli: Cli, database: Database, mode: str, last_step: str, present: int
) -> None:
    """At every message the server sends, the connection is cut: the history says
    `succeeded` exactly when the last step's work is there."""
    first = "  - batch: BEGIN; INSERT INTO marks VALUES (1)\n" if mode == "inside" else (
        "  - batch: INSERT INTO marks VALUES (1)\n"
    )  # fmt: skip
    cli.write("plan.yaml", _plan("marked", first, last_step, once=True))
    target = database.target
    con = connect(target)
    con.run("CREATE TABLE marks (n int)")
    url = f"postgresql://{target.user}@127.0.0.1:{{}}/{target.database}?sslmode=disable"

    def attempt(cut: int | None = None) -> tuple[Result, Cutter]:
        con.run("TRUNCATE marks")
        con.run("DROP SCHEMA IF EXISTS sqlplan CASCADE")
        cutter = Cutter(target.socket_path, server_messages=cut)
        with FakeServer(cutter.handle) as proxy:
            env = {"DATABASE_URL": url.format(proxy.port), "SQLPLAN_CONNECT_RETRIES": "0"}
            return cli("run", "plan.yaml", env=env), cutter

    try:
        whole, counted = attempt()
        assert whole.exit_code == 0, whole.stderr
        outcomes: dict[int, int] = {}
        for k in range(1, counted.server_messages):
            result, _ = attempt(k)
            text = result.stdout + result.stderr
            assert "Traceback" not in text
            there = con.run("SELECT count(*) FROM marks WHERE n = :n", n=present)[0][0]
            recorded = con.run(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'sqlplan'"
            )[0][0] and con.run(
                "SELECT count(*) FROM sqlplan.history WHERE outcome = 'succeeded'"
            )[0][0]  # fmt: skip
            assert bool(there) == bool(recorded), f"cut {k}: {text}"
            if result.exit_code == 0:
                assert recorded, text
            if "in doubt: step 2" in text:  # the last step: the record says what happened
                assert "look with SELECT outcome FROM sqlplan.history WHERE " in text
            outcomes[result.exit_code] = outcomes.get(result.exit_code, 0) + 1
        print(f"\n{mode}: {counted.server_messages - 1} cuts, exit codes {outcomes}")
        assert outcomes.get(6, 0) > 0
    finally:
        con.close()


def test_a_last_step_that_cannot_share_a_transaction_is_recorded_after_it(
    cli: Cli, database: Database
) -> None:
    database.query("CREATE TABLE marks (n int)")
    cli.write(
        "plan.yaml",
        _plan(
            "indexed",
            "  - batch: INSERT INTO marks VALUES (1)\n",
            "  - batch: CREATE INDEX CONCURRENTLY marks_n ON marks (n)\n",
            once=True,
        ),
    )
    result = cli("run", "plan.yaml", env=_env(database))
    assert result.exit_code == 0, result.stderr
    assert [r[3] for r in _history(database)] == ["succeeded"]
    assert database.query("SELECT to_regclass('marks_n') IS NOT NULL") == [[True]]


SLOW = _plan(
    "slow",
    "  - batch: CREATE TABLE IF NOT EXISTS slow (n int)\n",
    "  - batch: SELECT pg_sleep(30)\n",
    "  - batch: INSERT INTO slow VALUES (1)\n",
    once=True,
)


@pytest.fixture
def slow_run(cli: Cli, database: Database) -> Iterator[Any]:
    cli.write("slow.yaml", SLOW)
    process = start_sqlplan("run", str(cli.cwd / "slow.yaml"), env=_env(database))
    try:
        wait_for_statement(database.query, "SELECT pg_sleep(30)%")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_a_plan_another_run_is_applying_is_refused_then_taken_over(
    cli: Cli, database: Database, slow_run: Any
) -> None:
    busy = cli("run", "slow.yaml", env=_env(database))
    assert busy.exit_code == 8
    assert "has not finished: another run is applying it, or that run died" in busy.stderr
    status = cli("status", "slow.yaml", env=_env(database))
    assert status.stdout.startswith("running   slow.yaml (slow): started ")
    slow_run.send_signal(signal.SIGKILL)  # it dies without a word: its row stays `running`
    slow_run.wait(10)
    database.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    )
    assert cli("run", "slow.yaml", env=_env(database)).exit_code == 8
    cli.write("slow.yaml", SLOW.replace("pg_sleep(30)", "pg_sleep(0)"))
    taken = cli("run", "--take-over", "slow.yaml", env=_env(database))
    assert taken.exit_code == 0, taken.stderr
    assert [r[3] for r in _history(database)] == ["abandoned", "succeeded"]


def test_claims_wait_for_the_advisory_lock(cli: Cli, database: Database) -> None:
    """A run claims its plan under pg_advisory_xact_lock: while another transaction holds the
    lock, the claim waits, and it goes on once that transaction ends."""
    cli.write("once.yaml", ONCE)
    holder = connect(database.target)
    try:
        holder.run("BEGIN")
        holder.run(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        process = start_sqlplan("run", str(cli.cwd / "once.yaml"), env=_env(database))
        wait_for_statement(database.query, "SELECT pg_advisory_xact_lock($1)%")
        time.sleep(0.2)
        assert process.poll() is None  # waiting
        holder.run("COMMIT")
        out, err = process.communicate(timeout=20)
        assert (process.returncode, out) == (0, "added\n"), err
    finally:
        holder.close()


def test_the_example_plans_run_once(cli: Cli, database: Database) -> None:
    examples = ROOT / "plans" / "examples" / "history"
    first = cli("run", str(examples), env=_env(database))
    assert first.exit_code == 0, first.stderr
    assert first.stdout
    again = cli("run", str(examples), env=_env(database))
    assert again.exit_code == 0, again.stderr
    assert again.stdout == "2 authors on file\n"  # the report, which is not `once`
    assert first.stdout == "authors ready\n2 authors added\n2 authors on file\n"
    status = cli("status", str(examples), "--format", "json", env=_env(database))
    states = {p["name"]: p["status"] for p in json.loads(status.stdout)["plans"]}
    assert set(states.values()) <= {"applied", "not once"}
    assert "applied" in states.values()


TAKE_OVER = _plan(
    "applied once",
    "  - batch: BEGIN\n",
    "  - execute: INSERT INTO applied VALUES ($1)\n    params: [1]\n",
    "  - query: SELECT pg_sleep(1) AS z\n    row: 'slept'\n",
    "  - batch: COMMIT\n",
    once=True,
)


def test_concurrent_take_overs_apply_a_plan_once(cli: Cli, database: Database) -> None:
    """A run dies (SIGKILL) inside its plan: its claim stays `running`, its backend goes. Eight
    runs with --take-over start at once: one takes the claim over and applies the plan; the
    others find that run alive (its backend holds the claim) and are refused, or, arriving
    after it, skip a plan applied. The plan's row is there once."""
    database.query("CREATE TABLE applied (n int)")
    cli.write("once.yaml", TAKE_OVER)
    plan = str(cli.cwd / "once.yaml")
    dead = start_sqlplan("run", plan, env=_env(database))
    wait_for_statement(database.query, "SELECT pg_sleep%")
    dead.send_signal(signal.SIGKILL)
    dead.communicate(timeout=10)
    deadline = time.monotonic() + 10  # the server notices the closed connection
    while database.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")[0][0]:  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runs = [start_sqlplan("run", "--take-over", plan, env=_env(database)) for _ in range(8)]
    outcomes = [(r.communicate(timeout=60)[1], r.returncode)[::-1] for r in runs]
    codes = sorted(code for code, _ in outcomes)
    assert database.query("SELECT count(*) FROM applied") == [[1]], outcomes
    assert codes.count(0) >= 1, outcomes
    assert set(codes) <= {0, 8}, outcomes
    refused = [err for code, err in outcomes if code == 8]
    assert all("is being applied by another run" in err for err in refused), refused
    history = [r[3] for r in _history(database)]
    assert history.count("succeeded") == 1, history
    assert history.count("abandoned") == 1, history
    assert "running" not in history


def test_a_take_over_leaves_a_live_run_alone(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE applied (n int)")
    cli.write("once.yaml", TAKE_OVER.replace("pg_sleep(1)", "pg_sleep(3)"))
    plan = str(cli.cwd / "once.yaml")
    alive = start_sqlplan("run", plan, env=_env(database))
    wait_for_statement(database.query, "SELECT pg_sleep%")
    taken = cli("run", "--take-over", "once.yaml", env=_env(database))
    assert taken.exit_code == 8, taken.stderr
    assert "is being applied by another run" in taken.stderr
    assert "its backend (pid " in taken.stderr
    _, err = alive.communicate(timeout=30)
    assert alive.returncode == 0, err
    assert database.query("SELECT count(*) FROM applied") == [[1]]
    assert [r[3] for r in _history(database)] == ["succeeded"]


def test_the_history_times_a_run_to_its_last_commit(cli: Cli, database: Database) -> None:
    """finished_at and duration are taken once the last step's commit is confirmed: a last
    step that sleeps 1.2 s is in the duration."""
    for last in (
        "  - query: SELECT pg_sleep(1.2) AS z\n    row: 'slept'\n",  # wrapped with the record
        "  - batch: SELECT pg_sleep(1.2); COMMIT\n",  # ends the plan's own block
    ):
        cli.write("timed.yaml", _plan("timed " + str(len(last)), "  - batch: BEGIN\n" if "COMMIT" in last else "", last, once=True))  # fmt: skip
        result = cli("run", "timed.yaml", env=_env(database))
        assert result.exit_code == 0, result.stderr
    rows = database.query(
        "SELECT extract(epoch FROM duration), extract(epoch FROM finished_at - started_at) "
        "FROM sqlplan.history ORDER BY id"
    )
    for duration, span in rows:
        assert float(str(duration)) >= 1.2, rows
        assert abs(float(str(duration)) - float(str(span))) < 0.001
