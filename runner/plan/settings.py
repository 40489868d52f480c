"""Durations and the settings a plan or step sets with SET LOCAL (lock_timeout,
statement_timeout): read, checked against what PostgreSQL takes, and put in force per step.
Light on imports: the run side reads it at every start."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from . import sqlparse
from .model import Plan

SETTINGS = ("lock_timeout", "statement_timeout")  # what a plan or a step may SET LOCAL
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration(value: object) -> str:
    """A schema-valid duration as PostgreSQL reads it: a bare integer is milliseconds."""
    return f"{value}ms" if type(value) is int else str(value)


MAX_MS = 2**31 - 1  # the largest lock_timeout and statement_timeout PostgreSQL takes


def duration_problem(text: str) -> str | None:
    """Why PostgreSQL would refuse a (well-formed) duration as a timeout, if it would."""
    if seconds(text) * 1000 > MAX_MS + 0.5:
        return f"{text} is longer than PostgreSQL allows for a timeout (at most {MAX_MS}ms, about 24 days)"
    return None


def seconds(text: str) -> float:
    """A duration's length in seconds."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|min|h|d)?", text)
    if match is None:
        return 1.0
    return float(match.group(1)) * _UNITS[match.group(2) or "ms"]


def in_force(plan: Plan, overrides: Mapping[str, str]) -> Plan:
    """The plan with each step's settings those in force for it: its own, else `overrides`
    (--lock-timeout, ...), else the plan's; none for a step that cannot run in a block."""
    base = {**dict(plan.settings), **overrides}
    if not base:
        return plan
    order = {name: index for index, name in enumerate(SETTINGS)}
    steps = tuple(
        dataclasses.replace(
            s,
            settings=tuple(
                sorted({**base, **dict(s.settings)}.items(), key=lambda item: order[item[0]])
            ),
        )
        if sqlparse.runs_in_a_block(s.statements)
        else s
        for s in plan.steps
    )
    return dataclasses.replace(plan, steps=steps)
