"""Renders diagnostics and failures as text for stderr; one place decides how errors read."""

from __future__ import annotations

import json
from collections.abc import Iterable

from .errors import Diagnostic, SqlPlanError, StepFailed
from .plan.sqlparse import line_at


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
    lines += [f"    {line}" for line in error.difference]
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
    lines += error.ledger_lines
    return "\n".join(lines)


def error_text(error: SqlPlanError) -> str:
    return f"sqlplan: error: {error.message}"


CHECK_FORMATS = ("text", "json", "github")  # and review/sarif.py's "sarif"
SHOW_FORMATS = ("text", "markdown")  # rendered by show.py


def check_report(
    format: str,
    files: list[str],
    diagnostics: list[Diagnostic],
    changed_since: dict[str, object] | None = None,
) -> str:
    """`sqlplan check`'s standard output in one of CHECK_FORMATS ('' when text finds nothing);
    `changed_since` is what --changed-since chose (its ref, the plans changed and needed)."""
    ordered = sorted(diagnostics, key=Diagnostic.sort_key)
    if format == "json":
        document = {
            "version": 1,
            "files": files,
            **({"changed_since": changed_since} if changed_since is not None else {}),
            "errors": sum(d.severity == "error" for d in ordered),
            "warnings": sum(d.severity == "warning" for d in ordered),
            **({"notes": notes} if (notes := sum(d.severity == "note" for d in ordered)) else {}),
            "diagnostics": [d.to_dict() for d in ordered],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if format == "github":
        return "".join(_github_command(d) + "\n" for d in ordered)
    return "".join(f"{d}\n" for d in ordered)


def _github_command(d: Diagnostic) -> str:
    """A workflow command that annotates the line in a pull request."""
    return workflow_command(
        "notice" if d.severity == "note" else d.severity,
        d.message,
        file=d.position.path,
        line=d.position.line,
        col=d.position.column,
        title=f"sqlplan {d.code}",
    )


def workflow_command(command: str, message: str, **properties: str | int | None) -> str:
    """A GitHub Actions workflow command (`::error file=...,line=...::message`), escaped."""
    listed = ",".join(
        f"{k}={_github_escape(str(v), property=True)}"
        for k, v in properties.items()
        if v is not None
    )
    return f"::{command}{' ' + listed if listed else ''}::{_github_escape(message)}"


def _github_escape(text: str, *, property: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text
