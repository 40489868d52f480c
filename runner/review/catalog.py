"""The facts of a database that the lock analysis needs and a plan does not hold: which tables
are partitioned (and their DEFAULT partition), each table's indexes, the foreign keys between
tables, the tables under each view, the table of each statistics object. With them, a lock
the analysis says "may" take (`Lock.via`) resolves into the relations it is taken on.

A snapshot is read with any function that runs a query and returns its rows (the driver
stays outside the review layer)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .grades import STATS_QUERY, stats_document
from .locks import Lock

Query = Callable[[str], Any]

_USER = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"


def _pairs() -> dict[str, list[str]]:
    return {}


@dataclass
class Catalog:
    children: dict[str, list[str]] = field(default_factory=_pairs)  # partitions, inheritance
    indexes: dict[str, list[str]] = field(default_factory=_pairs)
    table_of: dict[str, str] = field(default_factory=dict)  # index or statistics -> table
    references: dict[str, list[str]] = field(default_factory=_pairs)  # its foreign keys' tables
    referencing: dict[str, list[str]] = field(default_factory=_pairs)  # tables referring to it
    default: dict[str, str] = field(default_factory=dict)  # partitioned -> DEFAULT partition
    bases: dict[str, list[str]] = field(default_factory=_pairs)  # view -> tables under it
    views: dict[str, list[str]] = field(default_factory=_pairs)  # table -> views over it
    triggers: dict[str, list[str]] = field(default_factory=_pairs)  # function -> its tables
    # each table's size and writes (a `sqlplan stats` document), for what a lock would block
    sizes: dict[str, Any] | None = None

    def merged(self, other: Catalog) -> Catalog:
        """Both catalogues' facts: a snapshot with what a plan has created since."""
        both = Catalog()
        for name in (
            "children",
            "indexes",
            "references",
            "referencing",
            "bases",
            "views",
            "triggers",
        ):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(both, name, {
                key: list(dict.fromkeys([*mine.get(key, []), *theirs.get(key, [])]))
                for key in mine.keys() | theirs.keys()
            })  # fmt: skip
        both.table_of = {**self.table_of, **other.table_of}
        both.default = {**self.default, **other.default}
        both.sizes = self.sizes or other.sizes
        return both

    def descendants(self, table: str) -> list[str]:
        found: list[str] = []
        pending = list(self.children.get(table, []))
        while pending:
            child = pending.pop(0)
            if child not in found:
                found.append(child)
                pending += self.children.get(child, [])
        return found

    def _related(self, lock: Lock) -> list[str]:
        name = lock.relation.rsplit(".", 1)[-1]
        if lock.via == "partitions":
            children = self.descendants(name)
            if name in self.table_of:  # a partitioned index: its partitions' indexes and tables
                children += [self.table_of[c] for c in children if c in self.table_of]
            return children
        if lock.via == "parent":
            parents = [p for p, c in self.children.items() if name in c]
            return parents + [self.default[p] for p in parents if p in self.default]
        if lock.via == "indexes":
            return list(self.indexes.get(name, []))
        if lock.via == "table":
            return [self.table_of[name]] if name in self.table_of else []
        if lock.via == "default":
            return [self.default[name]] if name in self.default else []
        if lock.via == "referencing":  # of the table and of each of its partitions
            return [
                t
                for table in [name, *self.descendants(name)]
                for t in self.referencing.get(table, [])
            ]
        if lock.via == "referenced":
            return list(self.references.get(name, []))
        if lock.via == "dependents":  # of the object, and of a table's partitions
            return [
                found
                for relation in [name, *self.descendants(name)]
                for found in [
                    *self.views.get(relation, []),
                    *self.referencing.get(relation, []),
                    *self.triggers.get(relation, []),  # a function's triggers go with it
                ]
            ]
        if lock.via == "bases":
            return list(self.bases.get(name, []))
        return []

    def resolve(self, locks: Iterable[Lock]) -> list[Lock]:
        """The locks with each "may" replaced by the relations it is taken on (none: gone)."""
        resolved: list[Lock] = []
        for lock in locks:
            if not lock.via:
                resolved.append(lock)
                continue
            for relation in self._related(lock):
                if relation != lock.relation.rsplit(".", 1)[-1]:
                    resolved.append(replace(lock, relation=relation, via=""))
        return resolved


def snapshot(query: Query) -> Catalog:
    """The catalogue of the database `query` runs on (names without their schema)."""
    catalog = Catalog()

    def pairs(sql: str) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in query(sql)]

    for parent, child in pairs(
        "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_class c ON c.oid = i.inhrelid"
    ):
        catalog.children.setdefault(parent, []).append(child)
    for table, index in pairs(
        "SELECT t.relname, x.relname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        f"WHERE {_USER}"
    ):
        catalog.indexes.setdefault(table, []).append(index)
        catalog.table_of[index] = table
    for name, table in pairs(
        "SELECT s.stxname, t.relname FROM pg_statistic_ext s JOIN pg_class t ON t.oid = s.stxrelid"
    ):
        catalog.table_of[name] = table
    for table, referenced in pairs(
        "SELECT DISTINCT c.relname, r.relname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid "
        "WHERE k.contype = 'f'"
    ):
        catalog.references.setdefault(table, []).append(referenced)
        catalog.referencing.setdefault(referenced, []).append(table)
    for parent, default in pairs(
        "SELECT p.relname, d.relname FROM pg_partitioned_table t "
        "JOIN pg_class p ON p.oid = t.partrelid JOIN pg_class d ON d.oid = t.partdefid"
    ):
        catalog.default[parent] = default
    for view, table in pairs(
        "SELECT DISTINCT v.relname, t.relname FROM pg_depend d "
        "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
        f"AND v.oid <> t.oid AND {_USER}"
    ):
        catalog.bases.setdefault(view, []).append(table)
        catalog.views.setdefault(table, []).append(view)
    for function, table in pairs(
        "SELECT DISTINCT p.proname, c.relname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
    ):
        catalog.triggers.setdefault(function, []).append(table)
    catalog.sizes = stats_document(query(STATS_QUERY))
    return catalog
