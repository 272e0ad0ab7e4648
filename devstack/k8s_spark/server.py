"""Kubernetes API subset + Spark Operator stand-in (aiohttp), for the clean room's Spark runs.

The API server part (paths, Status objects and codes as kube-apiserver answers them; checked with
the official ``kubernetes`` client in ``tests/contract/test_cleanroom_k8s_contract.py``):

* ``/apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications``: ``POST`` (create,
  ``generateName``), ``GET`` (list; ``watch=true`` streams events), ``DELETE`` (deletecollection)
* ``.../sparkapplications/{name}``: ``GET``, ``PUT``, ``PATCH`` (merge and JSON patch), ``DELETE``;
  ``.../{name}/status``: ``GET``, ``PUT``, ``PATCH`` (the status subresource)
* ``labelSelector`` / ``fieldSelector`` (``selectors.py``), ``dryRun=All``, ``fieldValidation``
  (unknown fields pruned as ``pruning.py`` says: ``Warning`` headers, or 400 when ``Strict``),
  ``resourceVersion`` preconditions (409 Conflict), finalizers, ``limit``/``continue``
* ``GET /api/v1/namespaces/{ns}/pods/{pod}`` and ``.../pods/{pod}/log`` (``tailLines``, ``limitBytes``)
* ``GET /version``, ``GET /apis/sparkoperator.k8s.io/v1beta2`` (discovery)

Each rule cites the kubernetes/kubernetes file it follows. Bearer tokens map to a user and the
namespaces it may use (401 Unauthorized without a known token, 403 Forbidden outside its
namespaces). Objects are validated against the CRD's openAPIV3Schema shipped here (422 Invalid),
names must be DNS-1123 (422), a second create of one name is 409 AlreadyExists, unknown names 404.

The operator part follows kubeflow/spark-operator's state machine (``operate``) and runs each
application for real: the main application file (``local://`` or a path) is copied into the
application's work directory and started with ``spark-submit --master local[N]`` (N = executor
instances x cores, capped at the machine's CPUs), with the sparkConf, driver memory and arguments
of the spec. The status moves SUBMITTED -> RUNNING -> SUCCEEDING -> COMPLETED or FAILING -> FAILED
(or a rerun, as ``spec.restartPolicy`` says); a failed submission is SUBMISSION_FAILED, then
resubmitted or FAILED. ``driverInfo.podName`` = ``<name>-driver``; the driver's output is the pod
log. DELETE stops a running application (SIGTERM, then SIGKILL).

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
import collections
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

from devstack.k8s_spark import pruning, selectors

log = logging.getLogger("devstack.k8s_spark")

SCHEMA_FILE = Path(__file__).with_name("sparkapplication-v1beta2.json.gz")
GROUP, VERSION, PLURAL, KIND = "sparkoperator.k8s.io", "v1beta2", "sparkapplications", "SparkApplication"
RESOURCE = f"{PLURAL}.{GROUP}"
HISTORY = 1000  # events a watch can resume from
COMPACTION = 300.0  # seconds an event stays in that history
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_PASSTHROUGH = ("PATH", "HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SPARK_HOME")
TERMINAL = ("COMPLETED", "FAILED")  # SUBMISSION_FAILED is not final: the operator retries or fails it
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
    if not reason:  # StatusReasonUnknown is "" and omitted
        del body["reason"]
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (the ``application/merge-patch+json`` of patch.go)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class JsonPatchError(ValueError):
    def __init__(self, message: str, *, malformed: bool = False):
        super().__init__(message)
        self.malformed = malformed


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise JsonPatchError(f"invalid JSON pointer: {path!r}", malformed=True)
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    if not parts:
        raise JsonPatchError(f"replacing the whole document is not supported: {path!r}")
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise JsonPatchError(f"doc is missing path: {path!r}")
    return node, parts[-1]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (``application/json-patch+json``; evanphx/json-patch as patch.go uses it:
    an undecodable patch is malformed, an operation that does not apply fails the whole patch)."""
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise JsonPatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", malformed=True)
    doc = json.loads(json.dumps(doc))
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if kind not in ("add", "remove", "replace", "move", "copy", "test"):
            raise JsonPatchError(f"Unexpected kind: {kind}", malformed=True)
        parts = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise JsonPatchError(f"missing value for operation {kind} on {path!r}", malformed=True)
        if kind in ("move", "copy"):
            src_parts = _pointer(op.get("from"))
            parent, key = _parent(doc, src_parts, op.get("from"))
            value = _get_child(parent, key, op.get("from"))
            if kind == "move":
                _remove_child(parent, key, op.get("from"))
            _add_child(*_parent(doc, parts, path), json.loads(json.dumps(value)), path)
            continue
        parent, key = _parent(doc, parts, path)
        if kind == "test":
            if _get_child(parent, key, path) != op["value"]:
                raise JsonPatchError(f"testing value {path} failed: test failed")
        elif kind == "remove":
            _remove_child(parent, key, path)
        elif kind == "replace":
            _get_child(parent, key, path)
            if isinstance(parent, list):
                parent[int(key)] = op["value"]
            else:
                parent[key] = op["value"]
        else:
            _add_child(parent, key, op["value"], path)
    return doc


