"""A validated plan: frozen Plan and Step objects that remember their source positions.

Nothing here imports the YAML, JSON Schema or SQL parsers: running a plan needs only these.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from ..errors import Position
from .files import FileSource
from .sqlparse import Statement
from .templates import Field, Template

# Rows per flight of a bulk insert: bounded so that neither side's socket buffer can fill while
# the other is still writing. One chunk needs no BEGIN/COMMIT (its Sync ends the implicit
# transaction). The engine sends them so; `show` and `check` describe it.
BULK_CHUNK_ROWS = 1000


@dataclass(frozen=True)
class Locator:
    """Maps an offset in a scalar's value to its place in the file.

    The value differs from the source by indentation, line folding, quotes and escapes; an
    alignment that walks both texts character by character undoes all of them well enough to
    put a caret on the right character. `source` is the file's text from where the value starts
    (at `line`, `column`) to where its scalar ends.
    """

    value: str
    source: str
    path: str
    line: int
    column: int
    shift: int = 0  # where offset 0 is in `value`: a piece of it (SourceText.part)

    def __call__(self, offset: int) -> Position:
        offset += self.shift
        positions, last = self._alignment()
        if offset < len(positions):
            return self._at(positions[max(offset, 0)])
        return self._at(last)

    def _alignment(self) -> tuple[list[int], int]:
        """Where each character of the value is in the source, and where a position past the
        value goes: computed once, on first use, so that locating many offsets (a batch of
        thousands of statements) stays linear."""
        found: tuple[list[int], int] | None = self.__dict__.get("_aligned")
        if found is not None:
            return found
        value, source = self.value, self.source
        end = len(source)
        positions: list[int] = []
        j = 0
        for char in value:
            if j >= end:
                break
            if char != source[j]:
                if char in " \n" and source[j] in " \t\r\n":
                    # a folded line break: the whole run of source white space became one char
                    while j < end and source[j] in " \t\r\n":
                        j += 1
                    j -= 1
                else:
                    k = source.find(char, j)
                    j = k if k >= 0 else j
            positions.append(j)
            j += 1
        found = (positions, min(j, max(0, end - 1)))
        object.__setattr__(self, "_aligned", found)  # a cache, not a field
        return found

    def _at(self, index: int) -> Position:
        breaks: list[int] | None = self.__dict__.get("_breaks")
        if breaks is None:
            breaks = [i for i, c in enumerate(self.source) if c == "\n"]
            object.__setattr__(self, "_breaks", breaks)
        newlines = bisect.bisect_left(breaks, index)
        if not newlines:
            return Position(self.path, self.line, self.column + index)
        return Position(self.path, self.line + newlines, index - breaks[newlines - 1])


@dataclass(frozen=True)
class RowPositions:
    """Where each inline row of a bulk insert is written: a line and column per row, packed
    into one integer each, so that 200,000 rows cost a tuple of ints rather than of Positions."""

    path: str
    packed: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, index: int) -> Position:
        value = self.packed[index]
        return Position(self.path, value >> 32, value & 0xFFFFFFFF)


@dataclass(frozen=True)
class SourceText:
    """A scalar from the plan file and how to find any of its characters in that file."""

    text: str
    position: Position
    locate: Locator = field(compare=False, repr=False)

    def part(self, offset: int, text: str) -> SourceText:
        """The piece of this text that starts at `offset`, still placed in the file."""
        shifted = replace(self.locate, shift=self.locate.shift + offset)
        return SourceText(text, self.locate(offset), shifted)


@dataclass(frozen=True)
class Message:
    template: Template
    source: SourceText


@dataclass(frozen=True)
class Var:
    name: str
    type: str
    default: object  # None: no default (a var's value is never NULL)
    env: str | None  # the environment variable it is read from, if any
    secret: bool
    position: Position  # its key under `vars:`
    description: str | None = None


@dataclass(frozen=True)
class Use:
    """A plan value that refers to vars: where it is in the step, and how it reads."""

    path: tuple[int | str, ...]  # ("params", 0), ("rows", 4, 1), ("params", 0, "key"), ...
    template: Template  # text and {name} fields; escapes already undone
    position: Position

    @property
    def exact(self) -> bool:
        """The whole value is one `{name}`: it takes the var's value with its type."""
        return len(self.template.parts) == 1 and isinstance(self.template.parts[0], Field)


@dataclass(frozen=True)
class Capture:
    """A var a step takes from its result: one row's column, or (`all`) every row's, as a list."""

    var: str
    column: str
    all: bool
    position: Position


@dataclass(frozen=True)
class Expect:
    """What must be true of a step's result before it commits."""

    position: Position  # the `expect` key
    count_min: int | None = None  # rows affected or returned
    count_max: int | None = None
    rows: tuple[dict[str, object], ...] | None = None  # query: each row's checked columns
    ordered: bool = True
    error: str | None = None  # the SQLSTATE a negative test must fail with


@dataclass(frozen=True)
class Retry:
    """Run a step again when its transaction fails on a lock timeout, deadlock or
    serialization failure: `attempts` in all, waiting `backoff` seconds, doubled each time."""

    attempts: int
    backoff: float
    position: Position


