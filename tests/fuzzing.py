"""Hostile plans, and what sqlplan must do with any of them: a Plan or diagnostics, each at a
position inside the file, never an exception of another kind. Shared by tests/plan/test_fuzz.py (a
fast profile) and bench/fuzz.py (hundreds of thousands of examples)."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from runner.errors import PlanInvalid
from runner.plan.validate import plan_from_bytes
from runner.review.show import render
from runner.review.warnings import warnings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
SEEDS = sorted(
    [*(ROOT / "plans").glob("*.yaml"), *(ROOT / "tests" / "plans").glob("*/*.yaml")],
    key=str,
)
SEED_TEXTS = [p.read_text() for p in SEEDS]


def lines_of(text: str) -> list[str]:
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def check_any(raw: bytes, path: Path) -> str:
    """Validate `raw` as the plan at `path` the way `check` and `show` do; assert that the
    outcome is a plan or positioned diagnostics; return "valid" or "invalid"."""
    display = str(path)
    try:
        plan = plan_from_bytes(raw, display)
    except PlanInvalid as e:
        invalid = e
    else:
        for warning in warnings(plan):
            assert warning.position.line >= 1, warning
        render(plan, "text")
        render(plan, "markdown")
        return "valid"
    assert invalid.diagnostics, "PlanInvalid without a diagnostic"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", "replace")
    lines = lines_of(text)
    for d in invalid.diagnostics:
        assert d.position.path == display, d
        assert 1 <= d.position.line <= max(len(lines), 1), (d, len(lines))
        width = len(lines[d.position.line - 1]) if lines else 0
        assert 1 <= d.position.column <= width + 1, (d, width)
        assert d.message, d
        assert d.code, d
    return "invalid"


# --- strategies -------------------------------------------------------------------------------

_JSON_VALUES: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": 1}]


def _dump(data: object) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None)


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    """A shipped plan or fixture, changed the ways people and attackers change files."""
    text = draw(st.sampled_from(SEED_TEXTS))
    how = draw(
        st.sampled_from(
            [
                "truncate",
                "delete-line",
                "delete-key",
                "retype-scalar",
                "insert-bytes",
                "insert-control",
                "tabs",
                "alias-bomb",
                "duplicate-line",
                "deep",
                "long",
            ]
        )
    )
    if how == "truncate":
        return text.encode()[: draw(st.integers(0, len(text.encode())))]
    if how in ("delete-line", "duplicate-line"):
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if lines:
            lines[at : at + 1] = [] if how == "delete-line" else [lines[at], lines[at]]
        return "".join(lines).encode()
    if how in ("delete-key", "retype-scalar"):
        if "&" in text:  # PyYAML would build an alias bomb whole
            return text.encode()
        try:
            data = yaml.safe_load(text)
        except Exception:  # a fixture PyYAML cannot construct (a bad tag)
            return text.encode()
        paths = list(_paths(data))
        if not paths:
            return text.encode()
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        if how == "delete-key":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from(_JSON_VALUES))
        return _dump(data).encode()
    if how == "insert-bytes":
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if how == "insert-control":
        at = draw(st.integers(0, len(text)))
        char = chr(
            draw(st.sampled_from([*range(0, 9), 11, 12, *range(14, 32), 127, 0x85, 0xFEFF, 0xFFFE]))
        )
        return (text[:at] + char + text[at:]).encode("utf-8", "surrogatepass")
    if how == "tabs":
        return text.replace("  ", "\t", draw(st.integers(1, 5))).encode()
    if how == "alias-bomb":
        bomb = "x0: &x0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
            f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n" for i in range(1, 9)
        )
        return (text + bomb).encode()
    if how == "deep":
        depth = draw(st.integers(50, 2000))
        return (text + "deep: " + "[" * depth + "]" * depth + "\n").encode()
    # long strings and names
    size = draw(st.integers(1000, 20000))
    return (
        text.replace("name: ", "name: " + "n" * size, 1)
        .replace("file: ", "file: " + "f" * size, 1)
        .encode()
    )


def _paths(data: object, prefix: tuple[Any, ...] = (), limit: int = 2000) -> list[tuple[Any, ...]]:
    """Paths into the data, at most `limit` of them (a seed may be an alias bomb)."""
    found: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    for key, value in items:
        if len(found) >= limit:
            break
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key), limit - len(found))
    return found[:limit]


_YAMLISH = st.text(
    alphabet=st.sampled_from([*string.printable, "é", "\u2028", "\x00", "&", "*", "!", "|"]),
    max_size=200,
)


def random_text() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        _YAMLISH.map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def schema_plans() -> st.SearchStrategy[bytes]:
    """Plans the schema describes (keys, kinds, types), with random SQL, messages and values;
    now and then a key the schema does not know or a value of another type."""
    return _from_schema(SCHEMA).map(lambda data: _dump(data).encode())


_SQL = st.sampled_from(
    [
        "SELECT 1",
        "SELECT $1",
        "SELECT $1, $2",
        "INSERT INTO t (a, b) VALUES ($1, $2)",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
        "DROP TABLE t",
        "SELEC 1",
        "COPY t FROM STDIN",
        "\\c db",
        "BEGIN",
        "",
    ]
)
_TEXT = st.one_of(
    _SQL, st.text(max_size=30), st.sampled_from(["{count}", "{$1}", "{x", "}", "{{}}"])
)


def _from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        merged = {**SCHEMA["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
        return _from_schema(merged, depth)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([_from_schema(s, depth + 1) for s in schema["oneOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_from_schema({**schema, "type": k}, depth) for k in kind])
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        optional = [k for k in properties if k not in required]

        @st.composite
        def mapping(draw: st.DrawFn) -> dict[str, Any]:
            keys = (
                required + draw(st.lists(st.sampled_from(optional), unique=True))
                if optional
                else required
            )
            out = {k: draw(_from_schema(properties[k], depth + 1)) for k in keys}
            if draw(st.integers(0, 9)) == 0:
                out[draw(st.sampled_from(["extra", "exectue", "rows", "1"]))] = draw(
                    st.sampled_from(_JSON_VALUES)
                )
            return out

        if not properties:
            return st.dictionaries(st.text(max_size=5), st.sampled_from(_JSON_VALUES), max_size=3)
        return mapping()
    if kind == "array":
        items = schema.get("items", {})
        if depth > 6:
            return st.just([])
        return st.lists(
            _from_schema(items, depth + 1) if items else st.sampled_from(_JSON_VALUES),
            min_size=schema.get("minItems", 0),
            max_size=4,
        )
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        return _TEXT.filter(lambda s: len(s) >= low and (high is None or len(s) <= high)) | st.text(
            min_size=max(low, 1), max_size=high or 3
        )
    if kind == "integer":
        return st.integers(-3, 5)
    if kind == "number":
        return st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.sampled_from(_JSON_VALUES)


def any_plan() -> st.SearchStrategy[bytes]:
    return st.one_of(mutated_seed(), random_text(), schema_plans())
