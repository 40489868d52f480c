"""Differential testing of values: a value sent by sqlplan, through any path, must be stored
exactly as PostgreSQL stores the same value written as a SQL literal. Shared by
tests/plan/test_values.py (a fast profile) and bench/differential.py (the long one).

Each case is a column type and a list of values. sqlplan inserts them through one path into
`got`; the same values written as SQL literals (built here, independently of sqlplan's own
encoding) go into `want`; the two tables must hold the same text, row for row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """A number as written: the text a plan or file holds."""

    text: str


@dataclass(frozen=True)
class Kind:
    name: str
    column: str  # the column's type
    values: st.SearchStrategy[Any]
    in_files: bool = True  # CSV and JSON Lines carry it (arrays: only as PostgreSQL's text)


_HOSTILE = [
    "null", "NULL", "Null", "", " ", " a", "a ", '"', '""', "\\", "\\\\", "{", "}", "{}", ",",
    "a,b", "'", "''", "\t", "\n", "\r\n", "NULLx", "é", "𝄞", "\u2028", "\x7f", "\x85", "\ufeff",
]  # fmt: skip
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40),
    st.sampled_from(_HOSTILE),
)


@st.composite
def _numeric_text(draw: st.DrawFn) -> Num:
    digits = draw(st.integers(1, 40))
    body = "".join(draw(st.lists(st.sampled_from(string.digits), min_size=digits, max_size=digits)))
    scale = draw(st.integers(0, digits))
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole, fraction = body[: digits - scale] or "0", body[digits - scale :]
    text = f"{sign}{whole}" + (f".{fraction}" if fraction or draw(st.booleans()) else "")
    if draw(st.integers(0, 4)) == 0:
        text = f"{sign}{whole}.{fraction}e{draw(st.integers(-30, 30))}"
    return Num(text)


INT8_EDGES = [-(2**63), 2**63 - 1, 0, -1, 1, 2**31, -(2**31) - 1, 2**53 + 1]
KINDS = {
    k.name: k
    for k in (
        Kind("text", "text", TEXT),
        Kind("numeric", "numeric", _numeric_text()),
        Kind(
            "int8",
            "bigint",
            st.one_of(st.sampled_from(INT8_EDGES), st.integers(-(2**63), 2**63 - 1)).map(
                lambda n: Num(str(n))
            ),
        ),
        Kind("boolean", "boolean", st.booleans()),
        Kind("date", "date", st.dates().map(dt.date.isoformat)),
        Kind(
            "timestamptz",
            "timestamptz",
            st.datetimes(
                min_value=dt.datetime(1, 1, 2),
                max_value=dt.datetime(9999, 12, 30),
                timezones=st.sampled_from(
                    [
                        dt.timezone.utc,
                        dt.timezone(dt.timedelta(hours=5, minutes=30)),
                        dt.timezone(dt.timedelta(hours=-8)),
                    ]
                ),
            ).map(lambda d: d.isoformat()),
        ),
        Kind(
            "json",
            "jsonb",
            st.recursive(
                st.one_of(st.none(), st.booleans(), _numeric_text(), TEXT),
                lambda inner: st.one_of(
                    st.lists(inner, max_size=3),
                    st.dictionaries(TEXT.filter(bool), inner, min_size=1, max_size=3),
                ),
                max_leaves=8,
            ).filter(lambda v: isinstance(v, dict)),  # a top-level list is an array (README)
        ),
        Kind(
            "array",
            "text[]",
            st.one_of(
                st.lists(st.one_of(st.none(), TEXT), max_size=5),
                st.integers(1, 3).flatmap(
                    lambda width: st.lists(
                        st.lists(st.one_of(st.none(), TEXT), min_size=width, max_size=width),
                        min_size=1,
                        max_size=3,
                    )
                ),
            ),
            in_files=False,
        ),
    )
}


@st.composite
def cases(draw: st.DrawFn, path: str) -> tuple[Kind, list[Any]]:
    """A column type the path can carry, and 1 to 12 values of it (NULL among them)."""
    kinds = [k for k in KINDS.values() if k.in_files or path not in FILE_PATHS]
    kind = draw(st.sampled_from(kinds))
    values = draw(
        st.lists(
            st.one_of(st.none(), kind.values, kind.values, kind.values), min_size=1, max_size=12
        )
    )
    return kind, values


# --- writing values ---------------------------------------------------------------------------


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar holding exactly `text`: everything but printable ASCII is
    escaped, so no line folding, no line-break character, no BOM reaches the parser raw."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _json_number(text: str) -> str:
    """A JSON number with the same digits (JSON has no '+' and no bare '.')."""
    text = text.lstrip("+")
    negative = text.startswith("-")
    body = text.lstrip("-")
    mantissa, _, exponent = body.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    whole = whole.lstrip("0") or "0"
    number = whole + (f".{fraction}" if fraction else "")
    return ("-" if negative else "") + number + (f"e{exponent}" if exponent else "")


_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Num):
        return value.text
    if isinstance(value, str):
        # a plan text `{name}` refers to a var: the text itself is written `{{name}}`
        return yaml_string(_VAR.sub(r"{{\1}}", value))
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{yaml_string(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"


def json_text(value: Any) -> str:
    """JSON written independently of sqlplan (numbers with their digits)."""
    if isinstance(value, Num):
        return _json_number(value.text)
    if isinstance(value, list):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def literal(kind: Kind, value: Any) -> str:
    """The value as a SQL literal of the column's type: what the test compares with."""
    if value is None:
        return "NULL"
    if kind.name == "array":
        return _array_literal(value) + "::text[]"
    if kind.name == "json":
        return _quote(json_text(value)) + "::jsonb"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Num):
        return value.text
    return _quote(value)


