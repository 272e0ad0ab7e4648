"""What a clean-room query may compute: a Spark SQL ``SELECT`` checked on its AST against the data
owners' analysis rules.

``check_query(sql, rules, k_floor)`` parses the query with sqlglot (Spark dialect) and returns a
:class:`QueryPlan`, or raises :class:`QueryRefused` with a stable ``code`` naming the rule. The same
check runs at proposal, in an owner's automatic review and inside the runtime before execution;
the runtime's check is the one that counts, and the runtime executes the plan's **canonical SQL**
(regenerated from the checked AST, every identifier quoted, comments and hints gone), never the
submitted text. The privacy model, rule by rule: docs/cleanroom-privacy.md.

The rules (each refusal's ``code`` in brackets):

* the text: non-empty, at most ``MAX_QUERY_CHARS``, printable ASCII only, no backslash (so no
  unicode or other escapes can spell what the AST check does not see) [``text``]; it parses
  [``syntax``]; exactly one statement [``statements``], a ``SELECT`` [``not_select``], no
  ``UNION``/``INTERSECT``/``EXCEPT`` [``set_operation``], no hints [``hint``];
* an allow-list of AST nodes: anything else is refused, unknown and user-defined functions
  included [``function``]; window functions and ``OVER`` [``window``]; generators, ``LATERAL VIEW``,
  ``explode`` [``generator``];
* tables: only the datasets the rules are given for, by plain name (no ``db.table``, no
  ``parquet.`/path```, no table-valued function, no ``TABLESAMPLE``) [``table``], each at most once
  [``table``]; CTEs and derived tables (subqueries in ``FROM``/``JOIN``) only as a filter and
  projection of one dataset that keeps its identity columns [``cte``]; no subquery inside an
  expression [``subquery``];
* columns: identifiers are compared after unquoting and case-folding; every column must be named
  by its owner's rules [``column``]; identity columns are never output, grouped by, filtered on or
  aggregated (except ``COUNT(DISTINCT <identity>)``, the number of people) [``identity``];
* output: each column is either an allowed dimension (also in ``GROUP BY``) or an allowed aggregate
  (``count``/``sum``/``avg``/``min``/``max`` as the measure's owner lists them; ``COUNT(*)`` when
  every dataset's owner allows ``*``; an aggregate's argument may add and subtract measures)
  [``output``, ``aggregate``]; no ``SELECT *``, ``SELECT DISTINCT``, literal or computed columns;
  every aggregate has a name (``AS``) [``alias``];
* ``GROUP BY`` only dimensions, no ordinals, ``ROLLUP``/``CUBE`` [``group_by``]; ``WHERE`` only
  comparisons, ``IN`` lists, ``BETWEEN``, ``LIKE``, ``IS NULL`` of dimensions, measures and join
  columns and literals, without arithmetic (nothing that could fail on some rows only and so tell
  whether they exist; the runtime also turns ANSI errors off) [``where``]; no ``HAVING``
  [``having``], ``LIMIT``/``OFFSET`` [``limit``]; ``ORDER BY`` only dimensions [``order_by``];
* joins: ``[INNER|LEFT|RIGHT|FULL] JOIN ... ON a.x = b.y [AND ...]`` (or ``USING``) where each
  column is one of its owner's join columns; no cross, natural, semi or anti joins [``join``];
* several datasets: the strictest rule of each: the largest k (never below the contract's floor),
  differential privacy if any owner asks, with the smallest epsilon and rows per identity; under
  differential privacy only inner joins on identity columns, no min/max, and every summed or
  averaged measure bounded by its owner [``dp``]; a dataset without rules [``rules``].
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.rules import AnalysisRules

MAX_QUERY_CHARS = 20_000
MAX_NODES = 2_000
INTERNAL_PREFIX = "__cr"
_PRINTABLE = re.compile(r"^[\x20-\x7e\t\r\n]*$")
_AGGREGATES: dict[type, str] = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
# nodes a query may contain at all; each clause narrows this further
_STRUCTURE = (
    exp.Select,
    exp.From,
    exp.Join,
    exp.Table,
    exp.TableAlias,
    exp.Identifier,
    exp.Column,
    exp.Alias,
    exp.Where,
    exp.Group,
    exp.Order,
    exp.Ordered,
    exp.With,
    exp.CTE,
    exp.Subquery,
    exp.Star,
    exp.Distinct,
)
_FILTER = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.Paren,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Like,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Neg,
    exp.Column,
    exp.Identifier,
)
# an aggregate's argument adds and subtracts measures; nothing multiplies, divides or casts, so that
# no expression can fail on some rows only (a failure would tell whether such a row exists)
_ARITHMETIC = (exp.Add, exp.Sub)
_ALLOWED_NODES = (*_STRUCTURE, *_FILTER, *_ARITHMETIC, *_AGGREGATES)
_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)
_GENERATORS = tuple(
    getattr(exp, name)
    for name in ("Explode", "ExplodeOuter", "Posexplode", "PosexplodeOuter", "Inline", "Lateral", "Unnest", "Stack")
    if hasattr(exp, name)
)


class QueryRefused(CleanroomUserError):
    """A query that breaks a rule: ``code`` names the rule (stable, for tests and summaries),
    ``message`` says what to change. Neither ever holds data."""

    def __init__(self, code: str, message: str):
        super().__init__(f"query refused [{code}]: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ColumnRef:
    """A column of a dataset, as the query reaches it through ``source`` (a table alias)."""

    dataset: str
    column: str
    source: str


@dataclass(frozen=True)
class Source:
    """A ``FROM``/``JOIN`` item of the outer query: its alias, the dataset behind it, and whether
    it is the dataset itself, a CTE or a derived table over it."""

    alias: str
    dataset: str
    kind: Literal["table", "cte", "subquery"] = "table"


@dataclass(frozen=True)
class OutputColumn:
    """One output column. ``kind`` is ``dimension`` or ``aggregate``; ``function`` is ``count``,
    ``sum``, ``avg``, ``min``, ``max`` or ``count_distinct_identity`` (None for a dimension);
    ``columns`` the dataset columns it reads (empty for ``COUNT(*)``); ``column`` a readable form
    (``visits_a.region``, ``*``, ``visits_a.visits + visits_b.visits``); ``bounds`` the DP clamping
    range of the aggregate's argument (interval arithmetic over the measures' bounds), if DP."""

    alias: str
    kind: Literal["dimension", "aggregate"]
    function: str | None
    column: str
    columns: tuple[ColumnRef, ...] = ()
    bounds: tuple[float, float] | None = None
    signs: tuple[int, ...] = ()


@dataclass(frozen=True)
class JoinCondition:
    """One equality of a join: ``left`` = ``right``; ``kind`` inner, left, right or full."""

    left: ColumnRef
    right: ColumnRef
    kind: str


@dataclass(frozen=True)
class DPPlan:
    """Differential privacy for a run (the strictest of the owners who ask for it).

    :param epsilon: the privacy loss of one run, debited from each dataset in ``datasets``
    :param max_rows_per_identity: rows of one identity kept per dataset before aggregating
    :param datasets: the datasets whose owners ask for DP (their budgets are debited)
    :param bounds: (dataset, measure) -> (lo, hi) clamping range of every measure the query sums
        or averages
    """

    epsilon: float
    max_rows_per_identity: int
    datasets: tuple[str, ...]
    bounds: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "maxRowsPerIdentity": self.max_rows_per_identity,
            "datasets": list(self.datasets),
            "bounds": {f"{d}.{c}": list(b) for (d, c), b in sorted(self.bounds.items())},
        }


@dataclass(frozen=True)
class QueryPlan:
    """A query that passed every rule, and what the runtime needs to enforce the rest.

    ``canonical_sql`` is what runs (regenerated from the checked AST); ``sources`` the outer
    query's ``FROM``/``JOIN`` items; ``identity_columns`` dataset -> its identity columns (the
    runtime counts their distinct values per group); ``k`` the effective threshold; ``dp`` the
    differential privacy settings or None.
    """

    datasets: tuple[str, ...]
    sources: tuple[Source, ...]
    group_by: tuple[ColumnRef, ...]
    outputs: tuple[OutputColumn, ...]
    joins: tuple[JoinCondition, ...]
    k: int
    dp: DPPlan | None
    canonical_sql: str
    identity_columns: Mapping[str, tuple[str, ...]]

    @property
    def sql_sha256(self) -> str:
        return hashlib.sha256(self.canonical_sql.encode()).hexdigest()

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column names, in order."""
        return tuple(o.alias for o in self.outputs)

    def to_data(self) -> dict[str, Any]:
        """A JSON-able description (for summaries and the audit trail; holds no data)."""
        return {
            "datasets": list(self.datasets),
            "sources": [{"alias": s.alias, "dataset": s.dataset, "kind": s.kind} for s in self.sources],
            "groupBy": [f"{c.dataset}.{c.column}" for c in self.group_by],
            "outputs": [
                {"alias": o.alias, "kind": o.kind, "function": o.function, "column": o.column} for o in self.outputs
            ],
            "joins": [
                {
                    "left": f"{j.left.dataset}.{j.left.column}",
                    "right": f"{j.right.dataset}.{j.right.column}",
                    "kind": j.kind,
                }
                for j in self.joins
            ],
            "k": self.k,
            "dp": self.dp.to_data() if self.dp else None,
            "sql": self.canonical_sql,
            "sqlSha256": self.sql_sha256,
            "identityColumns": {d: list(c) for d, c in sorted(self.identity_columns.items())},
        }