def _get_child(parent: Any, key: str, path: Any) -> Any:
    if isinstance(parent, dict) and key in parent:
        return parent[key]
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent[int(key)]
    raise JsonPatchError(f"doc is missing key: {path!r}")


def _remove_child(parent: Any, key: str, path: Any) -> None:
    _get_child(parent, key, path)
    if isinstance(parent, list):
        del parent[int(key)]
    else:
        del parent[key]


def _add_child(parent: Any, key: str, value: Any, path: Any) -> None:
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and key == "-":
        parent.append(value)
    elif isinstance(parent, list) and key.isdigit() and int(key) <= len(parent):
        parent.insert(int(key), value)
    else:
        raise JsonPatchError(f"doc is missing path: {path!r}")


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
        self.history: collections.deque = collections.deque()  # (rv, type, ns, object, previous)
        self.history_start = 1  # a watch from an older resourceVersion is 410 Expired
        self.last_seen: dict[str, dict] = {}  # uid -> the object as last sent to watchers
        self.watchers: set[asyncio.Queue] = set()
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
        self.history_start = self.resource_version  # no history survives a restart
        for obj in data.get("objects", []):
            state = ((obj.get("status") or {}).get("applicationState") or {}).get("state")
            if state not in TERMINAL:  # its driver died with the previous operator
                obj.setdefault("status", {}).setdefault("driverInfo", {})
                obj["status"]["applicationState"] = {
                    "state": "FAILED",
                    "errorMessage": "the Spark operator restarted while the application ran",
                }
                obj["status"]["terminationTime"] = now()
            self.objects[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
            self.last_seen[obj["metadata"]["uid"]] = json.loads(json.dumps(obj))

    def save(self) -> None:
        path = self.state_dir / "objects.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resourceVersion": self.resource_version, "objects": list(self.objects.values())}))
        os.replace(tmp, path)

    def bump(self, obj: dict, kind: str = "MODIFIED", previous: dict | None = None) -> None:
        """A new resourceVersion for ``obj`` (also for a deletion, as etcd's revision), saved, and
        the event for watchers."""
        if kind == "MODIFIED" and previous is None:
            previous = self.last_seen.get(obj["metadata"]["uid"])
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.save()
        snapshot = json.loads(json.dumps(obj))
        if kind == "DELETED":
            self.last_seen.pop(obj["metadata"]["uid"], None)
        else:
            self.last_seen[obj["metadata"]["uid"]] = snapshot
        event = (self.resource_version, kind, obj["metadata"]["namespace"], snapshot, previous, time.monotonic())
        self.history.append(event)
        # the watch cache holds a bounded window and etcd compacts every 5 minutes
        # (--etcd-compaction-interval, staging/src/k8s.io/apiserver/pkg/server/options/etcd.go)
        while len(self.history) > HISTORY or (self.history and self.history[0][5] < time.monotonic() - COMPACTION):
            self.history_start = self.history.popleft()[0]
        for queue in list(self.watchers):
            queue.put_nowait(event)

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
                        "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                        "shortNames": ["sparkapp"],
                    },
                    {
                        "name": f"{PLURAL}/status",
                        "singularName": "",
                        "namespaced": True,
                        "kind": KIND,
                        "verbs": ["get", "patch", "update"],
                    },
                ],
            }
        )

    # ------------------------------------------------------------------ SparkApplications
    def _not_found(self, name: str) -> web.Response:
        return status_obj(
            404, "NotFound", f'{RESOURCE} "{name}" not found', {"name": name, "group": GROUP, "kind": PLURAL}
        )

    def _conflict(self, name: str, why: str) -> web.Response:
        # storage.NewResourceVersionConflictsError / errors.NewConflict
        # (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go, .../api/errors/errors.go)
        return status_obj(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {RESOURCE} "{name}": {why}',
            {"name": name, "group": GROUP, "kind": PLURAL},
        )

    def _invalid(self, name: str, causes: list[dict], kind: str = KIND, group: str = GROUP) -> web.Response:
        message = f'{kind}.{group} "{name}" is invalid: ' + ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        if len(causes) > 1:
            message = (
                f'{kind}.{group} "{name}" is invalid: ['
                + ", ".join(f"{c['field']}: {c['message']}" for c in causes)
                + "]"
            )
        return status_obj(422, "Invalid", message, {"name": name, "group": group, "kind": kind, "causes": causes})

    def _options(self, request: web.Request, kind: str, *, field_validation: bool = True):
        """``dryRun`` and ``fieldValidation`` as ``ValidateCreateOptions`` / ``ValidateUpdateOptions`` /
        ``ValidatePatchOptions`` / ``ValidateDeleteOptions`` check them
        (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go): anything but
        ``All`` is 422 Invalid of ``<Kind>Options.meta.k8s.io``; an unset fieldValidation is ``Warn``
        (``fieldValidation`` in staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go)."""
        dry = request.query.getall("dryRun", [])
        causes = []
        if any(v != "All" for v in dry):
            shown = ", ".join(json.dumps(v) for v in dry)
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "field": "dryRun",
                    "message": f'Unsupported value: []string{{{shown}}}: supported values: "All"',
                }
            )
        directive = request.query.get("fieldValidation", "")
        if field_validation and directive not in ("", "Ignore", "Warn", "Strict"):
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "field": "fieldValidation",
                    "message": f"Unsupported value: {json.dumps(directive)}: "
                    'supported values: "Ignore", "Strict", "Warn"',
                }
            )
        if causes:
            return None, self._invalid("", causes, kind, "meta.k8s.io")
        return (bool(dry), directive or "Warn"), None

    def _selectors(self, request: web.Request):
        try:
            labels = selectors.parse_labels(request.query.get("labelSelector", ""))
            fields = selectors.parse_fields(request.query.get("fieldSelector", ""))
        except selectors.SelectorError as exc:
            return None, status_obj(400, "BadRequest", str(exc))
        return (labels, fields), None

    @staticmethod
    def _matches(sel, obj: dict | None) -> bool:
        if obj is None:
            return False
        labels, fields = sel
        meta = obj.get("metadata") or {}
        return selectors.labels_match(labels, meta.get("labels")) and selectors.fields_match(
            fields, lambda f: str(meta.get(f.split(".", 1)[1], ""))
        )

    async def _body(self, request: web.Request) -> tuple[Any, web.Response | None]:
        raw = await request.read()
        try:
            return json.loads(raw), None
        except ValueError as exc:
            # the decoder's error as a 400 (transformDecodeError in handlers/rest.go)
            return None, status_obj(400, "BadRequest", f"error decoding request body: {exc}"[:500])

    def _admit(self, obj: dict, name: str, directive: str) -> tuple[list[str], web.Response | None]:
        """Prune unknown fields, then validate labels and the CRD schema. Returns warnings."""
        unknown = pruning.prune(obj, self.schema, root=True)
        messages = [f'unknown field "{p}"' for p in unknown]
        if messages and directive == "Strict":
            # create.go / update.go / patch.go: a strict decoding error is a 400 BadRequest
            return [], status_obj(400, "BadRequest", "strict decoding error: " + ", ".join(messages))
        meta = obj.get("metadata") or {}
        causes = []
        for key, value in (meta.get("labels") or {}).items():
            # ValidateLabels (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go)
            for err in selectors.label_key_errors(str(key)):
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.labels",
                        "message": f'Invalid value: "{key}": {err}',
                    }
                )
            for err in selectors.label_value_errors(str(value)) if isinstance(value, str) else ["must be a string"]:
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.labels",
                        "message": f'Invalid value: "{value}": {err}',
                    }
                )
        for err in sorted(self.validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            field = ".".join(str(p) for p in err.absolute_path) or "<root>"
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: {json.dumps(err.instance)[:200]}: {err.message[:300]}",
                }
            )
        if causes:
            return [], self._invalid(name, causes)
        return ([] if directive == "Ignore" else messages), None

    @staticmethod
    def _answer(obj: Any, status: int, warnings: list[str]) -> web.Response:
        resp = web.json_response(obj, status=status)
        for w in warnings:  # warning.AddWarning -> "Warning: 299 - \"text\"" (staging/.../endpoints/warning)
            resp.headers.add("Warning", f"299 - {json.dumps(w)}")
        return resp

    def _check_type(self, obj: Any) -> web.Response | None:
        if not isinstance(obj, dict):
            return status_obj(400, "BadRequest", "the body of the request was in an unknown format")
        if obj.get("apiVersion") != f"{GROUP}/{VERSION}":
            return status_obj(
                400,
                "BadRequest",
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
                f"({GROUP}/{VERSION})",
            )
        if obj.get("kind") != KIND:
            return status_obj(
                400, "BadRequest", f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({KIND})"
            )
        return None

    async def create(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        denied = self.authorize(request, "create", PLURAL, GROUP, ns)
        if denied:
            return denied
        opts, err = self._options(request, "CreateOptions")
        if err:
            return err
        dry_run, directive = opts
        obj, err = await self._body(request)
        if err or (err := self._check_type(obj)):
            return err
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if meta.get("namespace") not in (None, "", ns):
            return status_obj(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        obj.pop("status", None)  # the status subresource: a create sets no status (PrepareForCreate)
        warnings, err = self._admit(obj, meta.get("name") or "", directive)
        if err:
            return err
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            # names.SimpleNameGenerator (staging/src/k8s.io/apiserver/pkg/storage/names/generate.go):
            # the base cut to 58 characters, then 5 random characters of utilrand's alphabet
            name = str(meta["generateName"])[:58] + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
            meta["name"] = name
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
        if causes:
            return self._invalid(name, causes)
        if meta.get("resourceVersion") and not dry_run:
            # etcd3 store.Create refuses it with a plain error before looking for the key, which
            # ErrorToAPIStatus answers as a 500 with no reason (staging/src/k8s.io/apiserver/pkg/storage/
            # etcd3/store.go, .../endpoints/handlers/responsewriters/status.go)
            return status_obj(500, "", "resourceVersion should not be set on objects to be created")
        if (ns, name) in self.objects:
            return status_obj(
                409,
                "AlreadyExists",
                f'{RESOURCE} "{name}" already exists',
                {"name": name, "group": GROUP, "kind": PLURAL},
            )
        for server_set in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "selfLink"):
            meta.pop(server_set, None)
        meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now(), "generation": 1})
        if dry_run:
            # dry-run storage answers the object as it would be stored, without a resourceVersion,
            # and stores nothing (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/dryrun.go)
            return self._answer(obj, 201, warnings)
        self.objects[(ns, name)] = obj
        self.bump(obj, "ADDED")
        asyncio.get_running_loop().create_task(self.operate(ns, name))
        return self._answer(obj, 201, warnings)

    async def list(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        watching = request.query.get("watch", "").lower() in ("true", "1")
        denied = self.authorize(request, "watch" if watching else "list", PLURAL, GROUP, ns)
        if denied:
            return denied
        sel, err = self._selectors(request)
        if err:
            return err
        if watching:
            return await self.watch(request, ns, sel)
        items = [o for (n, _), o in sorted(self.objects.items()) if n == ns and self._matches(sel, o)]
        meta: dict[str, Any] = {"resourceVersion": str(self.resource_version)}
        # limit / continue (ListOptions): the rest of the list is behind an opaque token
        start = 0
        token = request.query.get("continue", "")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                return status_obj(400, "BadRequest", "continue key is not valid")
        limit = request.query.get("limit", "")
        if limit.isdigit() and int(limit) > 0:
            page = items[start : start + int(limit)]
            if start + int(limit) < len(items):
                meta["continue"] = base64.urlsafe_b64encode(str(start + int(limit)).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - int(limit)
            items = page
        else:
            items = items[start:]
        return web.json_response(
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SparkApplicationList", "metadata": meta, "items": items}
        )

    async def get(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        denied = self.authorize(request, "get", PLURAL, GROUP, ns)
        if denied:
            return denied
        obj = self.objects.get((ns, name))
        return web.json_response(obj) if obj is not None else self._not_found(name)

    # update and patch: staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{update,patch}.go and the
    # custom resource strategies (staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/
    # strategy.go, status_strategy.go): no create on update, no unconditional update (a resourceVersion
    # is required), a stale one is 409 Conflict; with the status subresource the main resource ignores
    # status and the status subresource ignores everything but status; a spec change bumps generation.
    async def _store_update(
        self, ns: str, name: str, new: dict, *, subresource: str, dry_run: bool, directive: str
    ) -> web.Response:
        old = self.objects.get((ns, name))
        if old is None:
            return self._not_found(name)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") not in (None, name):
            return status_obj(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
            )
        if meta.get("namespace") not in (None, "", ns):
            return status_obj(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        rv = str(meta.get("resourceVersion") or "")
        if not rv:
            return self._invalid(
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.resourceVersion",
                        "message": "Invalid value: 0x0: must be specified for an update",
                    }
                ],
            )
        if rv != old["metadata"]["resourceVersion"]:
            return self._conflict(
                name, "the object has been modified; please apply your changes to the latest version and try again"
            )
        if subresource == "status":
            status = new.get("status")
            new = json.loads(json.dumps(old))
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif "status" in old:
            new["status"] = json.loads(json.dumps(old["status"]))
        else:
            new.pop("status", None)
        warnings, err = self._admit(new, name, directive)
        if err:
            return err
        meta = new["metadata"]
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }:
            meta["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if old["metadata"].get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
            if added:  # ValidateObjectMetaUpdate: no new finalizers on an object being deleted
                return self._invalid(
                    name,
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "field": "metadata.finalizers",
                            "message": f"Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {json.dumps(sorted(added))}",
                        }
                    ],
                )
        if new == old or dry_run:  # a no-op update writes nothing and keeps the resourceVersion
            return self._answer(new if dry_run else old, 200, warnings)
        if old["metadata"].get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects[(ns, name)] = new
            await self._remove(ns, name)  # the last finalizer is gone: deleted
            return self._answer(new, 200, warnings)
        self.objects[(ns, name)] = new
        self.bump(new, "MODIFIED", previous=old)
        return self._answer(new, 200, warnings)

    async def update(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        sub = "status" if request.path.endswith("/status") else ""
        denied = self.authorize(request, "update", PLURAL + ("/status" if sub else ""), GROUP, ns)
        if denied:
            return denied
        opts, err = self._options(request, "UpdateOptions")
        if err:
            return err
        obj, err = await self._body(request)
        if err or (err := self._check_type(obj)):
            return err
        return await self._store_update(ns, name, obj, subresource=sub, dry_run=opts[0], directive=opts[1])

    async def patch(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        sub = "status" if request.path.endswith("/status") else ""
        denied = self.authorize(request, "patch", PLURAL + ("/status" if sub else ""), GROUP, ns)
        if denied:
            return denied
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        # custom resources take JSON and merge patches (and server-side apply); strategic merge
        # needs Go types (patchTypes in staging/src/k8s.io/apiserver/pkg/endpoints/installer.go; the 415
        # from negotiation.NewUnsupportedMediaTypeError in .../handlers/negotiation/errors.go)
        if content_type not in ("application/json-patch+json", "application/merge-patch+json"):
            return status_obj(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            )
        opts, err = self._options(request, "PatchOptions")
        if err:
            return err
        patch_body, err = await self._body(request)
        if err:
            return err
        old = self.objects.get((ns, name))
        if old is None:
            return self._not_found(name)
        current = json.loads(json.dumps(old))
        if content_type == "application/merge-patch+json":
            if not isinstance(patch_body, dict):
                return status_obj(400, "BadRequest", "invalid JSON document")
            patched = merge_patch(current, patch_body)
        else:
            try:
                patched = json_patch(current, patch_body)
            except JsonPatchError as exc:
                # patch.go applyJSPatch: a malformed patch is 400, one that does not apply 422
                if exc.malformed:
                    return status_obj(400, "BadRequest", str(exc))
                return status_obj(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
                )
        if err := self._check_type(patched):
            return err
        meta = patched.setdefault("metadata", {}) if isinstance(patched.get("metadata"), dict) else None
        if meta is None:
            return status_obj(400, "BadRequest", "metadata must be an object")
        # a patch carrying a resourceVersion is a precondition; without one the server applies it
        # to the current object (GuaranteedUpdate retries instead of answering a conflict)
        if not meta.get("resourceVersion"):
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        return await self._store_update(ns, name, patched, subresource=sub, dry_run=opts[0], directive=opts[1])

    async def get_status(self, request: web.Request) -> web.Response:
        return await self.get(request)

    async def delete(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        denied = self.authorize(request, "delete", PLURAL, GROUP, ns)
        if denied:
            return denied
        opts, err = self._options(request, "DeleteOptions", field_validation=False)
        if err:
            return err
        body: Any = {}
        if request.can_read_body:
            body, err = await self._body(request)
            if err:
                return err
        obj = self.objects.get((ns, name))
        if obj is None:
            return self._not_found(name)
        pre = (body or {}).get("preconditions") or {} if isinstance(body, dict) else {}
        dry_run = opts[0] or "All" in ((body or {}).get("dryRun") or [] if isinstance(body, dict) else [])
        # preconditions (staging/src/k8s.io/apiserver/pkg/storage/interfaces.go Preconditions.Check)
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            return self._conflict(
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            return self._conflict(
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        if obj["metadata"].get("finalizers"):
            # graceful deletion: with finalizers the object stays, marked, until they are removed; the
            # answer is the object, 200 (202 only with orphanDependents=false): Store.Delete in
            # staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go, handlers/delete.go
            if not dry_run:
                obj = await self._mark_deleted(ns, name)
            return web.json_response(obj)
        if not dry_run:
            await self._remove(ns, name)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": GROUP, "kind": PLURAL, "uid": obj["metadata"]["uid"]},
            }
        )

    async def _mark_deleted(self, ns: str, name: str) -> dict:
        obj = self.objects[(ns, name)]
        if not obj["metadata"].get("deletionTimestamp"):
            await self.stop_driver(ns, name)
            obj["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            self.bump(obj, "MODIFIED")
        return obj

    async def _remove(self, ns: str, name: str) -> dict | None:
        await self.stop_driver(ns, name)
        obj = self.objects.pop((ns, name), None)
        self.runtime.pop((ns, name), None)
        if obj is not None:
            self.bump(obj, "DELETED")
        return obj

    async def delete_collection(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        denied = self.authorize(request, "deletecollection", PLURAL, GROUP, ns)
        if denied:
            return denied
        opts, err = self._options(request, "DeleteOptions", field_validation=False)
        if err:
            return err
        sel, err = self._selectors(request)
        if err:
            return err
        gone = [o for (n, _), o in sorted(self.objects.items()) if n == ns and self._matches(sel, o)]
        if not opts[0]:
            done = []
            for o in gone:
                if o["metadata"].get("finalizers"):
                    done.append(await self._mark_deleted(ns, o["metadata"]["name"]))
                elif (removed := await self._remove(ns, o["metadata"]["name"])) is not None:
                    done.append(removed)
            gone = done
        return web.json_response(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SparkApplicationList",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": gone,
            }
        )

    # watch: staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go (newline-delimited
    # {"type", "object"} events over one chunked response, ended after timeoutSeconds) and the
    # watch cache (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go): no or "0"
    # resourceVersion starts with ADDED for every current object; a given one replays the events after
    # it, or answers an ERROR event 410 Expired when it is older than the history kept; an object
    # entering or leaving the selector is ADDED or DELETED for this watcher (cacher.go's filtering).
    async def watch(self, request: web.Request, ns: str, sel) -> web.StreamResponse:
        rv_param = request.query.get("resourceVersion", "")
        since: int | None = None
        if rv_param not in ("", "0"):
            if not rv_param.isdigit():
                return status_obj(400, "BadRequest", f'invalid resource version "{rv_param}"')
            since = int(rv_param)
        timeout = request.query.get("timeoutSeconds", "")
        deadline = time.monotonic() + (int(timeout) if timeout.isdigit() else 1800)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self.watchers.add(queue)

        async def send(kind: str, obj: dict) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        async def deliver(event: tuple) -> None:
            kind, ev_ns, obj, previous = event[1:5]
            if ev_ns != ns:
                return
            now_in, was_in = self._matches(sel, obj), self._matches(sel, previous)
            if kind == "MODIFIED":
                if now_in and not was_in:
                    kind = "ADDED"
                elif was_in and not now_in:
                    kind = "DELETED"
                elif not now_in:
                    return
            elif not now_in:
                return
            await send(kind, obj)

        try:
            last = self.resource_version
            if since is None:
                for (n, _), obj in sorted(self.objects.items()):
                    if n == ns and self._matches(sel, obj):
                        await send("ADDED", obj)
            elif since < self.history_start:
                await send(
                    "ERROR",
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {since} ({self.history_start})",
                        "reason": "Expired",
                        "code": 410,
                    },
                )
                return resp
            else:
                for event in list(self.history):
                    if since < event[0] <= last:
                        await deliver(event)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if event is None:  # the server stops: the stream ends, as kube-apiserver ends it
                    break
                if event[0] > last:
                    await deliver(event)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.discard(queue)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

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
        if state == "SUBMISSION_FAILED" or not (obj.get("status") or {}).get("sparkApplicationId"):
            return status_obj(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        phase = {"SUBMITTED": "Pending", "RUNNING": "Running", "SUCCEEDING": "Succeeded", "COMPLETED": "Succeeded"}.get(
            state, "Failed"
        )
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
        """The operator's status update (through the status subresource: on the object as it is now,
        which a client's update may have replaced)."""
        cur = self.objects.get((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        if cur is None or cur["metadata"]["uid"] != obj["metadata"]["uid"]:
            return  # deleted meanwhile
        obj = cur
        status = obj.setdefault("status", {})
        status.setdefault("driverInfo", {})  # the operator's status always carries it (a Go struct)
        status["applicationState"] = {
            "state": state,
            **({"errorMessage": fields.pop("error")} if "error" in fields else {}),
        }
        status.update(fields)
        self.bump(obj)

    # The operator's state machine, from kubeflow/spark-operator
    # internal/controller/sparkapplication/controller.go (submitSparkApplication,
    # reconcileFailedSubmissionSparkApplication, reconcileFailingSparkApplication,
    # reconcileSucceedingSparkApplication, reconcilePendingRerunSparkApplication,
    # resetSparkApplicationStatus, updateDriverState) and pkg/util/sparkapplication.go (ShouldRetry,
    # TimeUntilNextRetryDue, DriverStateToApplicationState); defaults from api/v1beta2/defaults.go
    # (restartPolicy Never; retry intervals 5 s). SUBMISSION_FAILED is never final: it is resubmitted
    # while the restart policy allows, else FAILED. A driver that exits non-zero is FAILING, then
    # PENDING_RERUN (resubmitted) or FAILED; one that exits 0 is SUCCEEDING, then COMPLETED (or
    # rerun under restartPolicy Always).
    @staticmethod
    def _should_retry(spec: dict, status: dict, state: str) -> bool:
        policy = spec.get("restartPolicy") or {}
        kind = policy.get("type") or "Never"
        if state == "SUCCEEDING":
            return kind == "Always"
        if kind == "Always":
            return True
        if kind != "OnFailure":
            return False
        if state == "FAILING":
            limit = policy.get("onFailureRetries")
            return limit is not None and int(status.get("executionAttempts") or 0) <= int(limit)
        limit = policy.get("onSubmissionFailureRetries")
        return limit is not None and int(status.get("submissionAttempts") or 0) <= int(limit)

    @staticmethod
    def _retry_delay(spec: dict, status: dict, state: str) -> float:
        policy = spec.get("restartPolicy") or {}
        key = "onSubmissionFailureRetryInterval" if state == "SUBMISSION_FAILED" else "onFailureRetryInterval"
        interval = policy.get(key)
        interval = 5 if interval is None else int(interval)
        return float(interval * max(1, int(status.get("submissionAttempts") or 1)))

    async def operate(self, ns: str, name: str) -> None:
        uid = (self.objects.get((ns, name)) or {}).get("metadata", {}).get("uid")

        def current() -> dict | None:
            obj = self.objects.get((ns, name))
            if obj is None or obj["metadata"]["uid"] != uid or obj["metadata"].get("deletionTimestamp"):
                return None  # deleted, or being deleted: nothing more to run
            return obj

        while (obj := current()) is not None:
            outcome = await self.run_once(ns, name, obj)
            obj = current()
            if obj is None or outcome is None:
                return
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            if self._should_retry(spec, status, outcome):
                await asyncio.sleep(self._retry_delay(spec, status, outcome))
                if (obj := current()) is None:
                    return
                if outcome != "SUBMISSION_FAILED":  # FAILING/SUCCEEDING -> PENDING_RERUN, status reset
                    st = obj["status"]
                    for k in ("sparkApplicationId", "terminationTime", "executorState"):
                        st.pop(k, None)
                    st["driverInfo"] = {}
                    self._set_state(obj, "PENDING_RERUN")
                continue
            if outcome == "SUCCEEDING":
                self._set_state(obj, "COMPLETED")
            else:  # the error message of the failed submission or driver stays
                error = (status.get("applicationState") or {}).get("errorMessage")
                self._set_state(obj, "FAILED", terminationTime=now(), **({"error": error} if error else {}))
            return

    async def run_once(self, ns: str, name: str, obj: dict) -> str | None:
        """One submission and its driver. Returns SUBMISSION_FAILED, FAILING or SUCCEEDING (None when
        the application was deleted meanwhile)."""
        spec = obj.get("spec") or {}
        status = obj.setdefault("status", {})
        attempt = int(status.get("submissionAttempts") or 0) + 1
        work = self.apps_dir / ns / f"{name}-{obj['metadata']['uid'][:8]}" / f"attempt-{attempt}"
        work.mkdir(parents=True, exist_ok=True)
        driver_pod = f"{name}-driver"
        log_path = work / "driver.log"
        token = secrets.token_urlsafe(24)
        self.runtime[(ns, name)] = {"log": str(log_path), "token": token, "measurement": None, "process": None}
        submission = {
            "submissionAttempts": attempt,
            "lastSubmissionAttemptTime": now(),
            "submissionID": str(uuid.uuid4()),
            "driverInfo": {"podName": driver_pod},
        }

        def submission_failed(why: str) -> str:
            self._set_state(obj, "SUBMISSION_FAILED", error=f"failed to submit spark application: {why}", **submission)
            return "SUBMISSION_FAILED"

        def driver_failed(rc: int, message: str) -> str:
            with open(log_path, "a") as out:
                out.write(message + "\n")
            self._set_state(
                obj,
                "FAILING",
                terminationTime=now(),
                executorState={},
                error=f"driver container failed with ExitCode: {rc}, Reason: Error",
            )
            return "FAILING"

        if spec.get("type") != "Python":
            return submission_failed(f"application type {spec.get('type')} is not run by this stand-in (Python only)")
        if not Path(self.spark_submit).is_file() or not os.access(self.spark_submit, os.X_OK):
            return submission_failed(f"failed to run spark-submit: {self.spark_submit} is not executable")
        # submitted: the driver pod exists from here on (executionAttempts counts successful submissions)
        self._set_state(
            obj,
            "SUBMITTED",
            executionAttempts=int(status.get("executionAttempts") or 0) + 1,
            sparkApplicationId=f"spark-{uuid.uuid4().hex}",
            **submission,
        )
        main = str(spec.get("mainApplicationFile") or "")
        source = Path(_local(main))
        if not source.is_absolute() or not source.is_file():
            # local:// is a path inside the driver's image: spark-submit (cluster mode) does not look
            # at it; the driver's python does, and exits 2 (SparkUserAppException carries the code)
            self._set_state(obj, "RUNNING")
            return driver_failed(2, f"python3: can't open file '{source}': [Errno 2] No such file or directory")
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
                    self._set_state(obj, "RUNNING")
                    return driver_failed(1, f'Exception in thread "main" java.io.FileNotFoundException: {src}')
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
        except OSError as exc:  # the driver's container could not start its command
            return driver_failed(127, f"failed to run spark-submit: {exc}")
        self.runtime[(ns, name)]["process"] = proc
        log.info("SparkApplication %s/%s: driver pid %d, measurement %s", ns, name, proc.pid, measurement[:16])
        self._set_state(obj, "RUNNING", executorState={f"{name}-exec-1": "RUNNING"})
        rc = await proc.wait()
        self.runtime.get((ns, name), {})["process"] = None
        log.info("SparkApplication %s/%s ended with exit code %s", ns, name, rc)
        cur = self.objects.get((ns, name))
        if cur is None or cur["metadata"]["uid"] != obj["metadata"]["uid"]:  # deleted meanwhile
            return None
        if rc == 0:
            self._set_state(obj, "SUCCEEDING", terminationTime=now(), executorState={f"{name}-exec-1": "COMPLETED"})
            return "SUCCEEDING"
        self._set_state(
            obj,
            "FAILING",
            terminationTime=now(),
            executorState={f"{name}-exec-1": "FAILED"},
            error=f"driver container failed with ExitCode: {rc}, Reason: Error",
        )
        return "FAILING"

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

    async def end_watches(self, app: web.Application) -> None:
        for queue in list(self.watchers):
            queue.put_nowait(None)

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
        app.router.add_delete(base + "/namespaces/{ns}/sparkapplications", self.delete_collection)
        app.router.add_get(base + "/namespaces/{ns}/sparkapplications/{name}", self.get)
        app.router.add_put(base + "/namespaces/{ns}/sparkapplications/{name}", self.update)
        app.router.add_patch(base + "/namespaces/{ns}/sparkapplications/{name}", self.patch)
        app.router.add_delete(base + "/namespaces/{ns}/sparkapplications/{name}", self.delete)
        app.router.add_get(base + "/namespaces/{ns}/sparkapplications/{name}/status", self.get_status)
        app.router.add_put(base + "/namespaces/{ns}/sparkapplications/{name}/status", self.update)
        app.router.add_patch(base + "/namespaces/{ns}/sparkapplications/{name}/status", self.patch)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}", self.pod)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", self.pod_log)
        app.router.add_post("/attest/v1/namespaces/{ns}/sparkapplications/{name}", self.attest)
        app.on_shutdown.append(self.end_watches)
        app.on_cleanup.append(self.stop_all)
        return app
