"""A bulk insert's rows on their way to the server: inline or streamed from the plan's file,
counted as they go by, in flights, and traced back to where each row is written."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from ..errors import Position
from ..plan.files import SourceError
from ..plan.model import BulkInsertStep


class BulkRows:
    """A bulk insert's rows, inline or streamed from its file, counted as they go by."""

    def __init__(self, step: BulkInsertStep, *, end_marker: bool = False) -> None:
        self.step = step
        self.end_marker = end_marker  # the server reads a CSV line of \. as the end (< 18)
        self.count = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[object, ...]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[tuple[object, ...]]]:
        """The rows in lists, as they are read; counted as each list is handed on."""
        step = self.step
        if step.source is None:
            for start in range(0, len(step.rows), 4096):
                batch = list(step.rows[start : start + 4096])
                self.count += len(batch)
                yield batch
            return
        width = step.width
        batches = step.source.row_batches(self.read_bytes, width, end_marker=self.end_marker)
        for lines, rows in batches:
            if not rows:
                continue
            if set(map(len, rows)) != {width}:
                index = next(i for i, row in enumerate(rows) if len(row) != width)
                self.count += index
                yield rows[:index]
                raise SourceError(
                    f"the row has {len(rows[index])} values, but the statement takes {width}",
                    lines[index],
                )
            self.count += len(rows)
            yield rows

    def read_bytes(self, offset: int) -> None:
        self.bytes_read = offset

    def progress(self) -> tuple[int, int]:
        """(done, total): rows for inline rows, bytes for a file."""
        if self.step.source is None:
            return self.count, len(self.step.rows)
        return self.bytes_read, self.step.source.size()

    def at_copy_line(self, line: int, whole_file: bool) -> tuple[int, Position] | None:
        """The row COPY's error context names by its line: of the file as sent, or of the COPY
        data sqlplan generated (one line a row)."""
        step = self.step
        if not whole_file or step.source is None:
            position = self.position(line - 1)
            return (line - 1, position) if position is not None else None
        found = step.source.record_at_line(line, end_marker=self.end_marker)
        return (found[0], Position(step.source.display, found[1], 1)) if found else None

    def position(self, index: int) -> Position | None:
        """Where row `index` (0-based) is written: the plan's line, or the file's."""
        step = self.step
        if step.source is None:
            return step.row_positions[index] if index < len(step.row_positions) else None
        for i, (line, _) in enumerate(step.source.rows(end_marker=self.end_marker)):
            if i == index:
                return Position(step.source.display, line, 1)
        return None


def with_last(
    chunks: Iterable[list[tuple[object, ...]]],
) -> Iterator[tuple[list[tuple[object, ...]], bool]]:
    """Each chunk, and whether it is the last (known by reading one ahead)."""
    iterator = iter(chunks)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following is None
        current = following


def batched(rows: Iterable[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
