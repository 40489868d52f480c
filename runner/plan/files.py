"""Rows from a file beside the plan, streamed: CSV read exactly as PostgreSQL's COPY reads CSV,
and JSON Lines with every value kept as written. Each row comes with the file line it starts on.

The CSV reader is csv_reader.py, the JSON Lines reader jsonl.py; reading.py opens the file.
"""

from __future__ import annotations

import errno
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .reading import NotRegularFile, SourceError, file_kind, open_regular, regular_file_problem

if TYPE_CHECKING:
    from .csv_reader import CsvReader

__all__ = [
    "FORMATS",
    "FileSource",
    "NotRegularFile",
    "Row",
    "SourceError",
    "file_kind",
    "open_regular",
    "regular_file_problem",
    "shorten",
    "source_problem",
    "suffix",
]

Row = tuple[object, ...]
Record = tuple[str | None, ...]  # a CSV record's fields (None: NULL)


FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > name.rfind("/") else ""


def shorten(text: str) -> str:
    return text if len(text) <= 160 else text[:80] + "…" + text[-79:]


def source_problem(source: FileSource, width: int, name: str) -> tuple[str, bool] | None:
    """Why a rows_from file (`name` as the plan gives it) cannot be read as `source` says, and
    whether the problem is in its header (reported at `fields`); None when it can."""
    shown = name if len(name) <= 120 else name[:119] + "…"
    problem = regular_file_problem(source.path)
    if problem is not None:
        reason, code = problem
        if code == errno.ENOENT:
            return (
                f"no file {shown!r} beside the plan (looked for {shorten(str(source.path))})",
                False,
            )
        if code is None:
            return f"{shown!r} {reason}", False
        return f"cannot read {shown!r}: {reason}", False
    if source.format == "csv" and source.header:
        try:
            source.check_header(width)
        except SourceError as e:
            return f"{shown}:{e.line}:{e.column}: {e}", True
    return None


