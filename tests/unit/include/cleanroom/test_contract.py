"""Contract and query document models: what governance stores, and the rules they follow."""

from __future__ import annotations

import copy

import pytest

from devstack.cleanroom_sample import analysis_rules
from include.cleanroom.contract import Contract, QueryDocument
from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.names import application_name, secret_id
from include.cleanroom.rules import AnalysisRules
from include.cleanroom.sql import QueryRefused

COLUMNS = [
    {"name": "patient_id", "type": "string"},
    {"name": "region", "type": "string"},
    {"name": "age_band", "type": "string"},
    {"name": "visits", "type": "int"},
]
DATA = {
    "title": "t",
    "members": ["analyst", "hospital_a", "hospital_b"],
    "datasets": [
        {"name": "visits_a", "owner": "hospital_a", "schema": COLUMNS},
        {"name": "visits_b", "owner": "hospital_b", "format": "parquet", "schema": COLUMNS},
    ],
    "minGroupSize": 5,
    "resultRecipient": "analyst",
    "policy": {"measurement": "a" * 64, "governanceKey": "cGVt"},
}
RULES = {ds: AnalysisRules.from_data(analysis_rules(ds)) for ds in ("visits_a", "visits_b")}


def test_round_trip():
    c = Contract.from_data("c1", DATA)
    assert Contract.from_data("c1", c.to_data()) == c
    assert c.owners(["visits_b", "visits_a"]) == ["hospital_a", "hospital_b"]


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(members=["analyst"]), "at least two members"),
        (lambda d: d.update(members=["analyst", "analyst"]), "twice"),
        (lambda d: d["datasets"][0].update(owner="stranger"), "not members"),
        (lambda d: d.update(minGroupSize=1), "minGroupSize"),
        (lambda d: d.update(minGroupSize=True), "minGroupSize"),
        (lambda d: d.update(resultRecipient="hospital_c"), "not a member"),
        (lambda d: d.update(policy={"measurement": "xyz", "governanceKey": "k"}), "sha256"),
        (lambda d: d.update(policy={"measurement": "a" * 64}), "governanceKey"),
        (lambda d: d["datasets"][1].update(name="visits_a"), "same name"),
        (lambda d: d["datasets"][0].update(name="Visits-A"), "dataset name"),
        (lambda d: d["datasets"][0]["schema"].append({"name": "x", "type": "blob"}), "type 'blob'"),
        (lambda d: d["datasets"][0]["schema"].append({"name": "region", "type": "string"}), "twice"),
        (lambda d: d.update(datasets=[]), "no dataset"),
    ],
)
def test_contract_rules(change, message):
    data = copy.deepcopy(DATA)
    change(data)
    with pytest.raises(CleanroomUserError, match=message):
        Contract.from_data("c1", data)


def test_contract_id_is_a_dns_label():
    with pytest.raises(CleanroomUserError, match="contract id"):
        Contract.from_data("Bad_Id", DATA)


def test_query_document_approvers_are_the_owners_of_what_it_reads():
    c = Contract.from_data("c1", DATA)
    one = QueryDocument.create("q1", c, "SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", RULES)
    assert one.approvers == ["hospital_b"]
    both = QueryDocument.create(
        "q2",
        c,
        "SELECT a.region, SUM(a.visits) AS v FROM visits_a a JOIN visits_b b "
        "ON a.patient_id = b.patient_id GROUP BY a.region",
        RULES,
        min_group_size=10,
    )
    assert both.approvers == ["hospital_a", "hospital_b"]
    data = both.to_data()
    assert data["minGroupSize"] == 10 and [d["name"] for d in data["datasets"]] == ["visits_a", "visits_b"]
    assert data["datasets"][1]["format"] == "parquet" and data["datasets"][0]["schema"] == COLUMNS
    assert QueryDocument.from_data("q2", c, data, RULES) == both


def test_query_outside_the_owners_rules_is_refused_naming_the_rule():
    c = Contract.from_data("c1", DATA)
    with pytest.raises(QueryRefused) as err:
        QueryDocument.create("q1", c, "SELECT patient_id, region, visits, 100 AS n FROM visits_a", RULES)
    assert err.value.code == "identity"
    with pytest.raises(QueryRefused):  # a dataset without rules cannot be read at all
        QueryDocument.create("q1", c, "SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", {})


