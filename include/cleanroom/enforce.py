"""Run a checked query plan inside Spark, with the owners' thresholds and differential privacy.

``run_plan(spark, plan, views)`` is the runtime's half of the analysis rules (the parser's half is
``include.cleanroom.sql.check_query``, which produced ``plan``):

1. **Views.** Each dataset's DataFrame is registered under its name. Under differential privacy,
   first each summed or averaged measure is clamped to its owner's bounds ``[lo, hi]`` and each
   identity keeps at most ``m = max_rows_per_identity`` rows (chosen by a seeded hash of each
   row's content, so that the choice depends on that person's rows only); rows without an
   identity are dropped.
2. **Thresholds computed by the runtime.** The plan's canonical SQL (never the submitted text) is
   rewritten on its AST: for each dataset of the query, ``COUNT(DISTINCT <alias>.<identity...>)``
   is added to the outer aggregation as a hidden column. A group is released only if every one of
   them is ``>= plan.k`` (a join is thresholded per dataset); the hidden columns are dropped, and
   the number of suppressed groups is reported. No column of the query is trusted for this.
   Datasets linked only by inner joins on their single identity columns have the same identity on
   every joined row, so one count serves them all (:func:`identity_classes`).
3. **Differential privacy** (``plan.dp``), through OpenDP's Laplace mechanism
   (``opendp.measurements.make_laplace``; discrete Laplace for counts, continuous for sums),
   applied to the vector of each aggregate over the released groups:

   * privacy unit: one person, i.e. one identity value and all its rows in every dataset
     (datasets joined under DP only by inner joins on identity columns);
   * after bounding, one person contributes at most ``R = m ** D`` rows to the joined input
     (``D`` = datasets in the query), so the L1 sensitivity of the vector of group counts
     (``COUNT(*)``, ``COUNT(x)``, ``COUNT(DISTINCT identity)``) is ``R``, and of the vector of
     group sums of an argument bounded to ``[lo, hi]`` (interval arithmetic over the measures'
     bounds) is ``R * max(|lo|, |hi|)``;
   * ``AVG`` is released as noisy sum / noisy count (two releases, post-processing), clamped to
     ``[lo, hi]``;
   * the query's ``epsilon`` is split evenly over the releases (sequential composition), so a run
     costs exactly ``plan.dp.epsilon`` (pure epsilon-DP, delta = 0); the Laplace scale of a
     release is ``sensitivity / epsilon_release``; OpenDP's privacy map is checked against it;
   * **error bound**: with probability at least ``1 - alpha`` the noise of one released count or
     sum is at most ``OpenDP's *_scale_to_accuracy(scale, alpha)`` (for the continuous Laplace,
     ``scale * ln(1/alpha)``); each released value comes with that interval in
     ``EnforcedResult.dp_intervals`` (for an average, the interval of sum/count from both
     intervals at ``alpha/2`` each, so it too holds with probability at least ``1 - alpha``).
     The bound is about the bounded data (clamped values, at most ``m`` rows per identity); with
     values inside the owners' bounds and ``m`` rows or fewer per person it is about the data.

   Which groups are released is decided by the exact distinct-identity threshold (step 2), and the
   number of suppressed groups is exact: both are outside the DP guarantee (documented in
   docs/cleanroom-privacy.md).

Budget: governance must debit ``include.cleanroom.sql.epsilon_required(plan)`` atomically BEFORE
this releases anything; ``EnforcedResult.epsilon_spent`` repeats what the run consumed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from include.cleanroom.errors import CleanroomError
from include.cleanroom.sql import INTERNAL_PREFIX, OutputColumn, QueryPlan

DEFAULT_ALPHA = 0.05


class EnforcementError(CleanroomError):
    """The runtime cannot enforce the plan (missing dataset, bad DP parameters): a bug or a
    misconfiguration, never data."""


@dataclass(frozen=True)
class EnforcedResult:
    """What a run releases.

    :param columns: the output column names, in the query's order
    :param rows: the released groups (tuples in ``columns`` order); under DP the aggregates are noisy
    :param suppressed_groups: groups dropped because fewer than ``k`` distinct identities of some
        dataset stood behind them
    :param epsilon_spent: the privacy loss of this run (0.0 without DP)
    :param confidence: ``1 - alpha``: the probability with which each DP interval holds (None without DP)
    :param dp_intervals: DP aggregate alias -> per row (lo, hi): the stated error bound around the
        released value, holding the true value of the bounded data with probability ``confidence``
    :param dp_scales: (DP aggregate alias or ``alias:sum``/``alias:count`` for an average) -> Laplace scale
    :param dp_sensitivities: the same keys -> L1 sensitivity used
    """

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    suppressed_groups: int
    epsilon_spent: float
    k: int
    confidence: float | None = None
    dp_intervals: Mapping[str, list[tuple[float, float]]] = field(default_factory=dict)
    dp_scales: Mapping[str, float] = field(default_factory=dict)
    dp_sensitivities: Mapping[str, float] = field(default_factory=dict)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def summary(self) -> dict[str, Any]:
        """Counts and settings only (no data): for the run's summary and the audit trail."""
        return {
            "rows": len(self.rows),
            "columns": list(self.columns),
            "suppressedGroups": self.suppressed_groups,
            "minDistinctIdentities": self.k,
            "epsilonSpent": self.epsilon_spent,
            "confidence": self.confidence,
            "laplaceScales": dict(self.dp_scales),
        }


