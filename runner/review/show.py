"""`sqlplan show`: what a plan will send and print, step by step, as text or Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..plan.model import (
    AnyStep,
    BackfillStep,
    BulkInsertStep,
    ExecuteStep,
    Message,
    Plan,
    QueryStep,
    Var,
)
from ..plan.settings import in_force
from ..plan.sqlparse import parse
from ..plan.values import Secret, literal
from ..run.turns import groups
from .ddl import learn
from .learned import LearnedCatalog
from .locks import NEWEST, describe, locks
from .warnings import lock_findings, transactions

ROWS_SHOWN = 20  # a bulk insert's rows listed before "... N more"


@dataclass(frozen=True)
class _StepView:
    """Everything shown of a step, rendered once and laid out per format."""

    title: str
    kind: str
    where: str
    transaction: str
    round_trip: str  # whether the step shares its round trip with its neighbours
    allows: tuple[str, ...]  # codes, each with its reason when the plan gives one
    locks: tuple[str, ...]  # the locks and rewrites of its statements
    held: tuple[str, ...]  # ACCESS EXCLUSIVE locks held while later statements run
    captures: tuple[str, ...]  # vars it takes from its rows, and vars it uses that others took
    sql: str  # with each placeholder's bound value beside it, for execute and query
    sent_as: str | None  # the COPY a bulk insert is sent as
    source: str | None  # where a bulk insert's rows come from, when not inline
    rows: tuple[tuple[str, ...], ...]
    row_count: int
    messages: tuple[tuple[str, str], ...]  # (when it prints, template as written)


def render(plan: Plan, format: str, version: int | None = None) -> str:
    trips = {}
    for group in groups(plan.steps):
        shared = f"shared by steps {group[0].number}-{group[-1].number}"
        for step in group:
            trips[step.number] = shared if len(group) > 1 else "its own"
    version = version or plan.postgres or NEWEST
    plan = in_force(plan, {})  # the plan's settings, as each step gets them
    held: dict[int, list[str]] = {}
    for step, _, finding in lock_findings(plan, version):
        if finding.code == "held-lock":  # what runs under it, without the advice
            text = finding.message.split(": every query")[0].replace(" taken here", "")
            held.setdefault(step.number, []).append(text)
    captured_by: dict[str, int] = {}
    notes: dict[int, list[str]] = {}
    for step in plan.steps:
        used = sorted(
            {f.name for use in step.uses for f in use.template.fields if f.name in captured_by}
        )
        notes[step.number] = [
            f"uses {name} from step {captured_by[name]} (which captures it)" for name in used
        ]
        for capture in step.captures:
            taken = f"every row's {capture.column}, as a list" if capture.all else capture.column
            notes[step.number].append(f"captures {capture.var} = {taken}")
            captured_by[capture.var] = step.number
        notes[step.number] += _checks_and_settings(step)
    lock_lines = step_locks(plan, version)
    views = [
        _view(
            plan,
            t.step,
            t.description,
            trips[t.step.number],
            lock_lines[t.step.number],
            held=held.get(t.step.number),
            captures=notes.get(t.step.number),
        )
        for t in transactions(plan)
    ]
    return _markdown(plan, views) if format == "markdown" else _text(plan, views)


def step_locks(plan: Plan, version: int) -> dict[int, tuple[str, ...]]:
    """What each step's statements lock, in plan order, one line per relation and mode: a
    "may" on a relation the plan created itself is named exactly."""
    learned = LearnedCatalog()
    lock_lines: dict[int, tuple[str, ...]] = {}
    for step in plan.steps:
        lines: list[str] = []
        for statement in step.statements:
            lines += describe(learned.resolve(locks(statement, version)))
            learn(learned, statement)
        lock_lines[step.number] = tuple(dict.fromkeys(lines))  # each once per step
    return lock_lines


def _checks_and_settings(step: AnyStep) -> list[str]:
    """One line each: what the step expects, the settings in force for it, its retry."""
    lines = []
    expect = step.expect
    if expect is not None:
        if expect.error is not None:
            lines.append(f"expects to fail with {expect.error}, rolled back")
        else:
            what = []
            if expect.count_min is not None or expect.count_max is not None:
                low, high = expect.count_min, expect.count_max
                count = (
                    str(low)
                    if low == high
                    else f"at least {low}"
                    if high is None
                    else f"at most {high}"
                    if low is None
                    else f"{low} to {high}"
                )
                what.append(f"{count} row{'' if count == '1' else 's'}")
            if expect.rows is not None:
                order = "in order" if expect.ordered else "in any order"
                what.append(f"{len(expect.rows)} given rows, {order}")
            lines.append(f"expects {', '.join(what)}, checked before it commits")
    if step.settings:
        values = ", ".join(f"{name} {value}" for name, value in step.settings)
        lines.append(f"sets {values} (SET LOCAL, in its transaction)")
    if isinstance(step, BackfillStep):
        lines += _backfill_lines(step)
    elif step.retry is not None:
        lines.append(
            f"retries: {step.retry.attempts} attempts in all on a lock timeout, deadlock or "
            f"serialization failure, waiting {step.retry.backoff:g}s, doubled each time"
        )
    return lines


def _backfill_lines(step: BackfillStep) -> list[str]:
    """How a backfill walks its table, batch by batch."""
    key = ", ".join(step.key)
    width = len(step.key)
    lower = "the batch's first key" if step.lower_inclusive else "the last key of the batch before"
    params = (
        f"$1: {lower}; $2: the batch's last key"
        if width == 1
        else f"$1..${width}: {lower}; ${width + 1}..${2 * width}: the batch's last key"
    )
    lines = [
        f"walks {'.'.join(step.table)} by ({key}) from its checkpoint in sqlplan.backfill "
        f"(the first key, if none), {step.batch:,} keys a batch: in one round trip BEGIN, "
        "the checkpoint moved to the batch's last key, the statement; in a second the rows "
        "it changed counted, COMMIT, the next batch's range",
        params,
        "refuses a key without a unique index on exactly its columns, or with NULLs; a "
        "finished backfill is not run again",
    ]
    if step.pause:
        lines.append(f"pauses {step.pause:g}s between batches")
    if step.batch_time is not None:
        lines.append(f"adapts the batch size toward {step.batch_time:g}s a batch")
    if step.max_duration is not None:
        lines.append(
            f"stops between batches after {step.max_duration:g}s (exit 9); the next run resumes"
        )
    if step.retry is not None:
        lines.append(
            f"retries each batch: {step.retry.attempts} attempts in all on a lock timeout, "
            f"deadlock or serialization failure, waiting {step.retry.backoff:g}s, doubled"
        )
    return lines


def _view(
    plan: Plan,
    step: AnyStep,
    transaction: str,
    round_trip: str,
    lock_lines: tuple[str, ...],
    *,
    held: list[str] | None = None,
    captures: list[str] | None = None,
) -> _StepView:
    sql = step.sql.text.strip("\n")
    rows: tuple[tuple[str, ...], ...] = ()
    row_count = 0
    sent_as = source = None
    messages: list[tuple[str, str]] = []
    if isinstance(step, (ExecuteStep, QueryStep)) and step.params:
        sql = _annotate(sql, step.params)
    if isinstance(step, BulkInsertStep):
        row_count = len(step.rows)
        rows = tuple(tuple(literal(v) for v in row) for row in step.rows[:ROWS_SHOWN])
        sent_as = step.copy_sql
        if step.source is not None:
            s = step.source
            source = f"{s.display} ({s.format}"
            if s.format == "csv":
                source += f", {'a header line' if s.header else 'no header'}, delimiter {s.delimiter!r}, NULL as {s.null!r}"
            source += f"; fields for $1..${step.width}: {', '.join(map(str, s.fields)) or 'all, in order'})"
    split = getattr(step, "after_no_rows", None) is not None  # after, by rows affected
    for key, when in step.MESSAGES:
        said = "after, when rows were affected" if key == "after" and split else when
        _add(messages, said, getattr(step, key))
    return _StepView(
        title=f"step {step.number}" + (f": {step.name}" if step.name else ""),
        kind=step.kind,
        where=str(step.position),
        transaction=transaction,
        round_trip=round_trip,
        allows=tuple(
            f"{code} ({dict(step.reasons)[code]})" if code in dict(step.reasons) else code
            for code in sorted(step.allow)
        ),
        locks=lock_lines,
        held=tuple(held or ()),
        captures=tuple(captures or ()),
        sql=sql,
        sent_as=sent_as,
        source=source,
        rows=rows,
        row_count=row_count,
        messages=tuple(messages),
    )


def _add(messages: list[tuple[str, str]], when: str, message: Message | None) -> None:
    if message is not None:
        messages.append((when, message.template.text))


def _annotate(sql: str, params: Sequence[object]) -> str:
    """The SQL with `/* value */` after each $n: what is bound where, never pasted in."""
    out, last = [], 0
    for placeholder in parse(sql).placeholders:
        end = placeholder.offset + len(f"${placeholder.number}")
        value = params[placeholder.number - 1]
        out.append(sql[last:end] + f" /* {literal(value).replace('*/', '* /')} */")
        last = end
    return "".join(out) + sql[last:]


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _text(plan: Plan, views: list[_StepView]) -> str:
    lines = [f"plan: {plan.name}", f"file: {plan.path}", f"fingerprint: {plan.short_fingerprint}"]
    if plan.vars:
        lines.append("vars:")
        lines += [f"  {var.name}: {_var(var)}" for var in plan.vars]
    if plan.on_connect is not None:
        lines.append(f'prints once connected: "{_escaped(plan.on_connect.template.text)}"')
    for view in views:
        lines += [
            "",
            f"{view.title} ({view.kind}, {view.where})",
            f"  transaction: {view.transaction}",
            f"  round trip: {view.round_trip}",
        ]
        if view.allows:
            lines.append(f"  allows: {', '.join(view.allows)}")
        if view.locks:
            lines.append(f"  locks: {'; '.join(view.locks)}")
        lines += [f"  held: {text}" for text in view.held]
        lines += [f"  {text}" for text in view.captures]
        lines.append("  sql:")
        lines += [f"    {line}".rstrip() for line in view.sql.splitlines()]
        if view.sent_as:
            lines.append(f"  sent as: {view.sent_as}")
        if view.source:
            lines.append(f"  rows from: {view.source}")
        if view.row_count:
            lines.append(f"  rows ({view.row_count}):")
            header = ("#", *(f"${i}" for i in range(1, len(view.rows[0]) + 1)))
            table = [header, *((str(n), *row) for n, row in enumerate(view.rows, 1))]
            widths = [max(len(r[i]) for r in table) for i in range(len(header))]
            lines += [
                "    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                for r in table
            ]
            if view.row_count > len(view.rows):
                lines.append(f"    ... {view.row_count - len(view.rows)} more rows")
        if view.messages:
            lines.append("  prints:")
            lines += [f'    {when}: "{_escaped(text)}"' for when, text in view.messages]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """A Markdown code span that holds any text, backticks included."""
    text = _escaped(text)
    longest = 0
    current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _var(var: Var) -> str:
    """A var's declaration as show lists it: its type, default, variable, whether secret."""
    parts = [var.type]
    if var.default is not None:
        parts.append(f"default {literal(Secret(var.default) if var.secret else var.default)}")
    else:
        parts.append("no default")
    if var.env:
        parts.append(f"from ${var.env}")
    if var.secret:
        parts.append("secret: shown as ****")
    text = ", ".join(parts)
    return text + (f" ({var.description})" if var.description else "")


