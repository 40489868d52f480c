"""A rollout, for people and machines: the summary table (counts first, then who), one JSON
document with every target's own run report (schemas/run-report.schema.json), JUnit with a
test suite per target, and the Markdown summary with the failures expanded. A target is named
by its name; its URL only ever with the password masked."""

from __future__ import annotations

import json

from ..report import document, failure_text, plan_cases, run_error, write_texts
from .results import FleetResult, TargetResult

# The order of statuses in every table: what needs someone first.
ORDER = ("in doubt", "unknown", "failed", "stopped", "unfinished", "not run", "applied", "skipped")
_MARK = {
    "applied": "✅",
    "skipped": "⏭️",
    "failed": "❌",
    "in doubt": "⚠️",
    "unknown": "⚠️",
    "stopped": "⏹️",
    "unfinished": "⏳",
    "not run": "⏸️",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


def plan_of_rollout(fleet: FleetResult) -> str:
    """The rollout's order and limits, said before it starts."""
    o = fleet.options
    parts = [
        f"{len(fleet.targets)} target{'s' if len(fleet.targets) != 1 else ''} in the order given",
        f"{o.parallel} at a time",
    ]
    if o.rehearse_first:
        parts.insert(1, "all rehearsed first")
    if o.canary:
        parts.append(f"the first {o.canary} alone (canary)")
    parts.append(
        f"no new target after {o.max_failures} failure{'s' if o.max_failures != 1 else ''}"
        if o.max_failures
        else "every target whatever fails"
    )
    parts.append(f"deadline {_duration(o.deadline)} each")
    return "fleet: " + ", ".join(parts)


def summary_lines(fleet: FleetResult, names: int = 8) -> list[str]:
    """The table at the end: a row per status met, its count, and the first targets' names."""
    lines = [
        f"fleet: {len(fleet.targets)} targets in {fleet.seconds:.1f} s: exit {int(fleet.exit_code)}"
    ]
    for status in ORDER:
        found = [t for t in fleet.targets if t.status == status]
        if not found:
            continue
        shown = ", ".join(t.target.name for t in found[:names])
        more = f" and {len(found) - names} more" if len(found) > names else ""
        lines.append(f"  {status:<10} {len(found):>6}   {shown}{more}")
    rehearsed = [t for t in fleet.targets if t.rehearsal not in (None, "ok")]
    if rehearsed:
        lines.append(
            f"  rehearsal failed on {len(rehearsed)}: "
            + ", ".join(t.target.name for t in rehearsed[:names])
        )
    if fleet.stopped:
        lines.append(f"  stopped starting targets: {fleet.stopped}")
    return lines


def target_line(target: TargetResult) -> str:
    """How one target ended, in a line."""
    took = f" in {target.seconds * 1000:.0f} ms" if target.seconds is not None else ""
    why = f": {target.why}" if target.why and target.status != "applied" else ""
    canary = " (canary)" if target.canary else ""
    return f"target {target.target.name}{canary}: {target.status}{took}{why}"


def target_failure(target: TargetResult) -> str | None:
    """What failed on a target, as one database's run shows it."""
    if target.run.error is not None:
        return failure_text(target.run.error)
    for result in target.run.plans:
        if result.failure is not None:
            return failure_text(result.failure)
    if target.rehearsal not in (None, "ok"):
        return f"rehearsal: {target.rehearsal}"
    return None


def document_of(fleet: FleetResult) -> dict[str, object]:
    o = fleet.options
    return {
        "version": 1,
        "ok": fleet.ok,
        "exit_code": int(fleet.exit_code),
        "plans": [],
        "error": run_error(fleet.error),
        "fleet": {
            "order": "as given",
            "parallel": o.parallel,
            "canary": o.canary,
            "max_failures": o.max_failures,
            "deadline_s": o.deadline,
            "rehearse_first": o.rehearse_first,
            "stopped": fleet.stopped,
            "duration_ms": round(fleet.seconds * 1000, 3),
            "most_open": fleet.most_open,
            "counts": {s: fleet.count(s) for s in ORDER},
        },
        "targets": [
            {
                "name": t.target.name,
                "url": t.target.display,
                "labels": dict(t.target.labels),
                "status": t.status,
                "why": t.why,
                "canary": t.canary,
                "exit_code": t.exit_code,
                "duration_ms": None if t.seconds is None else round(t.seconds * 1000, 3),
                "rehearsal": t.rehearsal,
                "notices": list(t.notices),
                "run": document(t.run),
            }
            for t in fleet.targets
        ],
    }


def json_text(fleet: FleetResult) -> str:
    return json.dumps(document_of(fleet), indent=2, ensure_ascii=False)


def junit_xml(fleet: FleetResult) -> str:
    """A test suite per target; in it, a test case per step of each plan (classname: the
    plan), and one for what stopped the target before any plan (its connection, a rehearsal,
    the rollout stopping)."""
    from xml.sax.saxutils import quoteattr

    suites = []
    for t in fleet.targets:
        cases: list[str] = []
        failures = errors = skipped = 0
        name = quoteattr(t.target.name)
        if t.run.error is not None:
            errors += 1
            cases.append(
                f'    <testcase name="connect" classname={name}><error message='
                f'{quoteattr(t.run.error.message)} type="{int(t.run.error.exit_code)}"/></testcase>'
            )
        elif t.rehearsal not in (None, "ok"):
            failures += 1
            cases.append(
                f'    <testcase name="rehearsal" classname={name}><failure message='
                f"{quoteattr(str(t.rehearsal))}/></testcase>"
            )
        for result in t.run.plans:
            found, f, e, s = plan_cases(result)
            cases += found
            failures, errors, skipped = failures + f, errors + e, skipped + s
        if t.status in ("unknown", "stopped") or (t.status == "not run" and t.why):
            cases.append(
                f'    <testcase name="target" classname={name}><skipped message='
                f"{quoteattr(f'{t.status}: {t.why}')}/></testcase>"
            )
            skipped += 1
        suites.append(
            f'  <testsuite name={name} tests="{len(cases)}" failures="{failures}" '
            f'errors="{errors}" skipped="{skipped}" time="{(t.seconds or 0):.3f}">\n'
            + "\n".join(cases)
            + "\n  </testsuite>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="sqlplan fleet">\n'
        + "\n".join(suites)
        + "\n</testsuites>\n"
    )


def summary_markdown(fleet: FleetResult) -> str:
    """Counts first, then every target that did not apply, its failure expanded."""
    code = int(fleet.exit_code)
    lines = [
        f"### sqlplan fleet: {'ok' if fleet.ok else f'exit {code}'}, "
        f"{len(fleet.targets)} targets in {fleet.seconds:.1f} s",
        "",
        "| status | targets |",
        "| --- | --- |",
    ]
    for status in ORDER:
        count = fleet.count(status)
        if count:
            lines.append(f"| {_MARK[status]} {status} | {count} |")
    if fleet.stopped:
        lines += ["", f"Stopped starting targets: {_cell(fleet.stopped)}"]
    for t in fleet.targets:
        if t.status in ("applied", "skipped") or (
            t.status == "not run" and t.rehearsal in (None, "ok")
        ):
            continue
        lines += [
            "",
            f"<details><summary>{_MARK[t.status]} <code>{_cell(t.target.name)}</code>: {t.status}</summary>",
            "",
        ]
        said = target_failure(t) or t.why or ""
        lines += ["```", said.replace("```", "'''"), "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def write_files(junit: str | None, summary: str | None, fleet: FleetResult) -> list[str]:
    return write_texts(junit, lambda: junit_xml(fleet), summary, lambda: summary_markdown(fleet))
