"""The SparkApplication manifest: validated here and against the Spark Operator's own CRD schema."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.manifest import (
    application_state,
    build_spark_application,
    job_measurement,
    parse_run,
    runtime_package_bytes,
    validate,
)

ARGS = dict(
    name="cr-q1-0123456789",
    namespace="cleanroom",
    main_application_file="local:///opt/cleanroom/spark_job.py",
    runtime_package_file="local:///opt/cleanroom/cleanroom-runtime.zip",
    cgs_url="https://cgs.example",
    governance_key="cGVt",
    contract_id="c1",
    run={
        "documentId": "q1",
        "runId": "cr-q1-0123456789",
        "datasets": {"visits_b": "abfss://b/visits_b.sealed", "visits_a": "file:///data/visits_a.sealed"},
        "output": "/results/q1",
    },
)
DIGESTS = {ARGS["main_application_file"]: "1" * 64, ARGS["runtime_package_file"]: "2" * 64}


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
    assert spec["sparkConf"]["spark.log.level"] == "OFF"  # nothing of the JVM's log leaves the clean room
    assert spec["deps"]["pyFiles"] == [ARGS["runtime_package_file"]]
    args = spec["arguments"]
    assert args[args.index("--contract-id") + 1] == "c1"
    assert args[args.index("--governance-key") + 1] == "cGVt"
    assert parse_run(args[args.index("--run") + 1]) == ARGS["run"]


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
        (dict(run={**ARGS["run"], "datasets": {}}), "no dataset"),
        (dict(run={**ARGS["run"], "datasets": {"Bad-Name": "file:///x"}}), "dataset name"),
        (dict(run={**ARGS["run"], "extra": "x"}), "exactly"),
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


def measure(manifest, digests=DIGESTS):
    return job_measurement(manifest["spec"], digests)


def test_the_measurement_covers_the_whole_job_but_the_run():
    template = build_spark_application(**{**ARGS, "run": None})
    run = build_spark_application(**ARGS)
    assert measure(template) == measure(run)  # the contract's measurement holds for every run
    other_run = build_spark_application(**{**ARGS, "run": {**ARGS["run"], "runId": "cr-q1-x"}})
    assert measure(other_run) == measure(template)
    sized = build_spark_application(**ARGS, executor_instances=4, executor_memory="4g", driver_memory="2g")
    assert measure(sized) == measure(template)  # sizes change no code


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s["driver"].setdefault("env", []).append({"name": "PYTHONPATH", "value": "/tmp/evil"}),
        lambda s: s["sparkConf"].update({"spark.driver.extraClassPath": "/tmp/evil.jar"}),
        lambda s: s["deps"]["pyFiles"].append("local:///tmp/evil.py"),
        lambda s: s["deps"].update(jars=["local:///tmp/evil.jar"]),
        lambda s: s.update(image="evil/spark:latest"),
        lambda s: s["arguments"].extend(["--extra", "x"]),
        lambda s: s.update(volumes=[{"name": "v", "hostPath": {"path": "/"}}]),
        lambda s: s["driver"].update(javaOptions="-javaagent:/tmp/a.jar"),
    ],
)
def test_any_change_to_the_job_changes_the_measurement(tamper):
    m = build_spark_application(**ARGS)
    before = measure(m)
    tampered = copy.deepcopy(m)
    tamper(tampered["spec"])
    assert measure(tampered) != before


def test_file_content_is_measured():
    m = build_spark_application(**ARGS)
    changed = {**DIGESTS, ARGS["runtime_package_file"]: "3" * 64}
    assert measure(m, changed) != measure(m)


def test_runtime_package_is_deterministic_and_holds_the_rules_engine():
    import io
    import zipfile

    data = runtime_package_bytes()
    assert data == runtime_package_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    for module in ("sql", "rules", "enforce", "manifest", "spark_job"):
        assert f"include/cleanroom/{module}.py" in names
    assert "include/cleanroom/schemas/analysis-rules.json" in names


def test_parse_run_takes_exactly_the_run_fields():
    import json

    assert parse_run(json.dumps(ARGS["run"]))["documentId"] == "q1"
    for bad in ("not json", "[]", json.dumps({**ARGS["run"], "output": ""})):
        with pytest.raises(CleanroomUserError):
            parse_run(bad)
