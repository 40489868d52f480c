"""Rows for a bulk insert from a file beside the plan, streamed: CSV (as PostgreSQL reads CSV) or
JSON Lines. Each row comes with the file line it starts on, for error messages."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

Row = tuple[object, ...]


class SourceError(ValueError):
    """A row the file cannot give: malformed CSV or JSON, a missing field."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


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

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, Row]]:
        """(file line, row values for $1..$n) for each row, read lazily; `progress` hears how
        many bytes of the file have been read, every few thousand rows."""
        with (
            open(self.path, "rb") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        ):
            rows = self._csv_rows(handle) if self.format == "csv" else self._jsonl_rows(handle)
            if progress is None:
                yield from rows
                return
            for count, item in enumerate(rows, 1):
                if count % 4096 == 0:
                    progress(raw.tell())
                yield item
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

    def _first_record(self) -> list[str]:
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            first = next(
                _csv_records(handle, self.delimiter, self.quote, self.escape, self.null), None
            )
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
        with open(self.path, "rb") as handle:
            first = True
            while chunk := handle.read(size):
                if first and chunk.startswith(b"\xef\xbb\xbf"):
                    chunk = chunk[3:]
                first = False
                yield chunk
                if progress is not None:
                    progress(handle.tell())

    def record_at_line(self, line: int) -> tuple[int, int] | None:
        """(0-based row index, first line) of the data record holding physical line `line`."""
        found = None
        try:
            for index, (start, _) in enumerate(self.rows()):
                if start > line:
                    break
                found = (index, start)
        except SourceError as e:  # the record that does not parse, if it starts in time
            if e.line <= line:
                return (found[0] + 1 if found else 0, e.line)
        return found

    def check_header(self, width: int) -> None:
        """Read just the header line: the named fields exist, or the file has `width` columns."""
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            first = next(
                _csv_records(handle, self.delimiter, self.quote, self.escape, self.null), None
            )
        if first is None:
            return
        names = ["" if v is None else str(v) for v in first[1]]
        for field in self.fields:
            _field_index(field, names, first[0])
        if not self.fields and len(names) != width:
            raise SourceError(
                f"the header has {len(names)} fields ({', '.join(names)}), but the statement takes "
                f"{width}: list the ones to use in fields",
                first[0],
            )

    def _csv_rows(self, handle: TextIO) -> Iterator[tuple[int, Row]]:
        records = _csv_records(handle, self.delimiter, self.quote, self.escape, self.null)
        select: list[int] | None = None
        if self.header:
            first = next(records, None)
            if first is None:
                return
            names = ["" if v is None else str(v) for v in first[1]]
            select = (
                [_field_index(f, names, first[0]) for f in self.fields] if self.fields else None
            )
        elif self.fields:
            select = [_position(f, 1) - 1 for f in self.fields]
        for line, values in records:
            if select is None:
                yield line, values
                continue
            try:
                yield line, tuple(values[i] for i in select)
            except IndexError:
                raise SourceError(
                    f"the row has {len(values)} fields, fewer than the mapping needs", line
                ) from None

    def _jsonl_rows(self, handle: TextIO) -> Iterator[tuple[int, Row]]:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line, parse_float=Decimal)  # numeric precision survives
            except json.JSONDecodeError as e:
                raise SourceError(
                    f"invalid JSON: {e.msg} (column {e.colno})", line_number
                ) from None
            if isinstance(value, dict):
                if not self.fields:
                    raise SourceError(
                        "an object row needs a 'fields' list naming its keys", line_number
                    )
                try:
                    yield line_number, tuple(_json_value(value[f]) for f in self.fields)
                except KeyError as e:
                    raise SourceError(f"the object has no key {e.args[0]!r}", line_number) from None
            elif isinstance(value, list):
                if self.fields:
                    try:
                        picked = [value[_position(f, line_number) - 1] for f in self.fields]
                    except IndexError:
                        raise SourceError(
                            f"the array has {len(value)} values, fewer than the mapping needs",
                            line_number,
                        ) from None
                else:
                    picked = value
                yield line_number, tuple(_json_value(v) for v in picked)
            else:
                raise SourceError("each line must be a JSON object or array", line_number)


def _json_value(value: Any) -> object:
    """JSON values as bind values: nested arrays and objects travel as JSON text (json, jsonb)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _field_index(field: str | int, names: Sequence[str], line: int) -> int:
    if isinstance(field, int):
        return _position(field, line) - 1
    try:
        return list(names).index(field)
    except ValueError:
        raise SourceError(
            f"the header has no field {field!r} (it has {', '.join(names)})", line
        ) from None


def _position(field: str | int, line: int) -> int:
    if not isinstance(field, int) or field < 1:
        raise SourceError(f"without a header, fields are 1-based positions, not {field!r}", line)
    return field


def _csv_records(
    handle: TextIO, delimiter: str, quote: str, escape: str, null: str
) -> Iterator[tuple[int, Row]]:
    """PostgreSQL's CSV: a quoted empty string is '', an unquoted `null` marker is NULL.

    Python's csv module cannot tell "" from an empty field, so this reads records itself: a regular
    expression per field, more lines while a quoted field is open.
    """
    d, q, e = re.escape(delimiter), re.escape(quote), re.escape(escape)
    # a quote inside a quoted field is doubled, or follows the escape character
    quoted = f"{q}(?:[^{q}]|{q}{q})*{q}" if escape == quote else f"{q}(?:[^{q}{e}]|{e}.)*{q}"
    field = re.compile(f"({quoted})|([^{d}{q}\\r\\n]*)", re.S)
    line_number = 0
    pending = ""
    start_line = 0
    for raw in handle:
        line_number += 1
        if not pending:
            start_line = line_number
        text = pending + raw
        values: list[object] = []
        position = 0
        complete = True
        while True:
            match = field.match(text, position)
            if match is None or (
                match.end() == position and position < len(text) and text[position] == quote
            ):
                complete = False  # a quoted field continues on the next line
                break
            if match.group(1) is not None:
                inner = match.group(1)[1:-1]
                values.append(
                    inner.replace(quote + quote, quote)
                    if escape == quote
                    else re.sub(f"{e}(.)", r"\1", inner, flags=re.S)
                )
            else:
                unquoted = match.group(2)
                values.append(None if unquoted == null else unquoted)
            position = match.end()
            if position >= len(text) or text[position] in "\r\n":
                break
            if text[position] != delimiter:
                raise SourceError(
                    f"unexpected {text[position]!r} after a field (column {position + 1})",
                    start_line,
                )
            position += 1
        if not complete:
            pending = text
            continue
        pending = ""
        if values == [None] and not text.strip("\r\n"):
            continue  # a blank line
        yield start_line, tuple(values)
    if pending:
        raise SourceError("a quoted field is not closed before the end of the file", start_line)
