"""The owners' analysis rules, checked on the query's AST (issue 10): every attack of the issue and
its variants is refused naming the rule; the demo query and honest variants are accepted."""

from __future__ import annotations

import pytest

from devstack.cleanroom_sample import QUERY
from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.rules import AnalysisRules, RulesError
from include.cleanroom.sql import QueryRefused, check_query, epsilon_required


def rules(dataset: str, k: int = 5, dp: dict | None = None, **over) -> AnalysisRules:
    data = {
        "dataset": dataset,
        "identityColumns": ["patient_id"],
        "dimensions": ["region", "age_band"],
        "aggregates": {"visits": ["sum", "avg", "count"], "*": ["count"]},
        "joinColumns": ["patient_id"],
        "k": k,
        **over,
    }
    if dp is not None:
        data["dp"] = dp
    return AnalysisRules.from_data(data)


RULES = {"visits_a": rules("visits_a"), "visits_b": rules("visits_b")}


def refused(sql: str, code: str, match: str | None = None, rules_=None, k_floor: int = 5) -> QueryRefused:
    with pytest.raises(QueryRefused) as info:
        check_query(sql, rules_ or RULES, k_floor)
    assert info.value.code == code, f"{info.value.code}: {info.value.message}"
    assert isinstance(info.value, CleanroomUserError)
    if match:
        assert match in info.value.message, info.value.message
    return info.value


# ------------------------------------------------------------------ accepted
def test_demo_query_accepted_with_its_plan():
    plan = check_query(QUERY, RULES, 5)
    assert plan.datasets == ("visits_a", "visits_b")
    assert plan.columns == ("region", "n", "visits")
    assert [(o.kind, o.function) for o in plan.outputs] == [
        ("dimension", None),
        ("aggregate", "count_distinct_identity"),
        ("aggregate", "sum"),
    ]
    assert plan.outputs[2].column == "visits_a.visits + visits_b.visits"
    assert [(c.dataset, c.column) for c in plan.group_by] == [("visits_a", "region")]
    (join,) = plan.joins
    assert (join.left.dataset, join.left.column, join.right.dataset, join.kind) == (
        "visits_a", "patient_id", "visits_b", "inner")
    assert plan.k == 5 and plan.dp is None
    assert plan.identity_columns == {"visits_a": ("patient_id",), "visits_b": ("patient_id",)}
    assert plan.canonical_sql.startswith("SELECT `a`.`region`, COUNT(DISTINCT `a`.`patient_id`) AS `n`")
    assert epsilon_required(plan) == {}
    assert plan.to_data()["sqlSha256"] == plan.sql_sha256


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region",
        "select REGION, count(*) as n, avg(VISITS) as mean from VISITS_A group by Region order by region",
        "SELECT `region`, SUM(`visits`) AS `total` FROM `visits_a` WHERE age_band IN ('40-49', '50-59') "
        "AND visits BETWEEN 0 AND 10 GROUP BY `region`",
        "WITH x AS (SELECT patient_id, region, visits FROM visits_a WHERE visits > 0) "
        "SELECT x.region, COUNT(DISTINCT x.patient_id) AS n FROM x GROUP BY x.region",
        "SELECT s.region, COUNT(*) AS n FROM (SELECT * FROM visits_a WHERE region <> 'west') s GROUP BY s.region",
        "SELECT a.region, COUNT(*) AS n FROM visits_a a LEFT JOIN visits_b b USING (patient_id) GROUP BY a.region",
        "SELECT COUNT(*) AS n FROM visits_a",
        "-- a comment\nSELECT region, COUNT(*) AS n /* inline */ FROM visits_a GROUP BY region",
    ],
)
def test_honest_queries_accepted(sql):
    plan = check_query(sql, RULES, 5)
    assert "--" not in plan.canonical_sql and "/*" not in plan.canonical_sql  # comments never reach Spark


