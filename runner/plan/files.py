"""Rows from a file beside the plan, streamed: CSV read exactly as PostgreSQL's COPY reads CSV,
and JSON Lines with every value kept as written. Each row comes with the file line it starts on.

CSV follows PostgreSQL's own reader (copyfromparse.c) rather than Python's csv module, which
cannot tell an empty quoted field from a NULL and reads quotes inside a field differently:

- a record ends at an unquoted line break; the first one sets the file's style (LF, CRLF or CR)
  and a later unquoted break of another style is an error, as in COPY;
- a field is any mix of unquoted text and quoted sections; inside quotes the escape character
  (by default the quote itself) followed by the quote or the escape stands for that character,
  and delimiters and line breaks are data;
- a field with no quote whose text equals the NULL string is NULL;
- before PostgreSQL 18, a line holding only `\\.` ends the data, as it does for COPY FROM STDIN
  there (`end_marker`); from 18 it is data like any other;
- every record has as many fields as the statement takes (or, when `fields` picks some, as
  many as the header, else the first record, has);
- the text must be UTF-8 without NUL characters (a leading byte-order mark is skipped).
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

Row = tuple[object, ...]

_BOM = "\ufeff"
_BLOCK = 1 << 20  # characters decoded at a time


class SourceError(ValueError):
    """A row the file cannot give: malformed CSV or JSON, a missing field, an unreadable file."""

    def __init__(self, message: str, line: int, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class NotRegularFile(SourceError):
    """A FIFO, device, directory or socket where a data file was expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path) -> IO[bytes]:
    """Open a regular file for reading without blocking on a FIFO or device; SourceError for
    anything else (OSError when it cannot be opened at all)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_file_problem(path: Path) -> tuple[str, int | None] | None:
    """Why `path` cannot be a rows_from file, with its errno (None: not a regular file)."""
    if "\x00" in str(path):
        return "holds a NUL character, which no file name can", None
    try:
        open_regular(path).close()
    except NotRegularFile as e:
        return str(e), None
    except OSError as e:
        return e.strerror or str(e), e.errno
    return None


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
        with open_regular(self.path) as raw:
            if self.format == "csv":
                rows = self._csv_rows(_text_blocks(raw), width, end_marker)
            else:
                rows = self._jsonl_rows(_text_blocks(raw))
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

    def _reader(self, blocks: Iterator[str], end_marker: bool = False) -> _CsvReader:
        return _CsvReader(
            blocks,
            delimiter=self.delimiter,
            quote=self.quote,
            escape=self.escape,
            null=self.null,
            end_marker=end_marker,
        )

    def _first_record(self) -> list[str]:
        with open_regular(self.path) as raw:
            first = next(self._reader(_text_blocks(raw)).records(), None)
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
        with open_regular(self.path) as raw:
            first = next(self._reader(_text_blocks(raw)).records(), None)
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

    def _csv_rows(
        self, blocks: Iterator[str], width: int | None, end_marker: bool
    ) -> Iterator[tuple[int, Row]]:
        reader = self._reader(blocks, end_marker)
        records = reader.records()
        select: list[int] | None = None
        expected = width if not self.fields else None
        if self.header and not any(isinstance(f, str) for f in self.fields):
            # COPY skips the header line unread; so does sqlplan when it needs no names
            if not reader.skip_line():
                return
            if self.fields:
                select = [_position(f, 1) - 1 for f in self.fields]
        elif self.header:
            first = next(records, None)
            if first is None:
                return
            names = ["" if v is None else str(v) for v in first[1]]
            select = [_field_index(f, names, first[0]) for f in self.fields]
            expected = len(names)
        elif self.fields:
            select = [_position(f, 1) - 1 for f in self.fields]
        for line, values in records:
            if expected is None:
                expected = len(values)
            if len(values) != expected:
                raise SourceError(
                    f"the record has {len(values)} field{'s' * (len(values) != 1)}, but "
                    + (
                        f"the statement takes {expected}"
                        if not self.fields
                        else f"the {'header' if self.header else 'first record'} has {expected}"
                    ),
                    line,
                    reader.column_of_field(min(len(values), expected)),
                )
            if select is None:
                yield line, values
            else:
                try:
                    yield line, tuple(values[i] for i in select)
                except IndexError:
                    raise SourceError(
                        f"the record has {len(values)} fields, fewer than the mapping needs", line
                    ) from None

    def _jsonl_rows(self, blocks: Iterator[str]) -> Iterator[tuple[int, Row]]:
        for line_number, line in _lines(blocks):
            if not line.strip(" \t\r\n"):
                continue
            kind, values = _json_line(line, line_number)
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


def _text_blocks(raw: IO[bytes]) -> Iterator[str]:
    """The file as text, in blocks: strict UTF-8 without NUL, a leading BOM dropped. Errors
    name the line and column of the offending byte."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, column = 1, 1  # where the next block starts
    first = True
    while True:
        data = raw.read(_BLOCK)
        final = not data
        problem = None
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as e:
            # The text before the bad byte is given first: as in COPY, the error comes only if
            # the reader gets that far (a \. line before it ends the data).
            text = e.object[: e.start].decode("utf-8", "replace")
            problem = f"the file is not valid UTF-8 (byte 0x{e.object[e.start]:02x})"
            final = True
        if first and text:
            first = False
            if text.startswith(_BOM):
                text = text[1:]
        nul = text.find("\0")
        if nul >= 0:
            text, problem = (
                text[:nul],
                "the file holds a NUL character, which PostgreSQL text cannot",
            )
            final = True
        if text:
            yield text
            line, column = _advance(line, column, text)
        if problem is not None:
            raise SourceError(problem, line, column)
        if final:
            return


