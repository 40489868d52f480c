"""The catalogue a plan builds for itself: the tables, partitions, indexes, foreign keys and
views its own statements create, followed statement by statement. For a relation the plan
created, what the offline analysis would say a statement "may" lock (the partitions of a
table, its indexes, the tables on the other side of its foreign keys) is then known exactly,
without a database: `resolve` names those relations.

This module holds the facts and the changes they undergo (an index added to a table and its
partitions, under the name PostgreSQL would choose: names.py; a relation dropped or renamed);
ddl.py reads each statement into those changes (`learn`). tests/review/test_learned.py compares what
is learned with the server's catalogue after the same statements. A statement whose effect on
the catalogue is not followed (a DO block, LIKE ... INCLUDING INDEXES, a table attached from
outside the plan) makes what it touches unknown again: "may" stays "may" there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog
from .locks import Lock
from .names import name_addition, object_name


@dataclass
class Index:
    table: str
    columns: tuple[str, ...]  # the names PostgreSQL derives the index's name from
    kind: str  # "pkey", "key" (UNIQUE constraint), "excl" or "idx"
    definition: str  # what makes two indexes the same, for ATTACH PARTITION
    parent: str | None = None  # the partitioned index it is a partition of


@dataclass
class ForeignKey:
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
    indexes: dict[str, Index] = field(default_factory=dict)  # by name, in creation order
    foreign_keys: list[ForeignKey] = field(default_factory=list)
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

    def _pairs(self, key: ForeignKey) -> Iterator[tuple[str, str]]:
        """pg_constraint's (table, referenced table) rows for a foreign key: the key itself,
        one per partition of the referenced table, and a copy on each partition of its own."""
        yield key.table, key.referenced
        for partition in self.descendants(key.referenced):
            yield key.table, partition
        for partition in self.descendants(key.table):
            yield partition, key.referenced

    def _in_bound_order(self, table: str) -> list[str]:
        """A table's partitions as the server walks them: by partition bound, DEFAULT last."""
        return sorted(self.partitions.get(table, []), key=lambda p: self.bounds.get(p, (1,)))

    def descendants(self, table: str) -> list[str]:
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

    def add_relation(self, name: str) -> None:
        self.own.add(name)
        self.names.add(name)

    def clone(self, parent_index: str, table: str) -> None:
        """A partition's copy of a partitioned index, named as PostgreSQL names it; an equal
        index the partition has already is attached instead."""
        index = self.indexes[parent_index]
        for other in self.indexes.values():
            if (
                other.table == table
                and other.parent is None
                and other.definition == index.definition
                # a constraint's index takes only an index of the same kind of constraint
                and index.kind in ("idx", other.kind)
            ):
                other.parent = parent_index
                return
        name = self.choose_index_name(table, index.columns, index.kind)
        self.indexes[name] = Index(table, index.columns, index.kind, index.definition, parent_index)
        if index.kind != "idx":
            self.constraints.add(name)
        for partition in self._in_bound_order(table):
            self.clone(name, partition)

    def add_index(
        self, table: str, name: str | None, columns: tuple[str, ...], kind: str, definition: str,
        *, recurse: bool = True,
    ) -> None:  # fmt: skip
        name = name or self.choose_index_name(table, columns, kind)
        self.indexes[name] = Index(table, columns, kind, definition)
        self.names.add(name)
        if kind != "idx":
            self.constraints.add(name)
        if recurse:
            for partition in self._in_bound_order(table):
                self.clone(name, partition)

    def choose_index_name(self, table: str, columns: tuple[str, ...], kind: str) -> str:
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

    def choose_constraint_name(self, name1: str, name2: str, label: str) -> str:
        number = 0
        while True:
            candidate = object_name(name1, name2, label + (str(number) if number else ""))
            if candidate not in self.constraints:
                return candidate
            number += 1

    def drop_constraint(self, table: str, name: str) -> None:
        if name in self.indexes and self.indexes[name].table == table:
            self.drop_index(name)
        self.foreign_keys = [
            k for k in self.foreign_keys if not (k.table == table and k.name == name)
        ]
        self.constraints.discard(name)

    def drop_index(self, name: str) -> None:
        self.indexes.pop(name, None)
        self.names.discard(name)
        self.constraints.discard(name)
        for child, index in list(self.indexes.items()):
            if index.parent == name:
                self.drop_index(child)

    def drop_column(self, table: str, column: str) -> None:
        for name, index in list(self.indexes.items()):
            if index.table == table and column in index.columns:
                self.drop_index(name)
            elif index.table == table and "expr" in index.columns:
                self.own.discard(table)  # an expression over the column may go with it
        self.foreign_keys = [
            k for k in self.foreign_keys if not (k.table == table and column in k.columns)
        ]
        # a key referring to the column goes too; which column it refers to is not followed
        if any(k.referenced == table for k in self.foreign_keys):
            self.own.discard(table)

    def detach(self, parent: str, table: str) -> None:
        # The partition keeps its copies of the foreign keys of the tables above it.
        ancestors = [parent]
        while above := [p for p, c in self.partitions.items() if ancestors[-1] in c]:
            ancestors.append(above[0])
        self.foreign_keys += [
            ForeignKey(k.name, table, k.referenced, k.columns)
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

    def rename_relation(self, old: str, new: str) -> None:
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

    def drop_relation(self, name: str, cascade: bool) -> None:
        # Partitions go with their table; INHERITS children and views over it with CASCADE
        # (without it, the statement fails and nothing was dropped).
        dependents = [*self.partitions.get(name, [])]
        if cascade:  # a key referring to the partitioned table above it goes as a whole
            self.foreign_keys = [
                k for k in self.foreign_keys if name not in self.descendants(k.referenced)
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
                self.drop_index(index_name)
        self.constraints -= {k.name for k in self.foreign_keys if k.table == name}
        self.foreign_keys = [k for k in self.foreign_keys if name not in (k.table, k.referenced)]
        self.bases.pop(name, None)
        for attribute in ("own", "tables", "names"):
            getattr(self, attribute).discard(name)
        for dependent in dependents:
            self.drop_relation(dependent, cascade)


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]
