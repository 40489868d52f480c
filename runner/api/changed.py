"""Only what changed: the plans a branch changed since a git ref (a plan whose file or whose
rows_from data changed), and the earlier plans of the same ordered run that define what they
use, so that a pull request's check reads only its own plans and what they stand on."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PlanInvalid, UsageError

if TYPE_CHECKING:
    from ..plan.model import Plan

# Statements that only read or write rows: a plan of these alone defines nothing others use.
_DATA = frozenset(
    {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt",
     "TransactionStmt", "VariableSetStmt", "ExplainStmt", "CallStmt", "DoStmt"}
)  # fmt: skip


@dataclass(frozen=True)
class Selection:
    changed: list[str]  # plan files changed since the ref, in run order
    needed: list[str]  # earlier plans the changed ones stand on, in run order
    files: list[str]  # both, in run order: what to check
    added: list[str]  # the changed plan files that are new: never applied anywhere


def changed_paths(ref: str, cwd: str | None = None) -> tuple[set[Path], set[Path]]:
    """Every file that differs from where the branch left `ref` (their merge base): committed,
    staged, unstaged or untracked; and of those, the files that are new. Resolved paths.
    UsageError when git cannot say."""
    cwd = cwd or os.getcwd()
    top = _git(["rev-parse", "--show-toplevel"], cwd).strip()
    base = _git(["merge-base", ref, "HEAD"], cwd).strip()
    listed = _git(["diff", "--name-only", "-z", "--no-renames", base, "--"], cwd)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], top)
    new = _git(["diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", base, "--"], cwd)

    def paths(text: str) -> set[Path]:
        return {(Path(top) / name).resolve() for name in text.split("\0") if name}

    return paths(listed + untracked), paths(new + untracked)


def _git(args: list[str], cwd: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"--changed-since needs git: {e}") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise UsageError(f"--changed-since: git {' '.join(args[:2])}: {said}")
    return done.stdout


def select(files: Sequence[str], ref: str, cwd: str | None = None) -> Selection:
    """Of `files` (a run's plans, in order), those changed since `ref`, and the earlier ones
    that create or alter a relation a changed plan names."""
    from ..plan.cache import load_plan

    changed_set, new_set = changed_paths(ref, cwd)
    plans: dict[str, Plan | None] = {}
    for file in files:
        try:
            plans[file] = load_plan(file)
        except PlanInvalid as e:
            plans[file] = e.partial
    changed = [f for f in files if _changed(f, plans[f], changed_set)]
    needed: list[str] = []
    for index, file in enumerate(files):
        if file not in changed:
            continue
        wanted = _named(plans[file])
        for earlier in files[:index]:
            if (
                earlier not in changed
                and earlier not in needed
                and wanted & _defined(plans[earlier])
            ):
                needed.append(earlier)
    chosen = set(changed) | set(needed)
    added = [f for f in changed if Path(f).resolve() in new_set]
    return Selection(
        changed, [f for f in files if f in needed], [f for f in files if f in chosen], added
    )


def _changed(file: str, plan: Plan | None, changed: set[Path]) -> bool:
    if Path(file).resolve() in changed:
        return True
    for step in plan.steps if plan is not None else ():
        source = getattr(step, "source", None)
        if source is None:
            continue
        if source.base is None:
            if source.path.resolve() in changed:
                return True
        else:  # named with vars: any file the name can become
            pattern = str((source.base / re.sub(r"\{[^}]*\}", "*", source.display)).resolve())
            if any(fnmatch.fnmatch(str(path), pattern) for path in changed):
                return True
    return False


def _named(plan: Plan | None) -> set[str]:
    """The relations a plan's statements name: what it uses."""
    steps = plan.steps if plan is not None else ()
    return {
        name
        for step in steps
        for statement in step.statements
        for name in _relations(statement.node)
    }


def _defined(plan: Plan | None) -> set[str]:
    """The relations a plan's DDL creates, alters or drops."""
    steps = plan.steps if plan is not None else ()
    return {
        name
        for step in steps
        for statement in step.statements
        if statement.kind not in _DATA
        for name in _relations(statement.node)
    }


def _relations(node: object) -> Iterator[str]:
    """Every relation a parse tree names: its range variables, an index's name, what a DROP
    drops."""
    if isinstance(node, dict):
        if isinstance(node.get("relname"), str):
            yield node["relname"]
        if isinstance(node.get("idxname"), str):
            yield node["idxname"]
        if "removeType" in node:
            for item in node.get("objects", []):
                parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
                if parts and isinstance(parts[-1], dict) and "String" in parts[-1]:
                    yield parts[-1]["String"].get("sval", "")
        for value in node.values():
            yield from _relations(value)
    elif isinstance(node, list):
        for value in node:
            yield from _relations(value)
