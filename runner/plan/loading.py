"""Plans loaded together, as `run` loads them: every plan validated (through the cache), `once`
names unique among them, and each plan's vars bound from --var, --vars files and the
environment; every problem of every plan at once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from .. import secrets
from ..errors import Diagnostic, PlanInvalid, Position
from . import cache
from .model import Plan
from .vars import bind, gather, secret_texts


def bind_vars(
    plan: Any,
    var: tuple[str, ...],
    vars_files: tuple[str, ...],
    *,
    required: bool = True,
    others: frozenset[str] | set[str] = frozenset(),
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, dict[str, object]]:
    """The plan with its vars' values bound, and the values (captures are bound as the plan
    runs); PlanInvalid (exit 3) when one is missing or wrong. `environ`: os.environ unless
    given."""
    if not plan.vars and not var and not vars_files and not any(s.uses for s in plan.steps):
        return plan, {}
    environ = os.environ if environ is None else environ
    values = gather(plan, var, vars_files, environ, required=required, others=others)
    secrets.use(secret_texts(values))  # the server's text is masked from here on
    return bind(plan, values), values


def load_all(
    files: list[str],
    var: tuple[str, ...],
    vars_files: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> list[tuple[Any, dict[str, object]]]:
    """Every plan validated and its vars bound; PlanInvalid with every problem of every plan."""
    problems: list[Diagnostic] = []
    loaded = []
    for file in files:
        try:
            loaded.append(cache.load_plan(file))
        except PlanInvalid as e:
            problems.extend(e.diagnostics)
    if problems:
        raise PlanInvalid(problems)
    declared = {v.name for plan in loaded for v in plan.vars}
    problems.extend(once_name_clashes(loaded))
    plans = []
    for plan in loaded:
        try:
            plans.append(
                bind_vars(
                    plan,
                    var,
                    vars_files,
                    others=declared - {v.name for v in plan.vars},
                    environ=environ,
                )
            )
        except PlanInvalid as e:
            problems.extend(e.diagnostics)
    if problems:
        raise PlanInvalid(problems)
    return plans


def once_name_clashes(plans: Iterable[Plan]) -> list[Diagnostic]:
    """`once` plans of one name in one run: the history knows a plan by its name, so each
    needs its own (run refuses them; check reports them)."""
    first: dict[str, str] = {}
    found = []
    for plan in plans:
        if plan.once and first.setdefault(plan.name, plan.path) != plan.path:
            found.append(
                Diagnostic(
                    Position(plan.path, 1, 1),
                    f"plan name {plan.name!r} is also the name of {first[plan.name]}: the "
                    "history knows a `once` plan by its name, so each needs its own",
                    "once-name",
                )
            )
    return found
