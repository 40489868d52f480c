"""Plan values and the exact text each one reaches PostgreSQL as.

A plan's values are YAML 1.2 core scalars and collections: text, integers, other numbers,
booleans, null, lists and mappings. Every value travels as a bind parameter (or a COPY field) in
PostgreSQL's text format, so the column's own input function reads it. Nothing goes through a
binary float:

- an integer (`42`, `-7`, `0x1F`, `0o17`, any number of digits) is sent in decimal;
- any other number (`1.50`, `12345678901234.123456`, `1e400`, `-0.0`, `.5`) is sent exactly as
  written; YAML's `.inf`, `-.inf` and `.nan` are sent as PostgreSQL spells them: `Infinity`,
  `-Infinity`, `NaN`;
- a list is a PostgreSQL array literal, each element quoted where PostgreSQL's array syntax
  would otherwise read it differently (`null`, empty text, quotes, backslashes, braces, commas,
  surrounding white space); YAML `null` is a NULL element; nested lists are nested arrays;
- a mapping is JSON text, its numbers written with the digits the plan gave them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from .. import secrets


class Number:
    """A YAML number that is not an integer, kept as the text it was written as."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Number({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Number) and other.text == self.text

    def __hash__(self) -> int:
        return hash(("Number", self.text))

    @property
    def special(self) -> str | None:
        """'Infinity', '-Infinity' or 'NaN' for YAML's .inf, -.inf and .nan; else None."""
        lowered = self.text.lower()
        if lowered.endswith(".inf"):
            return "-Infinity" if lowered.startswith("-") else "Infinity"
        if lowered == ".nan":
            return "NaN"
        return None

    @property
    def sql(self) -> str:
        """The text PostgreSQL's input functions read: the number as written."""
        return self.special or self.text

    @property
    def json(self) -> str:
        """The same number in JSON's grammar (no '+', no bare '.5' or '5.', no leading zeros);
        ValueError for .inf and .nan, which JSON cannot hold."""
        if self.special:
            raise ValueError(f"JSON has no {self.special}")
        match = _FLOAT.fullmatch(self.text)
        if match is None:  # a hexadecimal or octal integer too long to convert
            raise ValueError("JSON has no hexadecimal or octal numbers; write it in decimal")
        sign, whole, fraction, exponent = _split_float(match)
        whole = (whole or "0").lstrip("0") or "0"
        fraction = f".{fraction}" if fraction else ""
        return f"{'-' if sign == '-' else ''}{whole}{fraction}{exponent or ''}"


class Secret:
    """A value from a var marked `secret: true`: sent as its value, shown as ****."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(****)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Secret", repr(self.value)))


MASK = secrets.MASK


def holds_secret(value: object) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, (list, tuple)):
        return any(holds_secret(v) for v in value)
    if isinstance(value, dict):
        return any(holds_secret(v) for v in value.values())
    return False


# --- YAML 1.2 core schema: which plain scalars are null, booleans, integers, floats ----------

_CONSTANTS: dict[str, object] = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
}  # fmt: skip
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
# Unambiguous (the digits before a dot and after it never compete): a long run of digits that
# is not a number fails in linear time.
_FLOAT = re.compile(r"([-+]?)(?:\.([0-9]+)|([0-9]+)(?:\.([0-9]*))?)([eE][-+]?[0-9]+)?")
_SPECIAL = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_NUMBER_START = frozenset("-+.0123456789")


def _split_float(match: re.Match[str]) -> tuple[str, str | None, str | None, str | None]:
    sign, leading_fraction, whole, fraction, exponent = match.groups()
    if leading_fraction is not None:
        return sign, "0", leading_fraction, exponent
    return sign, whole, fraction, exponent


def resolve_plain(text: str) -> object:
    """The value of an untagged plain scalar under YAML 1.2's core schema."""
    constant = _CONSTANTS.get(text, _NOT_CONSTANT)
    if constant is not _NOT_CONSTANT:
        return constant
    if text[0] not in _NUMBER_START:
        return text
    if text.isdigit() and text.isascii() and len(text) <= _LONGEST_INT:
        return int(text)  # the common case, without a regular expression
    if _INT.fullmatch(text):
        return parse_int(text) if len(text) <= _LONGEST_INT else Number(text)
    if _FLOAT.fullmatch(text) or _SPECIAL.fullmatch(text):
        return Number(text)
    return text


# Python converts longer digit strings to int only slowly (and refuses past 4,300 digits): such
# integers stay text, sent as written.
_LONGEST_INT = 4000
_NOT_CONSTANT = object()


def parse_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def is_number_text(text: str) -> bool:
    return bool(_INT.fullmatch(text) or _FLOAT.fullmatch(text) or _SPECIAL.fullmatch(text))


# --- PostgreSQL text ----------------------------------------------------------------------


def sql_text(value: object) -> str | None:
    """The text a value is sent as (None for NULL)."""
    if value is None:
        return None
    if type(value) is Secret:
        return sql_text(value.value)
    encode = _ENCODERS.get(type(value))
    if encode is None:
        raise TypeError(f"not a plan value: {type(value).__name__}")
    return encode(value)


