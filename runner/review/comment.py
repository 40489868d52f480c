"""The pull-request comment: `check --format markdown`. A hidden marker (so that the comment is
found and edited, not added again), a one-line verdict, a table of the plans, and per plan what
each step locks, how long the rehearsal held it, and each finding with its safer form, folded
and cut to stay under GitHub's size limit."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import Diagnostic
from ..plan.model import Plan
from .grades import table_figures
from .locks import NEWEST
from .rules import rule
from .show import step_locks

MARKER = "<!-- sqlplan-review -->"
LIMIT = 65_536  # GitHub refuses a comment body longer than this many characters
_BUDGET = LIMIT - 1_000  # room for the note that says what was cut


def render(
    files: Sequence[str],
    diagnostics: Sequence[Diagnostic],
    plans: Mapping[str, Plan],
    rehearsals: Sequence[Mapping[str, Any]] = (),
    *,
    version: int | None = None,
    limit: int = _BUDGET,
) -> str:
    """The comment's body. `rehearsals` are `rehearse --format json` documents: each joins the
    checked plan with its fingerprint (or, failing that, its name)."""
    by_file: dict[str, list[Diagnostic]] = {file: [] for file in files}
    for d in sorted(diagnostics, key=Diagnostic.sort_key):
        by_file.setdefault(d.position.path, []).append(d)
    rehearsed = _match(plans, rehearsals)
    sections = []
    for file, found in by_file.items():
        plan = plans.get(file)
        sections.append(_Section(file, found, plan, rehearsed.get(file), version))
    head = [MARKER, f"### sqlplan: {_verdict(sections)}", ""]
    if sections:
        head += ["| plan | verdict |", "| --- | --- |"]
        head += [f"| {_code(s.file)} | {s.verdict} |" for s in sections]
        head.append("")
    bodies = [s.body() for s in sections]
    cut = _fit(head, bodies, sections, limit)
    lines = head + [b for b in bodies if b]
    if cut:
        lines += [
            f"Cut to stay under GitHub's {LIMIT:,}-character limit for a comment: the details "
            f"of {cut} plan{'s' * (cut != 1)} (their verdicts are in the table above). "
            "`sqlplan check --format text` prints every finding; `--format sarif` puts them in "
            "code scanning.",
            "",
        ]
    return "\n".join(lines)


class _Section:
    def __init__(
        self,
        file: str,
        found: list[Diagnostic],
        plan: Plan | None,
        rehearsal: Mapping[str, Any] | None,
        version: int | None,
    ) -> None:
        self.file, self.found, self.plan, self.rehearsal = file, found, plan, rehearsal
        self.version = version or (plan.postgres if plan else None) or NEWEST
        self.errors = sum(d.severity == "error" for d in found)
        self.warnings = sum(d.severity == "warning" for d in found)
        self.notes = sum(d.severity == "note" for d in found)
        failed = rehearsal is not None and not rehearsal.get("ok", True)
        parts = []
        if self.errors:
            parts.append(_count(self.errors, "error"))
        if self.warnings:
            parts.append(_count(self.warnings, "warning"))
        if failed:
            parts.append("the rehearsal failed")
        if parts:
            self.verdict = "**" + ", ".join(parts) + "**"
            serious = [d for d in found if d.severity != "note"]
            codes = ", ".join(f"`{c}`" for c in dict.fromkeys(d.code for d in serious))
            self.verdict += f": {codes}" if codes else ""
        elif self.notes:
            self.verdict = f"{_count(self.notes, 'small finding')} only"
        else:
            self.verdict = "no findings"
        if parts and self.notes:
            self.verdict += f"; {_count(self.notes, 'small finding')}"
        if rehearsal is not None:
            total = sum(s["seconds"] for s in rehearsal["statements"])
            self.verdict += f"; rehearsed in {_ms(total)}"
        self.quiet = not parts

    def body(self) -> str:
        lines = [
            f"<details{'' if self.quiet else ' open'}><summary><b>{_html(self.file)}</b>: "
            f"{_html(self.verdict.replace('**', '').replace('`', ''))}</summary>",
            "",
        ]
        # validation errors at their lines; review findings (graded errors too) in the table
        errors = [d for d in self.found if rule(d.code).severity == "error"]
        if errors:
            lines += [
                f"- line {d.position.line}: {_inline(d.message)} (`{d.code}`)" for d in errors
            ]
            lines.append("")
        if self.plan is not None and self.plan.steps:
            lines += self._steps()
        if self.rehearsal is not None:
            lines += self._rehearsal()
        lines += ["</details>", ""]
        return "\n".join(lines)

    def _steps(self) -> list[str]:
        assert self.plan is not None
        locks = step_locks(self.plan, self.version)
        if self.rehearsal is not None:  # the rehearsal's, resolved by the database's catalogue
            rehearsed: dict[int, list[str]] = {}
            for statement in self.rehearsal["statements"]:
                if "analysis_text" in statement:
                    rehearsed.setdefault(statement["step"], []).extend(statement["analysis_text"])
            locks = {
                number: tuple(dict.fromkeys(rehearsed[number])) if number in rehearsed else lines
                for number, lines in locks.items()
            }
        held = _held(self.rehearsal)
        warnings: dict[int, list[Diagnostic]] = {}
        for d in self.found:
            if rule(d.code).severity != "error":
                warnings.setdefault(_step_at(self.plan, d.position.line), []).append(d)
        timed = self.rehearsal is not None
        lines = [
            "| step | locks | " + ("held in the rehearsal | " if timed else "") + "findings |",
            "| ---: | --- | " + ("--- | " if timed else "") + "--- |",
        ]
        for step in self.plan.steps:
            found = warnings.get(step.number, [])
            cells = [
                _cell(step.label.removeprefix("step ")),
                "<br>".join(_cell(line) for line in locks[step.number]) or "none",
            ]
            if timed:
                cells.append("<br>".join(_cell(h) for h in held.get(step.number, [])) or "")
            cells.append("<br>".join(_finding(d) for d in found))
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]

    def _rehearsal(self) -> list[str]:
        assert self.rehearsal is not None
        bad = [
            s for s in self.rehearsal["statements"] if s["status"] not in ("ran", "not rehearsed")
        ]
        lines = []
        for statement in bad[:5]:
            detail = f": {statement['detail']}" if statement.get("detail") else ""
            lines.append(f"- step {statement['step']} {statement['status']}{_inline(detail)}")
        differences = [d for s in self.rehearsal["statements"] for d in s["differences"]]
        lines += [f"- the server {_inline(d)}" for d in differences[:10]]
        return [*lines, ""] if lines else []


_ALLOW_HINT = re.compile(r" \(if intended, add '[a-z-]+' to the step's allow list\)")


def _finding(d: Diagnostic) -> str:
    message = _ALLOW_HINT.sub("", d.message.split(": ", 1)[-1])  # the step is the row's
    text = f"**`{d.code}`** {_cell(message)}"
    safer = rule(d.code).safer.replace("|", "\\|")
    return text + (f". Instead: {safer}" if safer else "")


def _held(rehearsal: Mapping[str, Any] | None) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for hold in (rehearsal or {}).get("holds", []):
        end = hold["last_step"]
        until = "" if end == hold["first_step"] else f" (to step {end}'s COMMIT)"
        table = hold.get("table")
        figures = f" ({table_figures(table)})" if table else ""
        held.setdefault(hold["first_step"], []).append(
            f"{hold['mode']} on {hold['relation']}: {_ms(hold['seconds'])}{until}{figures}"
            + (f" [{hold['grade']}]" if "grade" in hold else "")
        )
    return held


def _step_at(plan: Plan, line: int) -> int:
    """The step a line of the plan falls in: the last that starts at or before it."""
    number = plan.steps[0].number
    for step in plan.steps:
        if step.position.line <= line:
            number = step.number
    return number


def _match(
    plans: Mapping[str, Plan], rehearsals: Sequence[Mapping[str, Any]]
) -> dict[str, Mapping[str, Any]]:
    by_fingerprint = {r["fingerprint"]: r for r in rehearsals}
    by_name = {r["plan"]: r for r in rehearsals}
    matched = {}
    for file, plan in plans.items():
        found = by_fingerprint.get(plan.fingerprint) or by_name.get(plan.name)
        if found is not None:
            matched[file] = found
    return matched


def unmatched(plans: Mapping[str, Plan], rehearsals: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the rehearsal reports that join no checked plan."""
    joined = {id(r) for r in _match(plans, rehearsals).values()}
    return [str(r["plan"]) for r in rehearsals if id(r) not in joined]


