"""What a step captures from the rows its statement returned: one row's column per var, or
(capture_all) every row's, as a list. The values are the text the server sent (NULL as None),
which the steps that use them send back as it came."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import Position
from ..plan.model import AnyStep


class CaptureFailed(Exception):
    """The rows do not give what a capture takes; `position` is the capture's."""

    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def take(step: AnyStep, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, object]:
    taken: dict[str, object] = {}
    names = list(columns)
    for capture in step.captures:
        if capture.column not in names:
            import difflib  # for a message about a wrong name only

            match = difflib.get_close_matches(capture.column, names, n=1, cutoff=0.6)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise CaptureFailed(
                f"{step.label}: capture {capture.var} takes the column {capture.column!r}, but "
                f"the statement returned no such column (its columns: {', '.join(names) or 'none'})"
                f"{hint}",
                capture.position,
            )
        index = names.index(capture.column)
        if capture.all:
            taken[capture.var] = [row[index] for row in rows]
        elif len(rows) != 1:
            raise CaptureFailed(
                f"{step.label}: capture {capture.var} takes one row, but the statement returned "
                f"{len(rows)} row{'s' * (len(rows) != 1)} (capture_all takes every row's, as a list)",
                capture.position,
            )
        else:
            taken[capture.var] = rows[0][index]
    return taken
