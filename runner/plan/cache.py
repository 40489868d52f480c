"""Validated plans kept on disk, so that an unchanged plan is not validated again.

Validation needs the YAML, JSON Schema and SQL parsers: about 70 ms of imports, where a small
plan takes a few milliseconds to run. A plan that passed validation is written to the cache as
JSON; it is used again only while everything its validation read is unchanged: the plan's bytes
(SHA-256), the path it was given by, the files its `rows_from` names (size and modification
time), sqlplan's own files and the parsers' (size and modification time). Anything else is a miss
and the plan is validated from scratch. An entry is decoded into the known Plan classes only.

The cache lives in $SQLPLAN_CACHE_DIR, else $XDG_CACHE_HOME/sqlplan, else ~/.cache/sqlplan;
SQLPLAN_NO_CACHE=1 turns it off. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import json
import os
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import Position
from .files import FileSource
from .model import (
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    Locator,
    Message,
    Plan,
    QueryStep,
    RowPositions,
    SourceText,
)
from .source import read_plan
from .sqlparse import Statement
from .templates import Field, Template
from .values import Number

FORMAT = 2  # of an entry; bumped when the encoding changes
_PARSERS = ("yaml", "jsonschema", "pglast")
_CLASSES: dict[str, type[Any]] = {
    c.__name__: c
    for c in (
        Plan,
        BatchStep,
        ExecuteStep,
        BulkInsertStep,
        QueryStep,
        SourceText,
        Message,
        Locator,
        Template,
        Field,
        Statement,
        FileSource,
        Position,
        RowPositions,
    )
}


def load_plan(path: str | Path) -> Plan:
    """As plan.load_plan, from the cache when the plan and all it depends on are unchanged."""
    raw = read_plan(path)
    display = str(path)
    directory = cache_dir()
    if directory is None:
        return _validate(raw, display)
    entry = directory / "plans" / f"{_digest(os.path.abspath(display), display)[:40]}.json"
    key = {
        "format": FORMAT,
        "path": os.path.abspath(display),
        "display": display,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "sqlplan": _code_stamp(),
    }
    # As in validation: millions of objects for a large plan, none in cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        plan = _read(entry, key)
        if plan is None:
            plan = _validate(raw, display)
            _write(entry, key, plan)
        return plan
    finally:
        if enabled:
            gc.enable()


def cache_dir() -> Path | None:
    if os.environ.get("SQLPLAN_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("SQLPLAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sqlplan"


def _validate(raw: bytes, display: str) -> Plan:
    from .validate import plan_from_bytes

    return plan_from_bytes(raw, display)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _stamp(path: str) -> list[object]:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


@cache
def _code_stamp() -> str:
    """Changes whenever sqlplan's files, its schema or the parsers validation uses change."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = sorted(
        os.path.join(root, name)
        for root, dirs, files in os.walk(package)
        for name in files
        if name.endswith((".py", ".json")) and "__pycache__" not in root
    )
    stamps = [_stamp(name) for name in names]
    for name in _PARSERS:
        spec = find_spec(name)
        stamps.append(_stamp(spec.origin) if spec and spec.origin else [name, None, None])
    return _digest(json.dumps(stamps))


def _sources(plan: Plan) -> list[list[object]]:
    return [
        _stamp(str(step.source.path))
        for step in plan.steps
        if isinstance(step, BulkInsertStep) and step.source is not None
    ]


def _read(entry: Path, key: dict[str, object]) -> Plan | None:
    try:
        with open(entry, encoding="utf-8") as f:
            stored = json.load(f, object_hook=_number_hook)
        if stored.get("key") != key:
            return None
        plan = _decode(stored["plan"])
        if not isinstance(plan, Plan) or _sources(plan) != stored["sources"]:
            return None
        return plan
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no entry, or one this version cannot use: validate again


def _write(entry: Path, key: dict[str, object], plan: Plan) -> None:
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps(
            {"key": key, "sources": _sources(plan), "plan": _encode(plan)}, default=_number
        )
        temporary = entry.with_name(f".{entry.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(temporary, entry)
    except (OSError, TypeError, ValueError):
        pass  # a cache that cannot be written only costs the next run its validation


_PLAIN = frozenset({type(None), bool, int, str})
_ROW_VALUES = _PLAIN | {Number}


def _encode(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _is_rows(value):
        # Most of a large plan: its rows. Rows of scalars go as JSON lists, as they are; a
        # Number as {"N": text} (json.dumps asks _number for it; reading turns it back).
        return {"R": value}
    if type(value) is tuple and all(type(v) in _PLAIN for v in value):
        return {"T": list(value)}  # positions, statements' offsets
    if isinstance(value, list):
        return {"L": [_encode(v) for v in value]}
    if isinstance(value, tuple):
        return {"T": [_encode(v) for v in value]}
    if isinstance(value, frozenset):
        return {"S": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"D": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, Path):
        return {"P": str(value)}
    if isinstance(value, Number):
        return _number(value)
    name = type(value).__name__
    if dataclasses.is_dataclass(value) and _CLASSES.get(name) is type(value):
        return {
            "C": name,
            "F": {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    raise TypeError(f"cannot cache a {name}")


def _is_rows(value: object) -> bool:
    return (
        type(value) is tuple
        and bool(value)
        and all(type(row) is tuple for row in value)
        and set(map(type, itertools.chain.from_iterable(value))) <= _ROW_VALUES
    )


def _number(value: object) -> object:
    if isinstance(value, Number):
        return {"N": value.text}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _number_hook(entry: dict[str, Any]) -> object:
    # A one-key {"N": text} is always a Number: a plan's own mappings are written as {"D": ...}.
    if len(entry) == 1 and "N" in entry:
        return Number(entry["N"])
    return entry


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "C" in value:
        cls = _CLASSES[value["C"]]
        return cls(**{name: _decode(v) for name, v in value["F"].items()})
    ((tag, body),) = value.items()
    if tag == "L":
        return [_decode(v) for v in body]
    if tag == "T":
        return tuple(_decode(v) for v in body)
    if tag == "S":
        return frozenset(_decode(v) for v in body)
    if tag == "D":
        return {_decode(k): _decode(v) for k, v in body}
    if tag == "P":
        return Path(body)
    if tag == "R":
        return tuple(map(tuple, body))
    raise ValueError(f"unknown tag {tag!r}")