def _verdict(sections: Sequence[_Section]) -> str:
    errors = sum(s.errors for s in sections)
    warnings = sum(s.warnings for s in sections)
    notes = sum(s.notes for s in sections)
    failed = sum(1 for s in sections if s.rehearsal is not None and not s.rehearsal.get("ok"))
    plans = _count(len(sections), "plan")
    if not sections:
        return "no plans changed"
    if errors or failed:
        parts = [_count(errors, "error")] if errors else []
        parts += [f"{_count(failed, 'rehearsal')} failed"] if failed else []
        parts += [_count(warnings, "warning")] if warnings else []
        return f"**fails**: {', '.join(parts)} in {plans}"
    small = f" ({_count(notes, 'small finding')})" if notes else ""
    if warnings:
        return f"**needs a look**: {_count(warnings, 'warning')} in {plans}{small}"
    if notes:
        return f"**passes**: {plans}, {_count(notes, 'small finding')} only"
    return f"**passes**: {plans}, no findings"


def _fit(head: list[str], bodies: list[str], sections: Sequence[_Section], limit: int) -> int:
    """Drop plans' details, the quiet ones first and then the longest, until the comment fits;
    how many were dropped. The table of verdicts always stays."""
    size = sum(len(line) + 1 for line in head) + sum(len(b) + 1 for b in bodies)
    order = sorted(range(len(bodies)), key=lambda i: (not sections[i].quiet, -len(bodies[i])))
    cut = 0
    for i in order:
        if size <= limit:
            break
        size -= len(bodies[i]) + 1
        bodies[i] = ""
        cut += 1
    return cut


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _cell(text: str) -> str:
    """Text in a table cell: its pipes escaped too (a table splits cells at them first)."""
    return _inline(text)


def _code(text: str) -> str:
    """A name as code; one with a backtick in it as escaped text."""
    return _inline(text) if "`" in text else "`" + text.replace("|", "\\|") + "`"


def _inline(text: str) -> str:
    """Text as Markdown shows it as written: on one line, every character that could start
    emphasis, code, a link, HTML or a cell backslash-escaped (CommonMark allows it before any
    ASCII punctuation)."""
    return _SPECIAL.sub(r"\\\g<0>", " ".join(text.split()))


_SPECIAL = re.compile(r"[\\`*_\[\]<>|~&!#]")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
