"""Every kind of step is complete in every layer: each layer keeps its part of a kind in one
table keyed by the kind's name, and this test fails when a kind is missing from any of them
(a new kind cannot be half added, or silently reported as another)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from conftest import ROOT

from runner.plan import schema
from runner.plan.model import STEP_KINDS, Step
from runner.plan.steps import StepBuilder
from runner.report import kind as report_kind
from runner.run import kinds

KINDS = set(STEP_KINDS)

TABLES: dict[str, Any] = {
    "the plan format's schema (plan.schema.json)": lambda: set(schema.load().kind_keys),
    "the builder (plan/steps.py StepBuilder.KINDS)": lambda: set(StepBuilder.KINDS),
    "running alone (run/kinds.py RUN_ALONE)": lambda: set(kinds.RUN_ALONE),
    "running in a pipeline (run/kinds.py PIECES)": lambda: set(kinds.PIECES),
    "the run report's schema (run-report.schema.json)": lambda: set(
        json.loads((ROOT / "schemas" / "run-report.schema.json").read_text())["$defs"]["step"][
            "properties"
        ]["kind"]["enum"]
    ),
}


def test_there_are_kinds() -> None:
    assert {"batch", "execute", "bulk_insert", "query", "backfill"} == KINDS


@pytest.mark.parametrize("table", TABLES)
def test_every_layer_knows_every_kind(table: str) -> None:
    assert TABLES[table]() == KINDS, table


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kind_is_named_by_its_key_and_its_messages_are_its_fields(name: str) -> None:
    cls = STEP_KINDS[name]
    assert issubclass(cls, Step)
    assert cls.kind == name
    fields = {f.name for f in dataclasses.fields(cls)}
    assert {key for key, _ in cls.MESSAGES} <= fields
    assert len({when for _, when in cls.MESSAGES}) == len(cls.MESSAGES)
    # the schema allows exactly the messages the model has, beside `before`
    keys = set(schema.load().kind(name).keys)
    assert {key for key, _ in cls.MESSAGES} <= keys


@pytest.mark.parametrize("name", sorted(KINDS))
def test_reports_name_a_kind_as_its_key(name: str) -> None:
    step: Any = object.__new__(STEP_KINDS[name])  # no field is read
    assert report_kind(step) == name


def test_a_kind_missing_from_a_table_fails() -> None:
    """The check can fail: a fifth kind, known to the model only."""

    @dataclasses.dataclass(frozen=True)
    class CopyStep(Step):
        kind = "copy"
        MESSAGES = ()

    widened = {**STEP_KINDS, "copy": CopyStep}
    missing = [t for t, known in TABLES.items() if known() != set(widened)]
    assert missing == list(TABLES)


SHARED = ("name", "allow", "lock_timeout", "statement_timeout", "retry", "expect", "capture")


@pytest.mark.parametrize("key", SHARED)
def test_a_property_kinds_share_is_defined_once_in_the_schema(key: str) -> None:
    """Each kind lists the keys it takes (the schema closes every kind's mapping), but a key
    they share points at one definition: the same `$ref` from every kind that has it."""
    refs = {
        kind.key: kind.schema["properties"][key].get("$ref")
        for kind in schema.load().kinds
        if key in kind.schema["properties"]
    }
    assert len(refs) >= 2, refs  # shared by two kinds at least
    assert len(set(refs.values())) == 1, refs
    assert next(iter(refs.values())), f"{key} is written out in a kind, not referred to"


def test_the_model_defines_shared_properties_once() -> None:
    """On Step, not on a kind: name, allow, settings (the timeouts), retry, expect, captures."""
    base = {f.name for f in dataclasses.fields(Step)}
    assert {"name", "allow", "settings", "retry", "expect", "captures"} <= base
    for cls in STEP_KINDS.values():
        own = {f.name for f in dataclasses.fields(cls)} - base
        assert not own & {"name", "allow", "settings", "retry", "expect", "captures"}
