"""The SparkApplication (Spark Operator, ``sparkoperator.k8s.io/v1beta2``) of one clean-room run,
and the measurement of the whole job that governance checks before releasing any key.

``build_spark_application`` returns the manifest as a dict and checks it (``validate``): the
shapes the CRD's schema requires for the fields we set, names the API server accepts, and the
application's arguments. Tests also validate it against the CRD's own openAPIV3Schema.

**Measurement** (``job_measurement``): sha256 of the canonical JSON of the spec as it runs -
image, arguments, env, sparkConf, volumes, mounts and any other field - where the main file and
every ``deps`` entry (pyFiles, jars, files) are replaced by ``{uri, sha256 of the content}`` and
the value of ``--run`` (this run's document, run id, dataset locations and output, which the job
checks itself against governance) by a placeholder. Only resource sizes (cores, memory,
instances), labels and bookkeeping (restartPolicy, timeToLiveSeconds) are left out. The contract
carries the measurement of the job we build (``job_template``); the Kubernetes side computes it
from what it really starts; one extra env var, conf entry or file and they differ.

The job's own code beyond its main file (the SQL check and the enforcement of the analysis
rules) travels as one pyFile, ``runtime_package``: a deterministic zip of ``include/``'s
clean-room and common modules, so its digest is the same wherever it is built.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
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
RUN_ARGUMENT = "--run"
RUN_PLACEHOLDER = "<run>"
UNMEASURED_TOP = ("restartPolicy", "timeToLiveSeconds")
UNMEASURED_ROLE = (
    "cores",
    "coreLimit",
    "coreRequest",
    "memory",
    "memoryOverhead",
    "labels",
    "annotations",
    "instances",
)
_INCLUDE = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("cleanroom", "common")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def runtime_package_bytes() -> bytes:
    """The deterministic zip of the modules the clean room job imports (``include/__init__.py``,
    ``include/{cleanroom,common}/*.py`` and their ``schemas/*.json``): fixed dates and modes."""
    files = [_INCLUDE / "__init__.py"]
    for sub in PACKAGE_DIRS:
        files += sorted((_INCLUDE / sub).glob("*.py"))
        files += sorted((_INCLUDE / sub / "schemas").glob("*.json"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            if not path.is_file():
                continue
            info = zipfile.ZipInfo(f"include/{path.relative_to(_INCLUDE).as_posix()}", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def runtime_package(directory: Path) -> Path:
    """Write the runtime package to ``<directory>/cleanroom-runtime-<sha256[:16]>.zip`` (once;
    atomically) and return its path."""
    data = runtime_package_bytes()
    path = Path(directory) / f"cleanroom-runtime-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _local(uri: str) -> str:
    return re.sub(r"^(local|file)://", "", uri)


def file_digests(spec: Mapping[str, Any]) -> dict[str, str]:
    """sha256 of the main file and of every deps entry, read from where the URIs point."""
    uris = [spec.get("mainApplicationFile") or ""]
    for kind in ("pyFiles", "jars", "files"):
        uris += list((spec.get("deps") or {}).get(kind) or [])
    out = {}
    for uri in uris:
        if uri:
            out[uri] = hashlib.sha256(Path(_local(uri)).read_bytes()).hexdigest()
    return out


def job_measurement(spec: Mapping[str, Any], digests: Mapping[str, str] | None = None) -> str:
    """The measurement of a SparkApplication spec (see the module's docstring)."""
    digests = file_digests(spec) if digests is None else digests
    measured = {k: v for k, v in spec.items() if k not in UNMEASURED_TOP}
    for role in ("driver", "executor"):
        if isinstance(measured.get(role), Mapping):
            measured[role] = {k: v for k, v in measured[role].items() if k not in UNMEASURED_ROLE}
    args = list(measured.get("arguments") or [])
    for i, arg in enumerate(args[:-1]):
        if arg == RUN_ARGUMENT:
            args[i + 1] = RUN_PLACEHOLDER
    measured["arguments"] = args
    main = measured.get("mainApplicationFile")
    if main:
        measured["mainApplicationFile"] = {"uri": main, "sha256": digests.get(main, "")}
    deps = dict(measured.get("deps") or {})
    for kind in ("pyFiles", "jars", "files"):
        if deps.get(kind):
            deps[kind] = [{"uri": u, "sha256": digests.get(u, "")} for u in deps[kind]]
    if deps:
        measured["deps"] = deps
    canonical = json.dumps(measured, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_spark_application(
    *,
    name: str,
    namespace: str,
    main_application_file: str,
    runtime_package_file: str,
    cgs_url: str,
    governance_key: str,
    contract_id: str,
    run: Mapping[str, Any] | None,
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
    :param runtime_package_file: the runtime package zip (``runtime_package``) as the image sees it
    :param governance_key: governance's service identity (base64 PEM), pinned by the job
    :param run: ``{documentId, runId, datasets: {name: uri}, output}``; ``None`` builds the
        template whose measurement the contract carries
    """
    run_value = RUN_PLACEHOLDER if run is None else json.dumps(dict(run), sort_keys=True, separators=(",", ":"))
    args = [
        "--cgs-url",
        cgs_url,
        "--governance-key",
        governance_key,
        "--contract-id",
        contract_id,
        RUN_ARGUMENT,
        run_value,
    ]
    labels = {LABEL + "contract": contract_id}
    if run is not None:
        labels[LABEL + "document"] = str(run.get("documentId", ""))
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
            "deps": {"pyFiles": [runtime_package_file]},
            "arguments": args,
            "sparkVersion": spark_version,
            "sparkConf": {
                "spark.sql.runSQLOnFiles": "false",
                "spark.ui.enabled": "false",
                "spark.log.level": "OFF",  # the JVM logs nothing: exception texts may hold data
                # aggregates over the parties' data: a few partitions, not Spark's default 200 (a constant:
                # the conf is measured, and the contract's measurement is made before any run)
                "spark.sql.shuffle.partitions": "4",
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
    for flag in ("--cgs-url", "--governance-key", "--contract-id", RUN_ARGUMENT):
        if flag not in args or args.index(flag) + 1 >= len(args):
            raise CleanroomUserError(f"the application's arguments lack {flag}")
    validate_document_id(args[args.index("--contract-id") + 1], "contract id")
    run_value = args[args.index(RUN_ARGUMENT) + 1]
    if run_value != RUN_PLACEHOLDER:
        run = parse_run(run_value)
        validate_document_id(run["documentId"], "query document id")
    conf = spec.get("sparkConf") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in conf.items()):
        raise CleanroomUserError("spec.sparkConf maps strings to strings")
    if conf.get("spark.sql.runSQLOnFiles") != "false":
        raise CleanroomUserError("spark.sql.runSQLOnFiles must stay false in the clean room")


def parse_run(value: str) -> dict[str, Any]:
    """The ``--run`` argument: ``{documentId, runId, datasets: {name: uri}, output}``, nothing else."""
    try:
        run = json.loads(value)
    except ValueError:
        raise CleanroomUserError("the --run argument is not JSON") from None
    if not isinstance(run, dict) or set(run) != {"documentId", "runId", "datasets", "output"}:
        raise CleanroomUserError("the --run argument must hold exactly documentId, runId, datasets and output")
    if not all(isinstance(run[k], str) and run[k] for k in ("documentId", "runId", "output")):
        raise CleanroomUserError("documentId, runId and output of --run must be non-empty strings")
    datasets = run["datasets"]
    if not isinstance(datasets, dict) or not datasets:
        raise CleanroomUserError("the run names no dataset")
    for ds, uri in datasets.items():
        validate_dataset_name(ds)
        if not isinstance(uri, str) or not uri:
            raise CleanroomUserError(f"dataset {ds} has no location")
    return run


def application_state(obj: Mapping[str, Any] | None) -> str:
    """``status.applicationState.state`` ('' before the operator has seen the application)."""
    return str((((obj or {}).get("status") or {}).get("applicationState") or {}).get("state") or "")
