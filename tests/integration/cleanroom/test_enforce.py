"""run_plan with real pyspark: allowed queries equal an independent pandas computation over the
plaintext (DP off); groups are thresholded by distinct identities, per dataset for a join, and the
suppressed groups are counted; DP results lie within the stated error bound."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from devstack.cleanroom_sample import QUERY, SHARED
from include.cleanroom.enforce import EnforcementError, rewrite, run_plan
from include.cleanroom.rules import AnalysisRules
from include.cleanroom.sql import check_query

SCHEMA = "patient_id string, region string, age_band string, visits int"


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("test-enforce")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.runSQLOnFiles", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def rules(dataset: str, k: int = 5, dp: dict | None = None) -> AnalysisRules:
    data = {
        "dataset": dataset,
        "identityColumns": ["patient_id"],
        "dimensions": ["region", "age_band"],
        "aggregates": {"visits": ["sum", "avg", "count"], "*": ["count"]},
        "joinColumns": ["patient_id"],
        "k": k,
    }
    if dp is not None:
        data["dp"] = dp
    return AnalysisRules.from_data(data)


def demo_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo collaboration (devstack.cleanroom_sample), plus a 'many' region in A: 10 rows from
    3 patients (below k=5 by distinct identities, above it by rows)."""
    rows_a, rows_b = [], []
    for region, count in SHARED.items():
        for i in range(count):
            pid = f"{region}-{i:03d}"
            rows_a.append((pid, region, "40-49", 2))
            rows_b.append((pid, region, "40-49", 3))
    rows_a += [(f"west-{i:03d}", "west", "20-29", 1) for i in range(9)]
    rows_a += [(f"many-{i % 3}", "many", "60-69", 4) for i in range(10)]
    cols = ["patient_id", "region", "age_band", "visits"]
    return pd.DataFrame(rows_a, columns=cols), pd.DataFrame(rows_b, columns=cols)


def views(spark, a: pd.DataFrame, b: pd.DataFrame):
    return {
        "visits_a": spark.createDataFrame(list(a.itertuples(index=False, name=None)), SCHEMA),
        "visits_b": spark.createDataFrame(list(b.itertuples(index=False, name=None)), SCHEMA),
    }


def as_frame(result) -> pd.DataFrame:
    return pd.DataFrame(result.rows, columns=list(result.columns)).sort_values(list(result.columns[:1]))


def test_demo_query_equals_pandas_and_east_is_suppressed(spark):
    a, b = demo_frames()
    plan = check_query(QUERY, {"visits_a": rules("visits_a"), "visits_b": rules("visits_b")}, 5)
    # an inner join on the identity: both datasets have the same patients in every group, one count
    assert rewrite(plan)[1] == {"__cr_ids_0": "ids:visits_a,visits_b"}
    result = run_plan(spark, plan, views(spark, a, b))
    # independent computation over the plaintext
    j = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
    expected = (
        j.groupby("region_a")
        .agg(n=("patient_id", "nunique"), visits=("visits_a", "size"))
        .reset_index()
        .rename(columns={"region_a": "region"})
    )
    expected["visits"] = j.assign(v=j.visits_a + j.visits_b).groupby("region_a")["v"].sum().values
    ids_b = j.groupby("region_a")["patient_id"].nunique().values  # per dataset: equal on an identity join
    kept = expected[(expected.n >= 5) & (ids_b >= 5)].sort_values("region").reset_index(drop=True)
    got = as_frame(result).reset_index(drop=True)
    assert got.region.tolist() == ["north", "south"] == kept.region.tolist()
    assert got.n.tolist() == kept.n.tolist() == [20, 12]
    assert got.visits.tolist() == kept.visits.tolist() == [100, 60]
    assert result.suppressed_groups == 1  # east: 3 patients
    assert result.epsilon_spent == 0.0 and result.dp_intervals == {}
    assert result.summary()["suppressedGroups"] == 1


def test_threshold_counts_distinct_identities_not_rows(spark):
    a, b = demo_frames()
    sql = "SELECT region, COUNT(*) AS n, SUM(visits) AS total, AVG(visits) AS mean FROM visits_a GROUP BY region"
    plan = check_query(sql, {"visits_a": rules("visits_a")}, 5)
    result = run_plan(spark, plan, views(spark, a, b))
    g = a.groupby("region").agg(
        n=("visits", "size"), total=("visits", "sum"), mean=("visits", "mean"), ids=("patient_id", "nunique")
    )
    expected = g[g.ids >= 5].drop(columns="ids").reset_index().sort_values("region").reset_index(drop=True)
    got = as_frame(result).reset_index(drop=True)
    assert "many" in set(a.region) and g.loc["many", "n"] == 10 and g.loc["many", "ids"] == 3
    assert "many" not in got.region.tolist()  # 10 rows but 3 patients at k=5: dropped
    assert "east" not in got.region.tolist()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert result.suppressed_groups == 2


