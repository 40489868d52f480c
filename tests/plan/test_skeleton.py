"""runner.plan.skeleton from Python, without the CLI: the plan it writes validates, the schema
is written once, and a bad name or an existing file is an error, never a half-written file."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SqlPlanError
from runner.plan.skeleton import write_skeleton
from runner.plan.validate import load_plan


def test_a_skeleton_is_a_valid_plan_and_its_schema_is_written_once(tmp_path: Path) -> None:
    first = write_skeleton("load-items", tmp_path / "plans", once=False)
    assert first.path == tmp_path / "plans" / "load-items.yaml"
    assert first.schema == tmp_path / "plans" / "plan.schema.json"
    plan = load_plan(first.path)
    assert plan.name == "load-items"
    assert [step.name for step in plan.steps] == [
        "Create the table",
        "Add an item",
        "List the items",
    ]
    second = write_skeleton("other", tmp_path / "plans", once=True)
    assert second.schema is None  # the one beside it serves
    assert second.path.name.endswith("_other.yaml")
    assert second.path.name[:14].isdigit()
    assert load_plan(second.path).once


@pytest.mark.parametrize("name", ["", "-dash-first", "a/b", "x" * 201])
def test_a_bad_name_writes_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(SqlPlanError):
        write_skeleton(name, tmp_path, once=False)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_plan_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("mine")
    with pytest.raises(SqlPlanError, match="already exists"):
        write_skeleton("p", tmp_path, once=False)
    assert (tmp_path / "p.yaml").read_text() == "mine"
