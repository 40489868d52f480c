"""ALTER TABLE, command by command: the lock each subcommand takes, the rewrite or full scan it
causes (a volatile default, a type change, a constraint validated at once), and the findings a
reviewer needs with the safer form; PostgreSQL's behaviour by version where it changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .modes import MODES, Finding, Lock, defnames, relation_name

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


def alter_table(node: dict[str, Any], version: int) -> Iterator[tuple[Lock, list[Finding]]]:
    table = relation_name(node.get("relation", {}))
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
    table = relation_name(node.get("relation", {}))
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
            for referenced in referenced_tables({"tableElts": [{"ColumnDef": column}]}):
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
            partition = relation_name(definition.get("PartitionCmd", {}).get("name", {}))
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
            partition = relation_name(definition.get("PartitionCmd", {}).get("name", {}))
            yield Lock(table, "SHARE UPDATE EXCLUSIVE"), []
            yield Lock(partition, "ACCESS EXCLUSIVE", scan=True), []
            yield Lock(table, "ACCESS EXCLUSIVE", scan=True, via="default"), []
        elif subtype in ("AT_SetRelOptions", "AT_ResetRelOptions") and (
            set(defnames(definition.get("List", {}).get("items", []))) & _EXCLUSIVE_OPTIONS
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
        referenced = relation_name(constraint.get("pktable", {}))
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


def referenced_tables(node: dict[str, Any]) -> Iterator[str]:
    """Tables a CREATE TABLE's foreign keys refer to (they get SHARE ROW EXCLUSIVE)."""
    for element in node.get("tableElts", []):
        for item in [*element.get("ColumnDef", {}).get("constraints", []), element]:
            constraint = item.get("Constraint", {})
            if constraint.get("contype") == "CONSTR_FOREIGN":
                yield relation_name(constraint.get("pktable", {}))
