"""PostgreSQL's rules for the names it chooses itself: the index of a PRIMARY KEY, UNIQUE or
EXCLUDE constraint, an unnamed CREATE INDEX, a partition's copy of a partitioned index, an
unnamed foreign key (ChooseRelationName, ChooseIndexColumnNames, FigureColname and
makeObjectName in the server's source). Names are cut in bytes, on a character boundary, to
fit NAMEDATALEN."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NAMEDATALEN = 64  # PostgreSQL's identifier limit, the terminating byte included


def object_name(name1: str, name2: str | None, label: str) -> str:
    """makeObjectName: name1_name2_label, the longer of the two names cut first (in bytes,
    on a character boundary) until it fits in NAMEDATALEN - 1 bytes."""
    one, two = name1.encode(), (name2 or "").encode()
    overhead = (1 if name2 is not None else 0) + (len(label.encode()) + 1 if label else 0)
    available = NAMEDATALEN - 1 - overhead
    size1, size2 = len(one), len(two)
    while size1 + size2 > available:
        if size1 > size2:
            size1 -= 1
        else:
            size2 -= 1
    parts = [_clip(one, size1)]
    if name2 is not None:
        parts.append(_clip(two, size2))
    if label:
        parts.append(label)
    return "_".join(parts)


def _clip(text: bytes, size: int) -> str:
    """The longest whole-character prefix of `text` within `size` bytes (pg_mbcliplen)."""
    return text[:size].decode("utf-8", errors="ignore")


def name_addition(columns: Iterable[str]) -> str:
    """ChooseIndexNameAddition: the columns joined by "_", stopping once NAMEDATALEN is
    reached (makeObjectName cuts the rest)."""
    joined = b""
    for column in columns:
        if joined:
            joined += b"_"
        joined += column.encode()[: NAMEDATALEN - 1]
        if len(joined) >= NAMEDATALEN:
            break
    return joined.decode("utf-8", errors="ignore")


def unique_names(names: Iterable[str]) -> tuple[str, ...]:
    """ChooseIndexColumnNames: a name met before gets 1, 2, ... appended (kept short enough)."""
    result: list[str] = []
    for original in names:
        current, number = original, 0
        while current in result:
            number += 1
            suffix = str(number)
            current = _clip(original.encode(), NAMEDATALEN - 1 - len(suffix)) + suffix
        result.append(current)
    return tuple(result)


def index_columns(elements: list[dict[str, Any]], including: list[Any]) -> tuple[str, ...]:
    names = []
    for element in [*elements, *including]:
        if isinstance(element, dict) and "String" in element:
            names.append(_string(element))
        elif element.get("indexcolname"):
            names.append(str(element["indexcolname"]))
        elif element.get("name"):
            names.append(str(element["name"]))
        else:
            names.append(_figure_name(element.get("expr")) or "expr")
    return unique_names(names)


def _figure_name(node: Any) -> str | None:
    """FigureColname for an index expression: the name PostgreSQL gives its column."""
    name, _ = _figure(node)
    return name


def _figure(node: Any) -> tuple[str | None, int]:
    """(name, strength): FigureColnameInternal, for the expressions an index can hold."""
    if not isinstance(node, dict) or not node:
        return None, 0
    kind, value = next(iter(node.items()))
    if kind == "ColumnRef":
        fields = value.get("fields", [])
        last = fields[-1] if fields else {}
        return (_string(last), 2) if "String" in last else (None, 0)
    if kind == "A_Indirection":
        indirection = value.get("indirection", [])
        last = indirection[-1] if indirection else {}
        if "String" in last:
            return _string(last), 2
        return _figure(value.get("arg"))
    if kind == "FuncCall":
        names = value.get("funcname", [])
        return (_string(names[-1]), 2) if names else (None, 0)
    if kind == "A_Expr":
        if value.get("kind") == "AEXPR_NULLIF":
            return "nullif", 2
        return None, 0
    if kind == "TypeCast":
        name, strength = _figure(value.get("arg"))
        if strength <= 1:
            names = value.get("typeName", {}).get("names", [])
            if names:
                return _string(names[-1]), 1
        return name, strength
    if kind == "CollateClause":
        return _figure(value.get("arg"))
    if kind == "CaseExpr":
        name, strength = _figure(value.get("defresult"))
        return (name, strength) if strength > 1 else ("case", 1)
    if kind == "CoalesceExpr":
        return "coalesce", 2
    if kind == "MinMaxExpr":
        return ("greatest" if value.get("op") == "IS_GREATEST" else "least"), 2
    if kind in ("A_ArrayExpr", "ArrayExpr"):
        return "array", 2
    if kind == "RowExpr":
        return "row", 2
    if kind == "SQLValueFunction":
        op = str(value.get("op", ""))
        return op.removeprefix("SVFOP_").lower(), 2
    return None, 0


def _string(node: Any) -> str:
    return str(node.get("String", {}).get("sval", "")) if isinstance(node, dict) else str(node)