# ---------------------------------------------------------------------------- helpers
def _fold(name: str) -> str:
    return name.casefold()


def _ident(node: exp.Expression | None) -> str:
    """The name of an identifier-ish node, unquoted (backticks hide nothing)."""
    if node is None:
        return ""
    if isinstance(node, exp.Identifier):
        return str(node.this)
    return str(node.name)


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return (_ident(node.this) if isinstance(node.this, exp.Identifier) else str(node.this)).lower()
    if isinstance(node, exp.Func):
        try:
            return node.sql_name().lower()
        except Exception:  # noqa: BLE001 - only for the message
            return type(node).__name__.lower()
    return type(node).__name__.lower()


_SELECT_ARGS = (
    "with_",
    "expressions",
    "distinct",
    "from_",
    "joins",
    "where",
    "group",
    "order",
    "hint",
    "having",
    "limit",
    "offset",
    "qualify",
    "laterals",
)  # the last ones are refused below, with their own code
_JOIN_ARGS = ("this", "on", "side", "kind", "using", "method")


def _only_args(node: exp.Expression, allowed: tuple[str, ...], what: str) -> None:
    for arg, value in node.args.items():
        if arg not in allowed and value not in (None, False, [], ""):
            if arg == "group" or (what == "GROUP BY" and arg in ("rollup", "cube", "grouping_sets", "all", "totals")):
                raise QueryRefused("group_by", f"GROUP BY {arg.upper()} is not allowed: GROUP BY dimension columns")
            raise QueryRefused("syntax", f"{arg.rstrip('_').upper()} is not allowed in a clean-room {what}")


