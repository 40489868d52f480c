"""A rollout over real databases on the embedded server: every target's state is what its
ledger says; reruns converge; canaries, the failure budget, deadlines and faults stop where
they say; the report is schema-valid and names each target."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import ROOT, Cli, Server, start_sqlplan
from fleets import Fleet, Proxy, refused_port, silent_server, write_plans

SCHEMA = json.loads((ROOT / "schemas" / "run-report.schema.json").read_text())


@pytest.fixture
def fleet12(server: Server) -> Iterator[Fleet]:
    fleet = Fleet(server.target, 12)
    yield fleet
    fleet.drop()


def _report(result_stdout: str) -> Any:
    document = json.loads(result_stdout)
    jsonschema.validate(document, SCHEMA)
    return document


def _statuses(document: Any) -> dict[str, str]:
    return {t["name"]: t["status"] for t in document["targets"]}


def test_a_fleet_applies_every_plan_then_a_rerun_skips_the_once_plan(
    cli: Cli, fleet12: Fleet
) -> None:
    plans = write_plans(cli.cwd)
    cli.write("fleet.txt", fleet12.lines())
    first = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "3", "--format", "json",
                "--junit", "junit.xml", "--summary", "summary.md")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    document = _report(first.stdout)
    assert set(_statuses(document).values()) == {"applied"}
    assert document["fleet"]["most_open"] <= 3
    for i in range(12):
        assert fleet12.accounts(i) == [1, 2, 3]
        target = document["targets"][i]
        assert target["name"] == f"t{i:03d}"
        assert target["run"]["plans"][2]["output"] == ["accounts: 3"]
    junit = (cli.cwd / "junit.xml").read_text()
    assert junit.count("<testsuite ") == 12
    assert "| ✅ applied | 12 |" in (cli.cwd / "summary.md").read_text()
    # the same rollout again: the migration is skipped on each target; the load fails on its
    # primary key, and the first failure stops the rest (--max-failures 1, the default)
    again = cli("run", plans[0], "--targets", "fleet.txt", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert set(_statuses(_report(again.stdout)).values()) == {"skipped"}
    load = cli("run", plans[1], "--targets", "fleet.txt", "--parallel", "1", "--format", "json")
    assert load.exit_code == 1
    statuses = _statuses(_report(load.stdout))
    assert statuses["t000"] == "failed"
    assert set(list(statuses.values())[1:]) == {"not run"}
    assert all(fleet12.accounts(i) == [1, 2, 3] for i in range(12))


def test_stdout_is_each_target_s_lines_in_the_targets_order(cli: Cli, fleet12: Fleet) -> None:
    plans = write_plans(cli.cwd)
    cli.write("fleet.txt", fleet12.lines())
    result = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"t{i:03d}: accounts: 3" for i in range(12)]
    assert "fleet: 12 targets in the order given, 5 at a time" in result.stderr


def test_a_failing_canary_leaves_the_rest_untouched(cli: Cli, fleet12: Fleet) -> None:
    plans = write_plans(cli.cwd)
    fleet12.query(1, "CREATE TABLE accounts (id int)")  # the migration fails on target 1
    cli.write("fleet.txt", fleet12.lines())
    result = cli("run", *plans, "--targets", "fleet.txt", "--canary", "3", "--max-failures", "0",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 1
    document = _report(result.stdout)
    statuses = _statuses(document)
    assert statuses["t000"] == statuses["t002"] == "applied"
    assert statuses["t001"] == "failed"
    assert all(statuses[f"t{i:03d}"] == "not run" for i in range(3, 12))
    assert "canary t001 did not apply" in str(document["fleet"]["stopped"])
    assert fleet12.accounts(1) == []  # the failure's target as it was
    assert all(fleet12.accounts(i) is None for i in range(3, 12))


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_the_failure_budget_stops_starting_targets(cli: Cli, fleet12: Fleet, budget: int) -> None:
    plans = write_plans(cli.cwd)
    failing = [2, 5, 7]
    for i in failing:
        fleet12.query(i, "CREATE TABLE accounts (id int)")
    cli.write("fleet.txt", fleet12.lines())
    result = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "1",
                 "--max-failures", str(budget), "--format", "json")  # fmt: skip
    assert result.exit_code == 1
    statuses = list(_statuses(_report(result.stdout)).values())
    last = failing[budget - 1]  # one at a time: the budget's last failure is where it stops
    assert statuses[: last + 1] == [
        "failed" if i in failing else "applied" for i in range(last + 1)
    ]
    assert statuses[last + 1 :] == ["not run"] * (11 - last)
    for i in range(12):
        expected = [1, 2, 3] if statuses[i] == "applied" else ([] if i in failing else None)
        assert fleet12.accounts(i) == expected


def test_faults_each_target_as_its_ledger_says_and_a_rerun_converges(
    cli: Cli, fleet12: Fleet, server: Server
) -> None:
    plans = write_plans(cli.cwd)
    socket_path = fleet12.admin.socket_path
    fleet12.query(3, "CREATE TABLE accounts (id int)")  # its data fails the migration
    stall = Proxy(socket_path, stall=True)
    cut = Proxy(socket_path, cut_after=b"CREATE TABLE accounts", nth=2)
    refused = refused_port()
    with silent_server() as silent:
        urls = {
            1: f"postgresql://postgres@127.0.0.1:{refused}/{fleet12.names[1]}?sslmode=disable",
            2: f"postgresql://postgres@127.0.0.1:{silent}/{fleet12.names[2]}?sslmode=disable",
            5: stall.url(fleet12.names[5]),
            7: cut.url(fleet12.names[7]),
        }
        cli.write("fleet.txt", fleet12.lines(urls))
        started = time.monotonic()
        result = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "4", "--max-failures",
                     "0", "--target-timeout", "2s", "--connect-timeout", "1", "--connect-retries",
                     "0", "--format", "json")  # fmt: skip
        took = time.monotonic() - started
    stall.close()
    cut.close()
    document = _report(result.stdout)
    statuses = _statuses(document)
    assert statuses["t001"] == statuses["t002"] == statuses["t003"] == "failed"
    # the stalled target sent its step and COMMIT in one round trip, and no answer came: its
    # deadline shut it, and whether the server committed is not known here
    assert statuses["t005"] == "in doubt"
    assert "deadline" in str(document["targets"][5]["why"])
    assert statuses["t007"] == "in doubt", json.dumps(document["targets"][7], indent=1)
    assert result.exit_code == 6  # in doubt first
    assert took < 30
    for i in (0, 4, 6, 8, 9, 10, 11):
        assert statuses[f"t{i:03d}"] == "applied"
        assert fleet12.accounts(i) == [1, 2, 3]
    assert fleet12.accounts(1) is None
    assert fleet12.accounts(2) is None
    assert fleet12.accounts(3) == []
    assert fleet12.accounts(5) is None
    # the stalled target: what it sent before the stall never reached the server
    assert fleet12.query(5, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")[0][0] == 0  # fmt: skip
    # in doubt: its commit went through or not; the history, committed with it, says which
    applied = fleet12.accounts(7)
    assert applied in (None, [])  # the migration's commit; the load never began
    # a rerun on the direct URLs converges: what applied is skipped, the rest applies
    fleet12.query(3, "DROP TABLE accounts")
    cli.write("fleet.txt", fleet12.lines())
    rerun = cli(
        "run", plans[0], "--targets", "fleet.txt", "--format", "json", "--max-failures", "0"
    )
    unresolved = _statuses(_report(rerun.stdout))
    # an in-doubt target that had not committed: its history says a run began and never
    # ended, and the rerun leaves it alone, in doubt, until told (--take-over)
    assert unresolved["t007"] == ("skipped" if applied == [] else "in doubt")
    assert rerun.exit_code == (0 if applied == [] else 6)
    rerun = cli("run", plans[0], "--targets", "fleet.txt", "--format", "json", "--max-failures",
                "0", "--take-over")  # fmt: skip
    assert rerun.exit_code == 0, rerun.stderr
    again = _statuses(_report(rerun.stdout))
    for i in (0, 4, 6, 8, 9, 10, 11):
        assert again[f"t{i:03d}"] == "skipped"
    for i in (1, 2, 3, 5):  # applied by the first rerun
        assert again[f"t{i:03d}"] == "skipped"
        # the stalled one too: nothing it sent reached the server, so no history says it began
        assert unresolved[f"t{i:03d}"] == "applied"
    assert again["t007"] == ("skipped" if applied == [] else "applied")


def test_rehearse_first_changes_no_target_when_one_would_fail(cli: Cli, fleet12: Fleet) -> None:
    plans = write_plans(cli.cwd)
    fleet12.query(9, "CREATE TABLE accounts (id int)")
    cli.write("fleet.txt", fleet12.lines())
    result = cli("run", *plans, "--targets", "fleet.txt", "--rehearse-first", "--format", "json")
    assert result.exit_code == 1
    document = _report(result.stdout)
    assert set(_statuses(document).values()) == {"not run"}
    rehearsal = document["targets"][9]["rehearsal"]
    assert "1_migration.yaml:5:5" in rehearsal
    assert "already exists" in rehearsal
    rehearsals = [t["rehearsal"] for t in document["targets"]]
    assert rehearsals[:9] == ["ok"] * 9
    # the failure budget (1) stops starting rehearsals too: those begun before it finish
    assert set(rehearsals[10:]) <= {"ok", None}
    assert all(fleet12.accounts(i) is None for i in range(12) if i != 9)
    # once the data is mended, the rehearsal passes and the rollout applies
    fleet12.query(9, "DROP TABLE accounts")
    result = cli("run", *plans, "--targets", "fleet.txt", "--rehearse-first")
    assert result.exit_code == 0, result.stderr
    assert all(fleet12.accounts(i) == [1, 2, 3] for i in range(12))


def test_labels_and_shards_choose_the_targets(cli: Cli, fleet12: Fleet) -> None:
    plans = write_plans(cli.cwd)
    labels = {i: f"region={'eu' if i % 3 == 0 else 'us'}" for i in range(12)}
    cli.write("fleet.txt", fleet12.lines(labels=labels))
    result = cli(
        "run", plans[0], "--targets", "fleet.txt", "--only", "region=eu", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    assert list(_statuses(_report(result.stdout))) == ["t000", "t003", "t006", "t009"]
    covered: list[str] = []
    for shard in (1, 2, 3):
        result = cli("run", plans[0], "--targets", "fleet.txt", "--shard", f"{shard}/3",
                     "--format", "json", "--max-failures", "0")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        covered += list(_statuses(_report(result.stdout)))
    assert sorted(covered) == [f"t{i:03d}" for i in range(12)]


def test_targets_from_a_query_and_passwords_never_shown(
    cli: Cli, fleet12: Fleet, server: Server
) -> None:
    plans = write_plans(cli.cwd)
    control = fleet12.url(0)
    fleet12.query(0, "CREATE TABLE tenants (name text, url text, labels jsonb)")
    for i in range(1, 12):
        url = fleet12.url(i).replace("postgres@", "postgres:hunter2secret@")
        fleet12.query(
            0,
            f"INSERT INTO tenants VALUES ('tenant{i}', '{url}', '{{\"tier\": \"{'pro' if i < 4 else 'free'}\"}}')",
        )
    result = cli("run", plans[0], "--targets-from", "SELECT name, url, labels FROM tenants ORDER BY name",
                 "--only", "tier=pro", "--database-url", control, "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = _report(result.stdout)
    assert sorted(_statuses(document)) == ["tenant1", "tenant2", "tenant3"]
    assert "hunter2secret" not in result.stdout + result.stderr
    assert all("****" in t["url"] for t in document["targets"])


def test_bad_targets_are_refused_before_anything_runs(cli: Cli, fleet12: Fleet) -> None:
    plans = write_plans(cli.cwd)
    cli.write("fleet.yaml", "targets:\n  - name: a\n    url: $NOT_SET_ANYWHERE\n")
    result = cli("run", *plans, "--targets", "fleet.yaml")
    assert result.exit_code == 4
    assert (
        "fleet.yaml:3:10: error: the environment variable NOT_SET_ANYWHERE is not set"
        in result.stderr
    )
    result = cli("run", *plans, "--parallel", "3")
    assert result.exit_code == 2
    assert "--parallel: only with a fleet" in result.stderr


def test_ctrl_c_stops_starting_targets_and_cancels_the_running_ones(
    tmp_path: Path, server: Server, fleet12: Fleet
) -> None:
    (tmp_path / "slow.yaml").write_text(
        "sqlplan: 1\nname: slow\nsteps:\n  - batch: |\n      CREATE TABLE accounts (id int);\n"
        "      INSERT INTO accounts SELECT 1 FROM pg_sleep(60);\n"
    )
    (tmp_path / "fleet.txt").write_text(fleet12.lines())
    process = start_sqlplan(
        "run", str(tmp_path / "slow.yaml"), "--targets", str(tmp_path / "fleet.txt"),
        "--parallel", "3", "--format", "json", env={"SQLPLAN_DATA_DIR": str(server.state_dir)},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sleeping = fleet12.query(0, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")[0][0]  # fmt: skip
        if sleeping == 3:
            break
        time.sleep(0.05)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert process.returncode == 130, stderr
    document = _report(stdout)
    statuses = list(_statuses(document).values())
    assert statuses[:3] == ["stopped"] * 3
    assert statuses[3:] == ["not run"] * 9
    assert all(fleet12.accounts(i) is None for i in range(12))
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_two_hundred_databases_each_as_its_ledger_says(cli: Cli, server: Server) -> None:
    fleet = Fleet(server.target, 200)
    try:
        plans = write_plans(cli.cwd)
        failing = {17, 88, 150}
        for i in failing:
            fleet.query(i, "CREATE TABLE accounts (id int)")
        cli.write("fleet.txt", fleet.lines())
        result = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "16",
                     "--max-failures", "0", "--format", "json")  # fmt: skip
        assert result.exit_code == 1
        document = _report(result.stdout)
        assert document["fleet"]["most_open"] <= 16
        for i, target in enumerate(document["targets"]):
            assert target["status"] == ("failed" if i in failing else "applied")
            assert fleet.accounts(i) == ([] if i in failing else [1, 2, 3])
        for i in failing:
            fleet.query(i, "DROP TABLE accounts")
        rerun = cli(
            "run", *plans[:1], "--targets", "fleet.txt", "--parallel", "16", "--format", "json"
        )
        assert rerun.exit_code == 0, rerun.stderr
        statuses = _statuses(_report(rerun.stdout))
        assert [statuses[f"t{i:03d}"] for i in range(200)] == [
            "applied" if i in failing else "skipped" for i in range(200)
        ]
    finally:
        fleet.drop()
