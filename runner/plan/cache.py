"""Validated plans kept on disk, so that an unchanged plan is not validated again.

Validation needs the YAML, JSON Schema and SQL parsers: about 70 ms of imports, where a small
plan takes a few milliseconds to run. A plan that passed validation is written to the cache as
JSON; it is used again only while everything its validation read is unchanged: the plan's bytes
(SHA-256), the path it was given by, the files its `rows_from` names (device, inode, size,
modification and change times, and a digest of their first MiB, where a CSV header is: `cp -p`
or `rsync -t` keep the size and times), sqlplan's own files and the parsers'. Anything else is a miss and the plan is validated
from scratch.

The cache cannot be turned against its user. It is used only if its directory, and each entry,
belongs to the user and nobody else may write to it (a symlink is followed only to such a
directory); the directories sqlplan creates are 0700 and its files 0600 whatever the umask. An
entry carries the SHA-256 of its own content and is decoded strictly into the known Plan classes,
every field of the type it must have, its messages' fields checked again (_coherent): any
mismatch is a miss, never an error. The digest is not a key: it tells damage, not an edit by
someone who can write the entry as the user (and who could edit the plan file as well).

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
import types
import typing
from collections.abc import Callable, Sequence
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import Position
from ..private import cache_dir, private_directory, read_private, write_private
from .files import FileSource
from .model import (
    BackfillStep,
    BatchStep,
    BulkInsertStep,
    Capture,
    ExecuteStep,
    Expect,
    Locator,
    Message,
    Plan,
    QueryStep,
    Retry,
    ReviewSettings,
    RowPositions,
    SourceText,
    Use,
    Var,
)
from .source import read_plan
from .sqlparse import Statement
from .templates import Field, Template, param_fields
from .values import Number

FORMAT = 11  # of an entry; bumped when the encoding changes
_PARSERS = ("yaml", "jsonschema", "pglast")
_CLASSES: dict[str, type[Any]] = {
    c.__name__: c
    for c in (
        Plan,
        ReviewSettings,
        BatchStep,
        ExecuteStep,
        BulkInsertStep,
        QueryStep,
        BackfillStep,
        SourceText,
        Message,
        Locator,
        Template,
        Field,
        Statement,
        FileSource,
        Position,
        RowPositions,
        Use,
        Var,
        Capture,
        Expect,
        Retry,
    )
}


def cached(path: str | Path) -> Plan | None:
    """The plan, if the cache holds it for these bytes and this sqlplan: known valid without
    validating. None for anything else (never validates, never writes)."""
    try:
        raw = read_plan(path)
    except Exception:  # the command's own reading reports it
        return None
    directory = cache_dir()
    if directory is None:
        return None
    entry, key = _entry(directory, str(path), raw)
    return _read(entry, key)


def known_valid(paths: Sequence[str]) -> bool:
    """Whether these plans will run as they are, known from the cache alone: each is in it,
    none takes vars (whose values could be missing or wrong), no two `once` plans share a
    name. What lets the connection log in before the command has read its plans."""
    plans = [cached(path) for path in paths]
    names = [plan.name for plan in plans if plan is not None and plan.once]
    return (
        bool(plans)
        and all(
            plan is not None and not plan.vars and not any(step.uses for step in plan.steps)
            for plan in plans
        )
        and len(names) == len(set(names))
    )


def _entry(directory: Path, display: str, raw: bytes) -> tuple[Path, dict[str, object]]:
    entry = directory / "plans" / f"{_digest(os.path.abspath(display), display)[:40]}.json"
    key: dict[str, object] = {
        "format": FORMAT,
        "path": os.path.abspath(display),
        "display": display,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "sqlplan": _code_stamp(),
    }
    return entry, key


def load_plan(path: str | Path) -> Plan:
    """As plan.load_plan, from the cache when the plan and all it depends on are unchanged."""
    raw = read_plan(path)
    display = str(path)
    directory = cache_dir()
    if directory is None or not private_directory(directory, create=True):
        return _validate(raw, display)
    entry, key = _entry(directory, display, raw)
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


def _validate(raw: bytes, display: str) -> Plan:
    from .validate import plan_from_bytes

    return plan_from_bytes(raw, display)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _stamp(path: str) -> list[object]:
    st = os.stat(path)
    return [path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


# Entries decoded in this process, by their digest: the log-in at start reads the entry that
# `run` reads again a moment later (the file is still read and checked each time).
_decoded: dict[bytes, tuple[dict[str, Any], Plan]] = {}


@cache
def _code_stamp() -> str:
    """Changes whenever sqlplan's files, its schema or the parsers validation uses change: a
    digest of their content, found again from their stamps (device, inode, size and times)
    while those are unchanged. A fresh install of the same code (a CI job restoring the cache
    directory) has new stamps and the same content: its first run reads the files once, and
    the entries written elsewhere hit."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = sorted(
        os.path.join(root, name)
        for root, dirs, files in os.walk(package)
        for name in files
        if name.endswith((".py", ".json")) and "__pycache__" not in root
    )
    origins = []
    for name in _PARSERS:
        spec = find_spec(name)
        origins.append((name, spec.origin if spec else None))
    stamps = [_stamp(name) for name in names]
    stamps += [_stamp(origin) if origin else [name, None, None] for name, origin in origins]
    quick = _digest(json.dumps(stamps))
    directory = cache_dir()
    memo = None if directory is None else directory / "code" / f"{quick[:40]}.txt"
    if memo is not None:
        known = read_private(memo)
        if known is not None and len(known) == 64 and known.isalnum():
            return known.decode("ascii")
    content = hashlib.sha256()
    for name in names:
        content.update(os.path.relpath(name, package).encode("utf-8", "surrogateescape") + b"\0")
        with open(name, "rb") as handle:
            content.update(hashlib.sha256(handle.read()).digest())
    for name, origin in origins:
        content.update(f"{name}\0{_version(name, origin)}\0".encode())
        if origin:
            with open(origin, "rb") as handle:
                content.update(hashlib.sha256(handle.read()).digest())
    stamp = content.hexdigest()
    if memo is not None:
        write_private(memo, stamp.encode("ascii"))
    return stamp


