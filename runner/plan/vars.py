"""A plan's vars: declared with a type, given on the command line, in a file or the environment,
and bound where the plan's values refer to them: as parameters, row values, file paths and
message text, never into SQL.

A plan value refers to a var as `{name}`: a value that is exactly `{name}` takes the var's value
with its type; inside a longer text, `{name}` is replaced by the text the value is sent as.
`{{name}}` writes `{name}`; any other brace is text, so array literals (`{1,2}`) and JSON are
left as written.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .. import secrets
from ..errors import Diagnostic, PlanInvalid, Position
from .files import FileSource
from .model import AnyStep, BulkInsertStep, Message, Plan, Use, Var
from .templates import Field, Template
from .values import MASK, Number, Secret, holds_secret, json_text, message_text, sql_text

TYPES = (
    "text", "smallint", "integer", "bigint", "numeric", "boolean", "date", "timestamptz", "json",
    "list",
)  # fmt: skip
# The integer types' ranges, as PostgreSQL's: a value outside is refused before anything runs.
RANGES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED = frozenset({"count", "rows"})  # fields messages already have
_REF = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def references(text: str) -> Template | None:
    """The var references of a plan text, or None when it has none (nor `{{name}}`)."""
    if "{" not in text:
        return None
    parts: list[str | Field] = []
    last = 0
    for match in _REF.finditer(text):
        if match.start() > last:
            parts.append(text[last : match.start()])
        if match.group(1) is not None:
            parts.append("{" + match.group(1) + "}")
        else:
            parts.append(Field(match.group(2), match.start()))
        last = match.end()
    if not parts:
        return None
    if last < len(text):
        parts.append(text[last:])
    merged: list[str | Field] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return Template(text, tuple(merged))


def uses_in(value: object) -> Iterator[tuple[tuple[int | str, ...], Template]]:
    """(path inside `value`, template) of every text in it that refers to vars."""
    if type(value) is str:
        template = references(value)
        if template is not None:
            yield (), template
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, template in uses_in(item):
                yield (index, *path), template
    elif isinstance(value, dict):
        for key, item in value.items():
            for path, template in uses_in(item):
                yield (key, *path), template


# --- values of each type ----------------------------------------------------------------------

_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMERIC = re.compile(
    r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?i:infinity|inf)|(?i:nan)"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


class VarValueError(ValueError):
    pass


def from_text(var: Var, text: str) -> object:
    """A var's value from text (the command line, the environment); VarValueError if it does
    not read as the var's type."""
    kind = var.type
    if kind == "text":
        return _no_nul(text)
    if kind in RANGES:
        if not _INTEGER.fullmatch(text.strip()):
            raise VarValueError(f"the value is not {_article(kind)}")
        return _in_range(kind, int(text.strip()))
    if kind == "numeric":
        if not _NUMERIC.fullmatch(text.strip()):
            raise VarValueError("the value is not a number")
        return Number(text.strip())
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise VarValueError("the value is not a boolean (true or false, yes or no, on or off)")
    if kind == "date":
        stripped = text.strip()
        if stripped.lower() not in ("infinity", "-infinity"):
            try:
                if not _DATE.fullmatch(stripped):
                    raise ValueError
                datetime.date.fromisoformat(stripped)
            except ValueError:
                raise VarValueError("the value is not a date (YYYY-MM-DD)") from None
        return stripped
    if kind == "timestamptz":
        stripped = text.strip()
        if stripped.lower() not in ("infinity", "-infinity"):
            try:
                if not _TIMESTAMP.fullmatch(stripped):
                    raise ValueError
                datetime.datetime.fromisoformat(stripped)
            except ValueError:
                raise VarValueError(
                    "the value is not a timestamp (ISO 8601: 2026-12-01T09:30:00+01:00)"
                ) from None
        return stripped
    if kind == "json":
        try:
            _no_lone_surrogate(json.loads(text, parse_constant=_not_json))
        except ValueError as e:
            raise VarValueError(f"the value is not JSON: {e}") from None
        return _no_nul(text)
    assert kind == "list"
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped, parse_float=Number, parse_constant=Number)
        except ValueError as e:
            raise VarValueError(f"the value is not a JSON array: {e}") from None
        if not isinstance(items, list):
            raise VarValueError("the value is not a JSON array")
        return _no_nul(items)
    return _no_nul([item.strip() for item in stripped.split(",")] if stripped else [])


