"""JSON Schema errors -> diagnostics at the YAML position of the value they are about.

A step's `oneOf` is resolved like a discriminator (the key that holds its SQL picks the branch),
so errors come from the step's own kind; each error reads as a sentence about the plan
("a batch step is missing the required key 'batch'"), with "did you mean" for typos.

Inline bulk rows are the bulk of a large plan. The schema says of a row only what JSON types its
values have, so rows with the same types validate alike: each distinct shape is validated once
and its errors are reported for every row of that shape. That holds while the row schema
constrains types only (schema.py checks it); otherwise every row is validated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Position
from .document import Checker, Document, Map
from .schema import PlanSchema
from .values import Number

if TYPE_CHECKING:
    from jsonschema import ValidationError

Add = Callable[[Position, str, str], None]

# Below this many rows a step's rows are validated one by one.
_SHAPES_FROM = 64


def check_schema(document: Document, schema: PlanSchema, add: Add) -> set[int]:
    """Validate the data against the schema; report every error; return the (0-based) indexes
    of the steps that have one."""
    data = document.data
    skeleton, shapes = _by_shape(data, schema)
    if schema.fast(skeleton):
        return set()  # valid: the same verdict as the schema's, sooner
    bad_steps: set[int] = set()
    reporter = _Reporter(document, schema, add)
    for error in schema.validator.iter_errors(skeleton):
        for leaf in reporter.leaf_errors(error):
            path: list[object] = list(leaf.absolute_path)
            for real in _expand(path, shapes):
                reporter.report(leaf, real)
                if len(real) >= 2 and real[0] == "steps" and isinstance(real[1], int):
                    bad_steps.add(real[1])
    return bad_steps


# --- rows validated once per shape -----------------------------------------------------------


def _json_type(value: object) -> type:
    # Number and int are both JSON numbers; bool is not.
    kind = type(value)
    return int if kind is Number else kind


def _by_shape(data: Any, schema: PlanSchema) -> tuple[Any, dict[int, list[list[int]]]]:
    """The data with each large step's rows cut to one row per shape, and, per step index, the
    original row indexes behind each kept row."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return data, {}
    if not schema.rows_by_shape:
        return data, {}
    steps = list(data["steps"])
    shapes: dict[int, list[list[int]]] = {}
    for index, step in enumerate(steps):
        rows = step.get("rows") if isinstance(step, dict) else None
        if not isinstance(rows, list) or len(rows) < _SHAPES_FROM:
            continue
        groups: dict[object, list[int]] = {}
        for number, row in enumerate(rows):
            shape = tuple(map(_json_type, row)) if type(row) is list else _json_type(row)
            groups.setdefault(shape, []).append(number)
        kept = list(groups.values())
        steps[index] = {**step, "rows": [rows[g[0]] for g in kept]}
        shapes[index] = kept
    return {**data, "steps": steps}, shapes


def _expand(path: Sequence[object], shapes: dict[int, list[list[int]]]) -> Iterator[list[object]]:
    if (
        len(path) >= 4
        and path[0] == "steps"
        and path[1] in shapes
        and path[2] == "rows"
        and isinstance(path[3], int)
    ):
        step = path[1]
        assert isinstance(step, int)
        for row in shapes[step][path[3]]:
            yield [*path[:3], row, *path[4:]]
    else:
        yield list(path)


# --- reporting -------------------------------------------------------------------------------


