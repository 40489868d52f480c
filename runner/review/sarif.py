"""SARIF 2.1.0, the format code scanning reads: `check`'s diagnostics and a rehearsal's findings
as results with their rules, positions and fingerprints that survive lines moving."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import __version__
from ..errors import Diagnostic, Position
from .rehearsal import compare, holds
from .rules import ERROR_RULES, REHEARSAL_RULES, WARNING_RULES, Rule, docs_url, plain, rule

if TYPE_CHECKING:
    from ..run.rehearse import Rehearsal

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT = "sqlplan/v1"
CHECK_RULES = (*WARNING_RULES, *ERROR_RULES)


def check_document(diagnostics: Iterable[Diagnostic]) -> dict[str, Any]:
    return _log(CHECK_RULES, sorted(diagnostics, key=Diagnostic.sort_key))


def rehearsal_document(rehearsal: Rehearsal, version: int | None = None) -> dict[str, Any]:
    """A rehearsal's findings: statements that failed or would wait (errors), locks that differ
    from the analysis (warnings), and the locks others would wait behind, with how long (notes)."""
    plan = rehearsal.plan
    rows = compare(rehearsal, version)
    held = holds(rehearsal, rows)
    found: list[Diagnostic] = []
    for row in rows:
        observed = row.observed
        step = plan.steps[observed.step - 1]
        where = step.sql.locate(observed.offset)
        if observed.status == "failed":
            found.append(
                _at(
                    where,
                    f"{step.label}: failed: {observed.detail}",
                    "statement-failed",
                    observed.text,
                )
            )
        elif observed.status == "would wait":
            found.append(
                _at(where, f"{step.label}: {observed.detail}", "would-wait", observed.text)
            )
        found += [
            _at(where, f"{step.label}: {difference}", "lock-differs", observed.text)
            for difference in row.differences
        ]
    for hold in held:
        step = plan.steps[hold.first_step - 1]
        end = "the end of step" if hold.first_step == hold.last_step else "the COMMIT of step"
        found.append(
            _at(
                step.position,
                f"{step.label}: {hold.mode} on {hold.relation} held for "
                f"{hold.seconds * 1000:.1f} ms in the rehearsal [{hold.grade}"
                + (f": {hold.figures}" if hold.figures else "")
                + f"], until {end} {hold.last_step}; {hold.waits}",
                "blocks-others",
                f"{hold.mode} {hold.relation}",
                _HOLD_LEVELS[hold.grade],
            )
        )
    return _log(REHEARSAL_RULES, found)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


_HOLD_LEVELS = {"small": "note", "medium": "warning", "large": "error"}


def _at(
    position: Position, message: str, code: str, context: str, severity: str = ""
) -> Diagnostic:
    return Diagnostic(position, message, code, severity or rule(code).severity, context=context)


def _log(rules: Sequence[Rule], found: Sequence[Diagnostic]) -> dict[str, Any]:
    listed = list(rules) + [
        rule(code)
        for code in dict.fromkeys(d.code for d in found)
        if code not in {r.code for r in rules}
    ]
    index = {r.code: i for i, r in enumerate(listed)}
    seen: Counter[str] = Counter()
    results = []
    for diagnostic in found:
        key = _fingerprint_key(diagnostic)
        seen[key] += 1  # the same finding twice in a file: each keeps its own
        digest = hashlib.sha256(f"{key}\0{seen[key]}".encode()).hexdigest()[:32]
        results.append(
            {
                "ruleId": diagnostic.code,
                "ruleIndex": index[diagnostic.code],
                "level": _LEVELS[diagnostic.severity],
                "message": {"text": diagnostic.message},
                "locations": [_location(diagnostic.position)],
                "partialFingerprints": {FINGERPRINT: digest},
            }
        )
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "sqlplan",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": docs_url(),
                        "rules": [_descriptor(r) for r in listed],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "originalUriBaseIds": {"SRCROOT": {"uri": Path.cwd().as_uri() + "/"}},
                "results": results,
            }
        ],
    }


_LEVELS = {"error": "error", "warning": "warning", "note": "note"}


def _descriptor(r: Rule) -> dict[str, Any]:
    text = r.title + (f". Instead: {plain(r.safer)}." if r.safer else ".")
    markdown = f"**{r.title}**" + (f"\n\nInstead: {r.safer}." if r.safer else "")
    markdown += f"\n\n[Documentation]({r.help_uri()})"
    return {
        "id": r.code,
        "name": r.name,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": text},
        "help": {"text": f"{text} See {r.help_uri()}", "markdown": markdown},
        "helpUri": r.help_uri(),
        "defaultConfiguration": {"level": _LEVELS[r.severity]},
        "properties": {"tags": [_tag(r)]},
    }


def _tag(r: Rule) -> str:
    if r in REHEARSAL_RULES:
        return "rehearsal"
    if r.code.startswith("pooler-"):
        return "pooler"
    if "locks-and-rewrites" in r.page:
        return "locks"
    return "data-loss" if r in WARNING_RULES else "validation"


def _location(position: Position) -> dict[str, Any]:
    path = Path(position.path)
    if path.is_absolute():
        artifact: dict[str, str] = {"uri": path.as_uri()}
    else:
        artifact = {"uri": quote(PurePosixPath(*path.parts).as_posix()), "uriBaseId": "SRCROOT"}
    return {
        "physicalLocation": {
            "artifactLocation": artifact,
            "region": {"startLine": position.line, "startColumn": position.column},
        }
    }


_STEP_NUMBER = re.compile(r"\bstep \d+\b")


def _fingerprint_key(d: Diagnostic) -> str:
    """What identifies a finding across pushes: its file, rule and subject, not its line nor
    its step's number (a step inserted above shifts both)."""
    subject = " ".join(d.context.split()) if d.context else _STEP_NUMBER.sub("step", d.message)
    return f"{d.position.path}\0{d.code}\0{subject}"
