"""The legacy structural check (``validate_query``) kept for contract.QueryDocument: one SELECT over the
contract's datasets with a group-size column, through the sqlglot parser and node allow-list of check_query.
The owners' analysis rules are tested in test_sql_rules.py."""

from __future__ import annotations

import pytest

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.sql import validate_query

DATASETS = ["visits_a", "visits_b", "labs"]


@pytest.mark.parametrize(
    "sql,datasets",
    [
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region", ("visits_a",)),
        (
            "select a.region, count(distinct a.patient_id) as n from visits_a a join visits_b b "
            "on a.patient_id = b.patient_id group by a.region;",
            ("visits_a", "visits_b"),
        ),
        (
            "WITH x AS (SELECT patient_id, region FROM visits_a) SELECT x.region, COUNT(*) AS n FROM x "
            "LEFT OUTER JOIN labs l ON x.patient_id = l.patient_id GROUP BY x.region",
            ("labs", "visits_a"),
        ),
        (
            "SELECT region, COUNT(*) AS n FROM visits_a, visits_b WHERE visits_a.patient_id = visits_b.patient_id "
            "GROUP BY region",
            ("visits_a", "visits_b"),
        ),
        (
            "-- comment\nSELECT region, COUNT(*) AS n FROM visits_a WHERE patient_id IN "
            "(SELECT patient_id FROM labs) GROUP BY region /* end */",
            ("labs", "visits_a"),
        ),
        ("SELECT region, COUNT(*) AS `n`, AVG(visits) AS mean FROM visits_b GROUP BY region", ("visits_b",)),
        ("SELECT COUNT(*) AS n FROM `visits_a`", ("visits_a",)),  # backticks hide nothing, and change nothing
    ],
)
def test_allowed(sql, datasets):
    assert validate_query(sql, DATASETS).datasets == datasets


@pytest.mark.parametrize(
    "sql,message",
    [
        ("", "empty"),
        ("DROP TABLE visits_a", "only SELECT"),
        ("INSERT INTO visits_a SELECT * FROM visits_b", "only SELECT"),
        ("CREATE TABLE t AS SELECT * FROM visits_a", "only SELECT"),
        ("SET spark.sql.runSQLOnFiles=true", "only SELECT"),
        ("CACHE TABLE visits_a", "only SELECT"),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region; DROP TABLE visits_b", "2 statements"),
        ("SELECT region, COUNT(*) AS n FROM patients GROUP BY region", "not a dataset of the contract"),
        (
            "SELECT region, COUNT(*) AS n FROM visits_a WHERE id IN (SELECT id FROM other) GROUP BY region",
            "'other', which is not a dataset",
        ),
        ("SELECT * , 1 AS n FROM parquet.`/etc/passwd`", "qualified or path-based"),
        ("SELECT COUNT(*) AS n FROM default.visits_a", "qualified or path-based"),
                ("SELECT COUNT(*) AS n FROM range(10)", r"range\(\) is not allowed"),
        ("SELECT reflect('java.lang.System', 'getenv', 'HOME') AS n FROM visits_a", "reflect"),
        ("SELECT java_method('java.lang.Runtime', 'getRuntime') AS n FROM visits_a", "java_method"),
        ("SELECT input_file_name() AS f, COUNT(*) AS n FROM visits_a GROUP BY 1", "input_file_name"),
        ("SELECT region, SUM(visits) AS total FROM visits_a GROUP BY region", "group's size"),
        ("SELECT 1 AS n", "none of the contract's datasets"),
        ("SELECT COUNT(*) AS n FROM", "does not parse"),
    ],
)
def test_refused(sql, message):
    with pytest.raises(CleanroomUserError, match=message):
        validate_query(sql, DATASETS)


def test_count_column_is_configurable():
    assert validate_query("SELECT region, COUNT(*) AS people FROM labs GROUP BY region", DATASETS, "people").datasets
    with pytest.raises(CleanroomUserError, match="'people'"):
        validate_query("SELECT region, COUNT(*) AS n FROM labs GROUP BY region", DATASETS, "people")


def test_length_limit():
    with pytest.raises(CleanroomUserError, match="at most"):
        validate_query("SELECT COUNT(*) AS n FROM labs WHERE " + " OR ".join(["1=1"] * 6000), DATASETS)
