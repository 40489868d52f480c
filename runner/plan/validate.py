"""A plan file -> a validated, frozen Plan, or PlanInvalid with every problem at its position.

The pipeline: read and decode the file (source.py), compose the YAML once with positions
(document.py), validate the data against the JSON Schema (schema_errors.py), then build the
steps and check what the schema cannot say (steps.py).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
from pathlib import Path
from typing import Any

from ..errors import Diagnostic, PlanInvalid, Position
from . import schema as schema_module
from .document import Document, Map, Problem, Seq, compose, diagnostic
from .model import AnyStep, Message, Plan, ReviewSettings, Var
from .schema_errors import check_schema
from .settings import SETTINGS, duration, duration_problem, seconds
from .source import decode_plan, read_plan
from .sqlparse import closes_block, opens_block
from .steps import StepBuilder
from .values import fingerprint_json
from .vars import TYPES, VarValueError, from_yaml


def load_plan(path: str | Path) -> Plan:
    """Read, parse and validate a plan file; raise PlanInvalid with every problem found."""
    return plan_from_bytes(read_plan(path), str(path))


def plan_from_bytes(raw: bytes, display: str) -> Plan:
    """Decode, parse and validate a plan file's contents."""
    return parse_plan(decode_plan(raw, display), display)


def parse_plan(text: str, path: str) -> Plan:
    # A large plan allocates millions of objects and none of them in cycles: the cyclic garbage
    # collector would only rescan them, again and again (a third of the time of a 10 MB plan).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_plan(text, path)
    finally:
        if enabled:
            gc.enable()


def _parse_plan(text: str, path: str) -> Plan:
    diagnostics: list[Diagnostic] = []
    seen: set[Diagnostic] = set()  # so that adding stays linear in the diagnostics' number

    def add(position: Position, message: str, code: str) -> None:
        found = Diagnostic(position, message, code)
        # jsonschema raises one `required` error per missing key, each naming all of them.
        if found not in seen:
            seen.add(found)
            diagnostics.append(found)

    try:
        document = compose(text, path)
    except Problem as refused:
        raise PlanInvalid([diagnostic(text, path, refused)]) from None
    for problem in document.problems:
        add(document.position(problem.offset), problem.message, problem.code)
    schema = schema_module.load()
    bad_steps = check_schema(document, schema, add)
    plan = _build(document, schema, bad_steps, add)
    if diagnostics or plan is None:
        raise PlanInvalid(diagnostics, partial=plan)
    digest = hashlib.sha256()
    for piece in fingerprint_json(document.data):
        digest.update(piece)
    fingerprint = digest.hexdigest()
    return dataclasses.replace(plan, fingerprint=fingerprint)


def _build(
    document: Document, schema: schema_module.PlanSchema, bad_steps: set[int], add: Any
) -> Plan | None:
    """The Plan from schema-valid data; steps with schema errors are skipped (already
    reported), the others are still checked."""
    data = document.data
    root = document.root
    if not isinstance(data, dict) or not isinstance(root, Map):
        return None
    builder = StepBuilder(document, schema, add)
    declared = _vars(document, add)
    builder.var_names = tuple(var.name for var in declared)
    null_text = data.get("null_text", "NULL")
    on_connect: Message | None = None
    if isinstance(data.get("on_connect"), str):
        on_connect = builder.message(root, data, "on_connect", ())
    steps: list[AnyStep] = []
    steps_node = root.value("steps")
    raw_steps = data.get("steps")
    if isinstance(steps_node, Seq) and isinstance(raw_steps, list):
        for index, raw in enumerate(raw_steps):
            node = steps_node.child(index)
            if index in bad_steps or not isinstance(raw, dict) or not isinstance(node, Map):
                continue
            step = builder.build(index, node, raw)
            if step is not None:
                steps.append(step)
                # what a step captures, the steps after it may use
                builder.var_names = (*builder.var_names, *(c.var for c in step.captures))
    _retries_outside_blocks(steps, add)
    for setting in SETTINGS:
        if setting in data and (problem := duration_problem(duration(data[setting]))):
            add(document.position(document.offset_at([setting])), f"{setting}: {problem}", "value")
    name = data.get("name")
    description = data.get("description")
    if not isinstance(name, str) or not isinstance(null_text, str):
        return None
    return Plan(
        path=document.path,
        name=name,
        description=description if isinstance(description, str) else None,
        on_connect=on_connect,
        null_text=null_text,
        steps=tuple(steps),
        fingerprint="",  # set once the whole plan is known to be valid
        postgres=data["postgres"] if isinstance(data.get("postgres"), int) else None,
        vars=declared,
        once=data.get("once") is True,
        settings=tuple((n, duration(data[n])) for n in SETTINGS if n in data),
        review=review_settings(data.get("review")),
    )


def _vars(document: Document, add: Any) -> tuple[Var, ...]:
    """The vars the plan declares, each default read as its type."""
    raw = document.data.get("vars") if isinstance(document.data, dict) else None
    if not isinstance(raw, dict):
        return ()
    declared = []
    for name, given in raw.items():
        if not isinstance(name, str):
            continue
        spec = {"type": given} if isinstance(given, str) else given
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            continue  # the schema reports it
        key = document.key_offset_at(["vars", name])
        var = Var(
            name=name,
            type=spec["type"],
            default=None,
            env=spec.get("env") if isinstance(spec.get("env"), str) else None,
            secret=spec.get("secret") is True,
            position=document.position(key if key is not None else 0),
            description=spec.get("description")
            if isinstance(spec.get("description"), str)
            else None,
        )
        if spec["type"] not in TYPES:
            continue  # the schema reports the unknown type; its default cannot be read as one
        if "default" in spec and spec["default"] is not None:
            try:
                var = dataclasses.replace(var, default=from_yaml(var, spec["default"]))
            except VarValueError as e:
                where = document.position(document.offset_at(["vars", name, "default"]))
                add(where, f"the default of var {name!r}: {e}", "var-type")
        declared.append(var)
    return tuple(declared)


def _retries_outside_blocks(steps: list[AnyStep], add: Any) -> None:
    """A retry runs a step again from its own start: not inside a block an earlier step
    opened, whose statements before it the failure rolled back too."""
    opened_by: int | None = None
    for step in steps:
        if step.retry is not None and opened_by is not None and not step.OWN_TRANSACTIONS:
            add(
                step.retry.position,
                f"retry cannot run a step again inside the transaction block step {opened_by} "
                "opened: the failure rolls back the whole block",
                "retry-in-block",
            )
        if step.OWN_TRANSACTIONS and opened_by is not None:
            add(
                step.position,
                f"a backfill commits batch by batch, so it cannot run inside the transaction "
                f"block step {opened_by} opened: commit the block before it",
                "backfill-in-block",
            )
        for statement in step.statements:
            if opens_block(statement) and opened_by is None:
                opened_by = step.number
            elif closes_block(statement):
                opened_by = None


def review_settings(raw: object) -> ReviewSettings:
    """A schema-valid `review:` mapping (a plan's, or a review config file's) as settings."""
    if not isinstance(raw, dict):
        return ReviewSettings()
    number = (int, float)

    def of(key: str, kind: tuple[type, ...]) -> Any:
        value = raw.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return ReviewSettings(
        compat=raw["compat"] if isinstance(raw.get("compat"), bool) else None,
        small=seconds(duration(raw["small"])) if "small" in raw else None,
        large=seconds(duration(raw["large"])) if "large" in raw else None,
        busy=of("busy", (int,)),
        rewrite_rate=of("rewrite_rate", number),
        scan_rate=of("scan_rate", number),
    )