@dataclass(frozen=True)
class FileSource:
    path: Path  # resolved against the plan's directory
    display: str  # as the plan names it
    format: str  # "csv" or "jsonl"
    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    null: str = ""
    fields: tuple[str | int, ...] = ()  # names, or 1-based positions; () means all, in order
    # For a file named with vars (`data/{region}.csv`): the plan's directory. The file is found
    # and checked once the vars are bound; until then `path` and `display` hold the name as
    # written, and `format` is "" when only the bound name can tell it.
    base: Path | None = None

    def rows(
        self,
        progress: Callable[[int], None] | None = None,
        width: int | None = None,
        *,
        end_marker: bool = False,
    ) -> Iterator[tuple[int, Row]]:
        """(file line, row values for $1..$n) for each row, read lazily. `width` is the number
        of values the statement takes; `progress` hears how many bytes have been read;
        `end_marker`: a CSV line holding only \\. ends the data (PostgreSQL 17 and older)."""
        for lines, rows in self.row_batches(progress, width, end_marker=end_marker):
            yield from zip(lines, rows, strict=True)

    def row_batches(
        self,
        progress: Callable[[int], None] | None = None,
        width: int | None = None,
        *,
        end_marker: bool = False,
    ) -> Iterator[tuple[list[int], list[Row]]]:
        """What rows() gives, in lists of the rows read together beside their lines."""
        from .csv_reader import text_blocks

        with open_regular(self.path) as raw:
            if self.format == "csv":
                batches = self._csv_batches(text_blocks(raw), width, end_marker)
            else:
                batches = (([line], [row]) for line, row in self._jsonl_rows(text_blocks(raw)))
            if progress is None:
                yield from batches
                return
            told = 0
            for count, batch in enumerate(batches):
                yield batch
                if count - told >= 4096 or len(batch[1]) > 1:
                    progress(raw.tell())
                    told = count
            progress(raw.tell())

    def size(self) -> int:
        return self.path.stat().st_size

    def is_whole_csv(self, width: int) -> bool:
        """Whether the rows are the CSV's records as they are: every field, in file order."""
        if self.format != "csv":
            return False
        if not self.fields:
            return True
        names = self._first_record()
        if all(isinstance(f, int) for f in self.fields):
            return list(self.fields) == list(range(1, width + 1)) and len(names) == width
        return self.header and list(self.fields) == names

    def _reader(self, blocks: Iterator[str], end_marker: bool = False) -> CsvReader:
        from .csv_reader import CsvReader

        return CsvReader(
            blocks,
            delimiter=self.delimiter,
            quote=self.quote,
            escape=self.escape,
            null=self.null,
            end_marker=end_marker,
        )

    def _first_record(self) -> list[str]:
        from .csv_reader import text_blocks

        with open_regular(self.path) as raw:
            first = next(self._reader(text_blocks(raw)).records(), None)
        return [] if first is None else ["" if v is None else str(v) for v in first[1]]

    def copy_options(self) -> str:
        """The options of a COPY that reads this file as PostgreSQL's CSV, as it is."""

        def literal(text: str) -> str:  # a COPY option cannot be a bind parameter
            return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

        return (
            f"(FORMAT csv, HEADER {'true' if self.header else 'false'}, DELIMITER {literal(self.delimiter)}, "
            f"QUOTE {literal(self.quote)}, ESCAPE {literal(self.escape)}, NULL {literal(self.null)})"
        )

    def raw_chunks(
        self, progress: Callable[[int], None] | None = None, size: int = 1 << 18
    ) -> Iterator[bytes]:
        """The file's bytes, without a UTF-8 byte-order mark, in chunks."""
        with open_regular(self.path) as handle:
            first = True
            while chunk := handle.read(size):
                if first and chunk.startswith(b"\xef\xbb\xbf"):
                    chunk = chunk[3:]
                first = False
                yield chunk
                if progress is not None:
                    progress(handle.tell())

    def record_at_line(self, line: int, *, end_marker: bool = False) -> tuple[int, int] | None:
        """(0-based row index, first line) of the data record holding physical line `line`."""
        found = None
        try:
            for index, (start, _) in enumerate(self.rows(end_marker=end_marker)):
                if start > line:
                    break
                found = (index, start)
        except SourceError as e:  # the record that does not parse, if it starts in time
            if e.line <= line:
                return (found[0] + 1 if found else 0, e.line)
        return found

    def check_header(self, width: int) -> None:
        """Read just the header line: the named fields exist, or it has `width` fields."""
        from .csv_reader import text_blocks

        with open_regular(self.path) as raw:
            first = next(self._reader(text_blocks(raw)).records(), None)
        if first is None:
            return
        names = ["" if v is None else str(v) for v in first[1]]
        for field in self.fields:
            _field_index(field, names, first[0])
        if not self.fields and len(names) != width:
            raise SourceError(
                f"the header has {len(names)} fields ({_listed(names)}), but the statement takes "
                f"{width}: list the ones to use in fields",
                first[0],
            )

    def _csv_batches(
        self, blocks: Iterator[str], width: int | None, end_marker: bool
    ) -> Iterator[tuple[list[int], list[Row]]]:
        reader = self._reader(blocks, end_marker)
        batches = reader.batches()
        first_batch: tuple[list[int], list[Record]] = ([], [])
        select: list[int] | None = None
        expected = width if not self.fields else None
        if self.header and not any(isinstance(f, str) for f in self.fields):
            # COPY skips the header line unread; so does sqlplan when it needs no names
            if not reader.skip_line():
                return
            if self.fields:
                select = [_position(f, 1) - 1 for f in self.fields]
        elif self.header:
            for lines, records in batches:
                if records:
                    first = (lines[0], records[0])
                    first_batch = (lines[1:], records[1:])
                    break
            else:
                return
            names = ["" if v is None else str(v) for v in first[1]]
            select = [_field_index(f, names, first[0]) for f in self.fields]
            expected = len(names)
        elif self.fields:
            select = [_position(f, 1) - 1 for f in self.fields]
        pick: Callable[[Record], Row] | None = None
        if select is not None:
            pick = _picker(select)
        for lines, records in itertools.chain([first_batch], batches):
            if not records:
                continue
            if expected is None:
                expected = len(records[0])
            if set(map(len, records)) != {expected}:
                index = next(i for i, v in enumerate(records) if len(v) != expected)
                if index:
                    yield lines[:index], _picked(lines, records[:index], pick)
                line, values = lines[index], records[index]
                raise SourceError(
                    f"the record has {len(values)} field{'s' * (len(values) != 1)}, but "
                    + (
                        f"the statement takes {expected}"
                        if not self.fields
                        else f"the {'header' if self.header else 'first record'} has {expected}"
                    ),
                    line,
                    reader.column_of_field(min(len(values), expected), line),
                )
            yield lines, _picked(lines, records, pick)

    def _jsonl_rows(self, blocks: Iterator[str]) -> Iterator[tuple[int, Row]]:
        from .csv_reader import numbered_lines
        from .jsonl import json_line

        for line_number, line in numbered_lines(blocks):
            if not line.strip(" \t\r\n"):
                continue
            kind, values = json_line(line, line_number)
            if kind == "object":
                assert isinstance(values, dict)
                if not self.fields or not all(isinstance(f, str) for f in self.fields):
                    raise SourceError(
                        "an object row needs a 'fields' list naming its keys", line_number
                    )
                try:
                    yield line_number, tuple(values[str(f)] for f in self.fields)
                except KeyError as e:
                    raise SourceError(f"the object has no key {e.args[0]!r}", line_number) from None
            else:
                assert isinstance(values, list)
                if self.fields:
                    try:
                        picked = [values[_position(f, line_number) - 1] for f in self.fields]
                    except IndexError:
                        raise SourceError(
                            f"the array has {len(values)} values, fewer than the mapping needs",
                            line_number,
                        ) from None
                else:
                    picked = values
                yield line_number, tuple(picked)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(n if len(n) <= 40 else n[:39] + "…" for n in names[:20])
    return shown + (", …" if len(names) > 20 else "")


def _picked(
    lines: list[int], records: list[Record], pick: Callable[[Record], Row] | None
) -> list[Row]:
    """The records as rows: the mapping's fields, or all of them. Every record has as many
    fields as the first, so either all have those the mapping needs or none."""
    if pick is None:
        return records  # type: ignore[return-value]
    try:
        return list(map(pick, records))
    except IndexError:
        raise SourceError(
            f"the record has {len(records[0])} fields, fewer than the mapping needs", lines[0]
        ) from None


def _picker(select: list[int]) -> Callable[[Record], Row]:
    """The fields at `select` of a record, as a tuple (IndexError when it has too few)."""
    if len(select) == 1:
        only = select[0]
        return lambda values: (values[only],)
    return operator.itemgetter(*select)


def _field_index(field: str | int, names: Sequence[str], line: int) -> int:
    if isinstance(field, int):
        return _position(field, line) - 1
    try:
        return list(names).index(field)
    except ValueError:
        raise SourceError(
            f"the header has no field {field!r} (it has {_listed(names)})", line
        ) from None


def _position(field: str | int, line: int) -> int:
    if not isinstance(field, int) or field < 1:
        raise SourceError(f"without a header, fields are 1-based positions, not {field!r}", line)
    return field


# --- decoding ------------------------------------------------------------------------------


# --- CSV, as PostgreSQL reads it -------------------------------------------------------------


# --- JSON Lines -----------------------------------------------------------------------------
