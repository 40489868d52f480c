"""Loading plans: the files paths name, validated, their vars bound."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UsageError

if TYPE_CHECKING:
    from ..plan.model import Plan


class LoadedPlan(NamedTuple):
    """A valid plan with its vars bound, and the vars' values (bind parameters at run time)."""

    plan: Plan
    values: dict[str, object]


def plan_files(paths: Sequence[str | os.PathLike[str]], cwd: str | None = None) -> list[str]:
    """The plan files `paths` name: files as given, a directory's *.yaml and *.yml files in
    name order. UsageError (exit 2) when there are none."""
    from ..connect.early import plan_files as files_of

    named = [os.fspath(p) for p in paths]
    files = files_of(named, cwd or os.getcwd())
    if not files:
        raise UsageError(f"no plan files (*.yaml, *.yml) in {', '.join(named)}")
    return files


Vars = Mapping[str, object] | Sequence[str]


def _assignments(vars: Vars | None) -> tuple[str, ...]:
    """{name: value} as the command's --var name=value (a name never holds '='); strings are
    taken as they are, the last one of a name winning."""
    if vars is None:
        return ()
    if not isinstance(vars, Mapping):
        if isinstance(vars, str):
            raise TypeError("vars: a mapping of names to values, or a list of 'name=value'")
        return tuple(vars)
    found = []
    for name, value in vars.items():
        if "=" in name:
            raise ValueError(f"a var's name cannot hold '=': {name!r}")
        found.append(f"{name}={value}")
    return tuple(found)


def load_plans(
    paths: Sequence[str | os.PathLike[str]],
    *,
    vars: Vars | None = None,
    vars_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[LoadedPlan]:
    """Every plan `paths` name, validated (schema, PostgreSQL's parser, the plan's own rules)
    and its vars bound: from `vars` ({name: value}, or "name=value" strings), else `vars_files` (the last that has it), else the
    environment variable the var names (`environ`, default os.environ), else its default.
    PlanInvalid with every problem of every plan; UsageError when `paths` hold no plan."""
    from ..plan.loading import load_all

    files = plan_files(paths)
    loaded = load_all(files, _assignments(vars), tuple(vars_files), environ)
    return [LoadedPlan(plan, values) for plan, values in loaded]