# ---------------------------------------------------------------------------- views
def _prepare_views(plan: QueryPlan, views: Mapping[str, Any], rng_seed: int | None) -> dict[str, Any]:
    from pyspark.sql import Window  # noqa: PLC0415 - pyspark only where Spark runs
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    by_name = {name.casefold(): df for name, df in views.items()}
    missing = [d for d in plan.datasets if d.casefold() not in by_name]
    if missing:
        raise EnforcementError(f"no DataFrame given for dataset(s) {', '.join(missing)}")
    prepared = {}
    for dataset in plan.datasets:
        df = by_name[dataset.casefold()]
        if plan.dp is not None:
            ids = list(plan.identity_columns[dataset])
            df = df.dropna(subset=ids)
            for (d, column), (lo, hi) in plan.dp.bounds.items():
                if d == dataset:
                    df = df.withColumn(column, F.least(F.greatest(F.col(column).cast("double"), F.lit(lo)), F.lit(hi)))
            # which rows of a person are kept depends on that person's rows only (a seeded 64-bit
            # hash of each row's content; rows of one person with equal hashes are equal rows, but
            # for a collision), never on other people's rows or on the physical order; the
            # window's sort by identity is the one the join needs anyway
            seed = rng_seed if rng_seed is not None else secrets.randbits(31)
            w = Window.partitionBy(*ids).orderBy(F.xxhash64(F.lit(seed), *[F.col(f"`{c}`") for c in df.columns]))
            rn = f"{INTERNAL_PREFIX}_rn"
            df = df.withColumn(rn, F.row_number().over(w))
            df = df.filter(F.col(rn) <= plan.dp.max_rows_per_identity).drop(rn)
        prepared[dataset] = df
    return prepared


