"""Kubernetes API subset + Spark Operator stand-in (aiohttp), for the clean room's Spark runs.

The API server part (paths, Status objects and codes as kube-apiserver answers them; checked with
the official ``kubernetes`` client):

* ``POST|GET /apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications`` (create, list)
* ``GET|DELETE /apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications/{name}``
* ``GET /api/v1/namespaces/{ns}/pods/{pod}`` and ``.../pods/{pod}/log`` (``tailLines``, ``limitBytes``)
* ``GET /version``, ``GET /apis/sparkoperator.k8s.io/v1beta2`` (discovery)

Bearer tokens map to a user and the namespaces it may use (401 Unauthorized without a known
token, 403 Forbidden outside its namespaces). A created SparkApplication is validated against the
CRD's openAPIV3Schema shipped here (422 Invalid), names must be DNS-1123 (422), a second create of
one name is 409 AlreadyExists, unknown names 404 NotFound.

The operator part runs each application for real: the main application file (``local://`` or a
path) is copied into the application's work directory and started with ``spark-submit --master
local[N]`` (N = executor instances x cores, capped at the machine's CPUs), with the sparkConf,
driver memory and arguments of the spec. The status moves SUBMITTED -> RUNNING -> COMPLETED or
FAILED (``status.applicationState``, ``driverInfo.podName`` = ``<name>-driver``,
``sparkApplicationId``, ``submissionAttempts``, ``executionAttempts``, ``terminationTime``); the
driver's output is the pod log. DELETE stops a running application (SIGTERM, then SIGKILL).

The confidential node part: the driver gets ``CCR_ATTESTATION_URL`` and ``CCR_ATTESTATION_TOKEN``
(in a real clean room the attestation sidecar in the pod). ``POST`` there with ``{"report_data":
<hex>}`` answers an attestation report: ``evidence`` (base64 JSON claims: the measurement
``x-ms-sevsnpvm-hostdata`` = the measurement of the whole job as it runs (``job_measurement``:
the spec's image, arguments, env, sparkConf, volumes and mounts, with the sha256 of the main file
and of every pyFile, jar and file actually started; only resource sizes and run bookkeeping are
left out), the caller's
``x-ms-sevsnpvm-reportdata``, ``iat``) and ``endorsements`` (base64 Ed25519 signature over the
evidence by this node's attestation root key, whose public half is ``attestation-root.pub``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("devstack.k8s_spark")

SCHEMA_FILE = Path(__file__).with_name("sparkapplication-v1beta2.json.gz")
GROUP, VERSION, PLURAL, KIND = "sparkoperator.k8s.io", "v1beta2", "sparkapplications", "SparkApplication"
RESOURCE = f"{PLURAL}.{GROUP}"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_PASSTHROUGH = ("PATH", "HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SPARK_HOME")
TERMINAL = ("COMPLETED", "FAILED", "SUBMISSION_FAILED")
# what a job's measurement leaves out: sizes and bookkeeping, which change no code or data path.
# Everything else in the spec - including fields this stand-in does not act on - is measured.
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
RUN_ARGUMENT = "--run"  # the run's parameters (document, run id, dataset locations, output): checked by the job


def _local(uri: str) -> str:
    return re.sub(r"^(local|file)://", "", uri)


def job_measurement(spec: dict, digests: dict[str, str]) -> str:
    """sha256 of the canonical JSON of the measured spec; each file URI (main, deps) is replaced by
    ``{uri, sha256}`` of the copy that really runs, the value of ``--run`` by a placeholder. The
    same definition as the project's ``include.cleanroom.manifest.job_measurement``, written again
    here on purpose (the stand-in shares no code with the pipeline)."""
    measured = {k: v for k, v in spec.items() if k not in UNMEASURED_TOP}
    for role in ("driver", "executor"):
        if isinstance(measured.get(role), dict):
            measured[role] = {k: v for k, v in measured[role].items() if k not in UNMEASURED_ROLE}
    args = list(measured.get("arguments") or [])
    for i, a in enumerate(args[:-1]):
        if a == RUN_ARGUMENT:
            args[i + 1] = "<run>"
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


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


class Token:
    def __init__(self, spec: str):
        token, _, rest = spec.partition("=")
        user, _, namespaces = rest.rpartition("@")
        if not token or not user:
            raise ValueError(f"--token {spec!r}: give TOKEN=USER@NS1,NS2")
        self.token, self.user = token, user
        self.namespaces = {n for n in namespaces.split(",") if n}


class K8sSpark:
    def __init__(
        self,
        state_dir: Path,
        tokens: list[Token],
        *,
        spark_submit: str | None = None,
        python: str | None = None,
        max_cores: int | None = None,
        public_url: str = "",
    ):
        self.state_dir = Path(state_dir)
        self.apps_dir = self.state_dir / "apps"
        self.tokens = {t.token: t for t in tokens}
        self.python = python or sys.executable
        self.spark_submit = spark_submit or str(Path(self.python).with_name("spark-submit"))
        self.max_cores = max_cores or os.cpu_count() or 1
        self.public_url = public_url
        schema = json.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
        self.schema = schema["openAPIV3Schema"]
        self.validator = jsonschema.Draft7Validator(self.schema)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.runtime: dict[tuple[str, str], dict[str, Any]] = {}  # process, log path, measurement, token
        self.resource_version = 1
        self.root_key = self._root_key()

    # ------------------------------------------------------------------ state
    def _root_key(self) -> Ed25519PrivateKey:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key_file, pub_file = self.state_dir / "attestation-root.key", self.state_dir / "attestation-root.pub"
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        else:
            key = Ed25519PrivateKey.generate()
            tmp = key_file.with_suffix(".tmp")
            tmp.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            tmp.chmod(0o600)
            os.replace(tmp, key_file)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if not pub_file.exists() or pub_file.read_bytes() != pub:
            tmp = pub_file.with_suffix(".tmp")
            tmp.write_bytes(pub)
            os.replace(tmp, pub_file)
        return key

    def load(self) -> None:
        path = self.state_dir / "objects.json"
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.resource_version = int(data.get("resourceVersion", 1))
        for obj in data.get("objects", []):
            state = ((obj.get("status") or {}).get("applicationState") or {}).get("state")
            if state not in TERMINAL:  # its driver died with the previous operator
                obj.setdefault("status", {})["applicationState"] = {
                    "state": "FAILED",
                    "errorMessage": "the Spark operator restarted while the application ran",
                }
                obj["status"]["terminationTime"] = now()
            self.objects[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def save(self) -> None:
        path = self.state_dir / "objects.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resourceVersion": self.resource_version, "objects": list(self.objects.values())}))
        os.replace(tmp, path)

    def bump(self, obj: dict) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.save()

    # ------------------------------------------------------------------ auth
    def authorize(self, request: web.Request, verb: str, resource: str, group: str, ns: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = self.tokens.get(header[7:].strip()) if header.startswith("Bearer ") else None
        if token is None:
            return status_obj(401, "Unauthorized", "Unauthorized")
        if ns not in token.namespaces:
            return status_obj(
                403,
                "Forbidden",
                f'{resource}{"." + group if group else ""} is forbidden: User "{token.user}" cannot {verb} resource '
                f'"{resource}" in API group "{group}" in the namespace "{ns}"',
                {"kind": resource, **({"group": group} if group else {})},
            )
        return None

    # ------------------------------------------------------------------ discovery
    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "31", "gitVersion": "v1.31.0-sdp-standin", "platform": "linux/amd64"}
        )

    async def resources(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {
                        "name": PLURAL,
                        "singularName": "sparkapplication",
                        "namespaced": True,
                        "kind": KIND,
                        "verbs": ["create", "delete", "get", "list"],
                        "shortNames": ["sparkapp"],
                    }
                ],
            }
        )

    # ------------------------------------------------------------------ SparkApplications
    def _not_found(self, name: str) -> web.Response:
        return status_obj(
            404, "NotFound", f'{RESOURCE} "{name}" not found', {"name": name, "group": GROUP, "kind": PLURAL}
        )

    async def create(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        denied = self.authorize(request, "create", PLURAL, GROUP, ns)
        if denied:
            return denied
        try:
            obj = await request.json()
        except ValueError:
            return status_obj(400, "BadRequest", "the body of the request was in an unknown format")
        if not isinstance(obj, dict):
            return status_obj(400, "BadRequest", "the body of the request was in an unknown format")
        if obj.get("apiVersion") != f"{GROUP}/{VERSION}" or obj.get("kind") != KIND:
            return status_obj(
                400,
                "BadRequest",
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
                f"({GROUP}/{VERSION})"
                if obj.get("apiVersion") != f"{GROUP}/{VERSION}"
                else f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({KIND})",
            )
        meta = obj.setdefault("metadata", {})
        name = meta.get("name") or ""
        if meta.get("namespace") not in (None, ns):
            return status_obj(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        causes = []
        if not name:
            causes.append(
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            )
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.name",
                    "message": f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                    "case alphanumeric characters, '-' or '.', and must start and end with an "
                    "alphanumeric character",
                }
            )
        body = {k: v for k, v in obj.items() if k != "status"}
        for err in sorted(self.validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            field = ".".join(str(p) for p in err.absolute_path) or "<root>"
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: {json.dumps(err.instance)[:200]}: {err.message[:300]}",
                }
            )
        if causes:
            message = f'{KIND}.{GROUP} "{name}" is invalid: ' + ", ".join(
                f"{c['field']}: {c['message']}" for c in causes
            )
            return status_obj(422, "Invalid", message, {"name": name, "group": GROUP, "kind": KIND, "causes": causes})
        if (ns, name) in self.objects:
            return status_obj(
                409,
                "AlreadyExists",
                f'{RESOURCE} "{name}" already exists',
                {"name": name, "group": GROUP, "kind": PLURAL},
            )
        meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now(), "generation": 1})
        obj.pop("status", None)
        obj["status"] = {}
        self.objects[(ns, name)] = obj
        self.bump(obj)
        asyncio.get_running_loop().create_task(self.operate(ns, name))
        return web.json_response(obj, status=201)

    async def list(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        denied = self.authorize(request, "list", PLURAL, GROUP, ns)
        if denied:
            return denied
        items = [o for (n, _), o in sorted(self.objects.items()) if n == ns]
        return web.json_response(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SparkApplicationList",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }
        )

    async def get(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        denied = self.authorize(request, "get", PLURAL, GROUP, ns)
        if denied:
            return denied
        obj = self.objects.get((ns, name))
        return web.json_response(obj) if obj is not None else self._not_found(name)

    async def delete(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        denied = self.authorize(request, "delete", PLURAL, GROUP, ns)
        if denied:
            return denied
        obj = self.objects.get((ns, name))
        if obj is None:
            return self._not_found(name)
        await self.stop_driver(ns, name)
        self.objects.pop((ns, name), None)
        self.runtime.pop((ns, name), None)
        self.save()
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": GROUP, "kind": PLURAL, "uid": obj["metadata"]["uid"]},
            }
        )

    # ------------------------------------------------------------------ pods
    def _app_of_pod(self, ns: str, pod: str) -> tuple[dict, dict] | None:
        for (n, _), obj in self.objects.items():
            driver = ((obj.get("status") or {}).get("driverInfo") or {}).get("podName")
            if n == ns and driver == pod:
                return obj, self.runtime.get((n, obj["metadata"]["name"]), {})
        return None

    async def pod(self, request: web.Request) -> web.Response:
        ns, pod = request.match_info["ns"], request.match_info["pod"]
        denied = self.authorize(request, "get", "pods", "", ns)
        if denied:
            return denied
        found = self._app_of_pod(ns, pod)
        if found is None:
            return status_obj(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        obj, _ = found
        state = ((obj.get("status") or {}).get("applicationState") or {}).get("state")
        phase = {"SUBMITTED": "Pending", "RUNNING": "Running", "COMPLETED": "Succeeded"}.get(state, "Failed")
        return web.json_response(
            {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {
                    "name": pod,
                    "namespace": ns,
                    "labels": {"spark-role": "driver", "sparkoperator.k8s.io/app-name": obj["metadata"]["name"]},
                    "uid": obj["metadata"]["uid"] + "-driver",
                    "creationTimestamp": obj["metadata"]["creationTimestamp"],
                },
                "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": obj["spec"].get("image", "")}]},
                "status": {"phase": phase},
            }
        )

    async def pod_log(self, request: web.Request) -> web.Response:
        ns, pod = request.match_info["ns"], request.match_info["pod"]
        denied = self.authorize(request, "get", "pods/log", "", ns)
        if denied:
            return denied
        found = self._app_of_pod(ns, pod)
        if found is None:
            return status_obj(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        _, rt = found
        path = rt.get("log")
        text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
        tail = request.query.get("tailLines")
        if tail and tail.isdigit():
            text = "\n".join(text.splitlines()[-int(tail) :]) + "\n"
        limit = request.query.get("limitBytes")
        if limit and limit.isdigit():
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    # ------------------------------------------------------------------ the operator
    def _set_state(self, obj: dict, state: str, **fields: Any) -> None:
        status = obj.setdefault("status", {})
        status["applicationState"] = {
            "state": state,
            **({"errorMessage": fields.pop("error")} if "error" in fields else {}),
        }
        status.update(fields)
        self.bump(obj)

    async def operate(self, ns: str, name: str) -> None:
        obj = self.objects.get((ns, name))
        if obj is None:
            return
        spec = obj.get("spec") or {}
        work = self.apps_dir / ns / f"{name}-{obj['metadata']['uid'][:8]}"
        work.mkdir(parents=True, exist_ok=True)
        driver_pod = f"{name}-driver"
        log_path = work / "driver.log"
        token = secrets.token_urlsafe(24)
        self.runtime[(ns, name)] = {"log": str(log_path), "token": token, "measurement": None, "process": None}
        self._set_state(
            obj,
            "SUBMITTED",
            submissionAttempts=1,
            lastSubmissionAttemptTime=now(),
            submissionID=str(uuid.uuid4()),
            sparkApplicationId=f"spark-{uuid.uuid4().hex}",
            driverInfo={"podName": driver_pod},
        )
        main = str(spec.get("mainApplicationFile") or "")
        source = Path(re.sub(r"^(local|file)://", "", main))
        if spec.get("type") != "Python":
            self._set_state(
                obj,
                "SUBMISSION_FAILED",
                error=f"application type {spec.get('type')} is not run by this stand-in (Python only)",
                terminationTime=now(),
            )
            return
        if not source.is_absolute() or not source.is_file():
            self._set_state(
                obj,
                "SUBMISSION_FAILED",
                terminationTime=now(),
                error=f"failed to run spark-submit: main application file {main} does not exist",
            )
            return
        # what is measured is what runs: every file is copied into the work directory first
        app_file = work / source.name
        shutil.copyfile(source, app_file)
        digests = {main: hashlib.sha256(app_file.read_bytes()).hexdigest()}
        deps_local: dict[str, list[str]] = {}
        (work / "deps").mkdir(exist_ok=True)
        for kind in ("pyFiles", "jars", "files"):
            for i, uri in enumerate((spec.get("deps") or {}).get(kind) or []):
                src = Path(_local(str(uri)))
                if not src.is_absolute() or not src.is_file():
                    self._set_state(
                        obj,
                        "FAILED",
                        terminationTime=now(),
                        error=f"driver container failed: dependency {uri} does not exist",
                    )
                    return
                copy = work / "deps" / f"{kind}-{i}-{src.name}"
                shutil.copyfile(src, copy)
                digests[uri] = hashlib.sha256(copy.read_bytes()).hexdigest()
                deps_local.setdefault(kind, []).append(str(copy))
        measurement = job_measurement(spec, digests)
        self.runtime[(ns, name)]["measurement"] = measurement
        driver, executor = spec.get("driver") or {}, spec.get("executor") or {}
        cores = max(1, min(self.max_cores, int(executor.get("instances") or 1) * int(executor.get("cores") or 1)))
        argv = [
            self.spark_submit,
            "--master",
            f"local[{cores}]",
            "--name",
            name,
            "--conf",
            f"spark.app.id=spark-{obj['metadata']['uid'][:8]}",
        ]
        conf = {**(spec.get("sparkConf") or {})}
        for k, v in (spec.get("hadoopConf") or {}).items():
            conf[f"spark.hadoop.{k}"] = v
        if driver.get("memory"):
            conf["spark.driver.memory"] = str(driver["memory"])
        conf.setdefault("spark.ui.enabled", "false")
        for k, v in sorted(conf.items()):
            argv += ["--conf", f"{k}={v}"]
        if driver.get("javaOptions"):
            argv += ["--conf", f"spark.driver.extraJavaOptions={driver['javaOptions']}"]
        for kind, flag in (("pyFiles", "--py-files"), ("jars", "--jars"), ("files", "--files")):
            if deps_local.get(kind):
                argv += [flag, ",".join(deps_local[kind])]
        argv += [str(app_file), *[str(a) for a in spec.get("arguments") or []]]
        env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
        for item in driver.get("env") or []:
            if isinstance(item, dict) and item.get("name") and "value" in item:
                env[item["name"]] = str(item["value"])
        for k, v in (driver.get("envVars") or {}).items():
            env[str(k)] = str(v)
        env.update(
            {
                "PYSPARK_PYTHON": self.python,
                "PYSPARK_DRIVER_PYTHON": self.python,
                "CCR_ATTESTATION_URL": f"{self.public_url}/attest/v1/namespaces/{ns}/sparkapplications/{name}",
                "CCR_ATTESTATION_TOKEN": token,
                "TMPDIR": str(work / "tmp"),
                "SPARK_LOCAL_DIRS": str(work / "tmp"),
                "SPARK_LOCAL_IP": "127.0.0.1",
            }
        )
        (work / "tmp").mkdir(exist_ok=True)
        try:
            with open(log_path, "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=str(work),
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            self._set_state(obj, "SUBMISSION_FAILED", error=f"failed to run spark-submit: {exc}", terminationTime=now())
            return
        self.runtime[(ns, name)]["process"] = proc
        log.info("SparkApplication %s/%s: driver pid %d, measurement %s", ns, name, proc.pid, measurement[:16])
        self._set_state(obj, "RUNNING", executionAttempts=1, executorState={f"{name}-exec-1": "RUNNING"})
        rc = await proc.wait()
        if (ns, name) not in self.objects:  # deleted meanwhile
            return
        if rc == 0:
            self._set_state(obj, "COMPLETED", terminationTime=now(), executorState={f"{name}-exec-1": "COMPLETED"})
        else:
            self._set_state(
                obj,
                "FAILED",
                terminationTime=now(),
                executorState={f"{name}-exec-1": "FAILED"},
                error=f"driver container failed with ExitCode: {rc}, Reason: Error",
            )
        self.runtime[(ns, name)]["process"] = None
        log.info("SparkApplication %s/%s ended with exit code %s", ns, name, rc)

    async def stop_driver(self, ns: str, name: str, grace: float = 3.0) -> None:
        proc = (self.runtime.get((ns, name)) or {}).get("process")
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def stop_all(self, app: web.Application) -> None:
        for key in list(self.runtime):
            await self.stop_driver(*key)

    # ------------------------------------------------------------------ attestation (the node)
    async def attest(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        rt = self.runtime.get((ns, name))
        obj = self.objects.get((ns, name))
        header = request.headers.get("Authorization", "")
        if rt is None or obj is None or not secrets.compare_digest(header, f"Bearer {rt['token']}"):
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "not a driver of this node"}}, status=401
            )
        state = ((obj.get("status") or {}).get("applicationState") or {}).get("state")
        if state != "RUNNING" or not rt.get("measurement"):
            return web.json_response(
                {"error": {"code": "NotRunning", "message": f"the application is {state}"}}, status=409
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        report_data = (body or {}).get("report_data") if isinstance(body, dict) else None
        if not isinstance(report_data, str) or not re.fullmatch(r"[0-9a-f]{64}", report_data):
            return web.json_response(
                {"error": {"code": "BadReportData", "message": "report_data must be 64 lowercase hex digits"}},
                status=400,
            )
        claims = {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "sdp-standin",
            "x-ms-sevsnpvm-hostdata": rt["measurement"],
            "x-ms-sevsnpvm-reportdata": report_data,
            "x-ms-sevsnpvm-is-debuggable": False,
            "x-ms-runtime": {"namespace": ns, "name": name, "uid": obj["metadata"]["uid"]},
            "iat": int(time.time()),
        }
        evidence = json.dumps(claims, sort_keys=True).encode()
        return web.json_response(
            {
                "evidence": base64.b64encode(evidence).decode(),
                "endorsements": base64.b64encode(self.root_key.sign(evidence)).decode(),
                "uvmEndorsements": "",
            }
        )

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        base = f"/apis/{GROUP}/{VERSION}"
        app.router.add_get("/version", self.version)
        app.router.add_get(base, self.resources)
        app.router.add_post(base + "/namespaces/{ns}/sparkapplications", self.create)
        app.router.add_get(base + "/namespaces/{ns}/sparkapplications", self.list)
        app.router.add_get(base + "/namespaces/{ns}/sparkapplications/{name}", self.get)
        app.router.add_delete(base + "/namespaces/{ns}/sparkapplications/{name}", self.delete)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}", self.pod)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", self.pod_log)
        app.router.add_post("/attest/v1/namespaces/{ns}/sparkapplications/{name}", self.attest)
        app.on_cleanup.append(self.stop_all)
        return app
