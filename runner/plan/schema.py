"""Loads plan.schema.json (shipped inside the package) once, with its compiled validator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator


@dataclass(frozen=True)
class StepKind:
    key: str  # the key that holds the step's SQL, e.g. "batch"
    branch: int  # its index in $defs.step.oneOf
    schema: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.schema.get("title", f"{self.key} step"))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.schema.get("properties", {}))


@dataclass(frozen=True)
class PlanSchema:
    document: dict[str, Any]
    validator: Draft202012Validator
    kinds: tuple[StepKind, ...]

    def kind(self, key: str) -> StepKind:
        return next(k for k in self.kinds if k.key == key)

    @property
    def kind_keys(self) -> tuple[str, ...]:
        return tuple(k.key for k in self.kinds)

    @property
    def all_step_keys(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for kind in self.kinds:
            seen.update(dict.fromkeys(kind.keys))
        return tuple(seen)


def schema_text() -> str:
    return (resources.files("runner.plan") / "plan.schema.json").read_text(encoding="utf-8")


@cache
def load() -> PlanSchema:
    document = json.loads(schema_text())
    defs = document["$defs"]
    kinds = []
    # The step kinds are read from the schema so that it stays the one definition of the format.
    for branch, ref in enumerate(defs["step"]["oneOf"]):
        definition = defs[ref["$ref"].rsplit("/", 1)[1]]
        kinds.append(StepKind(definition["required"][0], branch, definition))
    return PlanSchema(document, Draft202012Validator(document), tuple(kinds))