# ------------------------------------------------------------------ the attacks of issue 10 and variants
@pytest.mark.parametrize(
    "sql,code,match",
    [
        # 1. raw rows with a literal group-size column
        ("SELECT patient_id, region, age_band, visits, 100 AS n FROM visits_a", "identity", "patient_id"),
        ("SELECT region, age_band, visits, 100 AS n FROM visits_a", "group_by", "region"),
        ("SELECT region, 100 AS n FROM visits_a GROUP BY region", "output", "literal"),
        ("SELECT region, COUNT(*) + 100 AS n FROM visits_a GROUP BY region", "output", None),
        # 2. reflect in backticks, raise_error, concat_ws, collect_list, in any clause
        (
            "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region HAVING raise_error(concat_ws('|', "
            "`reflect`('java.lang.System', 'getenv', 'HOME'), collect_list(patient_id))) IS NULL",
            "function",
            "raise_error",
        ),
        ("SELECT region, `reflect`('java.lang.System', 'getenv', 'HOME') AS x FROM visits_a GROUP BY region",
         "function", "reflect"),
        ("SELECT region, `REFLECT`('a', 'b') AS x FROM visits_a GROUP BY region", "function", "reflect"),
        ("SELECT region, java_method('java.lang.Runtime', 'getRuntime') AS x FROM visits_a GROUP BY region",
         "function", "java_method"),
        ("SELECT region, try_reflect('a', 'b') AS x FROM visits_a GROUP BY region", "function", "try_reflect"),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE assert_true(visits > 0) IS NULL GROUP BY region",
         "function", "assert_true"),
        ("SELECT region, concat_ws('|', region) AS x FROM visits_a GROUP BY region", "function", None),
        ("SELECT region, collect_list(patient_id) AS ids FROM visits_a GROUP BY region", "function", None),
        ("SELECT region, collect_set(visits) AS v FROM visits_a GROUP BY region", "function", None),
        ("SELECT region, first(visits) AS v FROM visits_a GROUP BY region", "function", None),
        ("SELECT region, my_udf(visits) AS v FROM visits_a GROUP BY region", "function", "my_udf"),
        ("SELECT input_file_name() AS f, COUNT(*) AS n FROM visits_a", "function", "input_file_name"),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE region = current_user() GROUP BY region",
         "function", None),
        # windows
        ("SELECT region, COUNT(*) OVER () AS n FROM visits_a", "window", None),
        ("SELECT region, SUM(visits) OVER (PARTITION BY region) AS n FROM visits_a", "window", None),
        # identity columns: min/max, grouping, filtering, counting
        ("SELECT region, MIN(patient_id) AS lo, MAX(patient_id) AS hi FROM visits_a GROUP BY region",
         "identity", "patient_id"),
        ("SELECT region, max(`Patient_ID`) AS hi FROM visits_a GROUP BY region", "identity", None),
        ("SELECT region, MIN(visits) AS lo FROM visits_a GROUP BY region", "aggregate", "min(visits_a.visits)"),
        ("SELECT patient_id AS p, COUNT(*) AS n FROM visits_a GROUP BY patient_id", "identity", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE patient_id <> 'north-001' GROUP BY region",
         "identity", None),
        ("SELECT region, COUNT(patient_id) AS n FROM visits_a GROUP BY region", "identity", None),
        ("SELECT region, COUNT(DISTINCT region) AS n FROM visits_a GROUP BY region", "aggregate", None),
        ("SELECT region, COUNT(*) AS patient_id FROM visits_a GROUP BY region", "alias", None),
        # UNION ALL with a literal n
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region UNION ALL SELECT region, 100 AS n "
         "FROM visits_b", "set_operation", None),
        ("SELECT region FROM visits_a INTERSECT SELECT region FROM visits_b", "set_operation", None),
        # comments, unicode escapes, hints, non-ASCII
        ("SELECT region, COUNT(*) AS n FROM visits_a /* ; DROP TABLE x */ GROUP BY region -- x\n; DROP TABLE y",
         "statements", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE region = 'r\\u0065flect' GROUP BY region", "text", None),
        ("SELECT region, re\\u0066lect('a') AS x FROM visits_a GROUP BY region", "text", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE region = 'n\u00f8rth' GROUP BY region", "text", None),
        ("SELECT /*+ BROADCAST(b) */ region, COUNT(*) AS n FROM visits_a GROUP BY region", "hint", None),
        ("SELECT /*+ REPARTITION(1) */ region, COUNT(*) AS n FROM visits_a GROUP BY region", "hint", None),
        # tables
        ("SELECT region, COUNT(*) AS n FROM default.visits_a GROUP BY region", "table", "qualified"),
        ("SELECT COUNT(*) AS n FROM parquet.`/etc/passwd`", "table", "qualified"),
        ("SELECT COUNT(*) AS n FROM spark_catalog.default.visits_a", "table", "qualified"),
        ("SELECT COUNT(*) AS n FROM patients", "table", "not a dataset"),
        ("SELECT COUNT(*) AS n FROM range(10)", "function", "range"),
        ("SELECT COUNT(*) AS n FROM visits_a TABLESAMPLE (10 PERCENT)", "table", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_a b ON a.patient_id = b.patient_id "
         "GROUP BY a.region", "table", "twice"),
        # CTE and subqueries: every branch obeys
        ("WITH x AS (SELECT region, visits FROM visits_a) SELECT region, COUNT(*) AS n FROM x GROUP BY region",
         "cte", "identity"),
        ("WITH x AS (SELECT patient_id, region FROM visits_a WHERE reflect('a', 'b') IS NULL) "
         "SELECT x.region, COUNT(*) AS n FROM x GROUP BY x.region", "function", "reflect"),
        ("WITH x AS (SELECT patient_id, region FROM other) SELECT x.region, COUNT(*) AS n FROM x GROUP BY x.region",
         "table", "other"),
        ("WITH x AS (SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region) SELECT region, n FROM x",
         "cte", None),
        ("WITH x AS (SELECT patient_id, region FROM visits_a WHERE patient_id = 'north-001') "
         "SELECT x.region, COUNT(*) AS n FROM x GROUP BY x.region", "identity", None),
        ("WITH x AS (SELECT patient_id AS pid, region FROM visits_a) SELECT x.region, COUNT(*) AS n FROM x "
         "GROUP BY x.region", "cte", "rename"),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE patient_id IN (SELECT patient_id FROM visits_b) "
         "GROUP BY region", "subquery", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE visits IN (SELECT visits FROM visits_b) "
         "GROUP BY region", "subquery", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE EXISTS (SELECT 1 FROM visits_b) GROUP BY region",
         "function", "exists"),
        # joins
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_b b ON a.region = b.region GROUP BY a.region",
         "join", "region"),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id "
         "AND a.visits > b.visits GROUP BY a.region", "join", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a CROSS JOIN visits_b b GROUP BY a.region", "join", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a, visits_b b GROUP BY a.region", "join", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a NATURAL JOIN visits_b b GROUP BY a.region", "join", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a LEFT ANTI JOIN visits_b b ON a.patient_id = b.patient_id "
         "GROUP BY a.region", "join", None),
        ("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_b b USING (region) GROUP BY a.region",
         "join", None),
        # output, grouping and the rest
        ("SELECT * FROM visits_a", "star", None),
        ("SELECT DISTINCT region FROM visits_a", "output", "DISTINCT"),
        ("SELECT region, COUNT(*) FROM visits_a GROUP BY region", "alias", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY 1", "group_by", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY ROLLUP (region)", "group_by", None),
        ("SELECT age_band, COUNT(*) AS n FROM visits_a GROUP BY region", "group_by", "age_band"),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region LIMIT 1", "limit", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region ORDER BY n", "order_by", None),
        ("SELECT region, SUM(visits * 100) AS v FROM visits_a GROUP BY region", "syntax", "MUL"),
        # errors as an oracle: nothing in a filter can fail on some rows only
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE visits / (visits - 3) > 0 GROUP BY region",
         "syntax", "DIV"),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE visits + 2147483647 > 0 GROUP BY region", "where", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE CAST(region AS INT) > 0 GROUP BY region", "function", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a WHERE -visits < 0 GROUP BY region", "where", None),
        ("SELECT region, SUM(DISTINCT visits) AS v FROM visits_a GROUP BY region", "aggregate", None),
        ("SELECT region, COUNT(*) AS __cr_ids_0 FROM visits_a GROUP BY region", "alias", None),
        ("SELECT region, COUNT(*) AS n, SUM(visits) AS N FROM visits_a GROUP BY region", "alias", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a LATERAL VIEW explode(array(1)) t AS x GROUP BY region",
         "generator", None),
        ("SELECT region, explode(array(1, 2)) AS x FROM visits_a GROUP BY region", "generator", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region CLUSTER BY region", "syntax", None),
        ("SELECT region, secret AS s FROM visits_a GROUP BY region", "column", "secret"),
        ("SELECT b.region, COUNT(*) AS n FROM visits_a a GROUP BY b.region", "column", None),
        # statements
        ("", "text", "empty"),
        ("DROP TABLE visits_a", "not_select", None),
        ("INSERT INTO visits_a SELECT * FROM visits_b", "not_select", None),
        ("SET spark.sql.runSQLOnFiles=true", "not_select", None),
        ("CACHE TABLE visits_a", "not_select", None),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region; SELECT 1", "statements", "2 statements"),
        ("SELECT COUNT(*) AS n FROM", "syntax", None),
        ("SELECT 1 AS n", "table", None),
    ],
)
def test_attacks_refused_naming_the_rule(sql, code, match):
    refused(sql, code, match)


