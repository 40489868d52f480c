"""sqlplan: declarative, YAML-driven SQL plans for PostgreSQL.

The library API (runner/api/; `import sqlplan` gives the same names) is loaded on first
use, so that the command starts without it."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "CheckResult",
    "Events",
    "LoadedPlan",
    "NotRehearsable",
    "PlanResult",
    "RunResult",
    "check",
    "history_status",
    "load_plans",
    "plan_files",
    "rehearse",
    "run_loaded",
    "run_plans",
)


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
