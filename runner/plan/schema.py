"""Loads plan.schema.json (shipped inside the package) once, with its compiled validator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

from .schema_check import Check, compile_schema, real
from .values import Number


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
    kinds: tuple[StepKind, ...]
    rows_by_shape: bool  # a bulk row's validity depends only on its values' JSON types
    fast: Check  # the same verdict as `validator`, sooner: see quick_schema(), schema_check.py

    @cached_property
    def validator(self) -> Any:
        """A Draft 2020-12 validator that knows plan Numbers: for the errors of an invalid
        plan (jsonschema is imported only then)."""
        return _validator_class()(self.document)

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
    return PlanSchema(
        document,
        tuple(kinds),
        _rows_by_shape(defs),
        compile_schema(quick_schema(document, [k.key for k in kinds])),
    )


def quick_schema(document: dict[str, Any], kind_keys: list[str]) -> dict[str, Any]:
    """The schema with the same verdict on every document, faster to check a valid plan with
    (the errors of an invalid one come from the schema itself).

    A step's `oneOf` tries every kind's branch; here the kind key picks the one branch to try
    (`dependentSchemas`: the key, when there, brings its branch in), which accepts the same
    steps: a branch admits no other kind's key. References are written in place where they do not recur, and
    annotations left out: looking a `$ref` up costs more than the check it leads to."""
    defs = document["$defs"]
    step = defs["step"]
    branches = [ref["$ref"] for ref in step["oneOf"]]
    quick_step = {
        "type": "object",
        "anyOf": [{"required": [key]} for key in kind_keys],
        # the kind's key brings its branch in (no error object made for an absent key)
        "dependentSchemas": {
            key: {"$ref": ref} for key, ref in zip(kind_keys, branches, strict=True)
        },
    }
    defs = {**defs, "step": quick_step}

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        out = {
            k: (
                {name: inline(sub, stack) for name, sub in v.items()}  # names, not keywords
                if k in ("properties", "patternProperties") and isinstance(v, dict)
                else inline(v, stack)
            )
            for k, v in node.items()
            if k not in _ANNOTATIONS
        }
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            name = reference.rsplit("/", 1)[1]
            if name in stack:
                return out  # recursive: left as a reference
            target = inline(defs[name], (*stack, name))
            out.pop("$ref")
            if not out:
                return target
            return {"allOf": [target, out]}
        return out

    quick: dict[str, Any] = inline({k: v for k, v in document.items() if k != "$defs"}, ())
    quick["$defs"] = {name: inline(value, (name,)) for name, value in defs.items()}
    return quick


_ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})


def _rows_by_shape(defs: dict[str, Any]) -> bool:
    """Whether the schema constrains a bulk row's values by their JSON types alone, so that
    rows of the same types validate alike (schema_errors.py validates one of each)."""
    row = defs["bulkInsertStep"]["properties"]["rows"]["items"]
    if set(row) - _ANNOTATIONS - {"type", "items"} or row.get("type") != "array":
        return False
    item = row.get("items", {})
    if set(item) == {"$ref"}:
        item = defs.get(item["$ref"].rsplit("/", 1)[-1], {"unknown": True})
    return not (set(item) - _ANNOTATIONS - {"type"})


def _validator_class() -> Any:
    """jsonschema's Draft 2020-12 validator, knowing plan Numbers: numbers (of the value they
    are written as) for `type`, `minimum` and `maximum`."""
    from jsonschema import Draft202012Validator, validators

    def is_number(checker: object, instance: object) -> bool:
        return isinstance(instance, Number) or Draft202012Validator.TYPE_CHECKER.is_type(
            instance, "number"
        )

    def bound(keyword: str) -> Any:
        base = Draft202012Validator.VALIDATORS[keyword]

        def check(validator: Any, limit: Any, instance: Any, schema: Any) -> Any:
            if isinstance(instance, Number):
                value = real(instance)
                return () if value is None else base(validator, limit, value, schema)
            return base(validator, limit, instance, schema)

        return check

    return validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator,
        validators={"minimum": bound("minimum"), "maximum": bound("maximum")},
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine("number", is_number),
    )