class _Reporter(Checker):
    def leaf_errors(self, error: ValidationError) -> Iterator[ValidationError]:
        """Resolve a step's oneOf to the branch its kind key selects, like a discriminator; any
        other oneOf to the branch of the value's JSON type."""
        if error.validator != "oneOf":
            yield error
            return
        if not _is_step_choice(error.schema):
            branch = _branch_of_type(error.schema, error.instance)
            if branch is None:
                yield error  # no branch of its type: a type error
                return
            for sub in error.context or ():
                if sub.relative_schema_path and sub.relative_schema_path[0] == branch:
                    yield from self.leaf_errors(sub)
            return
        if not isinstance(error.instance, dict):
            return  # not a mapping: the step's own `type` error says so
        present = [k for k in self.schema.kind_keys if k in error.instance]
        if len(present) != 1:
            yield error  # reported as a missing or ambiguous kind
            return
        branch = self.schema.kind(present[0]).branch
        for sub in error.context or ():
            if sub.relative_schema_path and sub.relative_schema_path[0] == branch:
                yield from self.leaf_errors(sub)

    def report(self, error: ValidationError, path: list[object]) -> None:
        node = self.document.node_at(path)
        where = self.at(self.document.offset_at(path))
        validator = error.validator
        instance = error.instance
        rule: Any = error.validator_value
        sub_schema: Any = error.schema
        subject = _subject(sub_schema, path)

        if validator == "oneOf" and not _is_step_choice(sub_schema):
            types = [b.get("type") for b in sub_schema.get("oneOf", []) if isinstance(b, dict)]
            names = [article(str(t)) for t in types if t]
            self.add(
                where, f"{subject} must be {_or_list(names)}, not {type_name(instance)}", "type"
            )
            return
        if validator == "oneOf" and isinstance(instance, dict):
            kinds = self.schema.kind_keys
            present = [k for k in kinds if k in instance]
            if present:
                second = node.key(present[1]) if isinstance(node, Map) else None
                self.add(
                    self.at(second.start) if second else where,
                    f"a step has exactly one kind, this one has {_quoted_list(present)}",
                    "step-kind",
                )
                return
            self.add(
                where,
                f"the step has no kind: it needs one of the keys {_quoted_list(kinds)}",
                "step-kind",
            )
            allowed = self.schema.all_step_keys
            for key in instance:
                if key not in allowed:
                    self.unknown_key(node, where, key, allowed, "a step")
            return
        if validator == "additionalProperties" and isinstance(instance, dict):
            allowed = tuple(sub_schema.get("properties", {}))
            for key in instance:
                if key not in allowed:
                    self.unknown_key(node, where, key, allowed, subject)
            return
        if validator == "required":
            missing = [k for k in rule if isinstance(instance, dict) and k not in instance]
            for key in missing:
                self.add(where, f"{subject} is missing the required key '{key}'", "missing-key")
            return
        if validator == "type":
            names = [rule] if isinstance(rule, str) else list(rule)
            self.add(
                where,
                f"{subject} must be {_or_list([article(n) for n in names])}, not {type_name(instance)}",
                "type",
            )
            return
        if validator == "pattern" and "us|ms|s|min|h|d" in str(rule):
            self.add(
                where,
                f"{subject} must be a duration such as 500ms, 5s or 1min (a number and a unit: "
                f"us, ms, s, min, h, d; or an integer of milliseconds), not {_shown(instance)}",
                "value",
            )
            return
        if validator == "const":
            self.add(where, f"{subject} must be {rule!r}, not {_shown(instance)}", "value")
            return
        if validator == "enum":
            if isinstance(node, Map) and isinstance(instance, str) and node.key(instance):
                key = node.key(instance)  # propertyNames: the key itself is what is wrong
                assert key is not None
                where = self.at(key.start)
            choices = [str(c) for c in rule]
            hint = did_you_mean(str(instance), choices) if isinstance(instance, str) else ""
            if sub_schema.get("title") == "Warning code":  # the README and the schema list them
                self.add(where, f"{_shown(instance)} is not a warning code{hint}", "value")
                return
            self.add(
                where,
                f"{subject} must be one of {', '.join(choices)}, not {_shown(instance)}{hint}",
                "value",
            )
            return
        if validator == "uniqueItems":
            self.add(where, f"{subject} lists a value twice", "value")
            return
        if validator in ("minItems", "minLength") and rule == 1:
            self.add(where, f"{subject} must not be empty", "empty")
            return
        if validator == "maxLength" and isinstance(instance, str):
            most = "one character" if rule == 1 else f"at most {rule:,} characters"
            self.add(where, f"{subject} must be {most}, not {len(instance):,}", "value")
            return
        self.add(where, f"{subject}: {_short(error.message)}", "schema")

    def unknown_key(
        self, mapping: object, where: Position, key: object, allowed: Sequence[str], subject: str
    ) -> None:
        key_node = None
        if isinstance(mapping, Map):
            key_node = next(
                (k for k, _ in mapping.entries if k.value == key and type(k.value) is type(key)),
                None,
            )
        at = self.at(key_node.start) if key_node is not None else where
        if not isinstance(key, str):
            raw = key_node.text if key_node is not None else str(key)
            self.add(
                at,
                f"the key {raw!r} in {subject} is not text in YAML; quote it if you meant the name",
                "unknown-key",
            )
            return
        self.add(
            at,
            f"unknown key '{_short(key)}' in {subject}{did_you_mean(key, allowed)}",
            "unknown-key",
        )


def _is_step_choice(schema: Any) -> bool:
    """Whether a oneOf chooses a step's kind (resolved by its key, not by type)."""
    branches = schema.get("oneOf", []) if isinstance(schema, dict) else []
    return any(str(b.get("$ref", "")).endswith("Step") for b in branches if isinstance(b, dict))


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _branch_of_type(schema: Any, instance: object) -> int | None:
    kind = _JSON_TYPES.get(type(instance), "number")
    for index, branch in enumerate(schema.get("oneOf", [])):
        if isinstance(branch, dict) and branch.get("type") == kind:
            return index
    return None


# --- wording ---------------------------------------------------------------------------------


def _subject(schema: Any, path: Sequence[object]) -> str:
    """How an error names the value it is about: 'the plan', 'a batch step', 'steps[2].params'."""
    if not path:
        return "the plan"
    title = schema.get("title") if isinstance(schema, dict) else None
    if isinstance(title, str) and title.endswith("step"):
        return article(title)
    rest = list(path)
    owner = ""
    if len(rest) == 2 and rest[0] == "steps" and isinstance(rest[1], int):
        return f"step {rest[1] + 1}"
    if len(rest) >= 3 and rest[0] == "steps" and isinstance(rest[1], int):
        owner = f" of step {rest[1] + 1}"
        rest = rest[2:]
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"'{_short(text)}'{owner}"


def _short(text: str, limit: int = 80) -> str:
    """Long text cut for a message: the diagnostic points at the value anyway."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: object) -> str:
    if isinstance(value, Number):
        return value.text
    return _short(repr(value))


def did_you_mean(word: str, choices: Iterable[str], *, braces: bool = False) -> str:
    if len(word) > 100:
        return ""
    import difflib  # an invalid plan's "did you mean" only

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match:
        return ""
    return f"; did you mean {{{match[0]}}}?" if braces else f"; did you mean '{match[0]}'?"


def _quoted_list(items: Sequence[str]) -> str:
    quoted = [f"'{i}'" for i in items]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _or_list(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text", "null": "null"}


def article(word: str) -> str:
    if word in _TYPE_WORDS:
        return _TYPE_WORDS[word]
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Number)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