def test_length_and_depth_limits():
    refused("SELECT COUNT(*) AS n FROM visits_a WHERE " + " OR ".join(["region = 'x'"] * 2000), "text", None)
    refused("SELECT COUNT(*) AS n FROM visits_a WHERE " + "(" * 3000 + "1 = 1" + ")" * 3000, "text", None)


# ------------------------------------------------------------------ several datasets: the strictest rule
def test_strictest_k_and_contract_floor():
    strict = {"visits_a": rules("visits_a", k=7), "visits_b": rules("visits_b", k=5)}
    assert check_query(QUERY, strict, 5).k == 7
    assert check_query(QUERY, strict, 10).k == 10
    # k of a dataset the query does not read does not count
    assert check_query("SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", strict, 2).k == 5


def test_count_star_needs_every_owner():
    no_star = {"visits_a": rules("visits_a"), "visits_b": rules("visits_b", aggregates={"visits": ["sum"]})}
    refused("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id "
            "GROUP BY a.region", "aggregate", "visits_b", rules_=no_star)
    refused("SELECT a.region, SUM(a.visits + b.visits) AS n FROM visits_a a JOIN visits_b b "
            "ON a.patient_id = b.patient_id GROUP BY a.region", "aggregate", None,
            rules_={"visits_a": rules("visits_a"), "visits_b": rules("visits_b", aggregates={"visits": ["count"]})})


