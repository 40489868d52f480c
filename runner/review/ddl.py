"""How each DDL statement changes the catalogue a plan builds for itself (learned.py): CREATE
TABLE (partitions, constraints, foreign keys), CREATE INDEX, views, ALTER TABLE, renames and
drops, read from PostgreSQL's parse tree; and the parse-tree readers they share."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..plan.sqlparse import Statement, nodes
from .learned import ForeignKey, LearnedCatalog
from .names import index_columns, name_addition, unique_names


def learn(c: LearnedCatalog, statement: Statement) -> None:
    """Follow what `statement` does to the catalogue `c` (after it has run)."""
    handler = _LEARNERS.get(statement.kind)
    if handler is not None:
        handler(c, statement.node)
    elif statement.kind in _FORGETS_ALL:
        c.own.clear()  # code that may create or change anything


def _create_table(c: LearnedCatalog, node: dict[str, Any]) -> None:
    table = _name(node.get("relation", {}))
    c.names.add(table)
    c.tables.add(table)
    if not node.get("if_not_exists"):  # IF NOT EXISTS may find a table from outside
        c.own.add(table)
    parents = [_name(p.get("RangeVar", {})) for p in node.get("inhRelations", [])]
    partbound = node.get("partbound")
    if partbound is not None and parents:
        parent = parents[0]
        c.partitions.setdefault(parent, []).append(table)
        c.bounds[table] = bound_key(partbound)
        if partbound.get("is_default"):
            c.default[parent] = table
        if parent not in c.own:
            c.own.discard(table)  # the parent's indexes and keys are not known
        for name, index in list(c.indexes.items()):
            if index.table == parent:
                c.clone(name, table)  # before the table's own constraints, as the server does
    else:
        for parent in parents:
            c.inheritors.setdefault(parent, []).append(table)
    elements = node.get("tableElts", [])
    if any("TableLikeClause" in element for element in elements):
        c.own.discard(table)  # LIKE ... INCLUDING copies indexes and keys unseen
    for constraint in index_constraints(elements):
        add_index_constraint(c, table, constraint)
    for column, constraint in foreign_keys(elements):
        add_foreign_key(c, table, column, constraint)


def _create_index(c: LearnedCatalog, node: dict[str, Any]) -> None:
    relation = node.get("relation", {})
    table = _name(relation)
    elements = [p.get("IndexElem", {}) for p in node.get("indexParams", [])]
    columns = index_columns(
        elements, [p.get("IndexElem", {}) for p in node.get("indexIncludingParams", [])]
    )
    kind = "pkey" if node.get("primary") else "key" if node.get("isconstraint") else "idx"
    shape = [
        e.get("name") or _without_locations(e.get("expr"))
        for e in [*elements, *(p.get("IndexElem", {}) for p in node.get("indexIncludingParams", []))]
    ]  # fmt: skip
    shape_key = definition(
        bool(node.get("unique")), shape, node.get("accessMethod"), node.get("whereClause")
    )
    if node.get("if_not_exists"):
        c.own.discard(table)  # the index may be there already, from outside the plan
    recurse = bool(relation.get("inh")) and not node.get("concurrent")
    c.add_index(table, node.get("idxname"), columns, kind, shape_key, recurse=recurse)
    if not recurse and c.partitions.get(table):
        c.own.discard(table)  # ON ONLY: which partitions' indexes attach later is not followed


def _create_view(c: LearnedCatalog, node: dict[str, Any]) -> None:
    view = _name(node.get("view", {}))
    c.add_relation(view)
    c.bases[view] = relations_in(node.get("query", {}))


def _create_table_as(c: LearnedCatalog, node: dict[str, Any]) -> None:
    relation = _name(node.get("into", {}).get("rel", {}))
    c.add_relation(relation)
    if node.get("objtype") == "OBJECT_MATVIEW":
        c.bases[relation] = relations_in(node.get("query", {}))
    else:
        c.tables.add(relation)


def _alter_table(c: LearnedCatalog, node: dict[str, Any]) -> None:
    relation = node.get("relation", {})
    table = _name(relation)
    if node.get("objtype") == "OBJECT_INDEX":  # ALTER INDEX parent ATTACH PARTITION child
        for item in node.get("cmds", []):
            command = item.get("AlterTableCmd", {})
            child = _name(command.get("def", {}).get("PartitionCmd", {}).get("name", {}))
            if command.get("subtype") == "AT_AttachPartition" and child in c.indexes:
                c.indexes[child].parent = table
        return
    if node.get("objtype") != "OBJECT_TABLE":
        return
    if not relation.get("inh") and c.partitions.get(table):
        c.own.discard(table)  # ALTER TABLE ONLY on a partitioned table: not followed
    for item in node.get("cmds", []):
        command = item.get("AlterTableCmd", {})
        subtype = command.get("subtype", "")
        argument = command.get("def", {})
        if subtype == "AT_AddConstraint":
            constraint = argument.get("Constraint", {})
            if constraint.get("contype") in (
                "CONSTR_PRIMARY",
                "CONSTR_UNIQUE",
                "CONSTR_EXCLUSION",
            ):
                add_index_constraint(c, table, constraint)
            elif constraint.get("contype") == "CONSTR_FOREIGN":
                add_foreign_key(c, table, None, constraint)
        elif subtype == "AT_AddColumn":
            column = argument.get("ColumnDef", {})
            elements = [{"ColumnDef": column}]
            for constraint in index_constraints(elements):
                add_index_constraint(c, table, constraint)
            for name, constraint in foreign_keys(elements):
                add_foreign_key(c, table, name, constraint)
        elif subtype == "AT_DropConstraint":
            c.drop_constraint(table, command.get("name", ""))
        elif subtype == "AT_DropColumn":
            c.drop_column(table, command.get("name", ""))
        elif subtype == "AT_AttachPartition":
            attach(c, table, argument.get("PartitionCmd", {}))
        elif subtype == "AT_DetachPartition":
            c.detach(table, _name(argument.get("PartitionCmd", {}).get("name", {})))
        elif subtype == "AT_AddInherit":
            parent = _name(argument.get("RangeVar", {}))
            c.inheritors.setdefault(parent, []).append(table)
        elif subtype == "AT_DropInherit":
            parent = _name(argument.get("RangeVar", {}))
            if table in c.inheritors.get(parent, []):
                c.inheritors[parent].remove(table)


def _rename(c: LearnedCatalog, node: dict[str, Any]) -> None:
    kind = node.get("renameType", "")
    relation = _name(node.get("relation", {}))
    new = str(node.get("newname", ""))
    if kind in (
        "OBJECT_TABLE",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_INDEX",
        "OBJECT_FOREIGN_TABLE",
    ):
        c.rename_relation(relation, new)
    elif kind == "OBJECT_COLUMN":
        old = str(node.get("subname", ""))
        for index in c.indexes.values():
            if index.table == relation:
                index.columns = tuple(new if c == old else c for c in index.columns)
        for key in c.foreign_keys:
            if key.table == relation:
                key.columns = tuple(new if c == old else c for c in key.columns)
    elif kind == "OBJECT_TABCONSTRAINT":
        old = str(node.get("subname", ""))
        if old in c.indexes:
            c.rename_relation(old, new)
        for key in c.foreign_keys:
            if key.table == relation and key.name == old:
                key.name = new
        c.constraints.discard(old)
        c.constraints.add(new)


def _drop(c: LearnedCatalog, node: dict[str, Any]) -> None:
    kind = node.get("removeType", "")
    if kind not in _DROPPED_RELATIONS:
        return
    cascade = node.get("behavior") == "DROP_CASCADE"
    for item in node.get("objects", []):
        parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
        name = _string(parts[-1]) if parts else ""
        if kind == "OBJECT_INDEX":
            c.drop_index(name)
        else:
            c.drop_relation(name, cascade)


def add_index_constraint(c: LearnedCatalog, table: str, constraint: dict[str, Any]) -> None:
    contype = constraint["contype"]
    existing = constraint.get("indexname")
    if existing:  # ADD PRIMARY KEY / UNIQUE USING INDEX: the index becomes the constraint's
        index = c.indexes.pop(existing, None)
        if index is None:
            c.own.discard(table)
            return
        name = constraint.get("conname") or existing
        index.kind = "pkey" if contype == "CONSTR_PRIMARY" else "key"
        c.indexes[name] = index
        c.names.discard(existing)
        c.names.add(name)
        c.constraints.add(name)
        return
    kind = {"CONSTR_PRIMARY": "pkey", "CONSTR_UNIQUE": "key", "CONSTR_EXCLUSION": "excl"}[contype]
    if kind == "excl":
        elements = [
            item["List"]["items"][0].get("IndexElem", {})
            for item in constraint.get("exclusions", [])
        ]
        columns = index_columns(elements, constraint.get("including", []))
    else:
        keys = [_string(k) for k in constraint.get("keys", [])]
        columns = unique_names([*keys, *(_string(k) for k in constraint.get("including", []))])
    shape_key = definition(
        kind != "excl", columns, constraint.get("access_method"), constraint.get("where_clause")
    )
    c.add_index(table, constraint.get("conname"), columns, kind, shape_key)


def add_foreign_key(
    c: LearnedCatalog, table: str, column: str | None, constraint: dict[str, Any]
) -> None:
    columns = tuple(_string(a) for a in constraint.get("fk_attrs", [])) or (
        (column,) if column else ()
    )
    referenced = _name(constraint.get("pktable", {}))
    name = constraint.get("conname") or c.choose_constraint_name(
        table, name_addition(columns), "fkey"
    )
    c.constraints.add(name)
    c.foreign_keys.append(ForeignKey(name, table, referenced, columns))


def attach(c: LearnedCatalog, parent: str, command: dict[str, Any]) -> None:
    table = _name(command.get("name", {}))
    c.partitions.setdefault(parent, []).append(table)
    c.bounds[table] = bound_key(command.get("bound", {}))
    if command.get("bound", {}).get("is_default"):
        c.default[parent] = table
    if table not in c.own:
        c.own.discard(parent)  # its partitions' own partitions and indexes are not known
        return
    for name, index in list(c.indexes.items()):
        if index.table == parent:
            c.clone(name, table)


_LEARNERS = {
    "CreateStmt": _create_table,
    "IndexStmt": _create_index,
    "ViewStmt": _create_view,
    "CreateTableAsStmt": _create_table_as,
    "AlterTableStmt": _alter_table,
    "RenameStmt": _rename,
    "DropStmt": _drop,
}
# Statements that run code of their own: whatever the plan created may have changed.
_FORGETS_ALL = frozenset({"DoStmt", "CallStmt", "ExecuteStmt", "CreateExtensionStmt"})
_DROPPED_RELATIONS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX", "OBJECT_FOREIGN_TABLE"}
)


def index_constraints(elements: list[Any]) -> Iterator[dict[str, Any]]:
    """A CREATE TABLE's (or ADD COLUMN's) PRIMARY KEY, UNIQUE and EXCLUDE constraints, in the
    order PostgreSQL creates their indexes: the primary key first, equal ones once."""
    found: list[dict[str, Any]] = []
    for element in elements:
        column = element.get("ColumnDef")
        if column is not None:
            for item in column.get("constraints", []):
                constraint = item.get("Constraint", {})
                if constraint.get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
                    found.append({**constraint, "keys": [{"String": {"sval": column.get("colname", "")}}]})  # fmt: skip
        constraint = element.get("Constraint", {})
        if constraint.get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION"):
            found.append(constraint)
    found.sort(key=lambda c: c.get("contype") != "CONSTR_PRIMARY")
    kept: list[dict[str, Any]] = []
    for constraint in found:
        same = [k for k in kept if not constraint.get("conname") and _same_index(k, constraint)]
        if not same:
            kept.append(constraint)
    yield from kept


def _same_index(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Two constraints CREATE TABLE folds into one index (transformIndexConstraints)."""

    def shape(c: dict[str, Any]) -> Any:
        return [_without_locations(c.get(k)) for k in ("keys", "including", "exclusions", "deferrable", "initdeferred", "nulls_not_distinct", "access_method", "where_clause")]  # fmt: skip

    return bool(shape(one) == shape(other))