def _version(module: str, origin: str | None) -> str:
    """The installed distribution's metadata directories (named with its version) beside the
    module's package, without importlib.metadata (tens of milliseconds to import)."""
    if not origin:
        return ""
    package = os.path.dirname(origin)
    prefix = {"yaml": "pyyaml"}.get(module, module) + "-"
    try:
        names = os.listdir(os.path.dirname(package))
    except OSError:
        return ""
    return ",".join(
        sorted(
            n
            for n in names
            if n.lower().startswith(prefix) and n.endswith((".dist-info", ".egg-info"))
        )
    )


def _sources(plan: Plan) -> list[list[object]]:
    """What validation read of each rows_from file: a file of up to 1 MiB by its content
    (a fresh checkout of the same file hits); a larger one by its stamp and a digest of its
    first MiB (where a CSV header is), so that a change within one clock tick is seen too."""
    stamps = []
    for step in plan.steps:
        if (
            isinstance(step, BulkInsertStep)
            and step.source is not None
            and step.source.base is None
        ):
            path = str(step.source.path)
            with open(path, "rb") as handle:
                head = handle.read(_HEAD_BYTES + 1)
            if len(head) <= _HEAD_BYTES:  # all of it: its content is the key, as in a checkout
                stamps.append([path, len(head), hashlib.sha256(head).hexdigest()])
            else:
                digest = hashlib.sha256(head[:_HEAD_BYTES]).hexdigest()
                stamps.append([*_stamp(path), digest])
    return stamps


_HEAD_BYTES = 1 << 20


def _read(entry: Path, key: dict[str, object]) -> Plan | None:
    """The entry's plan if it is ours, intact and for this key; None for anything else."""
    try:
        content = read_private(entry)
        if content is None:
            return None
        digest, _, body = content.partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            return None  # edited or damaged
        decoded = _decoded.get(digest)
        if decoded is None:
            stored = json.loads(body, object_hook=_number_hook)
            if not isinstance(stored, dict):
                return None
            plan = _decode(stored["plan"])
            if not isinstance(plan, Plan) or not _conforms(plan, Plan) or not _coherent(plan):
                return None
            decoded = _decoded[digest] = (stored, plan)
        stored, plan = decoded
        if stored.get("key") != key or _sources(plan) != stored["sources"]:
            return None
        return plan
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # no entry, or one this version cannot use: validate again