def _int_text(value: int) -> str:
    return str(value)


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _number_text(value: Number) -> str:
    return value.sql


def _list_text(value: list[Any]) -> str:
    return "{" + ",".join(_element(v) for v in value) + "}"


def _dict_text(value: dict[Any, Any]) -> str:
    return json_text(value)


def _same(value: str) -> str:
    return value


_ENCODERS: dict[type, Callable[[Any], str]] = {
    str: _same,
    int: _int_text,
    bool: _bool_text,
    Number: _number_text,
    list: _list_text,
    tuple: _list_text,
    dict: _dict_text,
}

# An array element must be quoted when PostgreSQL's array input would otherwise read it
# differently: empty, NULL in any case, or holding a quote, backslash, brace, delimiter or
# white space (array_in trims unquoted elements).
_NEEDS_QUOTES = re.compile(r'[{}",\\\s]|^$|^[Nn][Uu][Ll][Ll]$')


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        return _list_text(list(value))
    text = sql_text(value)
    assert text is not None
    if _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def json_text(value: object) -> str:
    """JSON text with the plan's numbers as written (in JSON's grammar)."""
    return (
        json.dumps(value, ensure_ascii=False, default=_json_default, allow_nan=False)
        .replace(_RAW_OPEN, "")
        .replace(_RAW_CLOSE, "")
    )


# json.dumps writes a Number through `default`, which must return a JSON value: the number's
# text goes out as a string between two markers that cannot occur in a plan (lone surrogates;
# YAML refuses them), and the markers and the string's quotes are then removed.
_RAW_OPEN = '"\udc80'
_RAW_CLOSE = '\udc81"'


def _json_default(value: object) -> object:
    if isinstance(value, Number):
        return f"\udc80{value.json}\udc81"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def json_problems(value: object) -> Iterator[tuple[tuple[object, ...], str, bool]]:
    """(path inside `value`, problem, whether it is about the key at that path) for what a
    mapping value holds that JSON cannot: infinities, NaN, keys that are not text."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield (key,), f"a JSON key must be text, not {key!r}; quote it", True
            for path, problem, at_key in json_problems(item):
                yield (key, *path), problem, at_key
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, problem, at_key in json_problems(item):
                yield (index, *path), problem, at_key
    elif isinstance(value, Number):
        try:
            value.json  # noqa: B018 - raises for what JSON cannot hold
        except ValueError as e:
            yield (), str(e), False


def value_problems(value: object) -> Iterator[tuple[tuple[object, ...], str, bool]]:
    """Problems of a parameter or row value: inside mappings (JSON) and in lists' mappings."""
    if isinstance(value, dict):
        yield from json_problems(value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, problem, at_key in value_problems(item):
                yield (index, *path), problem, at_key


# --- How values read to people --------------------------------------------------------------


def message_text(value: object, null_text: str) -> str:
    """A parameter as a message echoes it: the text it is sent as; NULL as the plan says;
    **** for what holds a secret."""
    if holds_secret(value):
        return MASK
    text = sql_text(value)
    # a value captured from a row is the server's text: masked (secrets.py)
    return null_text if text is None else secrets.mask(text)


def literal(value: object) -> str:
    """A value as `sqlplan show` writes it beside its placeholder: a SQL literal of what is
    sent, numbers as written."""
    if value is None:
        return "NULL"
    if holds_secret(value):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Number) and not value.special:
        return value.text
    text = sql_text(value)
    assert text is not None
    return "'" + text.replace("'", "''") + "'"


def fingerprint_json(data: object) -> Iterator[bytes]:
    """Canonical JSON of validated plan data for its fingerprint, in pieces: keys sorted,
    numbers as written (a number and a text never encode alike). Long lists (bulk rows) go a
    slice at a time, so that a large plan's JSON is never whole in memory."""
    if isinstance(data, dict):
        yield b"{"
        for index, key in enumerate(sorted(data)):
            yield (b"," if index else b"") + _canonical(key) + b":"
            yield from fingerprint_json(data[key])
        yield b"}"
    elif isinstance(data, list) and len(data) > _SLICE:
        yield b"["
        for start in range(0, len(data), _SLICE):
            piece = _canonical(data[start : start + _SLICE])
            yield (b"," if start else b"") + piece[1:-1]
        yield b"]"
    elif isinstance(data, list):
        yield b"["
        for index, item in enumerate(data):
            if index:
                yield b","
            yield from fingerprint_json(item)
        yield b"]"
    else:
        yield _canonical(data)


_SLICE = 10_000


def _canonical(value: object) -> bytes:
    text = json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_fingerprint_default,
    )
    return text.encode("utf-8", "surrogatepass")


def _fingerprint_default(value: object) -> object:
    if isinstance(value, Number):
        return "\udc80" + value.text  # no text in a plan holds a lone surrogate
    raise TypeError(f"not a plan value: {type(value).__name__}")
