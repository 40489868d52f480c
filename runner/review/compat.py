"""The compatibility rules (opt-in, `review: {compat: true}`): schema changes that break the
application code still running against the old schema while a deploy rolls out: a dropped or
renamed column or table, a narrowed type, a NOT NULL that inserts without the column fail on.
Tables and columns the plan itself created are exempt: no running code knows them yet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..plan.model import AnyStep, Plan
from ..plan.sqlparse import Statement
from .modes import object_names

COMPAT_CODES = (
    "compat-drop-column",
    "compat-rename-column",
    "compat-drop-table",
    "compat-rename-table",
    "compat-narrow-type",
    "compat-not-null",
)

_DROPPED = {"OBJECT_TABLE": "table", "OBJECT_VIEW": "view", "OBJECT_MATVIEW": "materialized view"}
# Types a column may be narrowed to: fewer bytes or digits than a column could have now.
_NARROW = {"int2": "smallint", "int4": "integer", "float4": "real"}
_LIMITED = {"varchar": "varchar", "bpchar": "char", "numeric": "numeric", "varbit": "varbit"}


def findings(
    plan: Plan, before: frozenset[str] = frozenset()
) -> Iterator[tuple[AnyStep, Statement, str, str]]:
    """(step, statement, code, message) for each compatibility break, in plan order; `before`
    are tables new plans before it created."""
    created: set[str] = set(before)  # tables the plan (or a new one before it) created
    added: set[tuple[str, str]] = set()  # (table, column) the plan added
    for step in plan.steps:
        for statement in step.statements:
            node = statement.node
            for code, message in _breaks(statement.kind, node, created, added):
                yield step, statement, code, message
            _learn(statement.kind, node, created, added)


def _breaks(
    kind: str, node: dict[str, Any], created: set[str], added: set[tuple[str, str]]
) -> Iterator[tuple[str, str]]:
    if kind == "DropStmt" and node.get("removeType") in _DROPPED:
        what = _DROPPED[node["removeType"]]
        for name in object_names(node.get("objects", [])):
            if name.rsplit(".", 1)[-1] not in created:
                yield (
                    "compat-drop-table",
                    f"DROP {what.upper()} {name}: running code that reads or writes {name} "
                    f"fails (relation does not exist) until it is deployed without it",
                )
        return
    if kind == "RenameStmt":
        table = _relation(node)
        if table is None or table in created:
            return
        if node.get("renameType") == "OBJECT_COLUMN" and (table, node.get("subname")) not in added:
            yield (
                "compat-rename-column",
                f"RENAME COLUMN {node.get('subname')} TO {node.get('newname')} on {table}: running "
                f"code that names {node.get('subname')} fails (column does not exist)",
            )
        elif node.get("renameType") in ("OBJECT_TABLE", "OBJECT_VIEW"):
            yield (
                "compat-rename-table",
                f"RENAME {table} TO {node.get('newname')}: running code that reads or writes "
                f"{table} fails (relation does not exist)",
            )
        return
    if kind != "AlterTableStmt":
        return
    table = _relation(node)
    if table is None or table in created:
        return
    for item in node.get("cmds", []):
        cmd = item.get("AlterTableCmd", {})
        subtype, column = cmd.get("subtype"), cmd.get("name")
        if (table, column) in added:
            continue
        if subtype == "AT_DropColumn":
            yield (
                "compat-drop-column",
                f"DROP COLUMN {column} on {table}: running code that selects, inserts or "
                f"updates {column} fails (column does not exist), and SELECT * changes shape",
            )
        elif subtype == "AT_AlterColumnType":
            narrow = _narrow(cmd.get("def", {}).get("ColumnDef", {}).get("typeName", {}))
            if narrow:
                yield (
                    "compat-narrow-type",
                    f"ALTER COLUMN {column} TYPE {narrow} on {table}: if the column is wider now, "
                    "running code that writes a value the old type took and the new one does "
                    "not fails (out of range, or too long)",
                )
        elif subtype == "AT_SetNotNull" and (table, f"{column} default") not in added:
            yield (
                "compat-not-null",
                f"SET NOT NULL on {table}.{column}: running code that inserts a row without "
                f"{column}, or sets it to NULL, fails (unless the column has a default)",
            )
        elif subtype == "AT_AddColumn":
            definition = cmd.get("def", {}).get("ColumnDef", {})
            kinds = {
                c.get("Constraint", {}).get("contype") for c in definition.get("constraints", [])
            }
            if "CONSTR_NOTNULL" in kinds and not kinds & {
                "CONSTR_DEFAULT",
                "CONSTR_IDENTITY",
                "CONSTR_GENERATED",
            }:
                name = definition.get("colname")
                yield (
                    "compat-not-null",
                    f"ADD COLUMN {name} NOT NULL without a DEFAULT on {table}: running code that "
                    f"inserts rows without {name} fails (null value violates not-null), and the "
                    "statement itself fails if the table has rows",
                )


def _learn(kind: str, node: dict[str, Any], created: set[str], added: set[tuple[str, str]]) -> None:
    if kind == "CreateStmt":
        name = _relation(node)
        if name:
            created.add(name)
    elif kind == "CreateTableAsStmt":
        rel = node.get("into", {}).get("rel", {})
        if rel.get("relname"):
            created.add(rel["relname"])
    elif kind == "AlterTableStmt":
        table = _relation(node)
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_AddColumn" and table:
                added.add((table, cmd.get("def", {}).get("ColumnDef", {}).get("colname")))
            elif cmd.get("subtype") == "AT_ColumnDefault" and table and cmd.get("def"):
                added.add((table, f"{cmd.get('name')} default"))  # inserts without it go on
    elif kind == "RenameStmt" and node.get("renameType") == "OBJECT_TABLE":
        table = _relation(node)
        if table in created and node.get("newname"):
            created.add(node["newname"])


def _relation(node: dict[str, Any]) -> str | None:
    relation = node.get("relation") or {}
    name = relation.get("relname")
    return name if isinstance(name, str) else None


def _narrow(type_name: dict[str, Any]) -> str:
    """The new type, when it is one a wider column could not fit in ('' when it is not)."""
    names = [n.get("String", {}).get("sval", "") for n in type_name.get("names", [])]
    base = names[-1] if names else ""
    modifiers = [
        str(m.get("A_Const", {}).get("ival", {}).get("ival", ""))
        for m in type_name.get("typmods", [])
    ]
    if base in _NARROW:
        return _NARROW[base]
    if base in _LIMITED and modifiers:
        return f"{_LIMITED[base]}({', '.join(modifiers)})"
    return ""
