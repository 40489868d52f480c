"""What each statement does to the tables it touches: the lock it takes on each, whether it
rewrites the table or reads all of it, and how long the lock is held; and the rules a reviewer
of a migration checks, each with a code, the safer form and the PostgreSQL versions it depends
on. Read from PostgreSQL's own parse tree, without a database.

The lock modes are PostgreSQL's ("Explicit Locking", table 13.2), weakest first. A rule's claim
is checked against the server itself by tests/review/test_locks.py (pg_locks of its own backend, and
pg_class.relfilenode before and after for a rewrite).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..plan.sqlparse import Statement, nodes

MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
NEWEST = 18  # the PostgreSQL version assumed when a plan does not say
OLDEST = 12

# LOCK TABLE's modes by the number the parse tree gives (lockdefs.h)
_LOCK_STATEMENT = dict(enumerate(MODES, start=1))

# What each rule is about, for `allow`: the codes a step can silence.
RULES = {
    "create-index": "CREATE INDEX without CONCURRENTLY",
    "add-column-rewrite": "ADD COLUMN that rewrites the table",
    "alter-column-type": "ALTER COLUMN ... TYPE",
    "set-not-null": "SET NOT NULL",
    "add-foreign-key": "ADD FOREIGN KEY without NOT VALID",
    "add-check": "ADD CHECK without NOT VALID",
    "add-unique": "ADD UNIQUE or PRIMARY KEY without USING INDEX",
    "exclude-constraint": "ADD EXCLUDE",
    "drop-index": "DROP INDEX without CONCURRENTLY",
    "reindex": "REINDEX without CONCURRENTLY",
    "detach-partition": "DETACH PARTITION without CONCURRENTLY",
    "rewrite-table": "VACUUM FULL or CLUSTER",
    "lock-timeout": "ACCESS EXCLUSIVE without a lock_timeout",
    "held-lock": "statements after an ACCESS EXCLUSIVE lock in its transaction",
    "not-analysed": "a statement whose locks the analysis does not know",
}


@dataclass(frozen=True)
class Lock:
    """A lock a statement takes on one relation, and what it does under it."""

    relation: str  # as written: schema.table, or an index's name
    mode: str
    rewrite: bool | None = False  # the table is written anew; None: it depends on its columns
    scan: bool = False  # every row is read (a validation) while the lock is held
    # Not the relation itself but relations found from it in the catalogue, which the plan
    # does not hold (one of VIA): the analysis says "may". The catalogue resolves them.
    via: str = ""
    known: bool = True  # False: a statement the model does not know; its mode is assumed

    @property
    def strength(self) -> int:
        return MODES.index(self.mode)

    def target(self) -> str:
        return VIA[self.via].format(self.relation) if self.via else self.relation

    def describe(self) -> str:
        if not self.known:
            return f"not analysed: assume {self.mode} on {self.target()}"
        extra = (
            ", rewrites it"
            if self.rewrite
            else ", may rewrite it"
            if self.rewrite is None
            else ", reads every row"
            if self.scan
            else ""
        )
        if self.via:
            return f"may take {self.mode} on {self.target()}{extra.replace(' it', ' them')}"
        return f"{self.mode} on {self.relation}{extra}"


# What a lock `via` the catalogue is on, from the relation the statement names: the catalogue
# says which relations those are, if any.
VIA = {
    "partitions": "the partitions of {}",
    "indexes": "the indexes of {}",
    "table": "the table of {}",
    "default": "the DEFAULT partition of {}",
    "referencing": "the tables referring to {}",
    "referenced": "the tables {} refers to",
    "dependents": "the objects depending on {}",
    "bases": "the tables under {}",
    "parent": "the partitioned table of {} and its DEFAULT partition",
}
_VIA_NOUNS = {
    "partitions": "partitions", "indexes": "indexes", "table": "table",
    "default": "DEFAULT partition", "referencing": "referencing tables",
    "referenced": "referenced tables", "dependents": "dependent objects",
    "bases": "base tables", "parent": "partitioned parent (and its DEFAULT partition)",
}  # fmt: skip


def describe(locks: Iterable[Lock]) -> list[str]:
    """The locks as a reviewer reads them: each the statement takes on what it names, then
    what it may take on relations only the catalogue knows, one line per relation and mode
    ("may: ACCESS EXCLUSIVE on the partitions and referenced tables of t")."""
    lines: list[str] = []
    may: dict[tuple[str, str, bool | None, bool], list[str]] = {}
    for lock in locks:
        if not lock.via or not lock.known:
            lines.append(lock.describe())
        else:
            key = (lock.relation, lock.mode, lock.rewrite, lock.scan)
            nouns = may.setdefault(key, [])
            if _VIA_NOUNS[lock.via] not in nouns:
                nouns.append(_VIA_NOUNS[lock.via])
    for (relation, mode, rewrite, scan), nouns in may.items():
        listed = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]
        extra = (
            ", rewrites them"
            if rewrite
            else ", may rewrite them"
            if rewrite is None
            else ", reads all their rows"
            if scan
            else ""
        )
        lines.append(f"may: {mode} on the {listed} of {relation}{extra}")
    return lines


# The lock each kind of work on a relation takes, and so what waits behind a mode
# (PostgreSQL's table of conflicting lock modes).
_CONFLICTS = {
    "ACCESS SHARE": {"ACCESS EXCLUSIVE"},
    "ROW SHARE": {"EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "ROW EXCLUSIVE": {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "SHARE UPDATE EXCLUSIVE": {"SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE",
                               "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "SHARE": {"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
              "ACCESS EXCLUSIVE"},
    "SHARE ROW EXCLUSIVE": {"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                            "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "EXCLUSIVE": {"ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                  "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "ACCESS EXCLUSIVE": set(MODES),
}  # fmt: skip


def what_waits(mode: str, *, sequence: bool = False) -> str:
    """What other sessions' work waits behind `mode` on a relation, read from the conflict
    table by the lock each kind of work takes: reads ACCESS SHARE, SELECT ... FOR UPDATE ROW
    SHARE, writes and nextval() ROW EXCLUSIVE, VACUUM and ANALYZE SHARE UPDATE EXCLUSIVE,
    CREATE INDEX SHARE."""
    conflicts = _CONFLICTS[mode]
    if sequence:
        if "ACCESS SHARE" in conflicts:
            return "nextval() and reads wait"
        return "nextval() waits" if "ROW EXCLUSIVE" in conflicts else "nextval() goes on"
    if "ACCESS SHARE" in conflicts:
        return "reads and writes wait"
    if "ROW EXCLUSIVE" in conflicts:
        locking = " and SELECT ... FOR UPDATE" if "ROW SHARE" in conflicts else ""
        return f"writes{locking} wait; reads go on"
    if "SHARE UPDATE EXCLUSIVE" in conflicts:
        return "VACUUM, ANALYZE and schema changes wait; reads and writes go on"
    if "SHARE" in conflicts:
        return "CREATE INDEX waits; reads and writes go on"
    if "EXCLUSIVE" in conflicts:
        return "only REFRESH ... CONCURRENTLY and schema changes that take ACCESS EXCLUSIVE wait"
    return "only schema changes that take ACCESS EXCLUSIVE wait"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str  # what happens and the safer form
    relation: str


@dataclass
class Context:
    """What the plan has done before a statement, as far as the rules need it."""

    version: int = NEWEST
    created: set[str] = field(default_factory=set)  # tables the plan created: exempt
    lock_timeout: bool = False  # a SET lock_timeout ran earlier on the connection
    step_lock_timeout: bool = False  # the step runs with a lock_timeout (the plan's or its own)


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
        if _bare(lock.relation) in context.created:
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
        context.created.add(_name(relation))
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
        table = _name(node.get("relation", {}))
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
        yield Lock(_name(node.get("relation", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "AlterTableStmt":  # a table, a view, a materialized view, a foreign table
        yield from _alter_table(node, version)
    elif kind == "DropStmt" and node.get("removeType") == "OBJECT_INDEX":
        for name in _object_names(node.get("objects", [])):
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
        for name in _object_names(node.get("objects", [])):
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
        for name in _object_names(node.get("objects", [])):
            yield Lock(name, "SHARE UPDATE EXCLUSIVE", via="table"), []
    elif kind == "DropStmt" and node.get("behavior") == "DROP_CASCADE":
        for name in _object_names(node.get("objects", [])):
            yield Lock(name, "ACCESS EXCLUSIVE", via="dependents"), []
    elif kind == "DropStmt":
        pass  # a type, a function, a schema...: no relation, unless CASCADE reaches one
    elif kind == "ReindexStmt" and node.get("relation"):
        table = _name(node["relation"])
        index = node.get("kind") == "REINDEX_OBJECT_INDEX"
        if "concurrently" in _defnames(node.get("params", [])):
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
        full = "full" in _defnames(node.get("options", []))
        for item in node.get("rels", []):
            table = _name(item.get("VacuumRelation", {}).get("relation", {}))
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
        table = _name(node["relation"])
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
            table = _name(relation)
            # a new, empty file: the relfilenode changes as in a rewrite, without the copying
            yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True), []
            if relation.get("inh", True):
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="partitions"), []
            if node.get("behavior") == "DROP_CASCADE":
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=True, via="referencing"), []
    elif kind == "RenameStmt" and node.get("relation"):
        name = _name(node["relation"])
        if node.get("renameType") == "OBJECT_INDEX":
            yield Lock(name, "SHARE UPDATE EXCLUSIVE"), []  # the index only (PostgreSQL 12+)
        else:
            yield Lock(name, "ACCESS EXCLUSIVE"), []
            if node.get("renameType") == "OBJECT_COLUMN" and node["relation"].get("inh", True):
                yield Lock(name, "ACCESS EXCLUSIVE", via="partitions"), []
    elif kind == "LockStmt":
        mode = _LOCK_STATEMENT.get(int(node.get("mode", 8)), "ACCESS EXCLUSIVE")
        for item in node.get("relations", []):
            relation = item.get("RangeVar", item)
            yield Lock(_name(relation), mode), []
            if relation.get("inh", True):
                yield Lock(_name(relation), mode, via="partitions"), []
            yield Lock(_name(relation), mode, via="bases"), []
    elif kind == "CreateTrigStmt":
        table = _name(node.get("relation", {}))
        yield Lock(table, "SHARE ROW EXCLUSIVE"), []
        yield Lock(table, "SHARE ROW EXCLUSIVE", via="partitions"), []
    elif kind == "CreateStmt":
        for referenced in _references(node):
            yield Lock(referenced, "SHARE ROW EXCLUSIVE"), []
        for item in node.get("inhRelations", []):
            parent = item.get("RangeVar", item)
            if node.get("partbound"):  # PARTITION OF: the parent, and its DEFAULT partition
                yield Lock(_name(parent), "ACCESS EXCLUSIVE"), []
                yield Lock(_name(parent), "ACCESS EXCLUSIVE", scan=True, via="default"), []
            else:  # INHERITS
                yield Lock(_name(parent), "SHARE UPDATE EXCLUSIVE"), []
    elif kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        yield Lock(_name(node.get("table", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "RuleStmt":
        yield Lock(_name(node.get("relation", {})), "ACCESS EXCLUSIVE"), []
    elif kind == "CreateStatsStmt":
        for relation in node.get("relations", []):
            yield Lock(_name(relation.get("RangeVar", relation)), "SHARE UPDATE EXCLUSIVE"), []
    elif kind == "CreatePublicationStmt":
        for item in node.get("pubobjects", []):
            spec = item.get("PublicationObjSpec", {})
            relation = spec.get("pubtable", {}).get("relation")
            if relation:
                yield Lock(_name(relation), "SHARE UPDATE EXCLUSIVE"), []
                yield Lock(_name(relation), "SHARE UPDATE EXCLUSIVE", via="partitions"), []
    elif kind == "ReindexStmt":  # SCHEMA, DATABASE, SYSTEM: every table in it
        where = f"every table of {node.get('name') or 'the database'}"
        if "concurrently" in _defnames(node.get("params", [])):
            yield Lock(where, "SHARE UPDATE EXCLUSIVE"), []
        else:
            yield Lock(where, "SHARE"), []
            yield Lock(where, "ACCESS EXCLUSIVE", via="indexes"), []
    elif kind == "CopyStmt" and node.get("is_from") and node.get("relation"):
        yield Lock(_name(node["relation"]), "ROW EXCLUSIVE"), []
    elif kind in ("CommentStmt", "SecLabelStmt"):
        yield from _on_object(node)
    elif kind == "AlterObjectSchemaStmt" and node.get("relation"):
        yield Lock(_name(node["relation"]), "ACCESS EXCLUSIVE"), []
    elif kind == "AlterSeqStmt":
        yield Lock(_name(node.get("sequence", {})), "SHARE ROW EXCLUSIVE"), []
    elif kind == "ViewStmt" and node.get("replace"):
        yield Lock(_name(node.get("view", {})), "ACCESS EXCLUSIVE"), []  # if it exists
    elif kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        target = node.get("relation")
        if isinstance(target, dict):
            yield Lock(_name(target), "ROW EXCLUSIVE"), []
    elif kind == "RefreshMatViewStmt":
        view = _name(node.get("relation", {}))
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
    return (_name(node) for node in nodes(tree) if "relname" in node)


def _alter_index(node: dict[str, Any]) -> Iterator[tuple[Lock, list[Finding]]]:
    index = _name(node.get("relation", {}))
    for item in node.get("cmds", []):
        subtype = item.get("AlterTableCmd", {}).get("subtype", "")
        if subtype in ("AT_SetRelOptions", "AT_ResetRelOptions", "AT_SetStatistics"):
            yield Lock(index, "SHARE UPDATE EXCLUSIVE"), []
        elif subtype == "AT_SetTableSpace":
            yield Lock(index, "ACCESS EXCLUSIVE", rewrite=None), []
        else:
            yield Lock(index, "ACCESS EXCLUSIVE"), []


# ALTER TABLE subcommands that act on the named table alone, never on its partitions
_NOT_RECURSING = frozenset({
    "AT_SetTableSpace", "AT_SetRelOptions", "AT_ResetRelOptions", "AT_ReplaceRelOptions",
    "AT_ChangeOwner", "AT_ClusterOn", "AT_DropCluster", "AT_SetLogged", "AT_SetUnLogged",
    "AT_ReplicaIdentity", "AT_EnableRowSecurity", "AT_DisableRowSecurity",
    "AT_ForceRowSecurity", "AT_NoForceRowSecurity", "AT_AttachPartition",
    "AT_DetachPartition", "AT_DetachPartitionFinalize", "AT_GenericOptions", "AT_AddInherit",
    "AT_DropInherit", "AT_SetAccessMethod",
})  # fmt: skip
# Storage parameters a change of which takes ACCESS EXCLUSIVE (the others: SHARE UPDATE
# EXCLUSIVE), as reloptions.c says of each
_EXCLUSIVE_OPTIONS = frozenset({"user_catalog_table", "security_barrier", "check_option",
                                "security_invoker"})  # fmt: skip


def _alter_table(node: dict[str, Any], version: int) -> Iterator[tuple[Lock, list[Finding]]]:
    table = _name(node.get("relation", {}))
    recurse = node.get("relation", {}).get("inh", True)
    found: list[tuple[Lock, list[Finding]]] = []
    recursing: list[Lock] = []
    for item in node.get("cmds", []):
        subtype = item.get("AlterTableCmd", {}).get("subtype", "")
        for lock, rules in _alter_table_command({**node, "cmds": [item]}, version):
            found.append((lock, rules))
            if recurse and lock.relation == table and not lock.via and subtype not in _NOT_RECURSING:  # fmt: skip
                recursing.append(lock)
    yield from found
    # The server takes one lock for the whole statement, the strongest its subcommands need,
    # and opens the partitions with that one when any subcommand goes down to them.
    strongest = max((lock.strength for lock, _ in found if lock.relation == table), default=0)
    for lock in recursing:
        yield replace(lock, via="partitions", mode=MODES[strongest]), []


def _alter_table_command(
    node: dict[str, Any], version: int
) -> Iterator[tuple[Lock, list[Finding]]]:
    table = _name(node.get("relation", {}))
    for item in node.get("cmds", []):
        command = item.get("AlterTableCmd", {})
        subtype = command.get("subtype", "")
        definition = command.get("def", {})
        if subtype == "AT_AddColumn":
            column = definition.get("ColumnDef", {})
            why = _rewriting_column(column, version)
            if why:
                yield (
                    Lock(table, "ACCESS EXCLUSIVE", rewrite=True),
                    [
                        Finding(
                            "add-column-rewrite",
                            f"ADD COLUMN {column.get('colname')} with {why} rewrites {table} "
                            "under ACCESS EXCLUSIVE; add the column without it (or with a "
                            "constant default), then fill it in batches",
                            table,
                        )
                    ],
                )
            else:
                # a fact the plan does not hold may decide it: a domain's CHECK, a function's
                # volatility ("may rewrite"; a rehearsal shows which)
                may = _may_rewrite_column(column)
                yield Lock(table, "ACCESS EXCLUSIVE", rewrite=None if may else False), []
            for referenced in _references({"tableElts": [{"ColumnDef": column}]}):
                yield Lock(referenced, "SHARE ROW EXCLUSIVE"), []
        elif subtype == "AT_SetExpression":  # a stored column is computed anew: a rewrite
            yield Lock(table, "ACCESS EXCLUSIVE", rewrite=None), []
        elif subtype in ("AT_DropConstraint", "AT_DropColumn"):
            yield Lock(table, "ACCESS EXCLUSIVE"), []
            yield Lock(table, "ACCESS EXCLUSIVE", via="referenced"), []
            if command.get("behavior") == "DROP_CASCADE":
                yield Lock(table, "ACCESS EXCLUSIVE", via="dependents"), []
        elif subtype == "AT_AlterColumnType":
            # a key column's foreign keys are checked again: on the tables referring to it
            yield Lock(table, "ACCESS EXCLUSIVE", via="referencing"), []
            # Whether it rewrites depends on the current type, which only the catalogue holds
            # (to the same type, a domain over it, timestamp to timestamptz under UTC: no).
            yield (
                Lock(table, "ACCESS EXCLUSIVE", rewrite=None),
                [
                    Finding(
                        "alter-column-type",
                        f"ALTER COLUMN {command.get('name')} TYPE rewrites {table} and its "
                        "indexes under ACCESS EXCLUSIVE unless the change is binary-coercible "
                        "(varchar to text, to a longer varchar, numeric to a larger precision "
                        "of the same scale); add a new column, fill it, and swap",
                        table,
                    )
                ],
            )
        elif subtype == "AT_SetNotNull":
            skip = (
                "; from PostgreSQL 12 the scan is skipped when a valid CHECK "
                f"({command.get('name')} IS NOT NULL) exists: add it NOT VALID, VALIDATE it, "
                "then SET NOT NULL"
                if version >= 12
                else ""
            )
            yield (
                Lock(table, "ACCESS EXCLUSIVE", scan=True),
                [
                    Finding(
                        "set-not-null",
                        f"SET NOT NULL on {command.get('name')} reads every row of {table} "
                        f"under ACCESS EXCLUSIVE{skip}",
                        table,
                    )
                ],
            )
        elif subtype == "AT_AddConstraint":
            yield from _add_constraint(table, definition.get("Constraint", {}))
        elif subtype == "AT_ValidateConstraint":
            yield Lock(table, "SHARE UPDATE EXCLUSIVE", scan=True), []
        elif subtype == "AT_DetachPartition":
            partition = _name(definition.get("PartitionCmd", {}).get("name", {}))
            if definition.get("PartitionCmd", {}).get("concurrent"):
                yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
                yield Lock(partition, "SHARE UPDATE EXCLUSIVE"), []
            else:
                concurrently = (
                    "; use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14 and later), in a "
                    "step of its own"
                    if version >= 14
                    else ""
                )
                yield (
                    Lock(table, "ACCESS EXCLUSIVE"),
                    [
                        Finding(
                            "detach-partition",
                            f"DETACH PARTITION takes ACCESS EXCLUSIVE on {table}: reads and "
                            f"writes of every partition wait{concurrently}",
                            table,
                        )
                    ],
                )
                yield Lock(partition, "ACCESS EXCLUSIVE"), []
            yield Lock(table, "ACCESS EXCLUSIVE", via="default"), []
        elif subtype in ("AT_SetLogged", "AT_SetUnLogged", "AT_SetTableSpace"):
            # not when the table is so already (its tablespace, its persistence)
            yield (
                Lock(table, "ACCESS EXCLUSIVE", rewrite=None),
                [
                    Finding(
                        "rewrite-table",
                        f"{_SETS[subtype]} rewrites {table} under ACCESS EXCLUSIVE: reads and "
                        "writes wait for the "
                        "whole copy",
                        table,
                    )
                ],
            )
        elif subtype == "AT_AttachPartition":
            partition = _name(definition.get("PartitionCmd", {}).get("name", {}))
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
            yield Lock(partition, "ACCESS EXCLUSIVE", scan=True), []
            yield Lock(table, "ACCESS EXCLUSIVE", scan=True, via="default"), []
        elif subtype in ("AT_SetRelOptions", "AT_ResetRelOptions") and (
            set(_defnames(definition.get("List", {}).get("items", []))) & _EXCLUSIVE_OPTIONS
        ):
            yield Lock(table, "ACCESS EXCLUSIVE"), []
        elif subtype in (
            "AT_SetStatistics",
            "AT_SetOptions",
            "AT_ResetOptions",
            "AT_SetRelOptions",
            "AT_ResetRelOptions",
            "AT_ClusterOn",
            "AT_DropCluster",
        ):
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
        elif subtype in (
            "AT_EnableTrig",
            "AT_DisableTrig",
            "AT_EnableTrigAll",
            "AT_DisableTrigAll",
            "AT_EnableTrigUser",
            "AT_DisableTrigUser",
            "AT_EnableAlwaysTrig",
            "AT_EnableReplicaTrig",
        ):
            yield Lock(table, "SHARE ROW EXCLUSIVE"), []
        else:
            yield Lock(table, "ACCESS EXCLUSIVE"), []


_SETS = {
    "AT_SetLogged": "SET LOGGED",
    "AT_SetUnLogged": "SET UNLOGGED",
    "AT_SetTableSpace": "SET TABLESPACE",
}


def _add_constraint(table: str, constraint: dict[str, Any]) -> Iterator[tuple[Lock, list[Finding]]]:
    contype = constraint.get("contype")
    not_valid = bool(constraint.get("skip_validation"))
    if contype == "CONSTR_FOREIGN":
        referenced = _name(constraint.get("pktable", {}))
        rules = (
            []
            if not_valid
            else [
                Finding(
                    "add-foreign-key",
                    f"ADD FOREIGN KEY reads every row of {table} under SHARE ROW EXCLUSIVE on "
                    f"it and on {referenced} (their writes wait); add it NOT VALID, then "
                    "VALIDATE CONSTRAINT in a later step (which takes only SHARE UPDATE EXCLUSIVE)",
                    table,
                )
            ]
        )
        yield Lock(table, "SHARE ROW EXCLUSIVE", scan=not not_valid), rules
        yield Lock(referenced, "SHARE ROW EXCLUSIVE"), []
    elif contype == "CONSTR_CHECK":
        rules = (
            []
            if not_valid
            else [
                Finding(
                    "add-check",
                    f"ADD CHECK reads every row of {table} under ACCESS EXCLUSIVE; add it NOT "
                    "VALID, then VALIDATE CONSTRAINT in a later step (SHARE UPDATE EXCLUSIVE)",
                    table,
                )
            ]
        )
        yield Lock(table, "ACCESS EXCLUSIVE", scan=not not_valid), rules
    elif contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY"):
        what = "PRIMARY KEY" if contype == "CONSTR_PRIMARY" else "UNIQUE"
        if constraint.get("indexname"):
            yield Lock(table, "ACCESS EXCLUSIVE"), []
        else:
            yield (
                Lock(table, "ACCESS EXCLUSIVE", scan=True),
                [
                    Finding(
                        "add-unique",
                        f"ADD {what} builds its index under ACCESS EXCLUSIVE on {table}: reads "
                        "and writes wait; CREATE UNIQUE INDEX CONCURRENTLY first, then ADD "
                        f"{what} USING INDEX",
                        table,
                    )
                ],
            )
    elif contype == "CONSTR_EXCLUSION":
        yield (
            Lock(table, "ACCESS EXCLUSIVE", scan=True),
            [
                Finding(
                    "exclude-constraint",
                    f"ADD EXCLUDE builds its index under ACCESS EXCLUSIVE on {table}, with no "
                    "concurrent form; run it when the table is small or quiet",
                    table,
                )
            ],
        )
    else:
        yield Lock(table, "ACCESS EXCLUSIVE"), []


# Functions whose default makes ADD COLUMN rewrite the table (volatile). A default of a stable or
# immutable expression (now(), a constant) is stored once, without a rewrite, from PostgreSQL 11.
_VOLATILE = {
    "random", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v1",
    "uuid_generate_v4", "nextval", "setseed", "txid_current", "uuidv4", "uuidv7",
    "random_normal",
}  # fmt: skip
_SERIAL = {"serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"}


def _rewriting_column(column: dict[str, Any], version: int) -> str | None:
    """Why ADD COLUMN rewrites the table, or None."""
    type_name = _type_name(column)
    if type_name in _SERIAL:
        return f"type {type_name} (a nextval() default, volatile)"
    for item in column.get("constraints", []):
        constraint = item.get("Constraint", {})
        contype = constraint.get("contype")
        if contype == "CONSTR_GENERATED":
            if constraint.get("generated_kind") == "v" and version >= 18:
                continue  # VIRTUAL (PostgreSQL 18's default): computed when read
            return "a stored generated value"
        if contype == "CONSTR_IDENTITY":
            return "an identity (a nextval() default, volatile)"
        if contype == "CONSTR_DEFAULT":
            functions = {f.lower() for f in _function_names(constraint.get("raw_expr", {}))}
            if functions & _VOLATILE:
                return f"a volatile default ({', '.join(sorted(functions & _VOLATILE))}())"
            if version < 11:
                return "a default (before PostgreSQL 11, any default)"
    return None


# Types that are not domains, and functions known not to be volatile: a default or a column of
# anything else may rewrite the table (a domain with a CHECK, a volatile function).
_BUILT_IN_TYPES = frozenset({
    "int2", "int4", "int8", "smallint", "integer", "int", "bigint", "text", "varchar", "bpchar",
    "char", "numeric", "decimal", "float4", "float8", "real", "bool", "boolean", "date", "time",
    "timetz", "timestamp", "timestamptz", "interval", "uuid", "json", "jsonb", "bytea", "inet",
    "cidr", "macaddr", "macaddr8", "money", "xml", "tsvector", "tsquery", "oid", "bit", "varbit",
    "point", "line", "lseg", "box", "path", "polygon", "circle", "int4range", "int8range",
    "numrange", "tsrange", "tstzrange", "daterange", "citext", "name",
})  # fmt: skip
_NOT_VOLATILE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower", "upper",
    "md5", "length", "concat", "to_char", "to_timestamp", "to_date", "date_trunc", "make_date",
    "abs", "round", "trim", "btrim", "replace", "substr", "substring", "left", "right",
    "jsonb_build_object", "json_build_object", "array_length", "greatest", "least", "int4",
    "int8", "text", "timezone", "gen_random_bytes", "sha256", "encode", "decode",
})  # fmt: skip


def _may_rewrite_column(column: dict[str, Any]) -> str | None:
    """What, outside the plan, would make ADD COLUMN rewrite the table: a type that may be a
    domain with a CHECK, a default whose functions may be volatile. None: nothing."""
    type_name = _type_name(column).lower()
    if type_name and type_name not in _BUILT_IN_TYPES and type_name not in _SERIAL:
        return f"if {type_name} is a domain with a CHECK"
    for item in column.get("constraints", []):
        constraint = item.get("Constraint", {})
        if constraint.get("contype") == "CONSTR_DEFAULT":
            unknown = {
                f.lower() for f in _function_names(constraint.get("raw_expr", {}))
            } - _NOT_VOLATILE
            if unknown:
                return f"if {', '.join(sorted(unknown))}() is volatile"
    return None


def _type_name(column: dict[str, Any]) -> str:
    names = [
        n.get("String", {}).get("sval", "") for n in column.get("typeName", {}).get("names", [])
    ]
    return names[-1] if names else ""


def _function_names(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "FuncCall" and isinstance(value, dict):
                names = value.get("funcname", [])
                if names:
                    yield names[-1].get("String", {}).get("sval", "")
            yield from _function_names(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _function_names(item)


def _references(node: dict[str, Any]) -> Iterator[str]:
    """Tables a CREATE TABLE's foreign keys refer to (they get SHARE ROW EXCLUSIVE)."""
    for element in node.get("tableElts", []):
        for item in [*element.get("ColumnDef", {}).get("constraints", []), element]:
            constraint = item.get("Constraint", {})
            if constraint.get("contype") == "CONSTR_FOREIGN":
                yield _name(constraint.get("pktable", {}))


def _name(relation: dict[str, Any]) -> str:
    parts = [str(relation[k]) for k in ("schemaname", "relname") if relation.get(k)]
    return ".".join(parts) or "?"


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _object_names(objects: Sequence[Any]) -> list[str]:
    names = []
    for item in objects:
        if isinstance(item, dict) and "ObjectWithArgs" in item:  # a function: its name
            parts = item["ObjectWithArgs"].get("objname", [])
        else:
            parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
        names.append(".".join(p.get("String", {}).get("sval", "?") for p in parts))
    return names


def _defnames(params: Iterable[Any]) -> list[str]:
    return [p.get("DefElem", {}).get("defname", "") for p in params if isinstance(p, dict)]


def _what(statement: Statement) -> str:
    first_line = statement.text.strip().splitlines()[0] if statement.text.strip() else ""
    return first_line if len(first_line) <= 60 else first_line[:59] + "…"
