"""`sqlplan status --targets`: each target's history of each plan, as a matrix in text, JSON
(schema-valid) and Markdown, read from the databases a rollout left in every state."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest
from conftest import ROOT, Cli, Server
from fleets import Fleet, refused_port, write_plans

SCHEMA = json.loads((ROOT / "schemas" / "status.schema.json").read_text())


@pytest.fixture
def fleet5(server: Server) -> Iterator[Fleet]:
    fleet = Fleet(server.target, 5)
    yield fleet
    fleet.drop()


def test_the_matrix_says_what_each_target_s_history_says(cli: Cli, fleet5: Fleet) -> None:
    plans = write_plans(cli.cwd)
    fleet5.query(2, "CREATE TABLE accounts (id int)")  # the migration fails there
    cli.write("fleet.txt", fleet5.lines())
    cli.write("two.txt", "".join(fleet5.lines().splitlines(keepends=True)[:2]))
    assert cli("run", plans[0], "--targets", "two.txt").exit_code == 0  # t000, t001 applied
    assert cli("run", plans[0], "--target", f"t002={fleet5.url(2)}").exit_code == 1  # failed
    # t003: a run that claimed the plan and never said how it ended (its process died)
    assert cli("run", plans[0], "--target", f"t003={fleet5.url(3)}").exit_code == 0
    fleet5.query(3, "UPDATE sqlplan.history SET outcome = 'running', finished_at = NULL")
    dead = f"postgresql://postgres@127.0.0.1:{refused_port()}/x?sslmode=disable"
    cli.write("fleet.txt", fleet5.lines(urls={4: dead}))  # t004 cannot be read

    text = cli("status", *plans, "--targets", "fleet.txt", "--connect-timeout", "2")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["target", "accounts_v1", "load_accounts", "count_accounts"]
    assert lines[1].split() == ["t000", "applied", "-", "-"]
    assert lines[2].split() == ["t001", "applied", "-", "-"]
    assert lines[3].split() == ["t002", "failed", "-", "-"]
    assert lines[4].split() == ["t003", "in", "doubt", "-", "-"]
    assert lines[5].split()[:4] == ["t004", "unreadable:", "cannot", "connect"]
    assert lines[6] == "5 targets x 3 plans: 2 applied, 1 in doubt, 1 failed, 1 unreadable"

    document = json.loads(
        cli("status", *plans, "--targets", "fleet.txt", "--format", "json").stdout
    )
    jsonschema.validate(document, SCHEMA)
    cells = {t["name"]: t["plans"][0]["status"] for t in document["targets"]}
    assert cells == {
        "t000": "applied",
        "t001": "applied",
        "t002": "failed",
        "t003": "in doubt",
        "t004": None,
    }
    assert document["counts"]["unreadable"] == 1

    markdown = cli("status", *plans, "--targets", "fleet.txt", "--format", "markdown").stdout
    assert "| `t002` | failed | - | - |" in markdown
    # a plan changed since: its cell says so
    (cli.cwd / plans[0]).write_text(
        (cli.cwd / plans[0]).read_text().replace("NOT NULL);", "NOT NULL, at date);")
    )
    changed = cli("status", plans[0], "--targets", "fleet.txt", "--format", "json")
    assert [t["plans"][0]["status"] for t in json.loads(changed.stdout)["targets"]][:2] == [
        "changed",
        "changed",
    ]
