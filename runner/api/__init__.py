"""sqlplan as a library: load plans, check them, run or rehearse them, read what happened.

    import sqlplan

    result = sqlplan.run_plans(["plans/create_table.yaml"], database_url=url)
    if not result.ok:
        print(result.exit_code, result.error or [p.failure for p in result.plans])

Every function takes what the `sqlplan` command's options say, as Python values, and the
command is a thin layer over them: the same validation, the same run, the same result, which
every report (text, json, github, junit, summary) renders. What happened is returned, never
raised: a failing step, invalid plans, a refused connection are on the result, with the exit
code the command would give. `load_plans` raises PlanInvalid, as a loader does, and every call
raises UsageError when its paths hold no plan file.
"""

from __future__ import annotations

from ..events import Events
from ..report import PlanResult, RunResult
from .checking import CheckResult, check
from .fleet import fleet_status, fleet_targets, run_fleet, run_fleet_loaded
from .history import history_status
from .loading import LoadedPlan, load_plans, plan_files
from .reviewing import NotRehearsable, rehearse
from .running import run_loaded, run_plans
from .stats import table_stats

__all__ = [
    "CheckResult",
    "Events",
    "LoadedPlan",
    "NotRehearsable",
    "PlanResult",
    "RunResult",
    "check",
    "fleet_status",
    "fleet_targets",
    "history_status",
    "load_plans",
    "plan_files",
    "rehearse",
    "run_fleet",
    "run_fleet_loaded",
    "run_loaded",
    "run_plans",
    "table_stats",
]