def _not_json(constant: str) -> Any:
    """NaN, Infinity and -Infinity: Python's json reads them, JSON (and PostgreSQL) does not."""
    raise ValueError(f"{constant} is not a JSON value")


def _no_lone_surrogate(value: Any) -> None:
    """A \\ud800 escape with no partner: Python's json reads it, PostgreSQL does not; nor does
    jsonb read \\u0000 (json does, but a value must suit both)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                raise ValueError("a \\u escape is half of a surrogate pair")
            if "\0" in item:
                raise ValueError("\\u0000 cannot be stored in jsonb")


def _no_nul(value: Any) -> Any:
    """PostgreSQL's text cannot hold NUL: such a value is refused before anything runs, not by
    the server after earlier steps committed."""
    if isinstance(value, str) and "\x00" in value:
        raise VarValueError("the value holds a NUL character, which PostgreSQL text cannot hold")
    if isinstance(value, (list, tuple)):
        for item in value:
            _no_nul(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    return value


def _in_range(kind: str, value: int) -> int:
    bound = RANGES[kind]
    if not -bound <= value < bound:
        raise VarValueError(
            f"the value is out of range for {kind} ({-bound} to {bound - 1}); declare the var "
            f"{'bigint' if kind != 'bigint' else 'numeric'} for larger integers"
        )
    return value


def from_yaml(var: Var, value: object) -> object:
    """A var's value from YAML (a default, a --vars file): a text reads as from_text; other
    values must be of the var's type."""
    if isinstance(value, str):
        return from_text(var, value)
    kind = var.type
    if value is None:
        raise VarValueError("a var's value cannot be null")
    if kind == "text" and (type(value) is int or isinstance(value, Number)):
        return sql_text(value)
    if kind in RANGES and type(value) is int:
        return _in_range(kind, value)
    if kind == "numeric" and (type(value) is int or isinstance(value, Number)):
        return value
    if kind == "boolean" and type(value) is bool:
        return value
    if kind == "json":
        try:
            return _no_nul(json_text(value))
        except ValueError as e:  # .nan, .inf, a hexadecimal integer too long: not JSON
            raise VarValueError(f"the value is not JSON: {e}") from None
    if kind == "list" and isinstance(value, list):
        return _no_nul(value)
    raise VarValueError(f"{_describe(value)} is not {_article(kind)}")


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Number)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "the value"


def _article(kind: str) -> str:
    return {
        "text": "a text",
        "smallint": "a smallint",
        "integer": "an integer",
        "bigint": "a bigint",
        "numeric": "a number",
        "boolean": "a boolean",
        "date": "a date",
        "timestamptz": "a timestamp",
        "json": "JSON",
        "list": "a list",
    }[kind]


# --- binding ------------------------------------------------------------------------------------


def bind(plan: Plan, values: Mapping[str, object]) -> Plan:
    """The plan with every reference to a var replaced by its value (a Secret for a secret var).
    `values` holds a value for every var the plan declares."""
    if not plan.vars and not any(step.uses for step in plan.steps):
        return plan
    return replace(
        plan,
        on_connect=bind_message(plan.on_connect, values, plan.null_text),
        steps=tuple(bind_step(step, values, plan.null_text) for step in plan.steps),
    )


def bind_step(step: AnyStep, values: Mapping[str, object], null_text: str) -> AnyStep:
    """The step with the uses and message fields `values` can resolve written in; the uses it
    cannot (a var captured by an earlier step, while the plan is bound before running) stay."""
    changes: dict[str, Any] = {}
    areas: dict[str, list[Any]] = {}  # "params" or "rows", copied once
    waiting: list[Use] = []
    for use in step.uses:
        if any(f.name not in values for f in use.template.fields):
            waiting.append(use)  # captured later, or (sqlplan show) given no value
            continue
        if use.path == ("source", "file"):
            assert isinstance(step, BulkInsertStep)
            changes["source"] = _bound_source(step, use, values)
            continue
        if use.path[0] == "expect":  # ("expect", "rows", row, column)
            expect = changes.get("expect", step.expect)
            assert expect is not None
            assert expect.rows is not None
            _, _, row, *inside = use.path
            assert isinstance(row, int)
            rows = list(expect.rows)
            rows[row] = _set(rows[row], inside, resolve(use.template, values))
            changes["expect"] = replace(expect, rows=tuple(rows))
            continue
        area, first, *rest = use.path
        items = areas.setdefault(str(area), list(getattr(step, str(area))))
        assert isinstance(first, int)
        items[first] = _set(items[first], rest, resolve(use.template, values))
    for area, items in areas.items():
        changes[area] = tuple(items)
    if len(waiting) != len(step.uses):
        changes["uses"] = tuple(waiting)
    for name in ("before", "after", "after_no_rows", "header", "row", "empty", "footer"):
        message = getattr(step, name, None)
        if message is not None:
            bound = bind_message(message, values, null_text)
            if bound is not message:
                changes[name] = bound
    return replace(step, **changes) if changes else step