def foreign_keys(elements: list[Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    for element in elements:
        column = element.get("ColumnDef")
        if column is not None:
            for item in column.get("constraints", []):
                constraint = item.get("Constraint", {})
                if constraint.get("contype") == "CONSTR_FOREIGN":
                    yield column.get("colname"), constraint
        constraint = element.get("Constraint", {})
        if constraint.get("contype") == "CONSTR_FOREIGN":
            yield None, constraint


def definition(unique: bool, columns: Iterable[Any], method: Any, where: Any) -> str:
    """What makes two indexes the same for ATTACH PARTITION (CompareIndexInfo): uniqueness,
    columns and expressions, access method, predicate; not whether a constraint owns it."""
    return json.dumps(
        [unique, list(columns), method or "btree", _without_locations(where)], sort_keys=True
    )


def bound_key(bound: dict[str, Any]) -> tuple[Any, ...]:
    """A partition bound's place in the server's order (PartitionDesc): range partitions by
    their lower bound, list partitions by their least value, hash ones by modulus and
    remainder, the DEFAULT partition last."""
    if bound.get("is_default"):
        return (2,)
    if bound.get("strategy") == "h":
        return (0, int(bound.get("modulus", 0)), int(bound.get("remainder", 0)))
    if bound.get("strategy") == "l":
        values = sorted(_datum_key(d) for d in bound.get("listdatums", []))
        return (0, values[0] if values else (4, ""))
    return (0, tuple(_datum_key(d) for d in bound.get("lowerdatums", [])))


def _datum_key(datum: dict[str, Any]) -> tuple[int, Any]:
    constant = datum.get("A_Const")
    if constant is not None:
        if "ival" in constant:
            return (1, int(constant["ival"].get("ival", 0)))
        if "fval" in constant:
            return (1, float(constant["fval"].get("fval", 0)))
        if "sval" in constant:
            return (2, str(constant["sval"].get("sval", "")))
    fields = datum.get("ColumnRef", {}).get("fields", [])
    word = _string(fields[0]) if fields else ""
    return {"minvalue": (0, 0), "maxvalue": (3, 0)}.get(word, (4, ""))


def relations_in(query: Any) -> list[str]:
    """The relations a view's query reads (a CTE's name is none)."""
    found = list(nodes(query))
    ctes = {node["ctename"] for node in found if "ctename" in node}
    names = dict.fromkeys(_name(node) for node in found if "relname" in node)
    return [name for name in names if name not in ctes]


def _without_locations(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _without_locations(v) for k, v in tree.items() if k != "location"}
    if isinstance(tree, list):
        return [_without_locations(v) for v in tree]
    return tree


def _string(node: Any) -> str:
    return str(node.get("String", {}).get("sval", "")) if isinstance(node, dict) else str(node)


def _name(relation: dict[str, Any]) -> str:
    return str(relation.get("relname", "?"))


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]
