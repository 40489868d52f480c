"""What a `run` did, for machines: one JSON document (schemas/run-report.schema.json), GitHub
workflow commands, JUnit XML (a test case per step) and a Markdown summary. All are built
from the same results: each plan's outcome, and its ledger of what the server confirmed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import secrets
from .errors import ExitCode, HistoryRefused, PlanInvalid, SqlPlanError, StepFailed
from .output import check_report, diagnostics_text, error_text, step_failure_text, workflow_command
from .plan.model import AnyStep, Plan

RUN_FORMATS = ("text", "json", "github")


@dataclass
class PlanResult:
    """One plan of a run: ok, failed, skipped (applied before), refused, or not run."""

    plan: Plan
    status: str = "not run"
    seconds: float | None = None
    ledger: Any = None  # run.ledger.Ledger, once it ran
    failure: SqlPlanError | None = None
    skipped: str | None = None  # why: when it was applied
    output: list[str] = field(default_factory=list)  # the plan's own lines (--format json)


@dataclass
class RunResult:
    """A whole run, the one shape every report renders: each plan's result in order, the exit
    code, and what stopped the run before any plan ran (invalid plans, no connection)."""

    plans: list[PlanResult] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK
    error: SqlPlanError | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def fail(self, error: SqlPlanError) -> None:
        self.error, self.exit_code = error, error.exit_code


def failure_text(error: SqlPlanError) -> str:
    """A failure as standard error shows it: every diagnostic of invalid plans, a step's
    failure with what the server said and what was rolled back, or one line."""
    if isinstance(error, PlanInvalid):
        return diagnostics_text(error.diagnostics)
    if isinstance(error, StepFailed):
        return step_failure_text(error)
    if isinstance(error, HistoryRefused):
        return f"{error.position}: error: {error.message}"
    return error_text(error)


def plan_line(result: PlanResult) -> str:
    """How one plan of several ended, in a line."""
    failure = result.failure
    said = {
        "ok": f"ok in {(result.seconds or 0) * 1000:.0f} ms",
        "failed": f"failed (exit {int(failure.exit_code) if failure else 1})",
        "refused": "refused by its history",
        "skipped": f"skipped, {result.skipped}",
        "not run": "not run",
    }[result.status]
    return f"plan {result.plan.name} ({result.plan.path}): {said}"


def kind(step: AnyStep) -> str:
    return step.kind


def _step(result: PlanResult, step: AnyStep) -> dict[str, object]:
    ledger = result.ledger
    fate = ledger.fates.get(step.number) if ledger is not None else None
    status = "not run" if fate is None else fate.value
    if status == "open":
        status = "rolled back"  # a block no step ended dies with the connection
    failure = result.failure
    failed_here = isinstance(failure, StepFailed) and failure.step == step.number
    item: dict[str, object] = {
        "number": step.number,
        "name": step.name,
        "kind": kind(step),
        "line": step.position.line,
        "column": step.position.column,
        "status": status,
        "rows": ledger.rows.get(step.number) if ledger is not None else None,
        "duration_ms": _ms(ledger.seconds.get(step.number)) if ledger is not None else None,
        "shared_round_trip": bool(ledger is not None and step.number in ledger.shared),
    }
    if ledger is not None and step.number in ledger.attempts:
        item["attempts"] = ledger.attempts[step.number]  # its retry ran it more than once
    if ledger is not None and step.number in ledger.backfills:
        item["backfill"] = _batches(ledger.backfills[step.number])
    if step.captures:
        captured = ledger.captured if ledger is not None and status != "not run" else {}
        item["captures"] = {c.var: _jsonable(captured.get(c.var)) for c in step.captures}
    if step.expect is not None:
        if failed_here:
            held: bool | None = False
        elif status in ("committed", "rolled back") and not (
            ledger is not None and ledger.running == step.number
        ):
            held = True
        else:
            held = None
        item["expect"] = {"held": held}
    return item


def _batches(figures: Any) -> dict[str, object]:
    return {
        "id": figures.ident,
        "batches": figures.batches,
        "rows": figures.rows,
        "total_batches": figures.total_batches,
        "total_rows": figures.total_rows,
        "checkpoint": _jsonable(figures.checkpoint),
        "resumed_from": _jsonable(figures.resumed_from),
        "in_doubt": _jsonable(figures.doubt),
        "finished": figures.finished,
        "earlier": figures.earlier,
        "longest_batch_ms": _ms(figures.longest),
    }


def _jsonable(value: object) -> object:
    """A captured value as JSON; it is the server's text, masked (secrets.py)."""
    if isinstance(value, str):
        return secrets.mask(value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return secrets.mask(str(value))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _error(failure: SqlPlanError | None) -> dict[str, object] | None:
    if failure is None:
        return None
    error: dict[str, object] = {"message": failure.message, "exit_code": int(failure.exit_code)}
    position = getattr(failure, "position", None)
    if isinstance(failure, StepFailed):
        position = failure.sql_position or failure.position
        server = failure.server
        error.update(
            {
                "step": failure.step,
                "sqlstate": server.sqlstate if server else None,
                "detail": server.detail if server else None,
                "hint": server.hint if server else None,
                "difference": list(failure.difference),
                "in_doubt": failure.in_doubt,
            }
        )
    if position is not None:
        error.update({"path": position.path, "line": position.line, "column": position.column})
    row = failure.row_position if isinstance(failure, StepFailed) else None
    if isinstance(failure, StepFailed) and row is not None:  # a bulk load's failing row
        error["row"] = {
            "number": failure.row_number,
            "path": row.path,
            "line": row.line,
            "column": row.column,
        }
    return error


def document(run: RunResult) -> dict[str, object]:
    """The whole run, as schemas/run-report.schema.json describes it."""
    return {
        "version": 1,
        "ok": run.ok,
        "exit_code": int(run.exit_code),
        "plans": [
            {
                "path": r.plan.path,
                "name": r.plan.name,
                "fingerprint": r.plan.fingerprint,
                "status": r.status,
                "skipped": r.skipped,
                "duration_ms": _ms(r.seconds),
                "output": r.output,
                "steps": [_step(r, s) for s in r.plan.steps],
                "error": _error(r.failure),
                "ledger": (
                    [line.strip() for line in r.failure.ledger_lines[1:]]
                    if isinstance(r.failure, StepFailed)
                    else []
                ),
            }
            for r in run.plans
        ],
        "error": run_error(run.error),
    }


def json_text(run: RunResult) -> str:
    return json.dumps(document(run), indent=2, ensure_ascii=False)


def github_lines(run: RunResult) -> list[str]:
    """Workflow commands: an error annotation on the failing step's line (or the history's
    refusal on its plan), a notice per skipped plan; the run's own error last."""
    lines = []
    for r in run.plans:
        error = _error(r.failure)
        if error is not None:
            message = str(error["message"])
            if error.get("sqlstate"):
                message += f" [{error['sqlstate']}]"
            at: Any = error.get("row") or error  # a failing row: its own line
            lines.append(
                workflow_command(
                    "error",
                    message,
                    file=at.get("path"),
                    line=at.get("line"),
                    col=at.get("column"),
                    title=f"sqlplan: plan {r.plan.name}" if "line" in error else "sqlplan",
                )
            )
        if r.skipped is not None:
            lines.append(
                workflow_command(
                    "notice", f"plan {r.plan.name} skipped, {r.skipped}", file=r.plan.path, line=1
                )
            )
    if run.error is not None:
        lines += github_error_lines(run.error)
    return lines


def junit_xml(run: RunResult) -> str:
    """A test suite per plan, a test case per step: failure for the step that failed (as
    stderr shows it: SQLSTATE, detail, hint, what was rolled back), error for one in doubt,
    skipped for steps not run. A run that stopped before any plan ran (`error`): a failing
    case per diagnostic of each invalid plan, or one error case (no connection, say)."""
    from xml.sax.saxutils import escape, quoteattr  # 10 ms of imports: only for --junit

    suites = []
    results, error = run.plans, run.error
    if isinstance(error, PlanInvalid):
        by_file: dict[str, list[Any]] = {}
        for diagnostic in error.diagnostics:
            by_file.setdefault(diagnostic.position.path, []).append(diagnostic)
        for path, found in by_file.items():
            cases = [
                f"    <testcase name={quoteattr(f'{d.position.line}:{d.position.column} [{d.code}]')} "
                f'classname={quoteattr(path)} file={quoteattr(path)} line="{d.position.line}">'
                f'<failure message={quoteattr(d.message)} type="{int(error.exit_code)}">'
                f"{escape(str(d))}</failure></testcase>"
                for d in found
            ]
            suites.append(
                f'  <testsuite name={quoteattr(path)} tests="{len(cases)}" '
                f'failures="{len(cases)}" errors="0" skipped="0" time="0.000" '
                f"file={quoteattr(path)}>\n" + "\n".join(cases) + "\n  </testsuite>"
            )
    elif error is not None and not results:
        suites.append(
            '  <testsuite name="sqlplan" tests="1" failures="0" errors="1" skipped="0" '
            'time="0.000">\n    <testcase name="run" classname="sqlplan"><error message='
            f'{quoteattr(error.message)} type="{int(error.exit_code)}"/></testcase>\n'
            "  </testsuite>"
        )
    for r in results:
        cases, failures, errors, skipped = plan_cases(r)
        suites.append(
            f'  <testsuite name={quoteattr(r.plan.name)} tests="{len(cases)}" '
            f'failures="{failures}" errors="{errors}" skipped="{skipped}" '
            f'time="{(r.seconds or 0):.3f}" file={quoteattr(r.plan.path)}>\n'
            + "\n".join(cases)
            + "\n  </testsuite>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="sqlplan">\n'
        + "\n".join(suites)
        + "\n</testsuites>\n"
    )


def plan_cases(r: PlanResult) -> tuple[list[str], int, int, int]:
    """One plan's JUnit test cases (a case per step), and how many failed, erred, skipped."""
    from xml.sax.saxutils import escape, quoteattr

    cases = []
    failures = errors = skipped = 0
    for step in r.plan.steps:
        item = _step(r, step)
        name = f"step {step.number}" + (f": {step.name}" if step.name else "")
        seconds = (item["duration_ms"] or 0) / 1000  # type: ignore[operator]
        attributes = (
            f"name={quoteattr(name)} classname={quoteattr(r.plan.name)} "
            f'file={quoteattr(r.plan.path)} line="{step.position.line}" time="{seconds:.3f}"'
        )
        body = ""
        failure = r.failure
        if isinstance(failure, StepFailed) and failure.step == step.number:
            failures += 1
            code = f" [{failure.server.sqlstate}]" if failure.server is not None else ""
            body = (
                f"<failure message={quoteattr(failure.message + code)} "
                f'type="{int(failure.exit_code)}">{escape(step_failure_text(failure))}'
                "</failure>"
            )
        elif item["status"] == "in doubt":
            errors += 1
            body = '<error message="in doubt: it may or may not have committed"/>'
        elif item["status"] == "not run":
            skipped += 1
            why = f"skipped, {r.skipped}" if r.skipped else "not run"
            body = f"<skipped message={quoteattr(why)}/>"
        if r.ledger is not None and step.number in r.ledger.backfills:
            said = r.ledger.backfills[step.number].text()
            body += f"<system-out>{escape(said)}</system-out>"
        cases.append(f"    <testcase {attributes}>{body}</testcase>")
    if r.failure is not None and not isinstance(r.failure, StepFailed):
        errors += 1
        cases.append(
            f'    <testcase name="plan" classname={quoteattr(r.plan.name)} '
            f'file={quoteattr(r.plan.path)} line="1"><error message='
            f"{quoteattr(r.failure.message)}/></testcase>"
        )
    return cases, failures, errors, skipped


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(run: RunResult) -> str:
    """For $GITHUB_STEP_SUMMARY: a table of the plans, then each failure."""
    results, code = run.plans, run.exit_code
    mark = {"ok": "✅", "failed": "❌", "refused": "⛔", "skipped": "⏭️", "not run": "⏸️"}
    lines = [
        f"### sqlplan run: {'ok' if code == ExitCode.OK else f'failed (exit {int(code)})'}",
        "",
        "| plan | status | steps | time |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        committed = sum(f.value == "committed" for f in r.ledger.fates.values()) if r.ledger else 0
        status = r.status + (f", {r.skipped}" if r.skipped else "")
        time = f"{r.seconds * 1000:.0f} ms" if r.seconds is not None else ""
        lines.append(
            f"| `{_cell(r.plan.path)}` ({_cell(r.plan.name)}) | {mark.get(r.status, '')} "
            f"{_cell(status)} | {committed}/{len(r.plan.steps)} committed | {time} |"
        )
    backfills = [
        f"- `{_cell(r.plan.path)}` step {number}: {_cell(figures.text())}"
        for r in results
        if r.ledger is not None
        for number, figures in sorted(r.ledger.backfills.items())
    ]
    if backfills:
        lines += ["", "Backfills:", "", *backfills]
    for r in results:
        if r.failure is None:
            continue
        lines += ["", f"#### {_cell(r.plan.name)}", "", "```"]
        if isinstance(r.failure, StepFailed):
            lines.append(step_failure_text(r.failure))
        else:
            lines.append(r.failure.message)
        lines.append("```")
    return "\n".join(lines) + "\n"


def stdout_report(format: str, run: RunResult) -> str | None:
    """What `run --format json|github` prints once the run is over (None for text)."""
    if format == "json":
        return json_text(run)
    if format == "github":
        return "\n".join(github_lines(run)) or None
    return None


def write_files(junit: str | None, summary: str | None, run: RunResult) -> list[str]:
    """Write --junit and append to --summary; the problems met (a report that could not be
    written must not change the run's outcome)."""
    return write_texts(junit, lambda: junit_xml(run), summary, lambda: summary_markdown(run))


def write_texts(
    junit: str | None,
    junit_text: Callable[[], str],
    summary: str | None,
    summary_text: Callable[[], str],
) -> list[str]:
    """Write `junit` and append to `summary`, each rendered only if asked for; the problems."""
    problems = []
    try:
        if junit:
            Path(junit).write_text(junit_text())
        if summary:
            with open(summary, "a", encoding="utf-8") as file:
                file.write(summary_text())
    except OSError as e:
        problems.append(str(e))
    return problems


def run_error(error: SqlPlanError | None) -> dict[str, object] | None:
    """A failure before any plan ran: invalid plans (with every diagnostic), no connection."""
    if error is None:
        return None
    found: dict[str, object] = {"message": error.message, "exit_code": int(error.exit_code)}
    if isinstance(error, PlanInvalid):
        found["diagnostics"] = [d.to_dict() for d in error.diagnostics]
    return found


def github_error_lines(error: SqlPlanError) -> list[str]:
    if isinstance(error, PlanInvalid):
        return check_report("github", [], error.diagnostics).splitlines()
    return [workflow_command("error", error.message, title="sqlplan")]
