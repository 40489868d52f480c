"""`sqlplan status --targets`: a matrix of targets by plans, from each target's own
sqlplan.history, read at most `parallel` at a time; nothing is changed.

A cell: applied (succeeded, this fingerprint), changed (succeeded with another), in doubt (a
run claimed it and never said how it ended), failed (its last run failed; never applied),
missing (never run there), or "-" for a plan that is not `once` (nothing records it). A target
that cannot be read has its error instead of cells."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import SqlPlanError
from ..plan.model import Plan
from .targets import FleetTarget

CELLS = ("applied", "changed", "in doubt", "failed", "missing")


@dataclass
class TargetHistory:
    target: FleetTarget
    cells: dict[str, str] = field(default_factory=dict)  # plan name -> cell
    error: str | None = None


def read_fleet(
    plans: Sequence[Plan],
    targets: Sequence[FleetTarget],
    *,
    parallel: int = 4,
    connect_retries: int = 1,
    connect_timeout: float | None = None,
) -> list[TargetHistory]:
    """Each target's cells, in the targets' order."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda t: _one(plans, t, connect_retries, connect_timeout), targets))


def _one(
    plans: Sequence[Plan], target: FleetTarget, retries: int, timeout: float | None
) -> TargetHistory:
    from ..connect.connection import RetryPolicy, close, connect
    from ..connect.target import parse_target
    from ..run import history, wire

    found = TargetHistory(target)
    try:
        pg = parse_target(target.url, source=f"target {target.name}", environ=os.environ)
        con = connect(pg, RetryPolicy(retries, timeout))
    except SqlPlanError as e:
        found.error = e.message
        return found
    names = [plan.name for plan in plans if plan.once]
    try:
        entries = history.read(con, names, ("succeeded", "running", "failed"))
    except (wire.ServerFailure, wire.ConnectionLost) as e:
        found.error = f"reading sqlplan.history failed: {wire.reason(e)}"
        return found
    finally:
        close(con)
    for plan in plans:
        found.cells[plan.name] = _cell(plan, entries.get(plan.name, [])) if plan.once else "-"
    return found


def _cell(plan: Plan, entries: Sequence[object]) -> str:
    succeeded = [e for e in entries if getattr(e, "outcome", None) == "succeeded"]
    if succeeded:
        return (
            "applied"
            if getattr(succeeded[-1], "fingerprint", None) == plan.fingerprint
            else "changed"
        )
    if any(getattr(e, "outcome", None) == "running" for e in entries):
        return "in doubt"
    if entries:
        return "failed"
    return "missing"


def counts(rows: Sequence[TargetHistory]) -> dict[str, int]:
    found = dict.fromkeys((*CELLS, "unreadable"), 0)
    for row in rows:
        if row.error is not None:
            found["unreadable"] += 1
        for cell in row.cells.values():
            if cell in found:
                found[cell] += 1
    return found


def text(plans: Sequence[Plan], rows: Sequence[TargetHistory]) -> str:
    """A column per plan, a row per target; the counts under it."""
    names = [plan.name for plan in plans]
    first = max([len("target"), *(len(r.target.name) for r in rows)])
    widths = [max(len(n), len("in doubt")) for n in names]
    lines = [
        "  ".join(
            ["target".ljust(first), *(n.ljust(w) for n, w in zip(names, widths, strict=True))]
        ).rstrip()
    ]
    for row in rows:
        if row.error is not None:
            lines.append(f"{row.target.name.ljust(first)}  unreadable: {row.error}")
            continue
        cells = (row.cells.get(n, "").ljust(w) for n, w in zip(names, widths, strict=True))
        lines.append("  ".join([row.target.name.ljust(first), *cells]).rstrip())
    totals = ", ".join(f"{n} {k}" for k, n in counts(rows).items() if n)
    lines.append(f"{len(rows)} targets x {len(names)} plans: {totals or 'nothing'}")
    return "\n".join(lines) + "\n"


def markdown(plans: Sequence[Plan], rows: Sequence[TargetHistory]) -> str:
    names = [plan.name for plan in plans]
    totals = counts(rows)
    lines = [
        f"### sqlplan status: {len(rows)} targets x {len(names)} plans",
        "",
        ", ".join(f"{k}: {n}" for k, n in totals.items() if n) or "nothing",
        "",
        "| target | " + " | ".join(f"`{n}`" for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for row in rows:
        if row.error is not None:
            cells = [f"unreadable: {row.error}".replace("|", "\\|")] + [""] * (len(names) - 1)
        else:
            cells = [row.cells.get(n, "") for n in names]
        lines.append(f"| `{row.target.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def document(plans: Sequence[Plan], rows: Sequence[TargetHistory]) -> dict[str, object]:
    return {
        "version": 1,
        "plans": [],
        "counts": counts(rows),
        "targets": [
            {
                "name": row.target.name,
                "url": row.target.display,
                "error": row.error,
                "plans": [
                    {"name": p.name, "path": p.path, "status": row.cells.get(p.name)} for p in plans
                ],
            }
            for row in rows
        ],
    }
