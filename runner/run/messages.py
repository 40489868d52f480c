"""What a running step says: its messages rendered from what the server answered, a
query's rows through its templates, the server's warnings; to an Output, never printed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from .. import secrets
from ..errors import (
    Position,
)
from ..plan.model import (
    AnyStep,
    BulkInsertStep,
    ExecuteStep,
    Message,
    Plan,
    QueryStep,
)
from ..plan.templates import param_values
from . import wire
from .failures import step_failed


class Output(Protocol):
    def line(self, text: str) -> None:
        """One line of the plan's own output."""

    def progress(self, label: str, done: int, total: int) -> None:
        """How far a bulk insert is; done == total once it is over."""

    def warning(self, position: Position, message: str, code: str) -> None:
        """A warning the server raised while a step ran."""


# Server messages below WARNING (NOTICE such as "table does not exist, skipping", INFO, LOG)
# are expected chatter; a WARNING ("there is no transaction in progress") deserves a look.
WARNING_SEVERITIES = (b"WARNING",)


def take_notices(notices: Any) -> Iterator[dict[bytes, bytes]]:
    while notices:
        yield notices.popleft()


def report_warnings(step: AnyStep, notices: Iterable[dict[bytes, bytes]], out: Output) -> None:
    for notice in notices:
        severity = notice.get(b"V") or notice.get(b"S")
        if severity in WARNING_SEVERITIES:
            message = secrets.mask(notice.get(b"M", b"").decode("utf-8", "replace"))
            code = notice.get(b"C", b"01000").decode("ascii", "replace")
            out.warning(step.position, f"{step.label}: the server warns: {message}", code)


def before_fields(plan: Plan, step: AnyStep) -> dict[str, str]:
    if isinstance(step, (ExecuteStep, QueryStep)):
        return param_values(step.params, plan.null_text)
    if isinstance(step, BulkInsertStep) and step.source is None:
        return {"rows": str(len(step.rows))}
    return {}


def show_query(plan: Plan, step: QueryStep, outcome: wire.Outcome, out: Output) -> None:
    params = param_values(step.params, plan.null_text)
    if step.row is not None:
        check_columns(step, step.row, outcome.columns)
    summary = {**params, "count": str(len(outcome.rows))}
    say(out, step.header, summary)
    if step.row is not None:
        for row in outcome.rows:
            values = {  # a row is the server's text: masked (secrets.py)
                name: plan.null_text if v is None else secrets.mask(str(v))
                for name, v in zip(outcome.columns, row, strict=True)
            }
            out.line(step.row.template.render({**params, **values}))
    if not outcome.rows:
        say(out, step.empty, summary)
    say(out, step.footer, summary)


def check_columns(step: QueryStep, row: Message, columns: Sequence[str]) -> None:
    for f in row.template.fields:
        if f.name.startswith("$") or f.name in columns:
            continue
        import difflib  # for a message about a wrong name only

        match = difflib.get_close_matches(f.name, list(columns), n=1, cutoff=0.6)
        hint = f"; did you mean {{{match[0]}}}?" if match else ""
        listed = ", ".join(columns) if columns else "none"
        raise step_failed(
            step,
            f"{step.label}: the row template uses {{{f.name}}}, but the query returned no "
            f"such column (its columns: {listed}){hint}",
            position=row.source.locate(f.offset),
        )


def say(out: Output, message: Message | None, fields: Mapping[str, str]) -> None:
    if message is not None:
        out.line(render(message, fields))


def say_count(
    out: Output,
    after: Message | None,
    after_no_rows: Message | None,
    row_count: int,
    fields: Mapping[str, str],
) -> None:
    count = max(row_count, 0)  # commands without a row count (DDL) report 0
    chosen = after_no_rows if count == 0 and after_no_rows is not None else after
    say(out, chosen, {**fields, "count": str(count)})


def render(message: Message, fields: Mapping[str, str]) -> str:
    return message.template.render(fields)
