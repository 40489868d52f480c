"""Renders diagnostics and failures as text for stderr; one place decides how errors read."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Diagnostic, SqlPlanError, StepFailed
from .sqlparse import line_at


def diagnostics_text(diagnostics: Iterable[Diagnostic]) -> str:
    items = list(diagnostics)
    lines = [str(d) for d in items]
    errors = sum(1 for d in items if d.severity == "error")
    lines.append(f"{errors} error{'s' if errors != 1 else ''} found; nothing was run")
    return "\n".join(lines)


def step_failure_text(error: StepFailed) -> str:
    server = error.server
    where = error.sql_position or error.position
    code = f" [{server.sqlstate}]" if server else ""
    lines = [f"{where}: error: {error.message}{code}"]
    if server is not None and server.position is not None:
        text, column = line_at(error.sql, server.position - 1)
        expanded = text.expandtabs(1)
        lines.append(f"    {expanded}")
        lines.append(f"    {' ' * column}^")
    if server is not None and server.detail:
        lines.append(f"  detail: {server.detail}")
    if server is not None and server.hint:
        lines.append(f"  hint: {server.hint}")
    if error.row_number is not None:
        lines.append(f"  row: {error.row_number} (at {error.row_position})")
    if error.rolled_back:
        lines.append(f"  {error.rolled_back}")
    return "\n".join(lines)


def error_text(error: SqlPlanError) -> str:
    return f"sqlplan: error: {error.message}"
