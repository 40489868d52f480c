"""A JSON Schema compiled to Python closures that give a document the same verdict (valid or
not) as jsonschema's Draft 2020-12 validator, in a fraction of its time and without importing
it: a valid plan, the common case, never needs jsonschema; an invalid one is validated again
by jsonschema for its errors (schema_errors.py). A differential test holds the two to the same
verdict.

Only the keywords plan.schema.json uses are compiled. Any other keyword makes compile_schema()
refuse, so that a schema change cannot silently weaken the check."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .values import Number

Check = Callable[[Any], bool]

_IGNORED = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
)


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this compiler does not know."""


def compile_schema(document: Mapping[str, Any]) -> Check:
    """The check for `document`, whose `$ref`s point into its own `$defs`."""
    defs: Mapping[str, Any] = document.get("$defs", {})
    compiled: dict[str, Check] = {}

    def reference(ref: str) -> Check:
        if not ref.startswith("#/$defs/"):
            raise UnsupportedSchema(f"$ref {ref!r}: only #/$defs/... is supported")
        name = ref.rsplit("/", 1)[1]
        if name not in compiled:
            compiled[name] = _never  # a placeholder while it compiles (recursion)
            compiled[name] = build(defs[name])
        if compiled[name] is not _never:
            return compiled[name]

        def late(instance: Any) -> bool:  # recursive: looked up when it runs
            return compiled[name](instance)

        return late

    def build(schema: Any) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        unknown = set(schema) - _IGNORED - set(_ORDER)
        if unknown:
            raise UnsupportedSchema(f"keywords not supported: {', '.join(sorted(unknown))}")
        checks: list[Check] = []
        for keyword in _ORDER:
            if keyword in schema:
                checks.append(_KEYWORDS[keyword](schema[keyword], schema, build, reference))
        checks = [c for c in checks if c is not _always]
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        return _all_of(checks)

    return build(document)


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _all_of(checks: Sequence[Check]) -> Check:
    checks = tuple(checks)

    def check(instance: Any) -> bool:
        for one in checks:  # noqa: SIM110 (a loop makes no generator: this is the hot path)
            if not one(instance):
                return False
        return True

    return check


# --- types, as jsonschema's type checker (with plan Numbers as numbers) ----------------------


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _is_number(x: Any) -> bool:
    return isinstance(x, Number) or (isinstance(x, (int, float)) and not isinstance(x, bool))


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def real(x: Any) -> float | None:
    """A number's value for minimum and maximum: a plan Number's from its text (None when the
    text is not one Python reads, such as YAML 1.1's sexagesimal 1:30.5)."""
    if isinstance(x, Number):
        try:
            return float(x.special or x.text)
        except ValueError:
            return None
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def equal(one: Any, two: Any) -> bool:
    """JSON equality, as jsonschema's: true is not 1, [1] is not (1,) only by type of list."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and bool(one == two)
    return bool(one == two)


# --- keywords ---------------------------------------------------------------------------------

Build = Callable[[Any], Check]
Reference = Callable[[str], Check]


def _type(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    if isinstance(value, str):
        return _TYPES[value]
    tests = tuple(_TYPES[v] for v in value)
    return lambda x: any(test(x) for test in tests)


def _ref(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return reference(value)


def _required(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    names = tuple(value)
    return lambda x: not isinstance(x, dict) or all(name in x for name in names)


def _properties(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    known = {name: build(sub) for name, sub in value.items()}
    extra = schema.get("additionalProperties", True)
    other: Check | None = None if extra is False else build(extra)

    def check(x: Any) -> bool:
        if not isinstance(x, dict):
            return True
        for name, item in x.items():
            one = known.get(name, other)
            if one is None or not one(item):
                return False
        return True

    return check


def _additional(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    if "properties" in schema:
        return _always  # checked with the properties
    return _properties({}, schema, build, reference)


def _items(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    each = build(value)
    return lambda x: not isinstance(x, list) or all(each(item) for item in x)


def _enum(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    options = tuple(value)
    return lambda x: any(equal(x, option) for option in options)


def _const(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return lambda x: equal(x, value)


def _one_of(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    branches = tuple(build(sub) for sub in value)
    return lambda x: sum(1 for branch in branches if branch(x)) == 1


def _any_of(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    branches = tuple(build(sub) for sub in value)
    return lambda x: any(branch(x) for branch in branches)


def _all_of_keyword(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return _all_of([build(sub) for sub in value])


def _not(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    inner = build(value)
    return lambda x: not inner(x)


def _dependent(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    dependents = tuple((name, build(sub)) for name, sub in value.items())
    return lambda x: (
        not isinstance(x, dict) or all(check(x) for name, check in dependents if name in x)
    )


def _pattern(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    search = re.compile(value).search
    return lambda x: not isinstance(x, str) or search(x) is not None


def _min_length(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return lambda x: not isinstance(x, str) or len(x) >= value


def _max_length(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return lambda x: not isinstance(x, str) or len(x) <= value


def _minimum(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    def check(x: Any) -> bool:
        number = real(x)
        return number is None or number >= value

    return check


def _maximum(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    def check(x: Any) -> bool:
        number = real(x)
        return number is None or number <= value

    return check


def _min_items(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return lambda x: not isinstance(x, list) or len(x) >= value


def _min_properties(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    return lambda x: not isinstance(x, dict) or len(x) >= value


def _unique(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    if not value:
        return _always

    def check(x: Any) -> bool:
        if not isinstance(x, list):
            return True
        return not any(equal(a, b) for i, a in enumerate(x) for b in x[i + 1 :])

    return check


def _property_names(value: Any, schema: Any, build: Build, reference: Reference) -> Check:
    names = build(value)
    return lambda x: not isinstance(x, dict) or all(names(name) for name in x)


_KEYWORDS: dict[str, Callable[[Any, Any, Build, Reference], Check]] = {
    # the cheap ones first: a document that fails, fails soon
    "type": _type,
    "required": _required,
    "const": _const,
    "enum": _enum,
    "minLength": _min_length,
    "maxLength": _max_length,
    "minimum": _minimum,
    "maximum": _maximum,
    "minItems": _min_items,
    "minProperties": _min_properties,
    "pattern": _pattern,
    "propertyNames": _property_names,
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
    "uniqueItems": _unique,
    "dependentSchemas": _dependent,
    "$ref": _ref,
    "not": _not,
    "anyOf": _any_of,
    "allOf": _all_of_keyword,
    "oneOf": _one_of,
}
_ORDER = tuple(_KEYWORDS)
