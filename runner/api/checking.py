"""Checking plans without a database, as `sqlplan check` does."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Diagnostic, ExitCode, PlanInvalid, Position, internal_error
from ..plan.model import ReviewSettings
from .loading import plan_files

if TYPE_CHECKING:
    from ..plan.model import Plan


@dataclass
class CheckResult:
    """What `check` found in `files`: every diagnostic, errors and warnings, sorted by file."""

    files: list[str]
    diagnostics: list[Diagnostic]
    strict: bool = False
    # each file's plan as validated (of an invalid file, its valid steps), for the reports
    plans: dict[str, Plan] = field(default_factory=dict)
    # with changed_since: the plans changed, and the earlier ones they stand on
    changed: list[str] | None = None
    needed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == "warning" for d in self.diagnostics)

    @property
    def notes(self) -> int:
        """Findings graded small by --stats: reported, never failing."""
        return sum(d.severity == "note" for d in self.diagnostics)

    @property
    def exit_code(self) -> ExitCode:
        """1 when there are errors, or with `strict` warnings; else 0."""
        failed = self.errors or (self.strict and self.warnings)
        return ExitCode.STEP_FAILED if failed else ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


def check(
    paths: Sequence[str | os.PathLike[str]] = ("plans",),
    *,
    strict: bool = False,
    pooler: bool | None = None,
    pg_version: int | None = None,
    changed_since: str | None = None,
    stats: Mapping[str, Any] | None = None,
    review: ReviewSettings | None = None,
) -> CheckResult:
    """Check plans without connecting, as `sqlplan check` does: everything a run validates,
    and the review's warnings (data loss, locks and rewrites, what a pooler breaks when
    `pooler`, by default when DATABASE_URL names one). A file with errors still gets the
    warnings of its valid steps. With `changed_since` (a git ref), only the plans changed since
    the branch left it, and the earlier plans of the run that define what they use. With
    `stats` (a `sqlplan stats` document), lock and rewrite findings graded by their table's
    size and writes; `review` is the config file's settings, under each plan's own.
    UsageError when `paths` hold no plan."""
    from ..plan.cache import load_plan
    from ..plan.loading import once_name_clashes
    from ..review.warnings import created_tables, warnings

    files = every = plan_files(paths)  # what a run would run, no more, no less
    selection = None
    if changed_since is not None:
        from .changed import select

        selection = select(files, changed_since)
        files = selection.files
    if pooler is None:
        from ..connect.where import configured_pooler

        pooler = configured_pooler()
    found: list[Diagnostic] = []
    valid = []
    plans: dict[str, Plan] = {}
    config = review or ReviewSettings()

    # Tables that plans new in this change create: no one uses them yet, in the plans after
    fresh: set[str] = set()
    added = set(selection.added) if selection is not None else set()

    def reviewed(plan: Plan) -> list[Diagnostic]:
        compat = plan.review.over(config).compat is True
        created = frozenset(fresh)
        if plan.path in added:
            fresh.update(created_tables(plan))
        return warnings(plan, pg_version, pooler=pooler, compat=compat, created=created)

    for file in files:
        try:
            plan = load_plan(file)
            valid.append(plan)
            plans[file] = plan
            found.extend(reviewed(plan))
        except PlanInvalid as e:
            found.extend(e.diagnostics)
            if e.partial is not None:  # the steps that are valid still get their warnings
                plans[file] = e.partial
                found.extend(reviewed(e.partial))
        except Exception as e:  # a bug: this file says so, the others keep their reports
            found.append(Diagnostic(Position(file, 1, 1), internal_error(e), "internal"))
    if selection is not None:  # a changed plan may take the name of one that did not change
        mine = {plan.path: plan for plan in valid}
        every_plan = (mine.get(f) or _valid_or_none(f) for f in every)
        valid = [plan for plan in every_plan if plan is not None]
    clashes = once_name_clashes(valid)  # as a run would refuse them, given these plans
    found.extend(
        d
        for d in clashes
        if d.position.path in files or any(f"the name of {f}:" in d.message for f in files)
    )
    if stats is not None:
        from ..review.grades import Stats, graded

        settings = {file: plan.review.over(config) for file, plan in plans.items()}
        found = graded(found, Stats(stats), settings)
    if selection is None:
        return CheckResult(files, found, strict, plans)
    return CheckResult(files, found, strict, plans, selection.changed, selection.needed)


def _valid_or_none(file: str) -> Plan | None:
    from ..plan.cache import load_plan

    try:
        return load_plan(file)
    except PlanInvalid:
        return None


CONFIG = "sqlplan-review.yaml"


def review_config(path: str | None = None) -> ReviewSettings | None:
    """The review config file's settings: `path`, else sqlplan-review.yaml in the current
    directory if there is one. ConfigError (exit 4) when it is not valid."""
    import json

    import jsonschema
    import yaml

    from ..plan import schema as schema_module
    from ..plan.validate import review_settings

    if path is None:
        if not os.path.isfile(CONFIG):
            return None
        path = CONFIG
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"review config {path}: {e}") from None
    document = json.loads(schema_module.schema_text())
    review = dict(document["$defs"]["review"])
    review["$defs"] = document["$defs"]
    validator = jsonschema.Draft202012Validator(review)
    errors = sorted(validator.iter_errors(data if data is not None else {}), key=str)
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "the file"
        raise ConfigError(f"review config {path}: {where}: {errors[0].message}")
    return review_settings(data)


def stats_document(path: str) -> dict[str, Any]:
    """A `sqlplan stats` document read from `path`; ConfigError (exit 4) when it is not one."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        if not isinstance(document, dict) or document.get("version") != 1:
            raise ValueError("not a `sqlplan stats` document (version 1)")
        for table in document["tables"]:
            for key in (
                "schema",
                "name",
                "rows",
                "bytes",
                "total_bytes",
                "indexes",
                "writes_per_minute",
            ):
                if key not in table:
                    raise ValueError(f"a table without {key!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--stats {path}: {e}") from None
    return document