def _screen(tree: exp.Expression) -> None:
    """The node allow-list, over the whole tree (every clause, every CTE)."""
    nodes = []
    for node in tree.walk():
        nodes.append(node)
        if len(nodes) > MAX_NODES:
            raise QueryRefused("text", f"the query is too complex (more than {MAX_NODES} syntax nodes)")
    for node in nodes:  # a hint's content parses as function calls: name the hint
        if isinstance(node, exp.Hint):
            raise QueryRefused("hint", "hints (/*+ ... */) are not allowed: the clean room plans the query itself")
    # functions, windows and generators first: they are what an attack hides, wherever it is
    for node in nodes:
        if isinstance(node, (exp.Window, exp.WindowSpec, exp.Qualify)):
            raise QueryRefused("window", "window functions (OVER, QUALIFY) are not allowed")
        if _GENERATORS and isinstance(node, _GENERATORS):
            raise QueryRefused("generator", f"generators ({_function_name(node)}, LATERAL VIEW) are not allowed")
        if isinstance(node, (exp.Func, exp.Anonymous)) and not isinstance(node, _ALLOWED_NODES):
            raise QueryRefused(
                "function",
                f"the function {_function_name(node)}() is not allowed (aggregates: count, sum, avg, min, max; "
                "filters: comparisons, IN, BETWEEN, LIKE, IS NULL)",
            )
    for node in nodes:
        if isinstance(node, exp.Select):
            _only_args(node, _SELECT_ARGS, "SELECT")
        elif isinstance(node, exp.Join):
            _only_args(node, _JOIN_ARGS, "JOIN")
        elif isinstance(node, exp.Group):
            _only_args(node, ("expressions",), "GROUP BY")
        if isinstance(node, _ALLOWED_NODES):
            continue
        if isinstance(node, exp.Hint):
            raise QueryRefused("hint", "hints (/*+ ... */) are not allowed: the clean room plans the query itself")
        if isinstance(node, _SET_OPERATIONS):
            raise QueryRefused("set_operation", f"{node.key.upper()} is not allowed: give exactly one SELECT")
        if isinstance(node, (exp.Window, exp.WindowSpec, exp.Qualify)):
            raise QueryRefused("window", "window functions (OVER, QUALIFY) are not allowed")
        if _GENERATORS and isinstance(node, _GENERATORS):
            raise QueryRefused("generator", f"generators ({_function_name(node)}, LATERAL VIEW) are not allowed")
        if isinstance(node, exp.Having):
            raise QueryRefused("having", "HAVING is not allowed: the clean room filters groups itself (k threshold)")
        if isinstance(node, (exp.Limit, exp.Offset, exp.Fetch)):
            raise QueryRefused("limit", "LIMIT/OFFSET are not allowed")
        if isinstance(node, (exp.Rollup, exp.Cube, exp.GroupingSets)):
            raise QueryRefused("group_by", "ROLLUP, CUBE and GROUPING SETS are not allowed: GROUP BY dimensions")
        if isinstance(node, (exp.TableSample, exp.Pivot)):
            raise QueryRefused("table", f"{node.key.upper()} is not allowed")
        if isinstance(node, (exp.Func, exp.Anonymous)):
            raise QueryRefused(
                "function",
                f"the function {_function_name(node)}() is not allowed (aggregates: count, sum, avg, min, max; "
                "filters: comparisons, IN, BETWEEN, LIKE, IS NULL)",
            )
        raise QueryRefused("syntax", f"{node.key.upper()} is not allowed in a clean-room query")


