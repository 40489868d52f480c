"""A rehearsal's report, as text, Markdown (for a pull-request comment) or JSON: per statement
what ran, the locks observed, the tables rewritten, rows and time, beside the offline analysis;
where the two differ, that is a finding."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..plan.model import ReviewSettings
from ..plan.sqlparse import parse
from .catalog import Catalog
from .ddl import learn
from .grades import Stats, hold_grade, table_figures
from .learned import LearnedCatalog
from .locks import MODES, NEWEST, Lock, describe, locks, what_waits
from .warnings import first_line, transactions

if TYPE_CHECKING:  # the data only: rendering a report needs no driver
    from ..run.rehearse import Observed, Rehearsal

REHEARSAL_FORMATS = ("text", "markdown", "json")  # and sarif.py's "sarif"


@dataclass(frozen=True)
class Compared:
    observed: Observed
    expected: tuple[Lock, ...]
    differences: tuple[str, ...]


def compare(
    rehearsal: Rehearsal, version: int | None = None, catalog: Catalog | None = None
) -> list[Compared]:
    """Each statement's observed locks and rewrites against the offline analysis; with the
    database's `catalog`, what the analysis says a statement "may" lock (partitions, indexes,
    the tables on the other side of a foreign key) resolved into the relations it names."""
    version = version or rehearsal.plan.postgres or NEWEST
    catalog = catalog or rehearsal.catalog
    learned = LearnedCatalog()  # what the plan's statements have created since the snapshot
    compared = []
    for observed in rehearsal.statements:
        parsed = parse(observed.text).statements
        statement = parsed[0] if parsed else None
        expected = tuple(locks(statement, version)) if statement is not None else ()
        if catalog is not None:
            expected = tuple(catalog.merged(learned.catalog()).resolve(expected))
        else:
            expected = tuple(learned.resolve(expected))
        if statement is not None and observed.status == "ran":
            learn(learned, statement)
        differences: list[str] = []
        if observed.status == "ran" and statement is not None:
            taken = {_bare(r): m for r, m in observed.locks.items()}
            holding = {_bare(r): m for r, m in observed.holding.items()}
            rewritten = {_bare(r) for r in observed.rewritten}
            for lock in expected:
                if lock.via or not lock.known:
                    continue  # on relations the analysis cannot name without the catalogue
                name = _bare(lock.relation)
                if name in taken and _stronger(taken[name], lock.mode):
                    differences.append(
                        f"took {taken[name]} on {lock.relation}; the analysis said {lock.mode}"
                    )
                elif name in holding and _stronger(lock.mode, holding[name]):
                    differences.append(
                        f"held no more than {holding[name]} on {lock.relation}; "
                        f"the analysis said {lock.mode}"
                    )
                if lock.rewrite is True and name not in rewritten and name in holding:
                    differences.append(
                        f"did not rewrite {lock.relation}; the analysis said it would"
                    )
                if lock.rewrite is False and name in rewritten:
                    differences.append(f"rewrote {lock.relation}; the analysis said it would not")
            # An index's lock comes with its table's (REINDEX, DROP TABLE, a rewrite), and a
            # table's with its index's (DROP INDEX): either foresees the other.
            foreseen = {_bare(lock.relation) for lock in expected if not lock.via}
            foreseen |= {
                _bare(index)
                for index, table in observed.index_of.items()
                if _bare(table) in foreseen
            } | {
                _bare(table)
                for index, table in observed.index_of.items()
                if _bare(index) in foreseen
            }
            differences += [
                f"took {mode} on {relation}, which the analysis did not foresee"
                for relation, mode in observed.locks.items()
                if _bare(relation) not in foreseen and _stronger(mode, "ROW EXCLUSIVE")
            ]
            differences += [
                f"rewrote {relation}, which the analysis did not foresee"
                for relation in observed.rewritten
                if _bare(relation) not in foreseen
            ]
        compared.append(Compared(observed, expected, tuple(differences)))
    return compared


@dataclass(frozen=True)
class Hold:
    """A lock that, in a real run, other sessions wait behind until its transaction ends."""

    relation: str
    mode: str
    first_step: int  # the step of the statement that takes it
    last_step: int  # the step whose end commits the transaction
    seconds: float  # the rehearsal's time from that statement to the transaction's end
    table: Mapping[str, Any] | None = None  # its size and writes, as `sqlplan stats` reads them
    grade: str = "medium"  # small, medium or large: review/grades.py's hold_grade

    @property
    def figures(self) -> str:
        """The table's rows, size and writes a minute: what the lock would hold up."""
        return table_figures(self.table) if self.table is not None else ""

    @property
    def waits(self) -> str:
        return what_waits(self.mode)


