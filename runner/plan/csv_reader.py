"""CSV read as PostgreSQL's COPY reads it, following its own reader (copyfromparse.c) rather
than Python's csv module, which cannot tell an empty quoted field from a NULL and reads quotes
inside a field differently:

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
import re
from collections.abc import Iterator
from typing import IO

from .reading import SourceError

_BOM = "\ufeff"
Record = tuple[str | None, ...]


_BLOCK = 1 << 20  # characters decoded at a time


def text_blocks(raw: IO[bytes]) -> Iterator[str]:
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


def numbered_lines(blocks: Iterator[str]) -> Iterator[tuple[int, str]]:
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


class CsvReader:
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
        self._last = ""  # the last record read one at a time, for error columns
        self._record_column = 1  # where it starts
        self._batch_lines: list[str] = []  # the last batch's lines (see _lines)
        self._batch_first: int | None = None  # the line number of its first, if it was one
        # Whole lines at a time (see _lines) need the quote to be its own escape, so that the
        # parity of a line's quotes tells whether a record goes on past it.
        self._by_lines = escape == quote
        self._slow_until = 0  # buffer offset before which records are read one at a time

    def column_of_field(self, index: int, line: int) -> int:
        """The column where field `index` (0-based) of the record starting at `line`, the last
        one returned, starts (or where the record ends, past its last field)."""
        content, start = self._last, self._record_column
        if self._batch_first is not None:  # a batch of whole lines: the record's own text
            content, start = self._batch_record(line), 1
        position = 0
        for _ in range(index):
            _, end = self._field(content, position)
            if end >= len(content):
                position = len(content)
                break
            position = end + 1
        return _advance(line, start, content[:position])[1]

    def _batch_record(self, line: int) -> str:
        """The text of the record of the last batch that starts at `line` (see _lines)."""
        lines, quote, eol = self._batch_lines, self.quote, self.eol or "\n"
        i = j = line - (self._batch_first or 0)
        quotes = lines[i].count(quote)
        while quotes % 2 and j + 1 < len(lines):
            j += 1
            quotes += lines[j].count(quote)
        return eol.join(lines[i : j + 1])

    def skip_line(self) -> bool:
        """Read past one logical line without parsing its fields; False at the end of data."""
        found = self._logical_line()
        if found is None:
            return False
        consumed = self.buffer[self.pos : found[1]]
        self.line, self.column = _advance(self.line, self.column, consumed)
        self.pos = found[1]
        return True

    def records(self) -> Iterator[tuple[int, Record]]:
        for lines, records in self.batches():
            yield from zip(lines, records, strict=True)

    def batches(self) -> Iterator[tuple[list[int], list[Record]]]:
        """The records in lists, beside the lines they start on: a buffer's whole lines at a
        time where _lines can read them, else one at a time."""
        while True:
            if self._by_lines and self.pos >= self._slow_until:
                batch = self._lines()
                if batch is not None:
                    yield batch
                    continue
            self._batch_first = None
            found = self._logical_line()
            if found is None:
                return
            end, after = found
            start = self.pos
            content = self.buffer[start:end]
            self._last = content
            self._record_column = self.column
            yield [self.line], [self._fields(content)]
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
                self._slow_until = max(0, self._slow_until - self.pos)
                self.pos = 0

    def _lines(self) -> tuple[list[int], list[Record]] | None:
        """The records in the buffer's whole lines, read a line at a time: what _scan and
        _fields would read, and the fast way for files in the common shape. A line without a
        quote is its fields split at the delimiter; a record goes on past a line while its
        quotes are odd in number (the quote being its own escape, each one opens or closes a
        quoted section, or is half of a doubled one). Lines that need the one-at-a-time reader
        (an unexpected line break, which may be an error or data, the end marker, a file that
        has not shown its line break yet) are left to it, and so is an unfinished record at
        the buffer's end, which needs more text. The state advances past what is returned."""
        buffer, start, eol = self.buffer, self.pos, self.eol
        end = buffer.rfind("\n") + 1
        if end <= start:
            return None
        if eol is None or eol == "\r" or self.column != 1:
            self._slow_until = end
            return None
        chunk = buffer[start:end]
        if (
            (eol == "\n" and "\r" in chunk)
            or (
                eol == "\r\n"
                and not (chunk.count("\r") == chunk.count("\n") == chunk.count("\r\n"))
            )
            or (self.end_marker and "\\." in chunk)
        ):
            self._slow_until = end
            return None
        lines = chunk.split(eol)
        lines.pop()  # what follows the last line break
        quote, delimiter, null, paired = self.quote, self.delimiter, self.null, self._paired
        first, count = self.line, len(lines)
        starts: list[int] = []
        out: list[Record] = []
        start_at, append = starts.append, out.append
        done, after = count, 0  # the lines read; the line a record across lines ends before
        for i, text in enumerate(lines):
            if i < after:
                continue
            if quote not in text:
                values: list[str | None] = text.split(delimiter)  # type: ignore[assignment]
                if null in values:
                    values = [None if v == null else v for v in values]
                start_at(first + i)
                append(tuple(values))
                continue
            j, quotes = i, text.count(quote)
            while quotes % 2 and j + 1 < count:
                j += 1
                quotes += lines[j].count(quote)
            if quotes % 2:  # the record goes on past the buffer's whole lines
                if not out:
                    self._slow_until = end
                done = i
                break
            if j > i:
                text = eol.join(lines[i : j + 1])  # noqa: PLW2901
                after = j + 1
            start_at(first + i)
            append(paired(text))
        used = len(chunk) if done == count else sum(map(len, lines[:done])) + len(eol) * done
        self.pos, self.line = start + used, first + done
        self._batch_lines, self._batch_first = lines, first
        return (starts, out) if out else None

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

    def _paired(self, content: str) -> tuple[str | None, ...]:
        """The fields of a record whose quotes pair up, the quote being its own escape: what
        _fields reads, split at the quotes. The pieces between them alternate between outside
        and inside quotes; inside, everything is data; outside, a delimiter ends a field, and
        an empty piece between two quoted ones is a doubled quote (one quote of data)."""
        quote, delimiter, null = self.quote, self.delimiter, self.null
        pieces = content.split(quote)
        last = len(pieces) - 1
        values: list[str | None] = []
        parts: list[str] = []
        quoted = False
        for index, piece in enumerate(pieces):
            if index % 2:  # inside quotes
                parts.append(piece)
                quoted = True
            elif delimiter in piece:
                split = piece.split(delimiter)
                parts.append(split[0])
                value = "".join(parts)
                values.append(None if not quoted and value == null else value)
                for plain in split[1:-1]:
                    values.append(None if plain == null else plain)
                parts, quoted = [split[-1]], False
            elif piece:
                parts.append(piece)
            elif 0 < index < last:
                parts.append(quote)
        value = "".join(parts)
        values.append(None if not quoted and value == null else value)
        return tuple(values)

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
