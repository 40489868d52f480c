"""The catalogue a plan builds for itself: the tables, partitions, indexes, foreign keys and
views its own statements create, followed statement by statement. For a relation the plan
created, what the offline analysis would say a statement "may" lock (the partitions of a
table, its indexes, the tables on the other side of its foreign keys) is then known exactly,
without a database: `resolve` names those relations.

PostgreSQL chooses the names of the indexes it creates for a constraint or for an unnamed
CREATE INDEX, and of each partition's copy of a partitioned index; the rules here are its own
(ChooseRelationName, ChooseIndexColumnNames, makeObjectName in indexcmds.c), and
tests/test_learned.py compares what is learned with the server's catalogue after the same
statements. A statement whose effect on the catalogue is not followed (a DO block, LIKE ...
INCLUDING INDEXES, a table attached from outside the plan) makes what it touches unknown again:
"may" stays "may" there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..plan.sqlparse import Statement
from .catalog import Catalog
from .locks import Lock
from .names import index_columns, name_addition, object_name, unique_names


@dataclass
class _Index:
    table: str
    columns: tuple[str, ...]  # the names PostgreSQL derives the index's name from
    kind: str  # "pkey", "key" (UNIQUE constraint), "excl" or "idx"
    definition: str  # what makes two indexes the same, for ATTACH PARTITION
    parent: str | None = None  # the partitioned index it is a partition of


@dataclass
class _ForeignKey:
    name: str
    table: str
    referenced: str
    columns: tuple[str, ...]


@dataclass
class LearnedCatalog:
    """What a plan's statements, read in order, establish about the relations they create."""

    own: set[str] = field(default_factory=set)  # created by the plan, and followed since
    tables: set[str] = field(default_factory=set)  # any table the plan names as existing
    partitions: dict[str, list[str]] = field(default_factory=dict)  # partitioned -> partitions
    inheritors: dict[str, list[str]] = field(default_factory=dict)  # INHERITS children
    default: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # partition -> sort key
    indexes: dict[str, _Index] = field(default_factory=dict)  # by name, in creation order
    foreign_keys: list[_ForeignKey] = field(default_factory=list)
    bases: dict[str, list[str]] = field(default_factory=dict)  # view -> relations under it
    names: set[str] = field(default_factory=set)  # relation names known to be taken
    constraints: set[str] = field(default_factory=set)  # constraint names known to be taken

    # --- what it knows ------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The learned facts in the shape a database snapshot has."""
        catalog = Catalog()
        for parent in self.partitions.keys() | self.inheritors.keys():
            catalog.children[parent] = [
                *self.partitions.get(parent, []),
                *self.inheritors.get(parent, []),
            ]
        catalog.default = dict(self.default)
        for name, index in self.indexes.items():
            catalog.indexes.setdefault(index.table, []).append(name)
            catalog.table_of[name] = index.table
            if index.parent:  # a partition's index is a child of the partitioned index
                catalog.children.setdefault(index.parent, []).append(name)
        for key in self.foreign_keys:
            for table, referenced in self._pairs(key):
                if referenced not in catalog.references.get(table, []):
                    catalog.references.setdefault(table, []).append(referenced)
                    catalog.referencing.setdefault(referenced, []).append(table)
        for view, relations in self.bases.items():
            catalog.bases[view] = list(relations)
            for relation in relations:
                catalog.views.setdefault(relation, []).append(view)
        return catalog

    def _pairs(self, key: _ForeignKey) -> Iterator[tuple[str, str]]:
        """pg_constraint's (table, referenced table) rows for a foreign key: the key itself,
        one per partition of the referenced table, and a copy on each partition of its own."""
        yield key.table, key.referenced
        for partition in self._descendants(key.referenced):
            yield key.table, partition
        for partition in self._descendants(key.table):
            yield partition, key.referenced

    def _in_bound_order(self, table: str) -> list[str]:
        """A table's partitions as the server walks them: by partition bound, DEFAULT last."""
        return sorted(self.partitions.get(table, []), key=lambda p: self.bounds.get(p, (1,)))

    def _descendants(self, table: str) -> list[str]:
        found: list[str] = []
        pending = list(self.partitions.get(table, []))
        while pending:
            child = pending.pop(0)
            found.append(child)
            pending += self.partitions.get(child, [])
        return found

    def knows(self, relation: str) -> bool:
        """Whether the plan created `relation` (an index: its table) and has followed it since."""
        name = _bare(relation)
        index = self.indexes.get(name)
        return name in self.own or (index is not None and index.table in self.own)

    def resolve(self, locks: Iterable[Lock]) -> list[Lock]:
        """The locks with each "may" on a relation the plan created replaced by the relations
        it is taken on; a "may" on a relation the plan did not create stays."""
        catalog = self.catalog()
        resolved: list[Lock] = []
        for lock in locks:
            if lock.via and lock.known and self.knows(lock.relation):
                resolved += catalog.resolve([lock])
            else:
                resolved.append(lock)
        return resolved

    # --- learning -----------------------------------------------------------------------

    def learn(self, statement: Statement) -> None:
        """Follow what `statement` does to the catalogue (after it has run)."""
        kind, node = statement.kind, statement.node
        handler = _LEARNERS.get(kind)
        if handler is not None:
            handler(self, node)
        elif kind in _FORGETS_ALL:
            self.own.clear()  # code that may create or change anything

    def _create_table(self, node: dict[str, Any]) -> None:
        table = _name(node.get("relation", {}))
        self.names.add(table)
        self.tables.add(table)
        if not node.get("if_not_exists"):  # IF NOT EXISTS may find a table from outside
            self.own.add(table)
        parents = [_name(p.get("RangeVar", {})) for p in node.get("inhRelations", [])]
        partbound = node.get("partbound")
        if partbound is not None and parents:
            parent = parents[0]
            self.partitions.setdefault(parent, []).append(table)
            self.bounds[table] = _bound_key(partbound)
            if partbound.get("is_default"):
                self.default[parent] = table
            if parent not in self.own:
                self.own.discard(table)  # the parent's indexes and keys are not known
            for name, index in list(self.indexes.items()):
                if index.table == parent:
                    self._clone(
                        name, table
                    )  # before the table's own constraints, as the server does
        else:
            for parent in parents:
                self.inheritors.setdefault(parent, []).append(table)
        elements = node.get("tableElts", [])
        if any("TableLikeClause" in element for element in elements):
            self.own.discard(table)  # LIKE ... INCLUDING copies indexes and keys unseen
        for constraint in _index_constraints(elements):
            self._add_index_constraint(table, constraint)
        for column, constraint in _foreign_keys(elements):
            self._add_foreign_key(table, column, constraint)

    def _add_relation(self, name: str) -> None:
        self.own.add(name)
        self.names.add(name)

    def _clone(self, parent_index: str, table: str) -> None:
        """A partition's copy of a partitioned index, named as PostgreSQL names it; an equal
        index the partition has already is attached instead."""
        index = self.indexes[parent_index]
        for other in self.indexes.values():
            if (
                other.table == table
                and other.parent is None
                and other.definition == index.definition
                and (index.kind == "idx" or other.kind != "idx")  # a constraint's needs one
            ):
                other.parent = parent_index
                return
        name = self._choose_index_name(table, index.columns, index.kind)
        self.indexes[name] = _Index(
            table, index.columns, index.kind, index.definition, parent_index
        )
        if index.kind != "idx":
            self.constraints.add(name)
        for partition in self._in_bound_order(table):
            self._clone(name, partition)

    def _add_index(
        self, table: str, name: str | None, columns: tuple[str, ...], kind: str, definition: str,
        *, recurse: bool = True,
    ) -> None:  # fmt: skip
        name = name or self._choose_index_name(table, columns, kind)
        self.indexes[name] = _Index(table, columns, kind, definition)
        self.names.add(name)
        if kind != "idx":
            self.constraints.add(name)
        if recurse:
            for partition in self._in_bound_order(table):
                self._clone(name, partition)

    def _choose_index_name(self, table: str, columns: tuple[str, ...], kind: str) -> str:
        addition = None if kind == "pkey" else name_addition(columns)
        return self._choose_relation_name(table, addition, kind, constraint=kind != "idx")

    def _choose_relation_name(
        self, name1: str, name2: str | None, label: str, constraint: bool
    ) -> str:
        """ChooseRelationName: the first of label, label1, label2, ... that is free."""
        number = 0
        while True:
            candidate = object_name(name1, name2, label + (str(number) if number else ""))
            if candidate not in self.names and not (constraint and candidate in self.constraints):
                self.names.add(candidate)
                return candidate
            number += 1

    def _add_index_constraint(self, table: str, constraint: dict[str, Any]) -> None:
        contype = constraint["contype"]
        existing = constraint.get("indexname")
        if existing:  # ADD PRIMARY KEY / UNIQUE USING INDEX: the index becomes the constraint's
            index = self.indexes.pop(existing, None)
            if index is None:
                self.own.discard(table)
                return
            name = constraint.get("conname") or existing
            index.kind = "pkey" if contype == "CONSTR_PRIMARY" else "key"
            self.indexes[name] = index
            self.names.discard(existing)
            self.names.add(name)
            self.constraints.add(name)
            return
        kind = {"CONSTR_PRIMARY": "pkey", "CONSTR_UNIQUE": "key", "CONSTR_EXCLUSION": "excl"}[
            contype
        ]
        if kind == "excl":
            elements = [
                item["List"]["items"][0].get("IndexElem", {})
                for item in constraint.get("exclusions", [])
            ]
            columns = index_columns(elements, constraint.get("including", []))
        else:
            keys = [_string(k) for k in constraint.get("keys", [])]
            columns = unique_names([*keys, *(_string(k) for k in constraint.get("including", []))])
        definition = _definition(
            kind != "excl", columns, constraint.get("access_method"), constraint.get("where_clause")
        )
        self._add_index(table, constraint.get("conname"), columns, kind, definition)

    def _add_foreign_key(self, table: str, column: str | None, constraint: dict[str, Any]) -> None:
        columns = tuple(_string(a) for a in constraint.get("fk_attrs", [])) or (
            (column,) if column else ()
        )
        referenced = _name(constraint.get("pktable", {}))
        name = constraint.get("conname") or self._choose_constraint_name(
            table, name_addition(columns), "fkey"
        )
        self.constraints.add(name)
        self.foreign_keys.append(_ForeignKey(name, table, referenced, columns))

    def _choose_constraint_name(self, name1: str, name2: str, label: str) -> str:
        number = 0
        while True:
            candidate = object_name(name1, name2, label + (str(number) if number else ""))
            if candidate not in self.constraints:
                return candidate
            number += 1

    def _create_index(self, node: dict[str, Any]) -> None:
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
        definition = _definition(
            bool(node.get("unique")), shape, node.get("accessMethod"), node.get("whereClause")
        )
        if node.get("if_not_exists"):
            self.own.discard(table)  # the index may be there already, from outside the plan
        recurse = bool(relation.get("inh")) and not node.get("concurrent")
        self._add_index(table, node.get("idxname"), columns, kind, definition, recurse=recurse)
        if not recurse and self.partitions.get(table):
            self.own.discard(
                table
            )  # ON ONLY: which partitions' indexes attach later is not followed

    def _create_view(self, node: dict[str, Any]) -> None:
        view = _name(node.get("view", {}))
        self._add_relation(view)
        self.bases[view] = _relations_in(node.get("query", {}))

    def _create_table_as(self, node: dict[str, Any]) -> None:
        relation = _name(node.get("into", {}).get("rel", {}))
        self._add_relation(relation)
        if node.get("objtype") == "OBJECT_MATVIEW":
            self.bases[relation] = _relations_in(node.get("query", {}))
        else:
            self.tables.add(relation)

    def _alter_table(self, node: dict[str, Any]) -> None:
        relation = node.get("relation", {})
        table = _name(relation)
        if node.get("objtype") == "OBJECT_INDEX":  # ALTER INDEX parent ATTACH PARTITION child
            for item in node.get("cmds", []):
                command = item.get("AlterTableCmd", {})
                child = _name(command.get("def", {}).get("PartitionCmd", {}).get("name", {}))
                if command.get("subtype") == "AT_AttachPartition" and child in self.indexes:
                    self.indexes[child].parent = table
            return
        if node.get("objtype") != "OBJECT_TABLE":
            return
        if not relation.get("inh") and self.partitions.get(table):
            self.own.discard(table)  # ALTER TABLE ONLY on a partitioned table: not followed
        for item in node.get("cmds", []):
            command = item.get("AlterTableCmd", {})
            subtype = command.get("subtype", "")
            definition = command.get("def", {})
            if subtype == "AT_AddConstraint":
                constraint = definition.get("Constraint", {})
                if constraint.get("contype") in (
                    "CONSTR_PRIMARY",
                    "CONSTR_UNIQUE",
                    "CONSTR_EXCLUSION",
                ):
                    self._add_index_constraint(table, constraint)
                elif constraint.get("contype") == "CONSTR_FOREIGN":
                    self._add_foreign_key(table, None, constraint)
            elif subtype == "AT_AddColumn":
                column = definition.get("ColumnDef", {})
                elements = [{"ColumnDef": column}]
                for constraint in _index_constraints(elements):
                    self._add_index_constraint(table, constraint)
                for name, constraint in _foreign_keys(elements):
                    self._add_foreign_key(table, name, constraint)
            elif subtype == "AT_DropConstraint":
                self._drop_constraint(table, command.get("name", ""))
            elif subtype == "AT_DropColumn":
                self._drop_column(table, command.get("name", ""))
            elif subtype == "AT_AttachPartition":
                self._attach(table, definition.get("PartitionCmd", {}))
            elif subtype == "AT_DetachPartition":
                self._detach(table, _name(definition.get("PartitionCmd", {}).get("name", {})))
            elif subtype == "AT_AddInherit":
                parent = _name(definition.get("RangeVar", {}))
                self.inheritors.setdefault(parent, []).append(table)
            elif subtype == "AT_DropInherit":
                parent = _name(definition.get("RangeVar", {}))
                if table in self.inheritors.get(parent, []):
                    self.inheritors[parent].remove(table)

    def _drop_constraint(self, table: str, name: str) -> None:
        if name in self.indexes and self.indexes[name].table == table:
            self._drop_index(name)
        self.foreign_keys = [
            k for k in self.foreign_keys if not (k.table == table and k.name == name)
        ]
        self.constraints.discard(name)

    def _drop_index(self, name: str) -> None:
        self.indexes.pop(name, None)
        self.names.discard(name)
        self.constraints.discard(name)
        for child, index in list(self.indexes.items()):
            if index.parent == name:
                self._drop_index(child)

    def _drop_column(self, table: str, column: str) -> None:
        for name, index in list(self.indexes.items()):
            if index.table == table and column in index.columns:
                self._drop_index(name)
            elif index.table == table and "expr" in index.columns:
                self.own.discard(table)  # an expression over the column may go with it
        self.foreign_keys = [
            k for k in self.foreign_keys if not (k.table == table and column in k.columns)
        ]
        # a key referring to the column goes too; which column it refers to is not followed
        if any(k.referenced == table for k in self.foreign_keys):
            self.own.discard(table)

    def _attach(self, parent: str, command: dict[str, Any]) -> None:
        table = _name(command.get("name", {}))
        self.partitions.setdefault(parent, []).append(table)
        self.bounds[table] = _bound_key(command.get("bound", {}))
        if command.get("bound", {}).get("is_default"):
            self.default[parent] = table
        if table not in self.own:
            self.own.discard(parent)  # its partitions' own partitions and indexes are not known
            return
        for name, index in list(self.indexes.items()):
            if index.table == parent:
                self._clone(name, table)

    def _detach(self, parent: str, table: str) -> None:
        # The partition keeps its copies of the foreign keys of the tables above it.
        ancestors = [parent]
        while above := [p for p, c in self.partitions.items() if ancestors[-1] in c]:
            ancestors.append(above[0])
        self.foreign_keys += [
            _ForeignKey(k.name, table, k.referenced, k.columns)
            for k in self.foreign_keys
            if k.table in ancestors
        ]
        if table in self.partitions.get(parent, []):
            self.partitions[parent].remove(table)
        if self.default.get(parent) == table:
            del self.default[parent]
        for index in self.indexes.values():
            if index.table == table:
                index.parent = None

    def _rename(self, node: dict[str, Any]) -> None:
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
            self._rename_relation(relation, new)
        elif kind == "OBJECT_COLUMN":
            old = str(node.get("subname", ""))
            for index in self.indexes.values():
                if index.table == relation:
                    index.columns = tuple(new if c == old else c for c in index.columns)
            for key in self.foreign_keys:
                if key.table == relation:
                    key.columns = tuple(new if c == old else c for c in key.columns)
        elif kind == "OBJECT_TABCONSTRAINT":
            old = str(node.get("subname", ""))
            if old in self.indexes:
                self._rename_relation(old, new)
            for key in self.foreign_keys:
                if key.table == relation and key.name == old:
                    key.name = new
            self.constraints.discard(old)
            self.constraints.add(new)

    def _rename_relation(self, old: str, new: str) -> None:
        def swap(name: str) -> str:
            return new if name == old else name

        for attribute in ("own", "tables", "names"):
            values = getattr(self, attribute)
            if old in values:
                values.discard(old)
                values.add(new)
        self.partitions = {swap(k): [swap(c) for c in v] for k, v in self.partitions.items()}
        self.inheritors = {swap(k): [swap(c) for c in v] for k, v in self.inheritors.items()}
        self.default = {swap(k): swap(v) for k, v in self.default.items()}
        self.bounds = {swap(k): v for k, v in self.bounds.items()}
        self.indexes = {swap(k): v for k, v in self.indexes.items()}
        for index in self.indexes.values():
            index.table = swap(index.table)
            index.parent = swap(index.parent) if index.parent else None
        if old in self.constraints:
            self.constraints.discard(old)
            self.constraints.add(new)
        for key in self.foreign_keys:
            key.table, key.referenced = swap(key.table), swap(key.referenced)
        self.bases = {swap(k): [swap(r) for r in v] for k, v in self.bases.items()}

    def _drop(self, node: dict[str, Any]) -> None:
        kind = node.get("removeType", "")
        if kind not in _DROPPED_RELATIONS:
            return
        cascade = node.get("behavior") == "DROP_CASCADE"
        for item in node.get("objects", []):
            parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
            name = _string(parts[-1]) if parts else ""
            if kind == "OBJECT_INDEX":
                self._drop_index(name)
            else:
                self._drop_relation(name, cascade)

    def _drop_relation(self, name: str, cascade: bool) -> None:
        # Partitions go with their table; INHERITS children and views over it with CASCADE
        # (without it, the statement fails and nothing was dropped).
        dependents = [*self.partitions.get(name, [])]
        if cascade:  # a key referring to the partitioned table above it goes as a whole
            self.foreign_keys = [
                k for k in self.foreign_keys if name not in self._descendants(k.referenced)
            ]
            dependents += self.inheritors.get(name, [])
            dependents += [view for view, relations in self.bases.items() if name in relations]
        for children in [*self.partitions.values(), *self.inheritors.values()]:
            if name in children:
                children.remove(name)
        self.partitions.pop(name, None)
        self.inheritors.pop(name, None)
        self.default = {k: v for k, v in self.default.items() if name not in (k, v)}
        for index_name, index in list(self.indexes.items()):
            if index.table == name:
                self._drop_index(index_name)
        self.constraints -= {k.name for k in self.foreign_keys if k.table == name}
        self.foreign_keys = [k for k in self.foreign_keys if name not in (k.table, k.referenced)]
        self.bases.pop(name, None)
        for attribute in ("own", "tables", "names"):
            getattr(self, attribute).discard(name)
        for dependent in dependents:
            self._drop_relation(dependent, cascade)