def holds(rehearsal: Rehearsal, rows: list[Compared]) -> list[Hold]:
    """The locks that block other sessions' writes (SHARE and stronger), per transaction of a
    real run, and how long the rehearsal took from the statement that takes each to the
    transaction's end. The rehearsal is one transaction, so a lock an earlier step took is not
    taken again; the analysis supplies it, and the rehearsal's times the duration."""
    unit = {t.step.number: t.opened_by or t.step.number for t in transactions(rehearsal.plan)}
    sizes = getattr(rehearsal.catalog, "sizes", None)
    stats = Stats(sizes) if sizes else None
    settings = rehearsal.plan.review.over(rehearsal.review or ReviewSettings())
    found: list[Hold] = []
    existed = {_bare(relation) for relation in rehearsal.existing}
    ran = [row for row in rows if row.observed.status == "ran"]
    for key in dict.fromkeys(unit[row.observed.step] for row in ran):
        members = [row for row in ran if unit[row.observed.step] == key]
        strongest: dict[str, tuple[str, int, str]] = {}  # bare name -> (mode, index, name)
        for index, row in enumerate(members):
            taken = list(row.observed.locks.items()) + [
                (lock.relation, lock.mode) for lock in row.expected if not lock.via
            ]
            for relation, mode in taken:
                if relation in row.observed.index_of or not _stronger(mode, "ROW EXCLUSIVE"):
                    continue
                name = _bare(relation)
                if name not in existed or mode == "SHARE UPDATE EXCLUSIVE":
                    continue  # waited behind by DDL and VACUUM only
                if name not in strongest or _stronger(mode, strongest[name][0]):
                    strongest[name] = (mode, index, relation)
        for mode, index, relation in strongest.values():
            found.append(
                Hold(
                    relation,
                    mode,
                    members[index].observed.step,
                    max(number for number, of in unit.items() if of == key),
                    seconds := sum(row.observed.seconds for row in members[index:]),
                    table := stats.find(relation) if stats is not None else None,
                    hold_grade(seconds, table, settings),
                )
            )
    return found


def _stronger(mode: str, than: str) -> bool:
    return MODES.index(mode) > MODES.index(than)


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"')


def render(
    rehearsal: Rehearsal,
    format: str,
    version: int | None = None,
    catalog: Catalog | None = None,
) -> str:
    rows = compare(rehearsal, version, catalog)
    if format == "json":
        return json.dumps(_document(rehearsal, rows), indent=2, ensure_ascii=False) + "\n"
    if format == "markdown":
        return _markdown(rehearsal, rows)
    return _text(rehearsal, rows)


def _shown(observed: Observed) -> dict[str, str]:
    """The locks to print: an index locked no stronger than its table (now, or from before) is
    part of the table's."""
    locks = observed.locks
    tables = {**observed.holding, **locks}  # what the table holds, new or from before
    return {
        relation: mode
        for relation, mode in locks.items()
        if not (
            (table := observed.index_of.get(relation)) in tables
            and not _stronger(mode, tables[table])
        )
    }


def _locks(observed: Observed) -> str:
    taken = ", ".join(f"{mode} on {relation}" for relation, mode in _shown(observed).items())
    if taken:
        return taken
    return "none beyond those already held" if observed.holding else "none"


def _outcome(observed: Observed) -> str:
    if observed.status == "ran":
        rows = (
            f", {observed.rows} row{'s' * (observed.rows != 1)}"
            if observed.rows is not None
            else ""
        )
        note = f"; {observed.detail}" if observed.detail else ""
        return f"ran in {observed.seconds * 1000:.1f} ms{rows}{note}"
    return observed.status + (f": {observed.detail}" if observed.detail else "")