# ---------------------------------------------------------------------------- the checker
class _Checker:
    def __init__(self, tree: exp.Select, rules: Mapping[str, AnalysisRules], k_floor: int):
        self.tree = tree
        self.rules = {_fold(name): r for name, r in rules.items()}
        self.k_floor = int(k_floor)
        self.ctes: dict[str, tuple[str, frozenset[str] | None]] = {}  # cte name -> (dataset, columns or None=*)
        self.used: list[str] = []

    # ---- tables
    def _dataset_of_table(self, table: exp.Table) -> tuple[str, str]:
        """(dataset, kind) of a table reference; refuses anything but a plain dataset or CTE name."""
        if table.args.get("db") or table.args.get("catalog"):
            raise QueryRefused(
                "table",
                f"the query reads a qualified or path-based table ({table.sql('spark')}): only the contract's "
                "datasets may be read, by their plain names",
            )
        if not isinstance(table.this, exp.Identifier):
            raise QueryRefused("table", f"the table-valued function {_function_name(table.this)}() is not allowed")
        name = _fold(_ident(table.this))
        if name in self.ctes:
            return self.ctes[name][0], "cte"
        if name not in self.rules:
            known = ", ".join(sorted(self.rules)) or "none"
            raise QueryRefused(
                "table",
                f"the query reads {_ident(table.this)!r}, which is not a dataset of the query's contract "
                f"with analysis rules (datasets: {known})",
            )
        return name, "table"

    def _use(self, dataset: str) -> None:
        if dataset in self.used:
            raise QueryRefused("table", f"dataset {dataset} is read twice: each dataset may appear once")
        self.used.append(dataset)

    def _row_view(self, select: exp.Select, what: str) -> tuple[str, frozenset[str] | None]:
        """A CTE or derived table: a projection and filter of one dataset. Returns (dataset, columns)."""
        for arg in ("joins", "group", "distinct", "order", "with_"):
            if select.args.get(arg):
                raise QueryRefused(
                    "cte",
                    f"{what} may only select columns of one dataset and filter its rows (no {arg.rstrip('_').upper()})",
                )
        src = select.args.get("from_")
        if src is None or not isinstance(src.this, exp.Table):
            raise QueryRefused("cte", f"{what} must read one dataset")
        table = src.this
        dataset, kind = self._dataset_of_table(table)
        if kind != "table":
            raise QueryRefused("cte", f"{what} must read a dataset, not another CTE")
        rules = self.rules[dataset]
        alias = _fold(_ident(table.args["alias"].this)) if table.args.get("alias") else dataset
        sources = {alias: Source(alias, dataset)}
        columns: set[str] | None = set()
        for item in select.expressions:
            if isinstance(item, exp.Star):
                columns = None
                continue
            if isinstance(item, exp.Alias):
                inner, name = item.this, _fold(_ident(item.args.get("alias")))
            else:
                inner, name = item, None
            if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
                raise QueryRefused("cte", f"{what} may only select plain columns of its dataset")
            ref = self._resolve(inner, sources)
            if name is not None and name != _fold(ref.column):
                raise QueryRefused("cte", f"{what} may not rename columns ({ref.column} AS {name})")
            if columns is not None:
                columns.add(_fold(ref.column))
        if columns is not None:
            missing = [c for c in rules.identity_columns if _fold(c) not in columns]
            if missing:
                raise QueryRefused(
                    "cte",
                    f"{what} must keep the identity column(s) {', '.join(missing)} of {dataset}: the clean room "
                    "counts distinct identities behind each group",
                )
        where = select.args.get("where")
        if where is not None:
            self._check_filter(where.this, sources)
        return dataset, (frozenset(columns) if columns is not None else None)

    def _sources(self) -> list[Source]:
        with_ = self.tree.args.get("with_")
        if with_ is not None:
            if with_.args.get("recursive"):
                raise QueryRefused("cte", "recursive CTEs are not allowed")
            for cte in with_.expressions:
                name = _fold(_ident(cte.args["alias"].this))
                if name in self.ctes or name in self.rules:
                    raise QueryRefused("cte", f"the CTE name {name!r} is taken (a dataset or another CTE)")
                body = cte.this
                if not isinstance(body, exp.Select):
                    raise QueryRefused("cte", f"CTE {name} must be one SELECT")
                self.ctes[name] = self._row_view(body, f"CTE {name}")
        src = self.tree.args.get("from_")
        if src is None:
            raise QueryRefused("table", "the query reads no dataset: add FROM <dataset>")
        items = [(src.this, None)] + [(j.this, j) for j in self.tree.args.get("joins") or []]
        sources: list[Source] = []
        for node, _join in items:
            alias_node = node.args.get("alias")
            alias = _fold(_ident(alias_node.this)) if alias_node is not None and alias_node.this else None
            if alias_node is not None and alias_node.args.get("columns"):
                raise QueryRefused("table", "column aliases on a table are not allowed")
            if isinstance(node, exp.Table):
                dataset, kind = self._dataset_of_table(node)
                alias = alias or _fold(_ident(node.this))
            elif isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select):
                dataset, _cols = self._row_view(node.this, "a subquery in FROM")
                kind = "subquery"
                if alias is None:
                    raise QueryRefused("cte", "a subquery in FROM needs an alias")
            else:
                raise QueryRefused("table", f"{node.key.upper()} is not a dataset")
            self._use(dataset)
            if any(s.alias == alias for s in sources):
                raise QueryRefused("table", f"the alias {alias} is used twice")
            sources.append(Source(alias, dataset, kind))
        return sources

    # ---- columns
    def _resolve(self, col: exp.Column, sources: Mapping[str, Source]) -> ColumnRef:
        if col.args.get("db") or col.args.get("catalog"):
            raise QueryRefused("column", f"{col.sql('spark')}: qualify a column with its table alias only")
        if isinstance(col.this, exp.Star):
            raise QueryRefused("star", "SELECT * / t.* is not allowed: name the dimensions and aggregates")
        name = _ident(col.this)
        qualifier = _fold(_ident(col.args.get("table"))) if col.args.get("table") else None
        if qualifier is not None:
            source = sources.get(qualifier)
            if source is None:
                raise QueryRefused("column", f"{qualifier}.{name}: {qualifier!r} is not a table of the query")
            rules = self.rules[source.dataset]
            if rules.column_role(name) is None:
                raise QueryRefused(
                    "column", f"column {name} of dataset {source.dataset} is not named in its owner's analysis rules"
                )
            return ColumnRef(source.dataset, self._canonical(rules, name), source.alias)
        matches = [s for s in sources.values() if self.rules[s.dataset].column_role(name) is not None]
        if not matches:
            raise QueryRefused(
                "column",
                f"column {name} is not named in the analysis rules of "
                f"{', '.join(sorted({s.dataset for s in sources.values()}))}",
            )
        if len(matches) > 1:
            raise QueryRefused("column", f"column {name} is ambiguous: qualify it with its table alias")
        source = matches[0]
        return ColumnRef(source.dataset, self._canonical(self.rules[source.dataset], name), source.alias)

    @staticmethod
    def _canonical(rules: AnalysisRules, name: str) -> str:
        for c in (*rules.identity_columns, *rules.dimensions, *rules.aggregates, *rules.join_columns):
            if _fold(c) == _fold(name):
                return c
        return name

    def _role(self, ref: ColumnRef) -> str | None:
        return self.rules[ref.dataset].column_role(ref.column)

    # ---- clauses
    def _check_filter(self, node: exp.Expression, sources: Mapping[str, Source]) -> None:
        for sub in node.walk():
            if not isinstance(sub, _FILTER):
                if isinstance(sub, (exp.Subquery, exp.Select)):
                    raise QueryRefused("subquery", "subqueries inside expressions are not allowed: JOIN instead")
                raise QueryRefused("where", f"{sub.key.upper()} is not allowed in a filter")
            if isinstance(sub, exp.Neg) and not isinstance(sub.this, exp.Literal):
                raise QueryRefused("where", "a filter compares columns with literals: no arithmetic")
            if isinstance(sub, exp.In) and sub.args.get("query") is not None:
                raise QueryRefused("subquery", "IN (SELECT ...) is not allowed: JOIN on the owners' join columns")
            if isinstance(sub, exp.Column):
                ref = self._resolve(sub, sources)
                role = self._role(ref)
                if role == "identity":
                    raise QueryRefused("identity", f"identity column {ref.dataset}.{ref.column} may not be filtered on")

    def _aggregate_argument(self, node: exp.Expression, fn: str, sources: Mapping[str, Source]) -> list[ColumnRef]:
        refs: list[ColumnRef] = []
        for sub in node.walk():
            if isinstance(sub, exp.Column):
                ref = self._resolve(sub, sources)
                role = self._role(ref)
                if role == "identity":
                    raise QueryRefused(
                        "identity",
                        f"identity column {ref.dataset}.{ref.column} may not be aggregated "
                        "(only COUNT(DISTINCT <identity>) counts people)",
                    )
                allowed = self.rules[ref.dataset].allowed_functions(ref.column)
                if role != "measure" or fn not in allowed:
                    raise QueryRefused(
                        "aggregate",
                        f"{fn}({ref.dataset}.{ref.column}) is not allowed by the owner of {ref.dataset} "
                        f"(allowed on {ref.column}: {', '.join(allowed) or 'nothing'})",
                    )
                refs.append(ref)
            elif isinstance(sub, exp.Identifier):
                continue
            elif not isinstance(sub, (exp.Add, exp.Sub, exp.Paren, exp.Neg)):
                raise QueryRefused(
                    "aggregate",
                    f"the argument of {fn}() may only add or subtract measure columns, not {sub.key.upper()}",
                )
        if not refs:
            raise QueryRefused("aggregate", f"{fn}() needs a measure column")
        return refs

    def _output(self, item: exp.Expression, sources: Mapping[str, Source], grouped: set[tuple[str, str]]):
        if isinstance(item, exp.Star):
            raise QueryRefused("star", "SELECT * is not allowed: name the dimensions and aggregates")
        alias_node = item.args.get("alias") if isinstance(item, exp.Alias) else None
        inner = item.this if isinstance(item, exp.Alias) else item
        alias = _ident(alias_node) if alias_node is not None else None
        if isinstance(inner, exp.Column):
            ref = self._resolve(inner, sources)
            role = self._role(ref)
            if role == "identity":
                raise QueryRefused("identity", f"identity column {ref.dataset}.{ref.column} may never be output")
            if role != "dimension":
                raise QueryRefused(
                    "output",
                    f"{ref.dataset}.{ref.column} is not a dimension of {ref.dataset}: output only dimensions and "
                    "aggregates",
                )
            if (ref.dataset, _fold(ref.column)) not in grouped:
                raise QueryRefused("group_by", f"the dimension {ref.column} is output, so it must be in GROUP BY")
            return OutputColumn(alias or ref.column, "dimension", None, f"{ref.dataset}.{ref.column}", (ref,))
        fn = _AGGREGATES.get(type(inner))
        if fn is None:
            raise QueryRefused(
                "output",
                f"the output column {item.sql('spark')[:80]!r} is neither a dimension nor an aggregate of a measure "
                "(literal and computed columns are not allowed)",
            )
        if alias is None:
            raise QueryRefused("alias", f"give the aggregate {inner.sql('spark')[:60]} a name with AS")
        arg = inner.this
        if isinstance(inner, exp.Count) and inner.expressions:
            raise QueryRefused("aggregate", "COUNT takes one argument")
        if isinstance(arg, exp.Star):
            if not isinstance(inner, exp.Count):
                raise QueryRefused("aggregate", f"{fn}(*) is not allowed")
            refusing = sorted(
                s.dataset for s in sources.values() if "count" not in self.rules[s.dataset].allowed_functions("*")
            )
            if refusing:
                raise QueryRefused("aggregate", f"COUNT(*) is not allowed by the owner(s) of {', '.join(refusing)}")
            return OutputColumn(alias, "aggregate", "count", "*", ())
        if isinstance(arg, exp.Distinct):
            if not isinstance(inner, exp.Count):
                raise QueryRefused("aggregate", f"{fn}(DISTINCT ...) is not allowed")
            refs = []
            for col in arg.expressions:
                if not isinstance(col, exp.Column):
                    raise QueryRefused("aggregate", "COUNT(DISTINCT ...) takes identity columns only")
                refs.append(self._resolve(col, sources))
            datasets = {r.dataset for r in refs}
            ids = self.rules[refs[0].dataset].identity_columns if refs else ()
            if (
                len(datasets) != 1
                or len({r.source for r in refs}) != 1
                or {_fold(r.column) for r in refs} != {_fold(c) for c in ids}
                or len(refs) != len(ids)
            ):
                raise QueryRefused(
                    "aggregate",
                    "COUNT(DISTINCT ...) is allowed only over the identity column(s) of one dataset (the number of "
                    "people)",
                )
            text = ", ".join(f"{r.dataset}.{r.column}" for r in refs)
            return OutputColumn(alias, "aggregate", "count_distinct_identity", text, tuple(refs))
        refs = self._aggregate_argument(arg, fn, sources)
        signs = _signs(arg)
        columns = [c for c in arg.walk() if isinstance(c, exp.Column)]
        if len(signs) != len(refs) or len(columns) != len(refs):
            raise QueryRefused("aggregate", f"the argument of {fn}() is not a sum of measures")
        text = " ".join(
            f"{'-' if s < 0 else ('+' if i else '')} {r.dataset}.{r.column}".strip()
            for i, (r, s) in enumerate(zip(refs, signs, strict=False))
        )
        return OutputColumn(alias, "aggregate", fn, text, tuple(refs), None, tuple(signs))

    def _joins(self, sources: list[Source]) -> list[JoinCondition]:
        by_alias = {s.alias: s for s in sources}
        out: list[JoinCondition] = []
        for join in self.tree.args.get("joins") or []:
            kind = (join.args.get("kind") or "").upper()
            side = (join.args.get("side") or "").upper()
            method = (join.args.get("method") or "").upper()
            if method or kind in ("CROSS", "SEMI", "ANTI") or (kind and kind not in ("INNER", "OUTER")):
                raise QueryRefused("join", f"{' '.join(x for x in (method, side, kind) if x)} JOIN is not allowed")
            jkind = side.lower() if side else "inner"
            using = join.args.get("using")
            on = join.args.get("on")
            if using:
                right_alias = by_alias[self._alias_of(join.this)]
                for ident in using:
                    name = _ident(ident)
                    left = [
                        s for s in sources if s.alias != right_alias.alias and self.rules[s.dataset].column_role(name)
                    ]
                    if len(left) != 1:
                        raise QueryRefused("join", f"USING ({name}): the column must be in exactly one earlier table")
                    pair = [
                        ColumnRef(left[0].dataset, self._canonical(self.rules[left[0].dataset], name), left[0].alias),
                        ColumnRef(
                            right_alias.dataset,
                            self._canonical(self.rules[right_alias.dataset], name),
                            right_alias.alias,
                        ),
                    ]
                    out.append(self._join_pair(pair[0], pair[1], jkind))
                continue
            if on is None:
                raise QueryRefused("join", "every join needs ON a.x = b.y on the owners' join columns (no cross join)")
            conditions = list(on.flatten()) if isinstance(on, exp.And) else [on]
            for cond in conditions:
                while isinstance(cond, exp.Paren):
                    cond = cond.this
                if not (
                    isinstance(cond, exp.EQ)
                    and isinstance(cond.this, exp.Column)
                    and isinstance(cond.expression, exp.Column)
                ):
                    raise QueryRefused("join", "a join condition may only be equalities of two columns joined by AND")
                left = self._resolve(cond.this, by_alias)
                right = self._resolve(cond.expression, by_alias)
                out.append(self._join_pair(left, right, jkind))
        return out

    @staticmethod
    def _alias_of(node: exp.Expression) -> str:
        alias_node = node.args.get("alias")
        if alias_node is not None and alias_node.this:
            return _fold(_ident(alias_node.this))
        return _fold(_ident(node.this))

    def _join_pair(self, left: ColumnRef, right: ColumnRef, kind: str) -> JoinCondition:
        if left.source == right.source:
            raise QueryRefused("join", "a join condition must compare columns of two different tables")
        for ref in (left, right):
            if not self.rules[ref.dataset].is_join_column(ref.column):
                raise QueryRefused(
                    "join",
                    f"{ref.dataset}.{ref.column} is not a join column of {ref.dataset} "
                    f"(its owner allows: {', '.join(self.rules[ref.dataset].join_columns) or 'none'})",
                )
        return JoinCondition(left, right, kind)

    # ---- the whole query
    def check(self) -> QueryPlan:
        tree = self.tree
        if tree.args.get("distinct"):
            raise QueryRefused("output", "SELECT DISTINCT is not allowed: GROUP BY dimensions")
        sources = self._sources()
        by_alias = {s.alias: s for s in sources}
        joins = self._joins(sources)
        where = tree.args.get("where")
        if where is not None:
            self._check_filter(where.this, by_alias)
        group: list[ColumnRef] = []
        grouped: set[tuple[str, str]] = set()
        group_node = tree.args.get("group")
        if group_node is not None:
            for item in group_node.expressions:
                if not isinstance(item, exp.Column):
                    raise QueryRefused(
                        "group_by",
                        f"GROUP BY {item.sql('spark')[:60]}: group by dimension columns only (no ordinals "
                        "or expressions)",
                    )
                ref = self._resolve(item, by_alias)
                role = self._role(ref)
                if role == "identity":
                    raise QueryRefused("identity", f"identity column {ref.dataset}.{ref.column} may not be grouped by")
                if role != "dimension":
                    raise QueryRefused("group_by", f"{ref.dataset}.{ref.column} is not a dimension of {ref.dataset}")
                group.append(ref)
                grouped.add((ref.dataset, _fold(ref.column)))
            for arg in ("rollup", "cube", "grouping_sets", "totals"):
                if group_node.args.get(arg):
                    raise QueryRefused("group_by", "ROLLUP, CUBE and GROUPING SETS are not allowed")
        outputs = [self._output(item, by_alias, grouped) for item in tree.expressions]
        names = [_fold(o.alias) for o in outputs]
        if len(set(names)) != len(names):
            raise QueryRefused("alias", "two output columns have the same name")
        all_ids = {_fold(c) for r in self.rules.values() for c in r.identity_columns}
        for o in outputs:
            if _fold(o.alias).startswith(INTERNAL_PREFIX):
                raise QueryRefused("alias", f"output names starting with {INTERNAL_PREFIX} are reserved")
            if _fold(o.alias) in all_ids:
                raise QueryRefused("alias", f"the output name {o.alias} is an identity column's name")
        order = tree.args.get("order")
        if order is not None:
            dims = {_fold(o.alias) for o in outputs if o.kind == "dimension"}
            aggs = {_fold(o.alias) for o in outputs if o.kind == "aggregate"}
            for ordered in order.expressions:
                col = ordered.this
                if not isinstance(col, exp.Column) or (not col.args.get("table") and _fold(_ident(col.this)) in aggs):
                    raise QueryRefused("order_by", "ORDER BY output dimensions only (not aggregates or expressions)")
                if not col.args.get("table") and _fold(_ident(col.this)) in dims:
                    continue
                ref = self._resolve(col, by_alias)
                if (ref.dataset, _fold(ref.column)) not in grouped:
                    raise QueryRefused("order_by", "ORDER BY output dimensions only")
        # the strictest rule of each dataset
        used = [self.rules[d] for d in self.used]
        k = max([self.k_floor, *(r.k for r in used)])
        dp_rules = [r for r in used if r.dp is not None]
        dp = None
        if dp_rules:
            dp, outputs = self._dp(dp_rules, outputs, joins, sources)
        canonical = tree.sql(dialect="spark", identify=True, comments=False)
        again = sqlglot.parse_one(canonical, read="spark").sql(dialect="spark", identify=True, comments=False)
        if again != canonical:  # the generator and the parser disagree: refuse rather than guess
            raise QueryRefused("syntax", "the query does not survive a parse round trip; simplify it")
        return QueryPlan(
            datasets=tuple(sorted(self.used)),
            sources=tuple(sources),
            group_by=tuple(group),
            outputs=tuple(outputs),
            joins=tuple(joins),
            k=k,
            dp=dp,
            canonical_sql=canonical,
            identity_columns={d: tuple(self.rules[d].identity_columns) for d in sorted(self.used)},
        )

    def _dp(self, dp_rules, outputs, joins, sources):
        asking = ", ".join(sorted(r.dataset for r in dp_rules))
        if len(sources) > 1:
            for j in joins:
                if j.kind != "inner" or not (
                    self.rules[j.left.dataset].is_identity(j.left.column)
                    and self.rules[j.right.dataset].is_identity(j.right.column)
                ):
                    raise QueryRefused(
                        "dp",
                        f"the owner(s) of {asking} ask for differential privacy: joins must be inner joins on "
                        "identity columns (so one person's rows stay bounded)",
                    )
        bounds: dict[tuple[str, str], tuple[float, float]] = {}
        new_outputs = []
        for o in outputs:
            if o.kind == "aggregate" and o.function in ("min", "max"):
                raise QueryRefused("dp", f"{o.function}() cannot be released under differential privacy ({asking})")
            if o.kind == "aggregate" and o.function in ("sum", "avg"):
                lo_total = hi_total = 0.0
                # interval arithmetic over the argument: + and - of measures
                for ref, sign in zip(o.columns, o.signs, strict=False):
                    b = self.rules[ref.dataset].bounds(ref.column)
                    if b is None:
                        raise QueryRefused(
                            "dp",
                            f"differential privacy applies ({asking}) but {ref.dataset}.{ref.column} has no dp.bounds: "
                            f"its owner must bound it before it can be summed or averaged",
                        )
                    bounds[(ref.dataset, ref.column)] = b
                    lo, hi = (b[0], b[1]) if sign > 0 else (-b[1], -b[0])
                    lo_total += lo
                    hi_total += hi
                o = OutputColumn(o.alias, o.kind, o.function, o.column, o.columns, (lo_total, hi_total), o.signs)
            new_outputs.append(o)
        plan = DPPlan(
            epsilon=min(r.dp.epsilon_per_query for r in dp_rules),
            max_rows_per_identity=min(r.dp.max_rows_per_identity for r in dp_rules),
            datasets=tuple(sorted(r.dataset for r in dp_rules)),
            bounds=bounds,
        )
        return plan, new_outputs