def test_dp_strictest_settings_and_restrictions():
    dp_a = {"epsilonPerQuery": 1.0, "totalBudget": 10, "bounds": {"visits": [0, 5]}, "maxRowsPerIdentity": 2}
    dp_b = {"epsilonPerQuery": 0.5, "totalBudget": 3, "bounds": {"visits": [0, 8]}}
    both = {"visits_a": rules("visits_a", dp=dp_a), "visits_b": rules("visits_b", dp=dp_b)}
    plan = check_query(QUERY, both, 5)
    assert plan.dp.epsilon == 0.5 and plan.dp.max_rows_per_identity == 1
    assert plan.outputs[2].bounds == (0.0, 13.0)  # interval sum of both measures' bounds
    assert epsilon_required(plan) == {"visits_a": 0.5, "visits_b": 0.5}
    diff = check_query("SELECT a.region, SUM(a.visits - b.visits) AS d FROM visits_a a JOIN visits_b b "
                       "ON a.patient_id = b.patient_id GROUP BY a.region", both, 5)
    assert diff.outputs[1].bounds == (-8.0, 5.0)
    # one owner asks: DP applies to the whole query, and the other's measures need bounds
    only_a = {"visits_a": rules("visits_a", dp=dp_a), "visits_b": rules("visits_b")}
    refused(QUERY, "dp", "visits_b.visits", rules_=only_a)
    assert check_query("SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", only_a, 5).dp is None
    # outer joins and joins on non-identity columns keep one person's rows unbounded
    with_region = {
        "visits_a": rules("visits_a", dp=dp_a, joinColumns=["patient_id", "region"]),
        "visits_b": rules("visits_b", dp=dp_b, joinColumns=["patient_id", "region"]),
    }
    refused("SELECT a.region, COUNT(*) AS n FROM visits_a a JOIN visits_b b ON a.region = b.region "
            "GROUP BY a.region", "dp", None, rules_=with_region)
    refused("SELECT a.region, COUNT(*) AS n FROM visits_a a LEFT JOIN visits_b b ON a.patient_id = b.patient_id "
            "GROUP BY a.region", "dp", None, rules_=both)