def bind_message(
    message: Message | None, values: Mapping[str, object], null_text: str
) -> Message | None:
    """A message with the fields that name vars written in (**** for a secret)."""
    if message is None or not any(f.name in values for f in message.template.fields):
        return message
    parts: list[str | Field] = []
    for part in message.template.parts:
        if isinstance(part, Field) and part.name in values:
            text = message_text(values[part.name], null_text)
            part_text: str | Field = text
        else:
            part_text = part
        if isinstance(part_text, str) and parts and isinstance(parts[-1], str):
            parts[-1] += part_text
        else:
            parts.append(part_text)
    return replace(message, template=Template(message.template.text, tuple(parts)))


def resolve(template: Template, values: Mapping[str, object]) -> object:
    """A referring value's value: the var's own for an exact `{name}`, else the text."""
    parts = template.parts
    if len(parts) == 1 and isinstance(parts[0], Field):
        return values[parts[0].name]
    pieces = []
    secret = False
    for part in parts:
        if isinstance(part, Field):
            value = values[part.name]
            secret = secret or holds_secret(value)
            pieces.append(sql_text(value) or "")
        else:
            pieces.append(part)
    text = "".join(pieces)
    return Secret(text) if secret else text


def _set(container: Any, path: list[int | str], value: object) -> Any:
    """A copy of `container` (tuples, lists, mappings) with `value` at `path`."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(container, tuple):
        assert isinstance(key, int)
        return (*container[:key], _set(container[key], rest, value), *container[key + 1 :])
    if isinstance(container, list):
        assert isinstance(key, int)
        return [*container[:key], _set(container[key], rest, value), *container[key + 1 :]]
    assert isinstance(container, dict)
    return {**container, key: _set(container[key], rest, value)}


def masked(value: object) -> str:
    """How a var's value is shown: **** for a secret, else the text it is sent as."""
    return MASK if holds_secret(value) else (sql_text(value) or "")


# --- where values come from -------------------------------------------------------------------