def _signs(node: exp.Expression, sign: int = 1) -> list[int]:
    """The sign (+1/-1) of each column of an aggregate's argument (+, -, unary -, parentheses), in
    ``walk`` order of its columns."""
    if isinstance(node, exp.Paren):
        return _signs(node.this, sign)
    if isinstance(node, exp.Neg):
        return _signs(node.this, -sign)
    if isinstance(node, (exp.Add, exp.Sub)):
        return _signs(node.this, sign) + _signs(node.expression, -sign if isinstance(node, exp.Sub) else sign)
    if isinstance(node, exp.Column):
        return [sign]
    raise QueryRefused("aggregate", f"unexpected {node.key} in an aggregate")


def _parse(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused("text", "the query is empty: give one SELECT statement")
    if len(sql) > MAX_QUERY_CHARS:
        raise QueryRefused("text", f"the query has {len(sql)} characters; at most {MAX_QUERY_CHARS} are allowed")
    if not _PRINTABLE.match(sql):
        raise QueryRefused("text", "the query may hold printable ASCII characters only (no control or non-ASCII)")
    if "\\" in sql:
        raise QueryRefused("text", "backslashes are not allowed: no escapes (unicode or other) in a clean-room query")
    try:
        statements = [s for s in sqlglot.parse(sql, read="spark") if s is not None]
    except (ParseError, TokenError) as exc:
        where = ""
        errors = getattr(exc, "errors", None) or []
        if errors:
            where = f" at line {errors[0].get('line')}, column {errors[0].get('col')}"
        raise QueryRefused("syntax", f"the query does not parse as Spark SQL{where}") from None
    except RecursionError:
        raise QueryRefused("text", "the query is nested too deeply") from None
    if len(statements) != 1:
        raise QueryRefused("statements", f"the query holds {len(statements)} statements; give exactly one SELECT")
    tree = statements[0]
    if isinstance(tree, _SET_OPERATIONS):
        raise QueryRefused("set_operation", f"{tree.key.upper()} is not allowed: give exactly one SELECT")
    if not isinstance(tree, exp.Select):
        raise QueryRefused(
            "not_select",
            f"only SELECT queries may run in the clean room, not {tree.key.upper()} (DDL, DML, SET, CACHE and other "
            "commands are refused)",
        )
    _screen(tree)
    return tree


def check_query(sql: str, rules: Mapping[str, AnalysisRules], k_floor: int) -> QueryPlan:
    """Check ``sql`` against the analysis rules of the datasets it may read.

    :param sql: the Spark SQL text as submitted
    :param rules: dataset name -> its owner's rules (only these datasets may be read)
    :param k_floor: the contract's minimum group size (the effective k is never below it)
    :raises QueryRefused: naming the rule (``code``) and what to change
    """
    for name, r in rules.items():
        if not isinstance(r, AnalysisRules) or _fold(r.dataset) != _fold(name):
            raise QueryRefused("rules", f"the analysis rules given for {name!r} are not that dataset's rules")
    tree = _parse(sql)
    try:
        return _Checker(tree, rules, k_floor).check()
    except RecursionError:
        raise QueryRefused("text", "the query is nested too deeply") from None


def epsilon_required(plan: QueryPlan) -> dict[str, float]:
    """The privacy loss a run of ``plan`` costs each dataset whose owner asks for differential
    privacy: dataset -> epsilon. Governance must debit all of these, atomically, BEFORE the runtime
    releases anything (an exhausted budget refuses the run). Empty without DP."""
    if plan.dp is None:
        return {}
    return {d: plan.dp.epsilon for d in plan.dp.datasets}


# ---------------------------------------------------------------------------- legacy check (contract.py)
@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed the structural rules: its text and the datasets it reads."""

    sql: str
    datasets: tuple[str, ...]


def validate_query(sql: str, datasets: list[str] | tuple[str, ...], count_column: str = "n") -> ValidatedQuery:
    """The rules-free structural check kept for ``contract.QueryDocument`` until the documents
    carry analysis rules: one SELECT over the given datasets through the same parser and node
    allow-list as :func:`check_query` (no reflect, windows, generators, UNION, hints, qualified or
    path tables), with an output column named ``count_column``. Not a privacy check: the runtime
    must run :func:`check_query` with the owners' rules.
    """
    tree = _parse(sql)
    allowed = {_fold(d) for d in datasets}
    ctes = {_fold(_ident(c.args["alias"].this)) for c in (tree.args.get("with_") or exp.With()).expressions}
    read: set[str] = set()
    for table in tree.find_all(exp.Table):
        if table.args.get("db") or table.args.get("catalog"):
            raise QueryRefused("table", "the query reads a qualified or path-based table: use plain dataset names")
        if not isinstance(table.this, exp.Identifier):
            raise QueryRefused("table", f"the table-valued function {_function_name(table.this)}() is not allowed")
        name = _fold(_ident(table.this))
        if name in ctes:
            continue
        if name not in allowed:
            raise QueryRefused("table", f"the query reads {name!r}, which is not a dataset of the contract")
        read.add(name)
    if not read:
        raise QueryRefused("table", "the query reads none of the contract's datasets")
    names = {_fold(_ident(e.args.get("alias"))) for e in tree.expressions if isinstance(e, exp.Alias)}
    if _fold(count_column) not in names:
        raise QueryRefused("output", f"the query must output each group's size as a column named {count_column!r}")
    return ValidatedQuery(sql=tree.sql(dialect="spark", identify=True, comments=False), datasets=tuple(sorted(read)))


__all__ = [
    "ColumnRef",
    "DPPlan",
    "JoinCondition",
    "OutputColumn",
    "QueryPlan",
    "QueryRefused",
    "Source",
    "ValidatedQuery",
    "check_query",
    "epsilon_required",
    "validate_query",
]
