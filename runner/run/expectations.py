"""A step's `expect`, checked against what the server answered, before the step commits: the
count of rows affected or returned, and a query's rows, compared as its row template reads
them (text as the server sends it, booleans true and false; NULL as the plan's null_text)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .. import secrets
from ..errors import Position
from ..plan.model import AnyStep, Expect
from ..plan.values import MASK, holds_secret, sql_text


class Unmet(Exception):
    """The result is not what `expect` says: why, where, and the difference line by line."""

    def __init__(self, message: str, position: Position, difference: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.difference = tuple(difference)


def check(
    step: AnyStep,
    count: int,
    columns: Sequence[str] = (),
    rows: Sequence[Sequence[Any]] = (),
    null_text: str = "NULL",
) -> None:
    expect = step.expect
    if expect is None:
        return
    if expect.error is not None:
        raise Unmet(
            f"{step.label}: expected it to fail with {expect.error}, but it succeeded",
            expect.position,
        )
    low, high = expect.count_min, expect.count_max
    if (low is not None and count < low) or (high is not None and count > high):
        what = "returned" if rows or columns else "affected"
        raise Unmet(
            f"{step.label}: expected {_range(low, high)} {what}, got {count}", expect.position
        )
    if expect.rows is not None:
        _rows(step, expect, columns, rows, null_text)


def _range(low: int | None, high: int | None) -> str:
    if low == high:
        return f"{low} row{'s' * (low != 1)}"
    if high is None:
        return f"at least {low} rows"
    if low is None:
        return f"at most {high} rows"
    return f"{low} to {high} rows"


def expected_text(value: object) -> str | None:
    """An expected value as a row template reads it: as it would be sent (booleans true and
    false, as sqlplan reads them from the server too)."""
    return sql_text(value)


def _rows(
    step: AnyStep,
    expect: Expect,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    null_text: str,
) -> None:
    """The rows returned, on the columns the expected rows name (each names the same ones)."""
    assert expect.rows is not None
    checked = list(expect.rows[0]) if expect.rows else list(columns)
    missing = [c for c in checked if c not in columns]
    if missing:
        raise Unmet(
            f"{step.label}: the expected rows name {', '.join(missing)}, which the query does "
            f"not return (its columns: {', '.join(columns) or 'none'})",
            expect.position,
        )
    indexes = [list(columns).index(c) for c in checked]
    want = [tuple(expected_text(row.get(c)) for c in checked) for row in expect.rows]
    got = [tuple(row[i] for i in indexes) for row in rows]
    hidden = [tuple(holds_secret(row.get(c)) for c in checked) for row in expect.rows]

    def line(cells: tuple[str | None, ...], secret: tuple[bool, ...] | None = None) -> str:
        shown = (  # a returned cell is the server's text: masked (secrets.py)
            MASK if secret and secret[k] else (null_text if cell is None else secrets.mask(cell))
            for k, cell in enumerate(cells)
        )
        return "{" + ", ".join(f"{c}: {v}" for c, v in zip(checked, shown, strict=True)) + "}"

    if expect.ordered:
        if want == got:
            return
        import difflib  # for a failed expectation's difference only

        difference = [
            text[:1] + " " + text[2:]
            for text in difflib.ndiff(
                [line(w, hidden[i]) for i, w in enumerate(want)], [line(g) for g in got]
            )
            if text[:1] in "-+ "
        ]
        raise Unmet(
            f"{step.label}: the rows are not the expected ones (- expected, + returned)",
            expect.position,
            difference,
        )
    extra = Counter(got)
    extra.subtract(want)
    short = Counter(want)
    short.subtract(got)
    if not +extra and not +short:
        return
    difference = [
        f"- {line(w, hidden[want.index(w)])}" for w, n in (+short).items() for _ in range(n)
    ]
    difference += [f"+ {line(g)}" for g, n in (+extra).items() for _ in range(n)]
    raise Unmet(
        f"{step.label}: the rows are not the expected ones, in any order (- expected, + returned)",
        expect.position,
        difference,
    )