def _advance(line: int, column: int, text: str) -> tuple[int, int]:
    """Line and column after `text`, counting CRLF, LF and a lone CR as one line break each."""
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    if not breaks:
        return line, column + len(text)
    last = max(text.rfind("\n"), text.rfind("\r"))
    return line + breaks, len(text) - last


def _lines(blocks: Iterator[str]) -> Iterator[tuple[int, str]]:
    """Physical lines (LF or CRLF), numbered from 1, without their line break."""
    number = 0
    pending = ""
    for block in blocks:
        pending += block
        start = 0
        while (end := pending.find("\n", start)) >= 0:
            number += 1
            yield number, pending[start:end].removesuffix("\r")
            start = end + 1
        pending = pending[start:]
    if pending:
        yield number + 1, pending


# --- CSV, as PostgreSQL reads it -------------------------------------------------------------


class _CsvReader:
    """PostgreSQL's CSV reader: logical lines (CopyReadLineText), then fields
    (CopyReadAttributesCSV). Records come as (first physical line, values)."""

    def __init__(
        self,
        blocks: Iterator[str],
        *,
        delimiter: str,
        quote: str,
        escape: str,
        null: str,
        end_marker: bool = False,
    ) -> None:
        self.blocks = blocks
        self.end_marker = end_marker
        self.delimiter, self.quote, self.escape, self.null = delimiter, quote, escape, null
        self.buffer = ""
        self.pos = 0  # where the next logical line starts in the buffer
        self.eof = False
        self.eol: str | None = None  # "\n", "\r\n" or "\r" once the first line break is seen
        self.line = 1  # physical line and column at self.pos
        self.column = 1
        q = re.escape(quote)
        self._out = re.compile(f"[{q}\\r\\n]")
        self._in = re.compile(f"[{q}{re.escape(escape)}]")
        self._last = ""  # the last record's text, for error columns

    def column_of_field(self, index: int) -> int:
        """The column where field `index` (0-based) of the last record starts (or where the
        record ends, past its last field)."""
        content, position = self._last, 0
        for _ in range(index):
            _, end = self._field(content, position)
            if end >= len(content):
                position = len(content)
                break
            position = end + 1
        return _advance(self._record_line, self._record_column, content[:position])[1]

    def skip_line(self) -> bool:
        """Read past one logical line without parsing its fields; False at the end of data."""
        found = self._logical_line()
        if found is None:
            return False
        consumed = self.buffer[self.pos : found[1]]
        self.line, self.column = _advance(self.line, self.column, consumed)
        self.pos = found[1]
        return True

    def records(self) -> Iterator[tuple[int, tuple[str | None, ...]]]:
        while True:
            found = self._logical_line()
            if found is None:
                return
            end, after = found
            start = self.pos
            content = self.buffer[start:end]
            self._last = content
            self._record_line, self._record_column = self.line, self.column
            values = self._fields(content)
            yield self.line, values
            consumed = self.buffer[start:after]
            if "\n" in consumed or "\r" in consumed:
                self.line, self.column = _advance(self.line, self.column, consumed)
            else:
                self.column += len(consumed)
            self.pos = after

    def _error(self, message: str, offset: int) -> SourceError:
        line, column = _advance(self.line, self.column, self.buffer[self.pos : offset])
        return SourceError(message, line, column)

    def _logical_line(self) -> tuple[int, int] | None:
        """(end of content, start of the next line) of the logical line at self.pos, reading
        more as needed; None at the end of the data."""
        while True:
            result = self._scan()
            if result != "more":
                return result  # type: ignore[return-value]
            block = None if self.eof else next(self.blocks, None)
            if block is None:
                self.eof = True
            else:
                self.buffer = self.buffer[self.pos :] + block
                self.pos = 0

    def _scan(self) -> tuple[int, int] | str | None:
        buffer, eof, start = self.buffer, self.eof, self.pos
        size = len(buffer)
        if start >= size:
            return None if eof else "more"
        i = start
        quote, escape = self.quote, self.escape
        # \. alone on a line ends the data (looked for at the first character of a line only)
        if self.end_marker and buffer.startswith("\\", start) and start + 1 >= size and not eof:
            return "more"
        if self.end_marker and buffer.startswith("\\.", start):
            marker = self._end_marker(start + 2)
            if marker == "more":
                return "more"
            if marker == "end":
                return None
        in_quote = False
        if i == start and self.end_marker and buffer.startswith("\\", start):
            # PostgreSQL handled the backslash as a character first: it may be the quote
            in_quote, i = quote == "\\", start + 1
        while True:
            if not in_quote:
                match = self._out.search(buffer, i)
                if match is None:
                    return (size, size) if eof else "more"
                j = match.start()
                char = buffer[j]
                if char == quote:
                    in_quote, i = True, j + 1
                    continue
                if char == "\r":
                    if j + 1 >= size and not eof:
                        return "more"
                    following = buffer[j + 1] if j + 1 < size else ""
                    if self.eol in (None, "\r\n"):
                        if following == "\n":
                            self.eol = "\r\n"
                            return (j, j + 2)
                        if self.eol == "\r\n":
                            raise self._error("unquoted carriage return found in data", j)
                        self.eol = "\r"
                        return (j, j + 1)
                    if self.eol == "\n":
                        raise self._error("unquoted carriage return found in data", j)
                    return (j, j + 1)
                if self.eol in ("\r", "\r\n"):
                    raise self._error("unquoted newline found in data", j)
                self.eol = "\n"
                return (j, j + 1)
            if escape == quote:
                j = buffer.find(quote, i)
                if j < 0:
                    return (size, size) if eof else "more"
                in_quote, i = False, j + 1
                continue
            match = self._in.search(buffer, i)
            if match is None:
                return (size, size) if eof else "more"
            j = match.start()
            if buffer[j] == quote:
                in_quote, i = False, j + 1
                continue
            k = j
            while k < size and buffer[k] == escape:
                k += 1
            if k >= size and not eof:
                return "more"
            escaped = (k - j) % 2 == 1
            if k < size and buffer[k] == quote:
                if not escaped:
                    in_quote = False
                i = k + 1
            else:
                i = k

    def _end_marker(self, i: int) -> int | str:
        """After \\. at the start of a line: "end" if it ends the data, "more" to read on,
        else where scanning resumes: just after the backslash, as PostgreSQL undoes its
        read-ahead."""
        buffer, eof = self.buffer, self.eof
        data = self.pos + 1

        def char(at: int) -> str | None:
            if at < len(buffer):
                return buffer[at]
            return "" if eof else None

        if self.eol == "\r\n":
            c2 = char(i)
            if c2 is None:
                return "more"
            i += 1
            if c2 != "\r":
                return data
        c2 = char(i)
        if c2 is None:
            return "more"
        if c2 not in ("\r", "\n"):
            return data
        if (self.eol in ("\n", "\r\n") and c2 != "\n") or (self.eol == "\r" and c2 != "\r"):
            raise self._error("end-of-copy marker does not match previous newline style", self.pos)
        return "end"

    def _fields(self, content: str) -> tuple[str | None, ...]:
        if self.quote not in content:
            null = self.null
            return tuple(None if p == null else p for p in content.split(self.delimiter))
        values: list[str | None] = []
        position, size = 0, len(content)
        while True:
            value, end = self._field(content, position)
            values.append(value)
            if end >= size:
                return tuple(values)
            position = end + 1  # past the delimiter

    def _field(self, content: str, start: int) -> tuple[str | None, int]:
        """The field that starts at `start`: (its value, where it ends: at its delimiter or
        the end of the line), as CopyReadAttributesCSV reads it. A field is NULL when it is the
        null string and has no quotes; inside quotes, the escape character makes the next
        quote or escape literal, and a line that ends inside quotes is an error at the quote
        that opened them. Plain string searches only: no regex feature newer than the oldest
        supported Python."""
        delimiter, quote, escape = self.delimiter, self.quote, self.escape
        size = len(content)
        parts: list[str] = []
        position, quoted = start, False
        while True:
            next_delimiter = content.find(delimiter, position)
            next_quote = content.find(quote, position)
            if next_quote < 0 or 0 <= next_delimiter < next_quote:
                end = size if next_delimiter < 0 else next_delimiter
                parts.append(content[position:end])
                break
            parts.append(content[position:next_quote])
            opened, quoted, position = next_quote, True, next_quote + 1
            while True:  # inside quotes
                at = content.find(quote, position)
                if escape != quote:
                    at_escape = content.find(escape, position)
                    if at_escape >= 0 and (at < 0 or at_escape < at):
                        following = content[at_escape + 1 : at_escape + 2]
                        if following in (quote, escape):
                            parts.append(content[position:at_escape] + following)
                            position = at_escape + 2
                        else:  # an escape before anything else is itself
                            parts.append(content[position : at_escape + 1])
                            position = at_escape + 1
                        continue
                if at < 0:
                    raise self._error("unterminated CSV quoted field", self.pos + opened)
                if escape == quote and content.startswith(quote, at + 1):
                    parts.append(content[position : at + 1])  # a doubled quote: one quote
                    position = at + 2
                    continue
                parts.append(content[position:at])
                position = at + 1
                break
        value = "".join(parts)
        if not quoted and value == self.null:
            return None, end
        return value, end


# --- JSON Lines -----------------------------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Numbers stay text (their digits, any length); NaN and Infinity are refused.
_JSON = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=_reject_constant)
_SPACE = re.compile(r"[ \t\r\n]*")


def _json_line(line: str, number: int) -> tuple[str, dict[str, object] | list[object]]:
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