# ------------------------------------------------------------------ the rules themselves
def test_rules_round_trip_and_validation():
    r = rules("visits_a", dp={"epsilonPerQuery": 1, "totalBudget": 2, "bounds": {"visits": [0, 5]}})
    assert AnalysisRules.from_data(r.to_data()) == r
    assert r.validate(5) is r
    with pytest.raises(RulesError, match="below the contract's minimum"):
        r.validate(6)
    with pytest.raises(RulesError, match="cannot also be dimensions"):
        rules("visits_a", dimensions=["region", "PATIENT_ID"])
    with pytest.raises(RulesError, match="cannot be measures"):
        rules("visits_a", aggregates={"patient_id": ["count"]})
    with pytest.raises(RulesError, match="dp.bounds must give"):
        rules("visits_a", dp={"epsilonPerQuery": 1, "totalBudget": 2})
    with pytest.raises(RulesError, match="exceeds"):
        rules("visits_a", dp={"epsilonPerQuery": 3, "totalBudget": 2, "bounds": {"visits": [0, 5]}})
    with pytest.raises(RulesError, match="lo < hi"):
        rules("visits_a", dp={"epsilonPerQuery": 1, "totalBudget": 2, "bounds": {"visits": [5, 5]}})
    with pytest.raises(RulesError, match="k"):
        rules("visits_a", k=1)
    with pytest.raises(RulesError, match="median"):
        rules("visits_a", aggregates={"visits": ["median"]})
    with pytest.raises(RulesError, match="'\\*' allows only count"):
        rules("visits_a", aggregates={"*": ["sum"]})
    with pytest.raises(RulesError, match="min/max"):
        rules("visits_a", aggregates={"visits": ["max"]}, dp={"epsilonPerQuery": 1, "totalBudget": 2})
    with pytest.raises(RulesError, match="not in the dataset's schema"):
        r.check_schema({"patient_id": "string", "region": "string", "visits": "int"})
    with pytest.raises(RulesError, match="sum/avg need a number"):
        r.check_schema({"patient_id": "string", "region": "string", "age_band": "string", "visits": "string"})
    assert r.check_schema({"patient_id": "string", "region": "string", "age_band": "string", "visits": "int"}) is r


def test_rules_given_for_another_dataset_refused():
    refused("SELECT COUNT(*) AS n FROM visits_a", "rules", None, rules_={"visits_a": rules("visits_b")})
