"""Plan validation: every problem at once, at its file, line and column, before any SQL runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, Cli, Database
from jsonschema import Draft202012Validator

from runner.errors import PlanInvalid
from runner.plan import schema
from runner.plan.model import BulkInsertStep, ExecuteStep, QueryStep
from runner.plan.validate import load_plan

INVALID = sorted((ROOT / "tests" / "plans" / "invalid").glob("*.yaml"))
SHIPPED = sorted((ROOT / "plans").glob("*.yaml"))
UNREACHABLE = "postgresql://nobody:secret@127.0.0.1:9/none?connect_timeout=1"


@pytest.mark.parametrize("plan", INVALID, ids=lambda p: p.stem)
def test_check_reports_exactly_the_expected_diagnostics(plan: Path, cli: Cli) -> None:
    cli.cwd = plan.parent
    result = cli("check", plan.name)
    assert result.exit_code == 1
    assert result.stdout == plan.with_suffix(".expected").read_text()


@pytest.mark.parametrize("plan", INVALID, ids=lambda p: p.stem)
def test_run_refuses_an_invalid_plan_without_connecting(plan: Path, cli: Cli) -> None:
    # The URL points nowhere: exit 5 would mean a connection was tried; 3 means none was.
    cli.cwd = plan.parent
    result = cli("run", plan.name, env={"DATABASE_URL": UNREACHABLE})
    assert result.exit_code == 3
    assert result.stdout == ""
    # run reports the errors (check adds the valid steps' warnings)
    expected = "".join(
        line
        for line in plan.with_suffix(".expected").read_text().splitlines(keepends=True)
        if ": warning: " not in line
    )
    assert result.stderr.startswith(expected)
    assert result.stderr.endswith("found; nothing was run\n")


def test_every_invalid_fixture_has_its_expected_file() -> None:
    assert INVALID, "no invalid fixtures found"
    for plan in INVALID:
        assert plan.with_suffix(".expected").is_file(), plan


def test_diagnostics_are_sorted_by_position() -> None:
    with pytest.raises(PlanInvalid) as raised:
        load_plan(ROOT / "tests" / "plans" / "invalid" / "templates.yaml")
    keys = [(d.position.line, d.position.column) for d in raised.value.diagnostics]
    assert keys == sorted(keys)
    assert len(keys) == 10


def test_unreadable_and_non_utf8_plans_are_diagnosed(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"sqlplan: 1\nname: caf\xe9\n")
    with pytest.raises(PlanInvalid) as raised:
        load_plan(bad)
    assert [str(d) for d in raised.value.diagnostics] == [
        f"{bad}:2:10: error: the plan is not valid UTF-8 [encoding]"
    ]


@pytest.mark.parametrize("plan", SHIPPED, ids=lambda p: p.stem)
def test_shipped_plans_are_valid_and_name_the_schema(plan: Path) -> None:
    assert plan.read_text().splitlines()[0] == (
        "# yaml-language-server: $schema=../schemas/plan.schema.json"
    )
    assert load_plan(plan).name == plan.stem


def test_quickstart_plans_hold_the_guides_values() -> None:
    create = load_plan(ROOT / "plans" / "create_table.yaml")
    single, bulk = create.steps[2], create.steps[3]
    assert isinstance(single, ExecuteStep)
    assert single.params == ("The Catcher in the Rye", "J.D. Salinger", 1951, True)
    assert isinstance(bulk, BulkInsertStep)
    assert bulk.rows[1] == ("1984", "George Orwell", 1949, True)
    read = load_plan(ROOT / "plans" / "read_data.yaml").steps[0]
    assert isinstance(read, QueryStep)
    assert read.row is not None
    assert [f.name for f in read.row.template.fields] == [
        "id", "title", "author", "publication_year", "in_stock",
    ]  # fmt: skip


def test_schema_is_valid_draft_2020_12_with_an_id() -> None:
    document = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"]
    assert [k.key for k in schema.load().kinds] == [
        "batch",
        "execute",
        "bulk_insert",
        "query",
        "backfill",
    ]


def test_packaged_schema_is_the_schema_file() -> None:
    assert schema.schema_text() == (ROOT / "schemas" / "plan.schema.json").read_text()


def test_every_schema_property_has_a_description() -> None:
    document = json.loads(schema.schema_text())
    missing = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.get("properties", {}).items():
                if isinstance(value, dict) and "description" not in value and "$ref" not in value:
                    missing.append(f"{path}.{key}")
            for key, value in node.items():
                walk(value, f"{path}.{key}")

    walk(document, "$")
    assert missing == []


def test_placeholders_in_literals_and_comments_do_not_count(cli: Cli, database: Database) -> None:
    plan = ROOT / "tests" / "plans" / "valid" / "literals.yaml"
    step = load_plan(plan).steps[0]
    assert isinstance(step, QueryStep)
    assert step.params == ("one",)
    result = cli("run", str(plan), env={"DATABASE_URL": database.url})
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "$2|it's ' $5| $7 | $8 |one\n"