# ---------------------------------------------------------------------------- the rewrite
def identity_classes(plan: QueryPlan) -> list[list[int]]:
    """The query's sources (indexes into ``plan.sources``) grouped so that all sources of a group
    have the same identity value on every joined row: when every join is inner and an equality of
    two single-column identities links them (``a.patient_id = b.patient_id``), the distinct
    identities behind each group are the same set for both, so one count thresholds both."""
    parent = list(range(len(plan.sources)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = {s.alias: i for i, s in enumerate(plan.sources)}
    if all(j.kind == "inner" for j in plan.joins):
        for j in plan.joins:
            left_ids = plan.identity_columns[j.left.dataset]
            right_ids = plan.identity_columns[j.right.dataset]
            if (
                len(left_ids) == 1
                and len(right_ids) == 1
                and j.left.column.casefold() == left_ids[0].casefold()
                and j.right.column.casefold() == right_ids[0].casefold()
            ):
                parent[find(index[j.left.source])] = find(index[j.right.source])
    classes: dict[int, list[int]] = {}
    for i in range(len(plan.sources)):
        classes.setdefault(find(i), []).append(i)
    return sorted(classes.values())


def threshold_columns(plan: QueryPlan) -> dict[str, tuple[str, ...]]:
    """Hidden column name -> the datasets whose distinct identities it counts (one per identity
    class, see :func:`identity_classes`, counted through the class's first source)."""
    return {
        f"{INTERNAL_PREFIX}_ids_{n}": tuple(plan.sources[i].dataset for i in cls)
        for n, cls in enumerate(identity_classes(plan))
    }


def rewrite(plan: QueryPlan) -> tuple[str, dict[str, str]]:
    """The SQL the runtime runs: the plan's canonical query plus one hidden
    ``COUNT(DISTINCT <alias>.<identity...>)`` per source, and under DP a hidden ``SUM``/``COUNT``
    pair per ``AVG``. Returns (sql, hidden column -> purpose)."""
    tree = sqlglot.parse_one(plan.canonical_sql, read="spark")
    hidden: dict[str, str] = {}
    for name, cls in zip(threshold_columns(plan), identity_classes(plan), strict=True):
        source = plan.sources[cls[0]]
        cols = [exp.column(c, table=source.alias, quoted=True) for c in plan.identity_columns[source.dataset]]
        tree.select(exp.alias_(exp.Count(this=exp.Distinct(expressions=cols)), name, quoted=True), copy=False)
        hidden[name] = "ids:" + ",".join(plan.sources[i].dataset for i in cls)
    if plan.dp is not None:
        for i, o in enumerate(plan.outputs):
            if o.kind == "aggregate" and o.function == "avg":
                arg = _aggregate_arg(tree, o.alias)
                tree.select(exp.alias_(exp.Sum(this=arg.copy()), f"{INTERNAL_PREFIX}_sum_{i}", quoted=True), copy=False)
                tree.select(
                    exp.alias_(exp.Count(this=arg.copy()), f"{INTERNAL_PREFIX}_cnt_{i}", quoted=True), copy=False
                )
                hidden[f"{INTERNAL_PREFIX}_sum_{i}"] = f"sum:{o.alias}"
                hidden[f"{INTERNAL_PREFIX}_cnt_{i}"] = f"count:{o.alias}"
    return tree.sql(dialect="spark", identify=True, comments=False), hidden


def _aggregate_arg(tree: exp.Select, alias: str) -> exp.Expression:
    for item in tree.expressions:
        if isinstance(item, exp.Alias) and item.alias.casefold() == alias.casefold():
            return item.this.this
    raise EnforcementError(f"aggregate {alias} not found in the canonical query")


# ---------------------------------------------------------------------------- DP
@dataclass(frozen=True)
class _Release:
    key: str
    integer: bool
    sensitivity: float


def _releases(plan: QueryPlan) -> list[tuple[OutputColumn, list[_Release]]]:
    rows_per_person = plan.dp.max_rows_per_identity ** len(plan.sources)
    out = []
    for o in plan.outputs:
        if o.kind != "aggregate":
            continue
        if o.function in ("count", "count_distinct_identity"):
            out.append((o, [_Release(o.alias, True, rows_per_person)]))
        elif o.function in ("sum", "avg"):
            lo, hi = o.bounds
            s = _Release(
                f"{o.alias}:sum" if o.function == "avg" else o.alias, False, rows_per_person * max(abs(lo), abs(hi))
            )
            if o.function == "sum":
                out.append((o, [s]))
            else:
                out.append((o, [s, _Release(f"{o.alias}:count", True, rows_per_person)]))
        else:
            raise EnforcementError(f"{o.function}() has no DP release")
    return out


def _laplace(values: list, release: _Release, epsilon: float):
    """Noisy values through OpenDP, the scale used, and the measurement's epsilon."""
    import opendp.prelude as dp  # noqa: PLC0415

    dp.enable_features("contrib")
    T = int if release.integer else float  # noqa: N806
    d_in = int(math.ceil(release.sensitivity)) if release.integer else float(release.sensitivity)
    scale = release.sensitivity / epsilon
    space = (
        dp.vector_domain(dp.atom_domain(T=T, nan=False) if T is float else dp.atom_domain(T=T)),
        dp.l1_distance(T=T),
    )
    for _ in range(20):
        meas = dp.m.make_laplace(*space, scale=scale)
        spent = meas.map(d_in)
        if spent <= epsilon * (1 + 1e-12):
            break
        scale *= 1 + 1e-6
    else:  # pragma: no cover - OpenDP's rounding never needs this many steps
        raise EnforcementError("could not calibrate the Laplace scale to the epsilon")
    if not values:
        return [], scale, spent
    return meas([T(v) for v in values]), scale, spent


def _accuracy(scale: float, integer: bool, alpha: float) -> float:
    import opendp.prelude as dp  # noqa: PLC0415

    if integer:
        return float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    return float(dp.laplacian_scale_to_accuracy(scale, alpha))


def _apply_dp(plan: QueryPlan, columns: list[str], rows: list[list], hidden: dict[str, str], alpha: float):
    releases = _releases(plan)
    n = sum(len(r) for _, r in releases)
    eps_each = plan.dp.epsilon / n if n else plan.dp.epsilon
    index = {c: i for i, c in enumerate(columns)}
    by_purpose = {purpose: name for name, purpose in hidden.items()}
    intervals: dict[str, list[tuple[float, float]]] = {}
    scales: dict[str, float] = {}
    sens: dict[str, float] = {}
    for o, rel in releases:
        if o.function == "avg":
            s_rel, c_rel = rel
            s_col, c_col = index[by_purpose[f"sum:{o.alias}"]], index[by_purpose[f"count:{o.alias}"]]
            sums, s_scale, _ = _laplace([r[s_col] or 0.0 for r in rows], s_rel, eps_each)
            counts, c_scale, _ = _laplace([r[c_col] or 0 for r in rows], c_rel, eps_each)
            a_s, a_c = _accuracy(s_scale, False, alpha / 2), _accuracy(c_scale, True, alpha / 2)
            lo, hi = o.bounds
            col = index[o.alias]
            ivals = []
            for r, s, c in zip(rows, sums, counts, strict=True):
                value = min(max(s / c, lo), hi) if c > 0 else (lo + hi) / 2
                if c - a_c > 0:
                    corners = [(s + ds) / (c + dc) for ds in (-a_s, a_s) for dc in (-a_c, a_c)]
                    ivals.append((max(lo, min(corners)), min(hi, max(corners))))
                else:
                    ivals.append((lo, hi))
                r[col] = value
            intervals[o.alias] = ivals
            scales[s_rel.key], scales[c_rel.key] = s_scale, c_scale
            sens[s_rel.key], sens[c_rel.key] = s_rel.sensitivity, c_rel.sensitivity
            continue
        (release,) = rel
        col = index[o.alias]
        raw = [(r[col] or 0) for r in rows]
        noisy, scale, _ = _laplace(raw, release, eps_each)
        acc = _accuracy(scale, release.integer, alpha)
        ivals = []
        for r, v in zip(rows, noisy, strict=True):
            if release.integer:  # a count is never negative: clamping is post-processing
                r[col] = max(0, int(v))
                ivals.append((max(0.0, v - acc), v + acc))
            else:
                r[col] = float(v)
                ivals.append((v - acc, v + acc))
        intervals[o.alias] = ivals
        scales[release.key] = scale
        sens[release.key] = release.sensitivity
    return intervals, scales, sens


# ---------------------------------------------------------------------------- the run
# session settings while a plan is analysed and run (restored afterwards):
# - ANSI off: an overflow or a bad cast gives NULL instead of failing the job, so that whether a
#   run fails never depends on whether some row exists (the parser allows no arithmetic in filters);
# - no window group limit: the per-identity row bound under DP then sorts once, after the shuffle
#   the join needs anyway, instead of sorting every row before it as well
RUN_SETTINGS = {
    "spark.sql.ansi.enabled": "false",
    "spark.sql.optimizer.windowGroupLimitThreshold": "-1",
}


@contextmanager
def run_settings(spark):
    """Apply :data:`RUN_SETTINGS` to the session, and restore the previous values afterwards."""
    previous = {key: spark.conf.get(key, None) for key in RUN_SETTINGS}
    for key, value in RUN_SETTINGS.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def run_plan(
    spark,
    plan: QueryPlan,
    views: Mapping[str, Any],
    rng_seed: int | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> EnforcedResult:
    """Run ``plan`` over ``views`` and release only what the owners' rules allow.

    :param spark: the SparkSession of the runtime (``spark.sql.runSQLOnFiles=false`` is the
        caller's job, as is registering nothing else under the datasets' names)
    :param plan: a plan from ``check_query`` (re-checked by the runtime just before)
    :param views: dataset name -> DataFrame of its plaintext (registered here as temp views)
    :param rng_seed: seed of the per-identity row choice under DP (random when None; the noise
        itself comes from OpenDP's cryptographically secure generator and cannot be seeded)
    :param alpha: under DP, each stated interval holds with probability at least ``1 - alpha``
    """

    if not 0 < alpha < 1:
        raise EnforcementError("alpha must be between 0 and 1")
    if plan.dp is not None and not (plan.dp.epsilon > 0 and math.isfinite(plan.dp.epsilon)):
        raise EnforcementError("the plan's epsilon must be a positive number")
    with run_settings(spark):
        return _run(spark, plan, views, rng_seed, alpha)


def _run(spark, plan: QueryPlan, views: Mapping[str, Any], rng_seed: int | None, alpha: float) -> EnforcedResult:
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    for dataset, df in _prepare_views(plan, views, rng_seed).items():
        df.createOrReplaceTempView(dataset)
    sql, hidden = rewrite(plan)
    result = spark.sql(sql)
    id_cols = [name for name, purpose in hidden.items() if purpose.startswith("ids:")]
    keep = F.lit(True)
    for name in id_cols:
        keep = keep & F.coalesce(F.col(name) >= F.lit(plan.k), F.lit(False))
    keep_col = f"{INTERNAL_PREFIX}_keep"
    wanted = list(plan.columns) + ([n for n in hidden if n not in id_cols] if plan.dp is not None else [])
    # one Spark job: a suppressed group reaches the driver as its flag only (every value is nulled
    # inside Spark), so that it is counted without its data leaving the executors
    flagged = result.select(
        keep.alias(keep_col),
        *[F.when(keep, F.col(f"`{c}`")).alias(f"{INTERNAL_PREFIX}_out_{i}") for i, c in enumerate(wanted)],
    )
    rows: list[list[Any]] = []
    suppressed = 0
    for r in flagged.collect():
        if r[0]:
            rows.append(list(r[1:]))
        else:
            suppressed += 1
    if plan.dp is None:
        return EnforcedResult(plan.columns, [tuple(r) for r in rows], suppressed, 0.0, plan.k)
    intervals, scales, sens = _apply_dp(plan, wanted, rows, hidden, alpha)
    width = len(plan.columns)
    return EnforcedResult(
        columns=plan.columns,
        rows=[tuple(r[:width]) for r in rows],
        suppressed_groups=suppressed,
        epsilon_spent=plan.dp.epsilon,
        k=plan.k,
        confidence=1 - alpha,
        dp_intervals=intervals,
        dp_scales=scales,
        dp_sensitivities=sens,
    )


__all__ = ["DEFAULT_ALPHA", "EnforcedResult", "EnforcementError", "rewrite", "run_plan", "threshold_columns"]
