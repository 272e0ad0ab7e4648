"""The SparkApplication manifest: validated here and against the Spark Operator's own CRD schema."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.manifest import application_state, build_spark_application, validate

ARGS = dict(
    name="cr-q1-0123456789",
    namespace="cleanroom",
    main_application_file="local:///opt/cleanroom/spark_job.py",
    cgs_url="https://cgs.example",
    contract_id="c1",
    document_id="q1",
    run_id="cr-q1-0123456789",
    datasets={"visits_b": "abfss://b/visits_b.sealed", "visits_a": "file:///data/visits_a.sealed"},
    output="/results/q1",
)


@pytest.fixture(scope="module")
def crd_schema(shared_dir):
    crd = yaml.safe_load((shared_dir / "spark-operator" / "sparkoperator.k8s.io_sparkapplications.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
    return version["schema"]["openAPIV3Schema"]


def test_manifest_is_valid_for_the_crd(crd_schema):
    m = build_spark_application(**ARGS, executor_instances=3, executor_cores=2, executor_memory="2g")
    jsonschema.validate(m, crd_schema)
    spec = m["spec"]
    assert m["apiVersion"] == "sparkoperator.k8s.io/v1beta2" and m["kind"] == "SparkApplication"
    assert spec["type"] == "Python" and spec["sparkConf"]["spark.sql.runSQLOnFiles"] == "false"
    assert spec["sparkConf"]["spark.sql.shuffle.partitions"] == "12"
    args = spec["arguments"]
    assert args[args.index("--contract-id") + 1] == "c1"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--dataset"] == [
        "visits_a=file:///data/visits_a.sealed",
        "visits_b=abfss://b/visits_b.sealed",
    ]


def test_the_stand_in_ships_the_same_schema(crd_schema):
    import gzip
    import json

    from devstack.k8s_spark.server import SCHEMA_FILE

    assert json.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))["openAPIV3Schema"] == crd_schema


def test_crd_schema_rejects_what_validate_rejects(crd_schema):
    m = build_spark_application(**ARGS)
    bad = copy.deepcopy(m)
    bad["spec"]["type"] = "Perl"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, crd_schema)
    with pytest.raises(CleanroomUserError, match="Python application"):
        validate(bad)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(name="Not_A_Name"), "DNS-1123"),
        (dict(name="x" * 64), "DNS-1123"),
        (dict(namespace="Clean Room"), "namespace"),
        (dict(executor_instances=0), "instances"),
        (dict(driver_memory="lots"), "memory"),
        (dict(datasets={}), "no dataset"),
        (dict(datasets={"Bad-Name": "file:///x"}), "dataset name"),
        (dict(contract_id="C1"), "contract id"),
        (dict(spark_conf={"spark.sql.runSQLOnFiles": "true"}), "runSQLOnFiles"),
    ],
)
def test_refused(change, message):
    with pytest.raises(CleanroomUserError, match=message):
        build_spark_application(**{**ARGS, **change})


def test_application_state():
    assert application_state(None) == ""
    assert application_state({"status": {}}) == ""
    assert application_state({"status": {"applicationState": {"state": "RUNNING"}}}) == "RUNNING"
