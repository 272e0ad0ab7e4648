"""The SparkApplication (Spark Operator, ``sparkoperator.k8s.io/v1beta2``) of one clean-room run.

``build_spark_application`` returns the manifest as a dict and checks it (``validate``): the
shapes the CRD's schema requires for the fields we set, names the API server accepts, and the
application's arguments. Tests also validate it against the CRD's own openAPIV3Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.names import K8S_NAME_MAX, validate_dataset_name, validate_document_id

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
KIND = "SparkApplication"
TERMINAL_STATES = ("COMPLETED", "FAILED", "SUBMISSION_FAILED")
SUCCESS_STATES = ("COMPLETED",)
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MEMORY = re.compile(r"^[0-9]+[kmgt]?$")
LABEL = "sdp.cleanroom/"


def build_spark_application(
    *,
    name: str,
    namespace: str,
    main_application_file: str,
    cgs_url: str,
    contract_id: str,
    document_id: str,
    run_id: str,
    datasets: Mapping[str, str],
    output: str,
    image: str = "apache/spark:4.0.1-python3",
    spark_version: str = "4.0.1",
    service_account: str = "spark-cleanroom",
    driver_cores: int = 1,
    driver_memory: str = "1g",
    executor_instances: int = 1,
    executor_cores: int = 1,
    executor_memory: str = "1g",
    spark_conf: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of one run of an approved query.

    :param main_application_file: the clean room application (``local:///...`` in the image)
    :param datasets: dataset name -> URI of its sealed file
    :param output: the result directory URI
    """
    args = [
        "--cgs-url",
        cgs_url,
        "--contract-id",
        contract_id,
        "--document-id",
        document_id,
        "--run-id",
        run_id,
    ]
    for ds in sorted(datasets):
        args += ["--dataset", f"{ds}={datasets[ds]}"]
    args += ["--output", output]
    labels = {LABEL + "contract": contract_id, LABEL + "document": document_id}
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": main_application_file,
            "arguments": args,
            "sparkVersion": spark_version,
            "sparkConf": {
                "spark.sql.runSQLOnFiles": "false",
                "spark.ui.enabled": "false",
                "spark.log.level": "WARN",
                # aggregates over the parties' data: a few partitions per core, not Spark's default 200
                "spark.sql.shuffle.partitions": str(max(2, 2 * executor_instances * executor_cores)),
                **dict(spark_conf or {}),
            },
            "restartPolicy": {"type": "Never"},
            "timeToLiveSeconds": 86400,
            "driver": {
                "cores": driver_cores,
                "memory": driver_memory,
                "serviceAccount": service_account,
                "labels": labels,
            },
            "executor": {
                "instances": executor_instances,
                "cores": executor_cores,
                "memory": executor_memory,
                "labels": labels,
            },
        },
    }
    validate(manifest)
    return manifest


def validate(manifest: Mapping[str, Any]) -> None:
    """What the API server and the operator would refuse, said plainly (``CleanroomUserError``)."""
    meta = manifest.get("metadata") or {}
    name = meta.get("name", "")
    if not isinstance(name, str) or len(name) > K8S_NAME_MAX or not _DNS1123.match(name):
        raise CleanroomUserError(
            f"SparkApplication name {name!r} is not a DNS-1123 label of at most {K8S_NAME_MAX} characters"
        )
    ns = meta.get("namespace", "")
    if not isinstance(ns, str) or len(ns) > K8S_NAME_MAX or not _DNS1123.match(ns):
        raise CleanroomUserError(f"namespace {ns!r} is not a valid Kubernetes namespace name")
    spec = manifest.get("spec") or {}
    if spec.get("type") != "Python" or not spec.get("mainApplicationFile"):
        raise CleanroomUserError("the clean room runs a Python application: spec.type Python and mainApplicationFile")
    for role in ("driver", "executor"):
        part = spec.get(role) or {}
        cores = part.get("cores")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise CleanroomUserError(f"spec.{role}.cores must be a whole number of at least 1")
        if not _MEMORY.match(str(part.get("memory", ""))):
            raise CleanroomUserError(f"spec.{role}.memory {part.get('memory')!r} is not like 512m or 2g")
    instances = (spec.get("executor") or {}).get("instances")
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
        raise CleanroomUserError("spec.executor.instances must be a whole number of at least 1")
    args = spec.get("arguments") or []
    if not all(isinstance(a, str) for a in args):
        raise CleanroomUserError("spec.arguments must be strings")
    for flag in ("--cgs-url", "--contract-id", "--document-id", "--run-id", "--output"):
        if flag not in args:
            raise CleanroomUserError(f"the application's arguments lack {flag}")
    validate_document_id(args[args.index("--contract-id") + 1], "contract id")
    validate_document_id(args[args.index("--document-id") + 1], "query document id")
    datasets = [args[i + 1] for i, a in enumerate(args) if a == "--dataset"]
    if not datasets:
        raise CleanroomUserError("the run names no dataset")
    for item in datasets:
        ds, _, uri = item.partition("=")
        validate_dataset_name(ds)
        if not uri:
            raise CleanroomUserError(f"dataset {ds} has no location")
    conf = spec.get("sparkConf") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in conf.items()):
        raise CleanroomUserError("spec.sparkConf maps strings to strings")
    if conf.get("spark.sql.runSQLOnFiles") != "false":
        raise CleanroomUserError("spark.sql.runSQLOnFiles must stay false in the clean room")


def application_state(obj: Mapping[str, Any] | None) -> str:
    """``status.applicationState.state`` ('' before the operator has seen the application)."""
    return str((((obj or {}).get("status") or {}).get("applicationState") or {}).get("state") or "")