def test_a_document_changed_in_governance_is_refused():
    c = Contract.from_data("c1", DATA)
    data = QueryDocument.create("q1", c, "SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", RULES).to_data()
    data["datasets"][0]["owner"] = "hospital_a"
    with pytest.raises(CleanroomUserError, match="does not describe its query"):
        QueryDocument.from_data("q1", c, data, RULES)


def test_query_may_only_be_stricter():
    c = Contract.from_data("c1", DATA)
    with pytest.raises(CleanroomUserError, match="below the contract's 5"):
        QueryDocument.create(
            "q1", c, "SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region", RULES, min_group_size=3
        )


def test_names():
    assert secret_id("hospital_a", "visits_a") == "hospital_a_visits_a-dek"
    name = application_name("visits-by-region", "manual__2026-01-01T00:00:00+00:00")
    assert name == application_name("visits-by-region", "manual__2026-01-01T00:00:00+00:00")
    assert name != application_name("visits-by-region", "manual__2026-01-02T00:00:00+00:00")
    assert len(name) <= 63 and name.startswith("cr-visits-by-region-")
    long = application_name("q" * 40, "r")
    assert len(long) <= 63 and not long.endswith("-")


def test_party_source_stays_in_the_owners_area(tmp_path):
    import os

    from include.cleanroom.errors import CleanroomUserError
    from include.cleanroom.names import party_source

    staging = tmp_path / "staging"
    (staging / "hospital_a").mkdir(parents=True)
    (staging / "hospital_b").mkdir()
    (staging / "hospital_a" / "visits.csv").write_text("x\n")
    (staging / "hospital_b" / "visits.csv").write_text("y\n")
    os.symlink("/etc/passwd", staging / "hospital_a" / "link.csv")
    good = party_source(staging, "hospital_a", "hospital_a/visits.csv")
    assert good == (staging / "hospital_a" / "visits.csv").resolve()
    assert party_source(staging, "hospital_a", str(good)) == good
    for bad in (
        "hospital_b/visits.csv",
        "hospital_a/../hospital_b/visits.csv",
        "/etc/passwd",
        "hospital_a/link.csv",
        "hospital_a",
        "../x.csv",
    ):
        with pytest.raises(CleanroomUserError, match="outside hospital_a's staging area"):
            party_source(staging, "hospital_a", bad)


def test_party_source_says_why_and_follows_links_inside_the_area(tmp_path):
    import os

    from include.cleanroom.errors import CleanroomUserError
    from include.cleanroom.names import party_source

    area = tmp_path / "staging" / "hospital_a"
    area.mkdir(parents=True)
    (area / "visits.csv").write_text("x\n")
    os.symlink(area / "visits.csv", area / "latest.csv")  # a link that stays inside is followed
    assert party_source(tmp_path / "staging", "hospital_a", "hospital_a/latest.csv") == (area / "visits.csv")
    for bad, why in (("hospital_a/../hospital_a/visits.csv", "'..' is not allowed"), ("hospital_a", "names no file"),
                     ("hospital_a/x\0.csv", "NUL")):
        with pytest.raises(CleanroomUserError, match=why) as err:
            party_source(tmp_path / "staging", "hospital_a", bad)
        assert "What to do: put the file there" in str(err.value)


def test_the_contract_schema_of_the_dag_has_the_rules_of_the_model():
    import jsonschema

    from include.cleanroom.contract import COLUMN_TYPES, DATA_FORMATS, DATASET_SCHEMA, Dataset

    good = {"name": "visits_a", "owner": "hospital_a", "format": "csv", "schema": [{"name": "age", "type": "int"}]}
    jsonschema.validate(good, DATASET_SCHEMA)
    assert Dataset.from_data(good).to_data() == good
    assert DATASET_SCHEMA["properties"]["format"]["enum"] == list(DATA_FORMATS)
    assert DATASET_SCHEMA["properties"]["schema"]["items"]["properties"]["type"]["enum"] == list(COLUMN_TYPES)
    for bad in ({**good, "name": "Visits"}, {**good, "owner": "1x"}, {**good, "format": "xls"},
                {**good, "schema": [{"name": "age", "type": "blob"}]}, {**good, "schema": []}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, DATASET_SCHEMA)
        with pytest.raises(CleanroomUserError):
            Dataset.from_data(bad)