_LEARNERS = {
    "CreateStmt": LearnedCatalog._create_table,
    "IndexStmt": LearnedCatalog._create_index,
    "ViewStmt": LearnedCatalog._create_view,
    "CreateTableAsStmt": LearnedCatalog._create_table_as,
    "AlterTableStmt": LearnedCatalog._alter_table,
    "RenameStmt": LearnedCatalog._rename,
    "DropStmt": LearnedCatalog._drop,
}
# Statements that run code of their own: whatever the plan created may have changed.
_FORGETS_ALL = frozenset({"DoStmt", "CallStmt", "ExecuteStmt", "CreateExtensionStmt"})
_DROPPED_RELATIONS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX", "OBJECT_FOREIGN_TABLE"}
)


def _index_constraints(elements: list[Any]) -> Iterator[dict[str, Any]]:
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


def _foreign_keys(elements: list[Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
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


def _definition(unique: bool, columns: Iterable[Any], method: Any, where: Any) -> str:
    """What makes two indexes the same for ATTACH PARTITION (CompareIndexInfo): uniqueness,
    columns and expressions, access method, predicate; not whether a constraint owns it."""
    return json.dumps(
        [unique, list(columns), method or "btree", _without_locations(where)], sort_keys=True
    )


def _bound_key(bound: dict[str, Any]) -> tuple[Any, ...]:
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


def _relations_in(query: Any) -> list[str]:
    """The relations a view's query reads (a CTE's name is none)."""
    ctes = set()
    found: list[str] = []

    def walk(tree: Any) -> None:
        if isinstance(tree, dict):
            if "ctename" in tree:
                ctes.add(tree["ctename"])
            if "relname" in tree:
                name = _name(tree)
                if name not in found:
                    found.append(name)
            for value in tree.values():
                walk(value)
        elif isinstance(tree, list):
            for value in tree:
                walk(value)

    walk(query)
    return [name for name in found if name not in ctes]


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