def test_a_column_the_query_fills_is_never_trusted(spark):
    """The author's own 'n' is only output: the runtime's hidden distinct count decides."""
    a, b = demo_frames()
    plan = check_query("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region", {"visits_a": rules("visits_a")}, 5)
    sql, hidden = rewrite(plan)
    assert "COUNT(DISTINCT `visits_a`.`patient_id`) AS `__cr_ids_0`" in sql
    assert hidden == {"__cr_ids_0": "ids:visits_a"}
    result = run_plan(spark, plan, views(spark, a, b))
    assert dict(result.rows)["west"] == 9 and "many" not in dict(result.rows)  # n=10 >= 5, yet 3 people


def test_join_thresholds_per_dataset(spark):
    """A left join: groups need k distinct identities in EACH dataset, not only in the left one."""
    a, b = demo_frames()
    sql = (
        "SELECT a.region, COUNT(*) AS n FROM visits_a a LEFT JOIN visits_b b ON a.patient_id = b.patient_id "
        "GROUP BY a.region"
    )
    plan = check_query(sql, {"visits_a": rules("visits_a"), "visits_b": rules("visits_b")}, 5)
    assert rewrite(plan)[1] == {"__cr_ids_0": "ids:visits_a", "__cr_ids_1": "ids:visits_b"}  # one count each
    result = run_plan(spark, plan, views(spark, a, b))
    j = a.merge(b, on="patient_id", how="left", suffixes=("_a", "_b"), indicator=True)
    j["pid_b"] = j.patient_id.where(j._merge == "both")
    g = j.groupby("region_a").agg(n=("patient_id", "size"), ids_a=("patient_id", "nunique"), ids_b=("pid_b", "nunique"))
    expected = g[(g.ids_a >= 5) & (g.ids_b >= 5)]
    assert g.loc["west", "ids_a"] == 9 and g.loc["west", "ids_b"] == 0  # enough in A, nobody in B
    assert sorted(dict(result.rows)) == sorted(expected.index) == ["north", "south"]
    assert dict(result.rows) == expected.n.to_dict()
    assert result.suppressed_groups == len(g) - len(expected) == 3


def test_strictest_k_applies(spark):
    a, b = demo_frames()
    plan = check_query(QUERY, {"visits_a": rules("visits_a", k=15), "visits_b": rules("visits_b")}, 5)
    result = run_plan(spark, plan, views(spark, a, b))
    assert [r[0] for r in result.rows] == ["north"] and result.suppressed_groups == 2


def test_missing_view_is_a_clear_error(spark):
    plan = check_query(QUERY, {"visits_a": rules("visits_a"), "visits_b": rules("visits_b")}, 5)
    a, b = demo_frames()
    with pytest.raises(EnforcementError, match="visits_b"):
        run_plan(spark, plan, {"visits_a": views(spark, a, b)["visits_a"]})


