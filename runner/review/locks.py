"""What each statement does to the tables it touches: the lock it takes on each, whether it
rewrites the table or reads all of it, and how long the lock is held; and the rules a reviewer
of a migration checks, each with a code, the safer form and the PostgreSQL versions it depends
on. Read from PostgreSQL's own parse tree, without a database.

The lock modes are PostgreSQL's ("Explicit Locking", table 13.2), weakest first. A rule's claim
is checked against the server itself by tests/test_locks.py (pg_locks of its own backend, and
pg_class.relfilenode before and after for a rewrite).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..plan.sqlparse import Statement

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
}


@dataclass(frozen=True)
class Lock:
    """A lock a statement takes on one relation, and what it does under it."""

    relation: str  # as written: schema.table, or an index's name
    mode: str
    rewrite: bool | None = False  # the table is written anew; None: it depends on its columns
    scan: bool = False  # every row is read (a validation) while the lock is held

    @property
    def strength(self) -> int:
        return MODES.index(self.mode)

    def describe(self) -> str:
        extra = (
            ", rewrites it"
            if self.rewrite
            else ", may rewrite it"
            if self.rewrite is None
            else ", reads every row"
            if self.scan
            else ""
        )
        return f"{self.mode} on {self.relation}{extra}"


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
    """The locks a statement takes on the relations it names."""
    return [lock for lock, _ in _analyse(statement, Context(version=version))]


def findings(statement: Statement, context: Context) -> list[Finding]:
    found = []
    for lock, rules in _analyse(statement, context):
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
    elif kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_TABLE":
        yield from _alter_table(node, version)
    elif kind == "DropStmt" and node.get("removeType") == "OBJECT_INDEX":
        for name in _object_names(node.get("objects", [])):
            if node.get("concurrent"):
                yield Lock(name, "SHARE UPDATE EXCLUSIVE"), []
            else:
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
    elif kind == "DropStmt" and node.get("removeType") in ("OBJECT_TABLE", "OBJECT_VIEW"):
        for name in _object_names(node.get("objects", [])):
            yield Lock(name, "ACCESS EXCLUSIVE"), []
    elif kind == "ReindexStmt" and node.get("relation"):
        table = _name(node["relation"])
        if "concurrently" in _defnames(node.get("params", [])):
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
        else:
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
            else:
                yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
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
    elif kind == "TruncateStmt":
        for relation in node.get("relations", []):
            # a new, empty file: the relfilenode changes as in a rewrite, without the copying
            yield (
                Lock(_name(relation.get("RangeVar", relation)), "ACCESS EXCLUSIVE", rewrite=True),
                [],
            )
    elif kind == "RenameStmt" and node.get("relation"):
        yield Lock(_name(node["relation"]), "ACCESS EXCLUSIVE"), []
    elif kind == "LockStmt":
        mode = _LOCK_STATEMENT.get(int(node.get("mode", 8)), "ACCESS EXCLUSIVE")
        for relation in node.get("relations", []):
            yield Lock(_name(relation.get("RangeVar", relation)), mode), []
    elif kind == "CreateTrigStmt":
        yield Lock(_name(node.get("relation", {})), "SHARE ROW EXCLUSIVE"), []
    elif kind == "CreateStmt":
        for referenced in _references(node):
            yield Lock(referenced, "SHARE ROW EXCLUSIVE"), []
    elif kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        target = node.get("relation")
        if isinstance(target, dict):
            yield Lock(_name(target), "ROW EXCLUSIVE"), []
    elif kind == "RefreshMatViewStmt":
        view = _name(node.get("relation", {}))
        yield Lock(view, "EXCLUSIVE" if node.get("concurrent") else "ACCESS EXCLUSIVE"), []


def _alter_table(node: dict[str, Any], version: int) -> Iterator[tuple[Lock, list[Finding]]]:
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
                yield Lock(table, "ACCESS EXCLUSIVE"), []
        elif subtype == "AT_AlterColumnType":
            # Whether it rewrites depends on the old type, which the plan does not say: to text,
            # a varchar or a numeric it may be binary-coercible; to anything else it rewrites.
            new_type = _type_name(definition.get("ColumnDef", {}))
            may_keep = new_type in ("text", "varchar", "numeric", "citext", "bpchar")
            yield (
                Lock(table, "ACCESS EXCLUSIVE", rewrite=None if may_keep else True),
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
        elif subtype in ("AT_SetLogged", "AT_SetUnLogged", "AT_SetTableSpace"):
            yield (
                Lock(table, "ACCESS EXCLUSIVE", rewrite=True),
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
    "uuid_generate_v4", "nextval", "setseed", "txid_current", "statement_timestamp_volatile",
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
        parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
        names.append(".".join(p.get("String", {}).get("sval", "?") for p in parts))
    return names


def _defnames(params: Iterable[Any]) -> list[str]:
    return [p.get("DefElem", {}).get("defname", "") for p in params if isinstance(p, dict)]


def _what(statement: Statement) -> str:
    first_line = statement.text.strip().splitlines()[0] if statement.text.strip() else ""
    return first_line if len(first_line) <= 60 else first_line[:59] + "…"