def gather(
    plan: Plan,
    assignments: Sequence[str] = (),
    files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    required: bool = True,
    others: Collection[str] = (),
) -> dict[str, object]:
    """Every declared var's value: from `--var name=value` (the last one wins), else a
    `--vars` file (the last file that has it), else the environment variable the var names,
    else its default. PlanInvalid with every problem, each at a position: the `--vars` file's
    entry, else the var's declaration. Not `required`: a var without a value is left out.
    `others`: names that other plans of the same run declare, given for them, not unknown."""
    from .document import Problem, compose, diagnostic
    from .schema_errors import did_you_mean
    from .source import decode_plan, read_plan

    environ = {} if environ is None else environ
    problems: list[Diagnostic] = []
    declared = {var.name: var for var in plan.vars}
    values: dict[str, object] = {}
    given: set[str] = set()  # names a file or --var gave, rightly or not
    top = Position(plan.path, 1, 1)

    def unknown(name: str, where: Position, source: str) -> None:
        if name in others:
            return
        names = ", ".join(declared) or "none"
        problems.append(
            Diagnostic(
                where,
                f"{source} the plan does not declare (its vars: {names})"
                f"{did_you_mean(name, tuple(declared))}",
                "var-unknown",
            )
        )

    for path in files:
        try:
            text = decode_plan(read_plan(path), path)
            document = compose(text, path)
        except PlanInvalid as e:
            problems.extend(e.diagnostics)
            continue
        except Problem as refused:
            problems.append(diagnostic(text, path, refused))
            continue
        problems.extend(diagnostic(text, path, p) for p in document.problems)  # a key twice
        data = document.data
        if not isinstance(data, dict):
            problems.append(
                Diagnostic(
                    Position(path, 1, 1), "a vars file is a mapping of names to values", "var-file"
                )
            )
            continue
        for name, value in data.items():
            where = document.position(document.offset_at([name]))
            var = declared.get(name) if isinstance(name, str) else None
            if var is None:
                unknown(str(name), where, f"the vars file {path} gives {str(name)!r}, a var")
                continue
            given.add(var.name)
            try:
                values[name] = from_yaml(var, value)
            except VarValueError as e:
                problems.append(Diagnostic(where, f"var {name!r}: {e}", "var-type"))
    for number, assignment in enumerate(assignments, start=1):
        name, equals, text = assignment.partition("=")
        if not equals:
            # not shown: what was meant for a name may be a value, a secret's
            problems.append(
                Diagnostic(top, "a --var has no '=': write --var name=value", "var-unknown")
            )
            continue
        var = declared.get(name)
        if var is None:
            # The name is not repeated: a value with '=' in it, a secret's, mistyped without
            # its name would put a piece of it there. Only declared names are suggested.
            unknown(name, top, f"--var #{number} (of {len(assignments)}) names a var")
            continue
        given.add(name)
        try:
            values[name] = from_text(var, text)
        except VarValueError as e:
            problems.append(
                Diagnostic(var.position, f"--var {name}: {_masked_error(var, e)}", "var-type")
            )
    for var in plan.vars:
        if var.name in given:
            continue
        if var.env is not None and var.env in environ:
            try:
                values[var.name] = from_text(var, environ[var.env])
            except VarValueError as e:
                problems.append(
                    Diagnostic(
                        var.position,
                        f"${var.env} (var {var.name!r}): {_masked_error(var, e)}",
                        "var-type",
                    )
                )
            continue
        if var.default is not None:
            values[var.name] = var.default
            continue
        if not required:
            continue
        hint = f", or set ${var.env}" if var.env else ""
        problems.append(
            Diagnostic(
                var.position,
                f"var {var.name!r} ({var.type}) has no value: give --var {var.name}=...{hint}",
                "var-missing",
            )
        )
    for name, value in values.items():
        short = [t for t in secret_texts({name: Secret(value)}) if len(t) < secrets.MIN_LENGTH]
        if declared[name].secret and short:
            problems.append(
                Diagnostic(
                    declared[name].position,
                    f"var {name!r} is secret, but its value (or an item of it) is shorter than "
                    f"{secrets.MIN_LENGTH} characters: too short to mask in what the server "
                    "says without mangling the text around it",
                    "var-secret",
                )
            )
    if problems:
        raise PlanInvalid(problems)
    return {
        name: Secret(value) if declared[name].secret else value for name, value in values.items()
    }


def _masked_error(var: Var, error: VarValueError) -> str:
    """No error repeats a value (VarValueError never does); a secret's says less still."""
    if not var.secret:
        return str(error)
    return f"the value is not a valid {var.type}"


def secret_texts(values: Mapping[str, object]) -> list[str]:
    """The texts of secret values, longest first: what no output may show."""
    found: set[str] = set()

    def collect(value: object) -> None:
        if isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        text = sql_text(value)
        if text:
            found.add(text)

    for value in values.values():
        if isinstance(value, Secret):
            collect(value.value)
    return sorted(found, key=len, reverse=True)


def _bound_source(step: BulkInsertStep, use: Use, values: Mapping[str, object]) -> FileSource:
    """A rows_from file named with vars, found and checked as validation checks any other."""
    from .files import FORMATS, source_problem, suffix

    source = step.source
    assert source is not None
    assert source.base is not None
    name = resolve(use.template, values)
    if holds_secret(name):
        raise PlanInvalid(
            [
                Diagnostic(
                    use.position, "a rows_from file cannot be named with a secret var", "rows-from"
                )
            ]
        )
    assert isinstance(name, str)
    # Vars choose a file in the plan's directory, never one elsewhere: resolved, symbolic
    # links followed, it must stay inside (the plan's own text may name any file, in review).
    base = os.path.realpath(source.base)
    if os.path.commonpath([base, os.path.realpath(source.base / name)]) != base:
        raise PlanInvalid(
            [
                Diagnostic(
                    use.position,
                    "the rows_from file the vars name is outside the plan's directory "
                    f"({source.base}); vars may choose a file there or below it",
                    "rows-from",
                )
            ]
        )
    fmt = source.format or FORMATS.get(suffix(name))
    if fmt is None:
        raise PlanInvalid(
            [
                Diagnostic(
                    use.position,
                    f"cannot tell the format of {name!r} from its extension: add format: csv or jsonl",
                    "rows-from",
                )
            ]
        )
    bound = replace(
        source, path=source.base / name, display=str(source.base / name), format=fmt, base=None
    )
    problem = source_problem(bound, step.width, name)
    if problem is not None:
        raise PlanInvalid([Diagnostic(use.position, problem[0], "rows-from")])
    return bound
