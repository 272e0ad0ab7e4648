"""What a clean-room query may be: one Spark SQL ``SELECT`` over the contract's datasets.

The data owners approve a query document; this module is the first line of the rule (applied when
the query is proposed, and again before a run): exactly one statement, a ``SELECT`` (``WITH ...
SELECT`` included), no DDL or DML, no table but the contract's datasets (and the query's own
common table expressions), no qualified or path-based table (``parquet.`/path```), no table
function, no function that escapes SQL (``reflect``, ``java_method``, file metadata), and an
output column holding each group's size, which the clean room uses to suppress small groups.

The clean room itself (``spark_job``) is the second line: it registers only the approved datasets
as views and runs Spark with ``spark.sql.runSQLOnFiles=false``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlparse
from sqlparse import tokens as T

from include.cleanroom.errors import CleanroomUserError

MAX_QUERY_CHARS = 20_000
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "reflect",
        "java_method",
        "try_reflect",
        "input_file_name",
        "input_file_block_start",
        "input_file_block_length",
        "read_files",
        "read_kafka",
        "current_user",
        "session_user",
        "user",
    }
)
_CLAUSE_END = {
    "WHERE",
    "GROUP BY",
    "HAVING",
    "ORDER BY",
    "LIMIT",
    "UNION",
    "UNION ALL",
    "INTERSECT",
    "EXCEPT",
    "WINDOW",
    "ON",
    "USING",
    "CLUSTER BY",
    "DISTRIBUTE BY",
    "SORT BY",
    "QUALIFY",
    "LATERAL VIEW",
}


@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed the rules: its text (trailing ``;`` removed) and the datasets it reads."""

    sql: str
    datasets: tuple[str, ...]


def _tokens(sql: str) -> list:
    statement = sqlparse.parse(sql)[0]
    return [t for t in statement.flatten() if not t.is_whitespace and t.ttype not in T.Comment]


def _is_join(tok) -> bool:
    return tok.ttype in T.Keyword and tok.normalized.endswith("JOIN")


def validate_query(sql: str, datasets: list[str] | tuple[str, ...], count_column: str = "n") -> ValidatedQuery:
    """Check ``sql`` against the rules; raise ``CleanroomUserError`` saying what to change.

    :param sql: the Spark SQL text
    :param datasets: the contract's dataset names (the only tables a query may read)
    :param count_column: the output column that must hold each group's size
    """
    if not isinstance(sql, str) or not sql.strip():
        raise CleanroomUserError("the query is empty: give one SELECT statement")
    if len(sql) > MAX_QUERY_CHARS:
        raise CleanroomUserError(f"the query has {len(sql)} characters; at most {MAX_QUERY_CHARS} are allowed")
    statements = [s for s in sqlparse.split(sql) if s.strip().rstrip(";").strip()]
    if len(statements) != 1:
        raise CleanroomUserError(
            f"the query holds {len(statements)} statements; give exactly one SELECT statement (no ';' inside)"
        )
    text = statements[0].strip().rstrip(";").strip()
    toks = _tokens(text)
    if not toks:
        raise CleanroomUserError("the query holds only comments: give one SELECT statement")
    kind = sqlparse.parse(text)[0].get_type()
    first = toks[0].normalized.upper()
    if kind != "SELECT" or first not in ("SELECT", "WITH"):
        raise CleanroomUserError(
            f"only SELECT queries may run in the clean room; this statement starts with {first} "
            "(DDL, DML, SET, CACHE and other commands are refused)"
        )
    allowed = set(datasets)
    ctes: set[str] = set()
    tables: list[str] = []
    depth = 0
    from_depths: list[int] = []  # paren depths at which a FROM list is open
    expect_table = False
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        value = tok.value
        if tok.ttype in T.Keyword.DML and tok.normalized.upper() != "SELECT":
            raise CleanroomUserError(f"{tok.normalized.upper()} is not allowed: the clean room runs read-only SELECTs")
        if tok.ttype in T.Keyword.DDL:
            raise CleanroomUserError(f"{tok.normalized.upper()} is not allowed: the clean room runs read-only SELECTs")
        if tok.ttype in T.Name and nxt is not None and nxt.ttype in T.Punctuation and nxt.value == "(":
            if value.lower() in FORBIDDEN_FUNCTIONS and not expect_table:
                raise CleanroomUserError(f"the function {value}() is not allowed in the clean room")
        if (
            tok.ttype in T.Name
            and nxt is not None
            and nxt.ttype in T.Keyword
            and nxt.normalized.upper() == "AS"
            and i + 2 < len(toks)
            and toks[i + 2].value == "("
        ):
            ctes.add(value.lower())
        if expect_table:
            expect_table = False
            if value == "(":
                depth += 1
                continue
            if tok.ttype not in T.Name or value.startswith(("`", '"')):
                raise CleanroomUserError(
                    f"the query reads {value!r}: a table must be a plain dataset name of the contract"
                )
            if nxt is not None and nxt.value == ".":
                raise CleanroomUserError(
                    f"the query reads a qualified or path-based table ({value}.…): only the contract's datasets "
                    "may be read, by their plain names"
                )
            if nxt is not None and nxt.value == "(":
                raise CleanroomUserError(f"the table function {value}() is not allowed: read the contract's datasets")
            name = value.lower()
            if name not in ctes:
                if name not in allowed:
                    known = ", ".join(sorted(allowed)) or "none"
                    raise CleanroomUserError(
                        f"the query reads {value!r}, which is not a dataset of the contract (datasets: {known})"
                    )
                if name not in tables:
                    tables.append(name)
            continue
        if value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            while from_depths and from_depths[-1] > depth:
                from_depths.pop()
        elif tok.ttype in T.Keyword and tok.normalized.upper() == "FROM":
            from_depths.append(depth)
            expect_table = True
        elif _is_join(tok):
            expect_table = True
        elif value == "," and from_depths and from_depths[-1] == depth:
            expect_table = True
        elif tok.ttype in T.Keyword and tok.normalized.upper() in _CLAUSE_END:
            if from_depths and from_depths[-1] == depth:
                from_depths.pop()
        elif tok.ttype in T.Keyword.DML:  # a SELECT at this depth starts a new select list
            if from_depths and from_depths[-1] == depth:
                from_depths.pop()
    if expect_table:
        raise CleanroomUserError("the query ends after FROM/JOIN: name a dataset")
    if not tables:
        raise CleanroomUserError("the query reads none of the contract's datasets")
    if not re.search(rf"\bAS\s+`?{re.escape(count_column)}`?\s*(,|\bFROM\b)", text, re.IGNORECASE):
        raise CleanroomUserError(
            f"the query must output each group's size as a column named {count_column!r} "
            f"(for example COUNT(*) AS {count_column}); groups smaller than the contract's minimum are suppressed"
        )
    return ValidatedQuery(sql=text, datasets=tuple(sorted(tables)))
