"""What each statement does to the tables it touches: the lock it takes on each, whether it
rewrites the table or reads all of it, and how long the lock is held; and the rules a reviewer
of a migration checks, each with a code, the safer form and the PostgreSQL versions it depends
on. Read from PostgreSQL's own parse tree, without a database.

The lock modes are PostgreSQL's ("Explicit Locking", table 13.2), weakest first. A rule's claim
is checked against the server itself by tests/review/test_locks.py (pg_locks of its own backend, and
pg_class.relfilenode before and after for a rewrite).

The vocabulary (modes, rules, Lock, Finding) is modes.py's; ALTER TABLE, command by command, is
alter.py's; every other statement is read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..plan.sqlparse import Statement, nodes
from .alter import alter_table, referenced_tables
from .modes import (
    LOCK_STATEMENT,
    MODES,
    NEWEST,
    OLDEST,
    RULES,
    Context,
    Finding,
    Lock,
    bare_name,
    defnames,
    describe,
    object_names,
    relation_name,
    what_waits,
)

__all__ = [
    "KEEPS_TABLE",
    "MODES",
    "NEWEST",
    "OLDEST",
    "RULES",
    "Context",
    "Finding",
    "Lock",
    "describe",
    "findings",
    "locks",
    "note",
    "what_waits",
]


def locks(statement: Statement, version: int = NEWEST) -> list[Lock]:
    """The locks a statement takes: one per relation (and per kind of relation it reaches
    through the catalogue), the strongest mode its parts need; it rewrites if any part does,
    may if any part may."""
    merged: dict[tuple[str, str, bool], Lock] = {}
    for lock, _ in _analyse(statement, Context(version=version)):
        key = (lock.relation, lock.via, lock.known)
        before = merged.get(key)
        merged[key] = lock if before is None else _merge(before, lock)
    return list(merged.values())


def _merge(one: Lock, other: Lock) -> Lock:
    rewrite = (
        True
        if True in (one.rewrite, other.rewrite)
        else None
        if None in (one.rewrite, other.rewrite)
        else False
    )
    mode = one.mode if one.strength >= other.strength else other.mode
    return replace(one, mode=mode, rewrite=rewrite, scan=one.scan or other.scan)


def findings(statement: Statement, context: Context) -> list[Finding]:
    found: list[Finding] = []
    for lock, rules in _analyse(statement, context):
        if not lock.known and not any(f.code == "not-analysed" for f in found):
            found.append(
                Finding(
                    "not-analysed",
                    f"the lock analysis does not know {_what(statement)}: assume it takes "
                    f"ACCESS EXCLUSIVE on {lock.relation}, and rehearse it to see what it takes",
                    lock.relation,
                )
            )
        if bare_name(lock.relation) in context.created:
            continue  # a table the plan itself created: nobody else uses it yet
        found += rules
        if (
            lock.mode == "ACCESS EXCLUSIVE"
            and not context.lock_timeout
            and not context.step_lock_timeout
            and _existing(statement)
            and not any(f.code == "lock-timeout" for f in found)  # once a statement
        ):
            found.append(
                Finding(
                    "lock-timeout",
                    f"{_what(statement)} takes ACCESS EXCLUSIVE on {lock.relation} with no "
                    "lock_timeout set: while it waits for the lock, every query on the table "
                    "queues behind it; give the plan or the step lock_timeout: 2s, and retry: "
                    "{attempts: 3} on the step",
                    lock.relation,
                )
            )
    return found


def note(statement: Statement, context: Context) -> None:
    """Remember what a statement changes for the rules of the statements after it."""
    kind, node = statement.kind, statement.node
    if kind in ("CreateStmt", "CreateTableAsStmt"):
        relation = node.get("relation") or node.get("into", {}).get("rel", {})
        context.created.add(relation_name(relation))
    elif kind == "VariableSetStmt" and str(node.get("name", "")).lower() == "lock_timeout":
        context.lock_timeout = node.get("kind") != "VAR_RESET" and _setting(node) not in ("0", "")


def _setting(node: dict[str, Any]) -> str:
    for arg in node.get("args", []):
        constant = arg.get("A_Const", {})
        for key in ("sval", "ival"):
            if key in constant:
                value = constant[key]
                return str(value.get(key, "0") if isinstance(value, dict) else value)
    return ""


# Statements that lock a table and keep it: the ones a lock_timeout and a short transaction
# protect. DROP and TRUNCATE have rules of their own (a reviewer reads them as data loss),
# VACUUM FULL and CLUSTER too.
KEEPS_TABLE = frozenset({"AlterTableStmt", "RenameStmt", "LockStmt", "RefreshMatViewStmt"})


def _existing(statement: Statement) -> bool:
    return statement.kind in KEEPS_TABLE


# --- the model -------------------------------------------------------------------------------


def _analyse(statement: Statement, context: Context) -> Iterator[tuple[Lock, list[Finding]]]:
    kind, node = statement.kind, statement.node
    version = context.version
    if kind == "IndexStmt":
        table = relation_name(node.get("relation", {}))
        if node.get("relation", {}).get("inh", True) and not node.get("concurrent"):
            # on a partitioned table: each partition's index is built too
            yield Lock(table, "SHARE", scan=True, via="partitions"), []
        if node.get("concurrent"):
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
        else:
            yield (
                Lock(table, "SHARE", scan=True),
                [
                    Finding(
                        "create-index",
                        f"CREATE INDEX takes a SHARE lock on {table}: its writes wait until the "
                        "index is built; use CREATE INDEX CONCURRENTLY, in a step of its own "
                        "outside a transaction block",
                        table,
                    )
                ],
            )
    elif kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_INDEX":
        yield from _alter_index(node)
    elif kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_SEQUENCE":
        yield Lock(relation_name(node.get("relation", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "AlterTableStmt":  # a table, a view, a materialized view, a foreign table
        yield from alter_table(node, version)
    elif kind == "DropStmt" and node.get("removeType") == "OBJECT_INDEX":
        for name in object_names(node.get("objects", [])):
            if node.get("concurrent"):
                yield Lock(name, "SHARE UPDATE EXCLUSIVE"), []
                yield Lock(name, "SHARE UPDATE EXCLUSIVE", via="table"), []
            else:
                yield Lock(name, "ACCESS EXCLUSIVE", via="table"), []
                yield Lock(name, "ACCESS EXCLUSIVE", via="partitions"), []
                yield (
                    Lock(name, "ACCESS EXCLUSIVE"),
                    [
                        Finding(
                            "drop-index",
                            f"DROP INDEX {name} takes ACCESS EXCLUSIVE on its table: reads and "
                            "writes wait; use DROP INDEX CONCURRENTLY, in a step of its own",
                            name,
                        )
                    ],
                )
    elif kind == "DropStmt" and node.get("removeType") in _DROPPED_RELATIONS:
        cascade = node.get("behavior") == "DROP_CASCADE"
        for name in object_names(node.get("objects", [])):
            yield Lock(name, "ACCESS EXCLUSIVE"), []
            if node.get("removeType") == "OBJECT_TABLE":
                yield Lock(name, "ACCESS EXCLUSIVE", via="partitions"), []
                yield Lock(name, "ACCESS EXCLUSIVE", via="parent"), []
                # its foreign keys are dropped from the tables on their other side too
                yield Lock(name, "ACCESS EXCLUSIVE", via="referenced"), []
            if cascade:
                yield Lock(name, "ACCESS EXCLUSIVE", via="dependents"), []
    elif kind == "DropStmt" and node.get("removeType") in _ON_A_TABLE:
        # DROP TRIGGER / POLICY / RULE name ON table: the table's name comes first
        for item in node.get("objects", []):
            parts = [p.get("String", {}).get("sval", "?") for p in item.get("List", {}).get("items", [])]  # fmt: skip
            if len(parts) >= 2:
                yield Lock(".".join(parts[:-1]), "ACCESS EXCLUSIVE"), []
    elif kind == "DropStmt" and node.get("removeType") == "OBJECT_STATISTIC_EXT":
        for name in object_names(node.get("objects", [])):
            yield Lock(name, "SHARE UPDATE EXCLUSIVE", via="table"), []
    elif kind == "DropStmt" and node.get("behavior") == "DROP_CASCADE":
        for name in object_names(node.get("objects", [])):
            yield Lock(name, "ACCESS EXCLUSIVE", via="dependents"), []
    elif kind == "DropStmt":
        pass  # a type, a function, a schema...: no relation, unless CASCADE reaches one
    elif kind == "ReindexStmt" and node.get("relation"):
        table = relation_name(node["relation"])
        index = node.get("kind") == "REINDEX_OBJECT_INDEX"
        if "concurrently" in defnames(node.get("params", [])):
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
            yield Lock(table, "SHARE UPDATE EXCLUSIVE", via="table" if index else "indexes"), []
            if not index:  # a partitioned table's partitions are listed under SHARE first
                yield Lock(table, "SHARE", via="partitions"), []
        elif index:
            yield Lock(table, "ACCESS EXCLUSIVE"), []
            yield Lock(table, "SHARE", via="table"), []
        else:
            yield Lock(table, "SHARE", via="partitions"), []
            yield Lock(table, "ACCESS EXCLUSIVE", via="indexes"), []
            yield (
                Lock(table, "SHARE"),
                [
                    Finding(
                        "reindex",
                        f"REINDEX takes a SHARE lock on {table} (and ACCESS EXCLUSIVE on each "
                        "index, which blocks the reads that use it); use REINDEX CONCURRENTLY",
                        table,
                    )
                ],
            )
    elif kind == "VacuumStmt":
        full = "full" in defnames(node.get("options", []))
        for item in node.get("rels", []):
            table = relation_name(item.get("VacuumRelation", {}).get("relation", {}))
            if full and node.get("is_vacuumcmd"):
                yield (
                    Lock(table, "ACCESS EXCLUSIVE", rewrite=True),
                    [
                        Finding(
                            "rewrite-table",
                            f"VACUUM FULL rewrites {table} under ACCESS EXCLUSIVE: reads and "
                            "writes wait for the whole rewrite; a plain VACUUM (or pg_repack) "
                            "does not block them",
                            table,
                        )
                    ],
                )
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="partitions"), []
            else:
                yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
                yield Lock(table, "SHARE UPDATE EXCLUSIVE", via="partitions"), []
    elif kind == "ClusterStmt" and node.get("relation"):
        table = relation_name(node["relation"])
        yield (
            Lock(table, "ACCESS EXCLUSIVE", rewrite=True),
            [
                Finding(
                    "rewrite-table",
                    f"CLUSTER rewrites {table} under ACCESS EXCLUSIVE: reads and writes wait "
                    "for the whole rewrite",
                    table,
                )
            ],
        )
        yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="partitions"), []
    elif kind == "TruncateStmt":
        for item in node.get("relations", []):
            relation = item.get("RangeVar", item)
            table = relation_name(relation)
            # a new, empty file: the relfilenode changes as in a rewrite, without the copying
            yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True), []
            if relation.get("inh", True):
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="partitions"), []
            if node.get("behavior") == "DROP_CASCADE":
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="referencing"), []
    elif kind == "RenameStmt" and node.get("relation"):
        name = relation_name(node["relation"])
        if node.get("renameType") == "OBJECT_INDEX":
            yield Lock(name, "SHARE UPDATE EXCLUSIVE"), []  # the index only (PostgreSQL 12+)
        else:
            yield Lock(name, "ACCESS EXCLUSIVE"), []
            if node.get("renameType") == "OBJECT_COLUMN" and node["relation"].get("inh", True):
                yield Lock(name, "ACCESS EXCLUSIVE", via="partitions"), []
    elif kind == "LockStmt":
        mode = LOCK_STATEMENT.get(int(node.get("mode", 8)), "ACCESS EXCLUSIVE")
        for item in node.get("relations", []):
            relation = item.get("RangeVar", item)
            yield Lock(relation_name(relation), mode), []
            if relation.get("inh", True):
                yield Lock(relation_name(relation), mode, via="partitions"), []
            yield Lock(relation_name(relation), mode, via="bases"), []
    elif kind == "CreateTrigStmt":
        table = relation_name(node.get("relation", {}))
        yield Lock(table, "SHARE ROW EXCLUSIVE"), []
        yield Lock(table, "SHARE ROW EXCLUSIVE", via="partitions"), []
    elif kind == "CreateStmt":
        for referenced in referenced_tables(node):
            yield Lock(referenced, "SHARE ROW EXCLUSIVE"), []
        for item in node.get("inhRelations", []):
            parent = item.get("RangeVar", item)
            if node.get("partbound"):  # PARTITION OF: the parent, and its DEFAULT partition
                yield Lock(relation_name(parent), "ACCESS EXCLUSIVE"), []
                yield Lock(relation_name(parent), "ACCESS EXCLUSIVE", scan=True, via="default"), []
            else:  # INHERITS
                yield Lock(relation_name(parent), "SHARE UPDATE EXCLUSIVE"), []
    elif kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        yield Lock(relation_name(node.get("table", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "RuleStmt":
        yield Lock(relation_name(node.get("relation", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "CreateStatsStmt":
        for relation in node.get("relations", []):
            yield (
                Lock(relation_name(relation.get("RangeVar", relation)), "SHARE UPDATE EXCLUSIVE"),
                [],
            )
    elif kind == "CreatePublicationStmt":
        for item in node.get("pubobjects", []):
            spec = item.get("PublicationObjSpec", {})
            relation = spec.get("pubtable", {}).get("relation")
            if relation:
                yield Lock(relation_name(relation), "SHARE UPDATE EXCLUSIVE"), []
                yield Lock(relation_name(relation), "SHARE UPDATE EXCLUSIVE", via="partitions"), []
    elif kind == "ReindexStmt":  # SCHEMA, DATABASE, SYSTEM: every table in it
        where = f"every table of {node.get('name') or 'the database'}"
        if "concurrently" in defnames(node.get("params", [])):
            yield Lock(where, "SHARE UPDATE EXCLUSIVE"), []
        else:
            yield Lock(where, "SHARE"), []
            yield Lock(where, "ACCESS EXCLUSIVE", via="indexes"), []
    elif kind == "CopyStmt" and node.get("is_from") and node.get("relation"):
        yield Lock(relation_name(node["relation"]), "ROW EXCLUSIVE"), []
    elif kind in ("CommentStmt", "SecLabelStmt"):
        yield from _on_object(node)
    elif kind == "AlterObjectSchemaStmt" and node.get("relation"):
        yield Lock(relation_name(node["relation"]), "ACCESS EXCLUSIVE"), []
    elif kind == "AlterSeqStmt":
        yield Lock(relation_name(node.get("sequence", {})), "SHARE ROW EXCLUSIVE"), []
    elif kind == "ViewStmt" and node.get("replace"):
        yield Lock(relation_name(node.get("view", {})), "ACCESS EXCLUSIVE"), []  # if it exists
    elif kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        target = node.get("relation")
        if isinstance(target, dict):
            yield Lock(relation_name(target), "ROW EXCLUSIVE"), []
    elif kind == "RefreshMatViewStmt":
        view = relation_name(node.get("relation", {}))
        if node.get("concurrent"):
            yield Lock(view, "EXCLUSIVE"), []
        else:  # the new contents go to a new file
            yield Lock(view, "ACCESS EXCLUSIVE", rewrite=True), []
    elif kind not in _NO_RELATION_LOCKS:
        # a statement the model does not know: assume the worst on what it names
        named = sorted(set(_range_vars(node))) or ["what it touches"]
        for name in named:
            yield Lock(name, "ACCESS EXCLUSIVE", known=False), []


# Statements that lock no relation, or only read what they name (a query, a view's
# definition): nothing for a reviewer.
_NO_RELATION_LOCKS = frozenset({
    "SelectStmt", "TransactionStmt", "VariableSetStmt", "VariableShowStmt", "NotifyStmt",
    "ListenStmt", "UnlistenStmt", "CreateSchemaStmt", "CreateSeqStmt", "CreateEnumStmt",
    "CompositeTypeStmt", "CreateDomainStmt", "CreateFunctionStmt", "ViewStmt",
    "CreateTableAsStmt", "ExplainStmt", "PrepareStmt", "DeallocateStmt", "CheckPointStmt",
    "DiscardStmt", "LoadStmt", "CreateRoleStmt", "AlterRoleStmt", "DropRoleStmt",
    "GrantRoleStmt", "AlterEnumStmt", "CreateRangeStmt", "AlterFunctionStmt", "CreateCastStmt",
    "DefineStmt", "ConstraintsSetStmt", "VacuumStmt", "ClusterStmt",
    "CreateExtensionStmt", "AlterDefaultPrivilegesStmt", "GrantStmt", "CallStmt",
    "DeclareCursorStmt", "FetchStmt", "ClosePortalStmt", "ExecuteStmt", "CopyStmt",
    "CreatedbStmt", "DropdbStmt", "AlterDatabaseStmt", "AlterDatabaseSetStmt",
    "AlterSystemStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt", "AlterOwnerStmt",
    "AlterRoleSetStmt", "CreatePLangStmt", "CreateConversionStmt", "CreateOpClassStmt",
    "CreateOpFamilyStmt", "AlterOpFamilyStmt", "CreateTransformStmt", "CreateAmStmt",
    "CreateEventTrigStmt", "AlterEventTrigStmt", "CreateFdwStmt", "AlterFdwStmt",
    "CreateForeignServerStmt", "AlterForeignServerStmt", "CreateUserMappingStmt",
    "AlterUserMappingStmt", "DropUserMappingStmt", "AlterTSDictionaryStmt",
    "AlterTSConfigurationStmt", "CreateSubscriptionStmt", "AlterSubscriptionStmt",
    "DropSubscriptionStmt", "RenameStmt", "AlterObjectSchemaStmt", "AlterTypeStmt",
    "AlterCollationStmt", "AlterStatsStmt",
})  # fmt: skip
_DROPPED_RELATIONS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE"}
)
_ON_A_TABLE = frozenset({"OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"})
_COMMENTED_RELATIONS = frozenset({"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX",
                                  "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE"})  # fmt: skip


def _on_object(node: dict[str, Any]) -> Iterator[tuple[Lock, list[Finding]]]:
    """COMMENT ON and SECURITY LABEL ON: SHARE UPDATE EXCLUSIVE on a relation, or on the table
    of a column, trigger, policy, rule or constraint."""
    objtype = node.get("objtype", "")
    item = node.get("object", {})
    parts = [p.get("String", {}).get("sval", "?") for p in item.get("List", {}).get("items", [])]
    if objtype in _COMMENTED_RELATIONS and parts:
        yield Lock(".".join(parts), "SHARE UPDATE EXCLUSIVE"), []
    elif objtype in ("OBJECT_COLUMN", "OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE",
                     "OBJECT_TABCONSTRAINT") and len(parts) >= 2:  # fmt: skip
        yield Lock(".".join(parts[:-1]), "SHARE UPDATE EXCLUSIVE"), []


def _range_vars(tree: Any) -> Iterator[str]:
    """The relations a parse tree names."""
    return (relation_name(node) for node in nodes(tree) if "relname" in node)


def _alter_index(node: dict[str, Any]) -> Iterator[tuple[Lock, list[Finding]]]:
    index = relation_name(node.get("relation", {}))
    for item in node.get("cmds", []):
        subtype = item.get("AlterTableCmd", {}).get("subtype", "")
        if subtype in ("AT_SetRelOptions", "AT_ResetRelOptions", "AT_SetStatistics"):
            yield Lock(index, "SHARE UPDATE EXCLUSIVE"), []
        elif subtype == "AT_SetTableSpace":
            yield Lock(index, "ACCESS EXCLUSIVE", rewrite=None), []
        else:
            yield Lock(index, "ACCESS EXCLUSIVE"), []


def _what(statement: Statement) -> str:
    first_line = statement.text.strip().splitlines()[0] if statement.text.strip() else ""
    return first_line if len(first_line) <= 60 else first_line[:59] + "…"