def _coherent(plan: Plan) -> bool:
    """What validation guarantees of a plan's messages, checked again on an entry: each field
    is one its message has (so that no message fails to render after its step committed). An
    entry edited and given its digest again, which the digest cannot tell, is then a miss."""
    known = {v.name for v in plan.vars}
    if plan.on_connect is not None and not _within(plan.on_connect, known):
        return False
    for step in plan.steps:
        known |= {c.var for c in step.captures}
        if isinstance(step, BatchStep):
            allowed = {"before": known, "after": known}
        elif isinstance(step, BackfillStep):
            allowed = {"before": known, "after": known | {"count", "batches"}}
        elif isinstance(step, BulkInsertStep):
            rows = {"rows"} if step.source is None else set()
            counted = known | {"count", "rows"}
            allowed = {"before": known | rows, "after": counted, "after_no_rows": counted}
        else:
            params = known | set(param_fields(len(step.params)))
            counted = params | {"count"}
            allowed = {"before": params, "after": counted, "after_no_rows": counted}
            allowed |= {"header": counted, "empty": counted, "footer": counted}
            if (
                isinstance(step, QueryStep)
                and step.row is not None
                and any(
                    f.name.startswith("$") and f.name not in params
                    for f in step.row.template.fields
                )
            ):
                return False  # a row template's other fields are the query's columns
        for name, fields in allowed.items():
            message = getattr(step, name, None)
            if message is not None and not _within(message, fields):
                return False
    return True


def _within(message: Message, fields: set[str]) -> bool:
    return all(f.name in fields for f in message.template.fields)


def _write(entry: Path, key: dict[str, object], plan: Plan) -> None:
    try:
        body = json.dumps(
            {"key": key, "sources": _sources(plan), "plan": _encode(plan)}, default=_number
        ).encode("utf-8")
        write_private(entry, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
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


# --- strict decoding: every field of the type its class declares ------------------------------

Check = Callable[[object], bool]
_CHECKS: dict[object, Check] = {}


def _conforms(value: object, hint: Any) -> bool:
    """Whether a decoded value has the type a dataclass field declares (as far as the plan
    classes use types: unions, tuples, frozensets, dicts, classes)."""
    return _check(hint)(value)


def _check(hint: Any) -> Check:
    """A checker for `hint`, built once: this runs for every field of every cached plan."""
    found = _CHECKS.get(hint)
    if found is None:
        found = _CHECKS[hint] = _build_check(hint)
    return found


def _build_check(hint: Any) -> Check:
    if hint is Any or hint is object:
        return lambda value: True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [_check(option) for option in typing.get_args(hint)]
        return lambda value: any(check(value) for check in options)
    if hint is type(None):
        return lambda value: value is None
    if origin is tuple:
        arguments = typing.get_args(hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            if arguments[0] in (object, Any):
                return lambda value: type(value) is tuple
            item = _check(arguments[0])
            return lambda value: type(value) is tuple and all(map(item, value))
        items = [_check(a) for a in arguments]
        return lambda value: (
            type(value) is tuple
            and len(value) == len(items)
            and all(check(v) for check, v in zip(items, value, strict=True))
        )
    if origin is frozenset:
        (item_hint,) = typing.get_args(hint)
        item = _check(item_hint)
        return lambda value: isinstance(value, frozenset) and all(map(item, value))
    if origin is dict:
        return lambda value: isinstance(value, dict)
    if hint is int:
        return lambda value: type(value) is int
    if hint is float:
        return lambda value: type(value) in (int, float)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls: type = hint
        names = [f.name for f in dataclasses.fields(hint)]
        hints = typing.get_type_hints(hint)

        def dataclass_check(value: object) -> bool:
            if type(value) is not cls:
                return False
            return all(_check(hints[name])(getattr(value, name)) for name in names)

        return dataclass_check
    if isinstance(hint, type):
        cls = hint
        return lambda value: isinstance(value, cls)
    return lambda value: False