@dataclass(frozen=True)
class Step:
    """What every kind of step has. A kind is a subclass in STEP_KINDS, named by the key that
    holds its SQL (`kind`), with the messages it prints (`MESSAGES`: key, when); each layer
    keeps its part of a kind in one table keyed by `kind`, and tests/plan/test_kinds.py fails when
    a table misses one."""

    kind: ClassVar[str]
    MESSAGES: ClassVar[tuple[tuple[str, str], ...]]
    # what a step's `count` ({count}, expect.count) is: the rows its statement returned (a
    # query), else the rows it affected (as the server's command tag says)
    COUNTS_RETURNED: ClassVar[bool] = False
    # it commits as it goes, in transactions of its own: never in one sqlplan opens around it
    OWN_TRANSACTIONS: ClassVar[bool] = False

    number: int  # 1-based, in plan order
    name: str | None
    position: Position  # the step's kind key
    sql: SourceText
    statements: tuple[Statement, ...]  # as PostgreSQL's parser reads the SQL
    allow: frozenset[str]  # review warnings this step silences
    reasons: tuple[tuple[str, str], ...]  # (code, why) for those allowed with a reason
    before: Message | None
    uses: tuple[Use, ...] = field(default=(), kw_only=True)  # its values that refer to vars
    captures: tuple[Capture, ...] = field(default=(), kw_only=True)  # vars it takes from its rows
    expect: Expect | None = field(default=None, kw_only=True)
    # (name, value) of lock_timeout and statement_timeout, SET LOCAL in its transaction: the
    # step's own when validated; the ones in force (plan, --lock-timeout) once bound to a run
    settings: tuple[tuple[str, str], ...] = field(default=(), kw_only=True)
    retry: Retry | None = field(default=None, kw_only=True)

    @property
    def label(self) -> str:
        return f'step {self.number} "{self.name}"' if self.name else f"step {self.number}"


_BEFORE = ("before", "before the SQL is sent")
_AFTER = ("after", "after it succeeds")
_AFTER_NO_ROWS = ("after_no_rows", "after, when no row was affected")


@dataclass(frozen=True)
class BatchStep(Step):
    kind = "batch"
    MESSAGES = (_BEFORE, _AFTER)

    after: Message | None

    def alone(self, statement: Statement) -> BatchStep:
        """This step as if it held one of its statements, placed where that one is written."""
        sql = self.sql.part(statement.offset, statement.text)
        return replace(self, sql=sql, statements=(replace(statement, offset=0),))


@dataclass(frozen=True)
class ExecuteStep(Step):
    kind = "execute"
    MESSAGES = (_BEFORE, _AFTER, _AFTER_NO_ROWS)

    params: tuple[object, ...]
    after: Message | None
    after_no_rows: Message | None


@dataclass(frozen=True)
class BulkInsertStep(Step):
    kind = "bulk_insert"
    MESSAGES = (_BEFORE, _AFTER, _AFTER_NO_ROWS)

    rows: tuple[tuple[object, ...], ...]  # inline rows; empty when `source` gives them
    row_positions: RowPositions
    source: FileSource | None  # rows_from: a file read as the step runs
    width: int  # values per row: the statement's $1..$n
    copy_sql: str | None  # the COPY that does the same, when there is one
    after: Message | None
    after_no_rows: Message | None


@dataclass(frozen=True)
class QueryStep(Step):
    kind = "query"
    COUNTS_RETURNED = True
    MESSAGES = (
        ("header", "first"),
        ("row", "for each row"),
        ("empty", "when there are no rows"),
        ("footer", "last"),
    )

    params: tuple[object, ...]
    header: Message | None
    row: Message | None
    empty: Message | None
    footer: Message | None


@dataclass(frozen=True)
class BackfillStep(Step):
    """One statement applied in key-range batches, each batch a transaction of its own that
    also moves the step's checkpoint in sqlplan.backfill (run/backfill.py)."""

    kind = "backfill"
    OWN_TRANSACTIONS = True
    MESSAGES = (_BEFORE, ("after", "after the last batch"))

    table: tuple[str, ...]  # (schema, name) or (name,): the table whose key is walked
    key: tuple[str, ...]  # its key columns, in order: one, or several (a composite key)
    batch: int  # rows per batch (the first one's, when batch_time adapts it)
    lower_inclusive: bool  # the SQL reads `key >= $1` (the batch's first key), not `key > $1`
    pause: float  # seconds between batches
    batch_time: float | None  # seconds a batch should take: the batch size adapts
    max_duration: float | None  # seconds: stop at the batch boundary after it; resumable
    after: Message | None


AnyStep = BatchStep | ExecuteStep | BulkInsertStep | QueryStep | BackfillStep

# Every kind of step, by the key that holds its SQL.
STEP_KINDS: dict[str, type[AnyStep]] = {
    kind.kind: kind for kind in (BatchStep, ExecuteStep, BulkInsertStep, QueryStep, BackfillStep)
}


@dataclass(frozen=True)
class ReviewSettings:
    """A plan's `review:` (or a review config file's): what `check` adds and how it grades;
    None where it says nothing, so that the plan's own win over the file's."""

    compat: bool | None = None
    small: float | None = None  # seconds
    large: float | None = None  # seconds
    busy: int | None = None  # writes a minute
    rewrite_rate: float | None = None  # MB a second
    scan_rate: float | None = None  # MB a second

    def over(self, other: ReviewSettings) -> ReviewSettings:
        """These settings, and `other`'s where these say nothing."""
        return ReviewSettings(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(astuple_shallow(self), astuple_shallow(other), strict=True)
            )
        )


def astuple_shallow(settings: ReviewSettings) -> tuple[Any, ...]:
    return tuple(getattr(settings, f.name) for f in fields(settings))


@dataclass(frozen=True)
class Plan:
    path: str
    name: str
    description: str | None
    on_connect: Message | None
    null_text: str
    steps: tuple[AnyStep, ...]
    fingerprint: str  # SHA-256 of the validated data's canonical JSON: layout and comments aside
    postgres: int | None = None  # the major version the plan declares it runs on
    vars: tuple[Var, ...] = ()
    once: bool = False  # recorded in sqlplan.history when it succeeds; skipped once recorded
    settings: tuple[tuple[str, str], ...] = ()  # lock_timeout, statement_timeout for every step
    review: ReviewSettings = ReviewSettings()

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:16]
