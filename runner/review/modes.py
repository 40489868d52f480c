"""The vocabulary of the lock analysis: PostgreSQL's lock modes ("Explicit Locking", table
13.2, weakest first), what each conflicts with, the review rules and their codes, a Lock (a mode
on a relation, and why) and a Finding (a rule a statement breaks), and the names a parse tree
gives relations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
LOCK_STATEMENT = dict(enumerate(MODES, start=1))


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


def relation_name(relation: dict[str, Any]) -> str:
    parts = [str(relation[k]) for k in ("schemaname", "relname") if relation.get(k)]
    return ".".join(parts) or "?"


def object_names(objects: Iterable[Any]) -> list[str]:
    """Qualified names from a DROP's (or a COMMENT's, ...) objects: [List[String...]],
    [String], or a function's ObjectWithArgs."""
    names = []
    for item in objects:
        if isinstance(item, dict) and "ObjectWithArgs" in item:  # a function: its name
            parts = item["ObjectWithArgs"].get("objname", [])
        else:
            parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
        names.append(
            ".".join(p.get("String", {}).get("sval", "?") for p in parts if isinstance(p, dict))
        )
    return names


def bare_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def defnames(params: Iterable[Any]) -> list[str]:
    return [p.get("DefElem", {}).get("defname", "") for p in params if isinstance(p, dict)]