def _text(rehearsal: Rehearsal, rows: list[Compared]) -> str:
    plan = rehearsal.plan
    lines = [
        f"rehearsal of plan {plan.name} (fingerprint {plan.short_fingerprint}): one transaction, "
        "rolled back",
        f"lock_timeout {rehearsal.lock_timeout}, statement_timeout {rehearsal.statement_timeout}",
    ]
    current = None
    for row in rows:
        observed = row.observed
        if observed.step != current:
            current = observed.step
            step = plan.steps[observed.step - 1]
            lines += ["", f"{step.label} ({step.position})"]
        lines.append(f"  {first_line(observed.text, 100)}")
        lines.append(f"    {_outcome(observed)}")
        if observed.status == "ran":
            lines.append(f"    locks: {_locks(observed)}")
            if observed.rewritten:
                lines.append(f"    rewrote: {', '.join(observed.rewritten)}")
        if row.expected:
            lines.append("    analysis: " + "; ".join(describe(row.expected)))
        lines += [f"    finding: {difference}" for difference in row.differences]
    held = holds(rehearsal, rows)
    if held:
        lines += ["", "in a real run, other sessions wait behind:"]
        lines += [f"  {_hold(hold)}" for hold in held]
    findings = sum(len(r.differences) for r in rows)
    lines += [
        "",
        f"{len(rows)} statements, {findings} finding{'s' * (findings != 1)}; nothing was committed",
    ]
    return "\n".join(lines) + "\n"


def _hold(hold: Hold, code: str = "") -> str:
    end = "the end of step" if hold.first_step == hold.last_step else "the COMMIT of step"
    figures = f" ({hold.figures})" if hold.figures else ""
    return (
        f"{hold.mode} on {code}{hold.relation}{code}{figures}: {hold.seconds * 1000:.1f} ms "
        f"[{hold.grade}], from its "
        f"statement in step {hold.first_step} to {end} {hold.last_step}; {hold.waits}"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(rehearsal: Rehearsal, rows: list[Compared]) -> str:
    plan = rehearsal.plan
    lines = [
        f"## Rehearsal of `{plan.name}`",
        "",
        f"Fingerprint `{plan.short_fingerprint}`. One transaction, rolled back: nothing was "
        f"committed. `lock_timeout` {rehearsal.lock_timeout}, `statement_timeout` "
        f"{rehearsal.statement_timeout}.",
        "",
        "| step | statement | outcome | locks taken | rewrote | analysis |",
        "|---:|---|---|---|---|---|",
    ]
    for row in rows:
        observed = row.observed
        analysis = "; ".join(describe(row.expected))
        if row.differences:
            analysis += " **Finding:** " + "; ".join(row.differences)
        lines.append(
            f"| {observed.step} | `{_cell(first_line(observed.text, 100))}` | {_cell(_outcome(observed))} "
            f"| {_cell(_locks(observed) if observed.status == 'ran' else '')} "
            f"| {_cell(', '.join(observed.rewritten))} | {_cell(analysis)} |"
        )
    held = holds(rehearsal, rows)
    if held:
        lines += ["", "In a real run, other sessions wait behind:", ""]
        lines += [f"- {_hold(hold, '`')}" for hold in held]
    findings = sum(len(r.differences) for r in rows)
    lines += ["", f"{len(rows)} statements, {findings} finding{'s' * (findings != 1)}."]
    return "\n".join(lines) + "\n"


def _document(rehearsal: Rehearsal, rows: list[Compared]) -> dict[str, object]:
    return {
        "version": 1,
        "plan": rehearsal.plan.name,
        "fingerprint": rehearsal.plan.fingerprint,
        "committed": False,
        "lock_timeout": rehearsal.lock_timeout,
        "statement_timeout": rehearsal.statement_timeout,
        "ok": rehearsal.ok,
        "findings": sum(len(r.differences) for r in rows),
        "holds": [
            {
                "relation": hold.relation,
                "mode": hold.mode,
                "first_step": hold.first_step,
                "last_step": hold.last_step,
                "seconds": round(hold.seconds, 6),
                "grade": hold.grade,
                "table": (
                    {
                        "rows": hold.table["rows"],
                        "bytes": hold.table["total_bytes"],
                        "writes_per_minute": hold.table["writes_per_minute"],
                    }
                    if hold.table is not None
                    else None
                ),
            }
            for hold in holds(rehearsal, rows)
        ],
        "statements": [
            {
                "step": row.observed.step,
                "sql": row.observed.text,
                "status": row.observed.status,
                "seconds": round(row.observed.seconds, 6),
                "rows": row.observed.rows,
                "locks": [
                    {"relation": r, "mode": m}
                    | ({"table": row.observed.index_of[r]} if r in row.observed.index_of else {})
                    for r, m in row.observed.locks.items()
                ],
                "rewritten": row.observed.rewritten,
                "detail": row.observed.detail or None,
                "analysis": [
                    {"relation": lock.relation, "mode": lock.mode, "rewrite": lock.rewrite}
                    for lock in row.expected
                ],
                "analysis_text": describe(row.expected),
                "differences": list(row.differences),
            }
            for row in rows
        ],
    }
