"""JSON Lines read with every value kept as written: numbers as their text, a key given twice
refused, NaN and Infinity refused, each error at its line and column."""

from __future__ import annotations

import json
import re
from typing import Any

from .reading import SourceError


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Numbers stay text (their digits, any length); NaN and Infinity are refused.
_JSON = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=_reject_constant)


_SPACE = re.compile(r"[ \t\r\n]*")


def json_line(line: str, number: int) -> tuple[str, dict[str, object] | list[object]]:
    """A JSON Lines row: ("object", {key: value}) or ("array", [values]). Values are bind
    values: strings as text, numbers as the text written, true/false, null, and nested arrays
    and objects as their JSON text exactly as written."""
    i = _SPACE.match(line, 0).end()  # type: ignore[union-attr]
    opening = line[i : i + 1]
    if opening not in ("{", "["):
        raise SourceError("each line must be a JSON object or array", number, i + 1)
    closing = "}" if opening == "{" else "]"
    members: dict[str, object] = {}
    items: list[object] = []
    i = _SPACE.match(line, i + 1).end()  # type: ignore[union-attr]
    if line.startswith(closing, i):
        i += 1
    else:
        while True:
            if opening == "{":
                if not line.startswith('"', i):
                    raise SourceError("expected a key in double quotes", number, i + 1)
                try:
                    key, i = json.decoder.scanstring(line, i + 1)  # type: ignore[attr-defined]
                except json.JSONDecodeError as e:
                    raise SourceError(f"invalid JSON: {e.msg}", number, e.pos + 1) from None
                _check_text(key, number, i)
                i = _SPACE.match(line, i).end()  # type: ignore[union-attr]
                if not line.startswith(":", i):
                    raise SourceError("expected ':' after the key", number, i + 1)
                i = _SPACE.match(line, i + 1).end()  # type: ignore[union-attr]
                value, i = _json_value(line, i, number)
                if key in members:
                    members[key] = _Duplicate(key)
                else:
                    members[key] = value
            else:
                value, i = _json_value(line, i, number)
                items.append(value)
            i = _SPACE.match(line, i).end()  # type: ignore[union-attr]
            if line.startswith(",", i):
                i = _SPACE.match(line, i + 1).end()  # type: ignore[union-attr]
                continue
            if line.startswith(closing, i):
                i += 1
                break
            raise SourceError(f"expected ',' or '{closing}'", number, i + 1)
    rest = _SPACE.match(line, i).end()  # type: ignore[union-attr]
    if rest != len(line):
        raise SourceError("extra data after the JSON value", number, rest + 1)
    if opening == "{":
        return "object", _Members(members, number)
    return "array", items


class _Duplicate:
    def __init__(self, key: str) -> None:
        self.key = key


class _Members(dict[str, object]):
    """An object's members; a key written twice cannot be a field."""

    def __init__(self, members: dict[str, object], line: int) -> None:
        super().__init__(members)
        self.line = line

    def __getitem__(self, key: str) -> object:
        value = super().__getitem__(key)
        if isinstance(value, _Duplicate):
            raise SourceError(f"the object has the key {key!r} twice", self.line)
        return value


def _json_value(line: str, i: int, number: int) -> tuple[object, int]:
    try:
        value, end = _JSON.raw_decode(line, i)
    except json.JSONDecodeError as e:
        raise SourceError(f"invalid JSON: {e.msg}", number, e.pos + 1) from None
    except ValueError as e:
        raise SourceError(f"invalid JSON: {e}", number, i + 1) from None
    first = line[i]
    if first == '"':
        _check_text(value, number, i)
        return value, end
    if first in "{[":
        return line[i:end], end  # JSON text for json/jsonb, exactly as written
    if first in "tfn":
        return value, end  # true, false, null
    return line[i:end], end  # a number, as written


def _check_text(value: Any, number: int, offset: int) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SourceError(
                "the string holds an unpaired surrogate escape (\\ud800-\\udfff)",
                number,
                offset + 1,
            ) from None