def _markdown(plan: Plan, views: list[_StepView]) -> str:
    lines = [
        f"## Plan {_code(plan.name)}",
        "",
        f"- File: {_code(plan.path)}",
        f"- Fingerprint: {_code(plan.short_fingerprint)}",
    ]
    if plan.on_connect is not None:
        lines.append(f"- Prints once connected: {_code(plan.on_connect.template.text)}")
    if plan.vars:
        lines.append("- Vars: " + "; ".join(f"{_code(var.name)}: {_var(var)}" for var in plan.vars))
    if plan.description:
        lines += ["", "> " + plan.description.strip().replace("\n", "\n> ")]
    for view in views:
        lines += ["", f"### {view.title[:1].upper()}{view.title[1:]} ({_code(view.kind)})", ""]
        summary = f"Transaction: {view.transaction}. Round trip: {view.round_trip}."
        if view.allows:
            summary += " Allows: " + ", ".join(_code(a) for a in view.allows) + "."
        if view.locks:
            summary += " Locks: " + "; ".join(view.locks) + "."
        for text in view.held:
            summary += f" Held: {text[:1].upper()}{text[1:]}."
        for text in view.captures:
            summary += f" {text[:1].upper()}{text[1:]}."
        lines += [summary, "", "```sql", *view.sql.splitlines(), "```"]
        if view.sent_as:
            lines += ["", f"Sent as {_code(view.sent_as)}."]
        if view.source:
            lines += ["", f"Rows from {_code(view.source)}."]
        if view.row_count:
            width = len(view.rows[0])
            lines += ["", f"{view.row_count} rows:", ""]
            lines.append("| # | " + " | ".join(f"${i}" for i in range(1, width + 1)) + " |")
            lines.append("|---:|" + "---|" * width)
            for n, row in enumerate(view.rows, 1):
                lines.append(f"| {n} | " + " | ".join(_cell(c) for c in row) + " |")
            if view.row_count > len(view.rows):
                lines += ["", f"... {view.row_count - len(view.rows)} more rows"]
        if view.messages:
            lines.append("")
            lines += [f"- Prints {when}: {_code(text)}" for when, text in view.messages]
    return "\n".join(lines) + "\n"