def _array_literal(value: list[Any]) -> str:
    if not value:
        return "'{}'"
    return (
        "ARRAY["
        + ", ".join(
            _array_literal(v) if isinstance(v, list) else ("NULL" if v is None else _quote(v))
            for v in value
        )
        + "]"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def file_text(kind: Kind, value: Any) -> str | None:
    """The value as a CSV field's text (None for NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Num):
        return value.text
    if kind.name == "json":
        return json_text(value)
    return str(value)


def csv_field(text: str | None) -> str:
    if text is None:
        return ""
    return '"' + text.replace('"', '""') + '"'


def jsonl_value(kind: Kind, value: Any) -> str:
    if isinstance(value, Num):
        return _json_number(value.text)
    if kind.name == "json":
        return json_text(value)
    return json.dumps(value, ensure_ascii=False)


# --- paths ------------------------------------------------------------------------------------

_PLAIN = "INSERT INTO got (v) VALUES ($1)"
_ROW_BY_ROW = "INSERT INTO got (v) VALUES ($1) ON CONFLICT DO NOTHING"


def _header(kind: Kind) -> str:
    return (
        "sqlplan: 1\nname: values\nsteps:\n"
        f"  - batch: CREATE TABLE got (id serial PRIMARY KEY, v {kind.column})\n"
    )


def plan_execute(kind: Kind, values: Sequence[Any], _: Path) -> str:
    return _header(kind) + "".join(
        f"  - execute: {_PLAIN}\n    params: [{yaml_value(v)}]\n" for v in values
    )


def _inline(statement: str) -> Callable[[Kind, Sequence[Any], Path], str]:
    def plan(kind: Kind, values: Sequence[Any], _: Path) -> str:
        rows = "".join(f"      - [{yaml_value(v)}]\n" for v in values)
        return _header(kind) + f"  - bulk_insert: {statement}\n    rows:\n{rows}"

    return plan


def _file_plan(
    kind: Kind, directory: Path, name: str, lines: list[str], *, statement: str, fields: bool
) -> str:
    (directory / name).write_bytes(("\n".join(lines) + "\n").encode())
    mapping = "\n      fields: [v]" if fields else ""
    return (
        _header(kind)
        + f"  - bulk_insert: {statement}\n    rows_from:\n      file: {name}{mapping}\n"
    )


def plan_csv(whole: bool) -> Callable[[Kind, Sequence[Any], Path], str]:
    def plan(kind: Kind, values: Sequence[Any], directory: Path) -> str:
        fields = [csv_field(file_text(kind, v)) for v in values]
        lines = ["v", *fields] if whole else ["v,other", *(f"{f},x" for f in fields)]
        return _file_plan(kind, directory, "data.csv", lines, statement=_PLAIN, fields=not whole)

    return plan


def plan_jsonl(objects: bool) -> Callable[[Kind, Sequence[Any], Path], str]:
    def plan(kind: Kind, values: Sequence[Any], directory: Path) -> str:
        texts = [jsonl_value(kind, v) for v in values]
        if objects:
            lines = [f'{{"v": {text}, "other": 1}}' for text in texts]
            return _file_plan(
                kind, directory, "data.jsonl", lines, statement=_ROW_BY_ROW, fields=True
            )
        lines = [f"[{text}]" for text in texts]
        return _file_plan(kind, directory, "data.jsonl", lines, statement=_PLAIN, fields=False)

    return plan


PATHS: dict[str, Callable[[Kind, Sequence[Any], Path], str]] = {
    "execute": plan_execute,
    "rows-copy": _inline(_PLAIN),
    "rows-row-by-row": _inline(_ROW_BY_ROW),
    "csv-parsed": plan_csv(whole=False),
    "csv-raw": plan_csv(whole=True),
    "jsonl-objects": plan_jsonl(objects=True),
    "jsonl-arrays": plan_jsonl(objects=False),
}
FILE_PATHS = {"csv-parsed", "csv-raw", "jsonl-objects", "jsonl-arrays"}


def oracle_sql(kind: Kind, values: Sequence[Any]) -> str:
    rows = ", ".join(f"({literal(kind, v)})" for v in values)
    return f"CREATE TABLE want (id serial PRIMARY KEY, v {kind.column}); INSERT INTO want (v) VALUES {rows}"


DIFFERENCES = """
    SELECT coalesce(got.id, want.id), got.v::text, want.v::text
    FROM got FULL JOIN want USING (id)
    WHERE got.v::text IS DISTINCT FROM want.v::text OR got.id IS NULL OR want.id IS NULL
    ORDER BY 1
"""