# ------------------------------------------------------------------ differential privacy
def dp_frames(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per patient and identity-joined datasets, values inside the owners' bounds: the
    bounded data equals the plaintext, so the stated bound is about the true answer."""
    rnd = random.Random(seed)
    rows_a, rows_b = [], []
    for region, count in (("north", 400), ("south", 250), ("east", 3)):
        for i in range(count):
            pid = f"{region}-{i:04d}"
            rows_a.append((pid, region, "40-49", rnd.randint(0, 10)))
            rows_b.append((pid, region, "40-49", rnd.randint(0, 10)))
    cols = ["patient_id", "region", "age_band", "visits"]
    return pd.DataFrame(rows_a, columns=cols), pd.DataFrame(rows_b, columns=cols)


DP = {"epsilonPerQuery": 1.0, "totalBudget": 10.0, "bounds": {"visits": [0, 10]}}


def test_dp_results_within_the_stated_error_bound(spark):
    a, b = dp_frames()
    sql = (
        "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits, "
        "AVG(b.visits) AS mean FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id GROUP BY a.region"
    )
    plan = check_query(sql, {"visits_a": rules("visits_a", dp=DP), "visits_b": rules("visits_b", dp=DP)}, 5)
    alpha = 1e-6  # each interval fails with probability <= 1e-6: the test is not flaky
    result = run_plan(spark, plan, views(spark, a, b), rng_seed=1, alpha=alpha)
    j = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
    truth = j.groupby("region_a").agg(n=("patient_id", "nunique"), mean=("visits_b", "mean"))
    truth["visits"] = j.assign(v=j.visits_a + j.visits_b).groupby("region_a")["v"].sum()
    assert result.epsilon_spent == 1.0 and result.confidence == 1 - alpha
    assert result.suppressed_groups == 1  # east
    # 4 releases (count, sum, avg = sum + count): epsilon 0.25 each; sensitivity 1 row per person
    assert result.dp_sensitivities == {"n": 1, "visits": 20.0, "mean:sum": 10.0, "mean:count": 1}
    assert result.dp_scales["n"] == pytest.approx(4.0, rel=1e-5)
    assert result.dp_scales["visits"] == pytest.approx(80.0, rel=1e-5)
    released = {r[0]: r for r in result.rows}
    assert sorted(released) == ["north", "south"]
    for i, row in enumerate(result.rows):
        region = row[0]
        for col, idx in (("n", 1), ("visits", 2), ("mean", 3)):
            lo, hi = result.dp_intervals[col][i]
            assert lo <= truth.loc[region, col] <= hi, (region, col, lo, hi)
            assert lo <= row[idx] <= hi
        # the bound is tight enough to be useful: counts within a few dozen, not the whole range
        assert result.dp_intervals["n"][i][1] - result.dp_intervals["n"][i][0] < 150


def test_dp_bounds_rows_per_identity(spark):
    a, b = dp_frames()
    # a patient with many rows contributes at most maxRowsPerIdentity (1) of them
    heavy = pd.DataFrame([("north-0000", "north", "40-49", 10)] * 50, columns=a.columns)
    a2 = pd.concat([a, heavy], ignore_index=True)
    plan = check_query(
        "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region", {"visits_a": rules("visits_a", dp=DP)}, 5
    )
    result = run_plan(spark, plan, views(spark, a2, b), alpha=1e-6)
    assert result.dp_scales == {"n": pytest.approx(1.0, rel=1e-5)}  # sensitivity 1 / epsilon 1
    i = [r[0] for r in result.rows].index("north")
    lo, hi = result.dp_intervals["n"][i]
    assert hi - lo < 40
    assert lo <= 400 <= hi  # one row per patient: the heavy patient's 50 extra rows are not counted
    assert not lo <= 450 <= hi


def test_no_data_dependent_failure_under_ansi(spark):
    """An aggregate that would overflow on some rows only does not fail the run (ANSI errors off),
    and the session's setting is restored afterwards."""
    big = pd.DataFrame(
        [(f"p{i}", "north", "40-49", 2_000_000_000) for i in range(6)],
        columns=["patient_id", "region", "age_band", "visits"],
    )
    plan = check_query(QUERY, {"visits_a": rules("visits_a"), "visits_b": rules("visits_b")}, 5)
    spark.conf.set("spark.sql.ansi.enabled", "true")
    result = run_plan(spark, plan, views(spark, big, big))  # a.visits + b.visits overflows an int
    assert [r[:2] for r in result.rows] == [("north", 6)]
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"


def test_dp_row_choice_depends_on_the_persons_own_rows_only(spark):
    """Under DP, which of a person's rows are kept must not change when someone else is removed
    (else one person could move another's contribution and the sensitivity would not hold)."""
    from include.cleanroom.enforce import _prepare_views

    cols = ["patient_id", "region", "age_band", "visits"]
    x_rows = [("x", "north", "40-49", v) for v in (1, 5, 9, 3)]
    others = [(f"o{i}", "north", "40-49", i % 10) for i in range(40)]
    plan = check_query(
        "SELECT region, SUM(visits) AS s FROM visits_a GROUP BY region",
        {"visits_a": rules("visits_a", dp={**DP, "maxRowsPerIdentity": 2})},
        5,
    )

    def kept_for_x(rows):
        df = spark.createDataFrame(rows, SCHEMA).repartition(3)
        prepared = _prepare_views(plan, {"visits_a": df}, rng_seed=11)["visits_a"]
        return sorted(r.visits for r in prepared.filter("patient_id = 'x'").collect())

    full = kept_for_x(pd.DataFrame(others + x_rows, columns=cols).itertuples(index=False, name=None))
    assert len(full) == 2
    assert kept_for_x(pd.DataFrame(x_rows + others[::2], columns=cols).itertuples(index=False, name=None)) == full
    assert kept_for_x(pd.DataFrame(list(reversed(x_rows)), columns=cols).itertuples(index=False, name=None)) == full
