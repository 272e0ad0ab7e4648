"""The clean room's Spark application: run one approved query over the parties' sealed datasets,
under each data owner's analysis rules.

Run by the Spark Operator (``spark-submit``) inside the confidential runtime::

    spark_job.py --cgs-url URL --governance-key PEM_B64 --contract-id C --run JSON

``--run`` holds this run's ``{documentId, runId, datasets: {name: uri}, output}``. Everything else
of the job - this file, the runtime package (``deps.pyFiles``: the SQL check and the enforcement
of the rules), the arguments but ``--run``, env, sparkConf, volumes - is measured as a whole
(``include.cleanroom.manifest.job_measurement``), and governance releases the document, the
rules and the keys only to a runtime whose attested measurement is the accepted contract's.

Sequence; each step that refuses ends the run with exit code 3:

1. a fresh RSA key pair; an attestation report whose report data is the sha256 of its public key
   (``CCR_ATTESTATION_URL``);
2. every answer of governance must be signed by the service identity pinned in ``--governance-key``
   (fixed by the measurement, so by the contract): answers from anything else are refused,
   whatever ``--cgs-url`` says;
3. the accepted query document (every data owner voted accept), consent (contract and document);
4. each dataset's analysis rules, kept by its owner in governance; the query is checked against
   them again here (``include.cleanroom.sql.check_query``: this check is the one that counts);
5. where an owner asks for differential privacy, the privacy budget is debited in governance
   (compare-and-set, all datasets at once) before anything is computed or released; an
   exhausted budget refuses the run;
6. the datasets' keys, released against the attestation; the datasets decrypted into a private
   temporary directory; Spark (``spark.sql.runSQLOnFiles=false``, only the approved datasets as
   views); ``include.cleanroom.enforce.run_plan`` computes the distinct identities behind every
   group, drops groups below k and adds the calibrated noise; ``result.csv`` and ``summary.json``
   written under a temporary name, then renamed;
7. audit events (started, completed, refused, failed) signed with our key and attested.

**What leaves the clean room.** ``summary.json`` (also written when the run is refused or fails):
status, counts, timings, an error code and a message written by this code - never an exception's
text, never a value of the data. The job's own stdout carries only such lines; Python's and
Spark's output (the JVM's log is off, ``spark.log.level=OFF``) is sent to ``/dev/null``.
Key material is never printed; the decrypted data is removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

# ---------------------------------------------------------------------------- sealed datasets
MAGIC = b"SDPCRDS1"
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
KEY_SIZE = 32
EXIT_REFUSED = 3


class SealedFormatError(ValueError):
    """The file is not a sealed dataset, is damaged, or the key is wrong."""


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if final else b"\x00")


def seal(src, dst, key: bytes, dataset: str, fmt: str, segment_size: int = SEGMENT_SIZE) -> int:
    """Encrypt the file object ``src`` into ``dst`` (AES-256-GCM, fixed-size segments, STREAM
    nonces: 7-byte random prefix, segment counter, last-segment flag; the header is authenticated
    with every segment). Returns the plaintext size."""
    if len(key) != KEY_SIZE:
        raise ValueError("the dataset key must be 32 bytes")
    header = json.dumps(
        {
            "v": 1,
            "dataset": dataset,
            "format": fmt,
            "segment": segment_size,
            "nonce": base64.b64encode(os.urandom(7)).decode(),
        },
        sort_keys=True,
    ).encode()
    prefix = base64.b64decode(json.loads(header)["nonce"])
    aead = AESGCM(key)
    dst.write(MAGIC + struct.pack(">I", len(header)) + header)
    total, index = 0, 0
    chunk = src.read(segment_size)
    while True:
        nxt = src.read(segment_size) if len(chunk) == segment_size else b""
        final = not nxt
        dst.write(aead.encrypt(_nonce(prefix, index, final), chunk, header))
        total += len(chunk)
        if final:
            return total
        chunk, index = nxt, index + 1


def read_header(src) -> dict:
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise SealedFormatError("not a sealed clean-room dataset (bad magic)")
    (length,) = struct.unpack(">I", src.read(4))
    if not 0 < length < 4096:
        raise SealedFormatError("damaged sealed dataset header")
    raw = src.read(length)
    header = json.loads(raw)
    header["_raw"] = raw
    return header


def unseal(src, dst, key: bytes) -> dict:
    """Decrypt a sealed dataset from ``src`` into ``dst``, segment by segment; a damaged,
    truncated or re-ordered file, or a wrong key, raises ``SealedFormatError``."""
    header = read_header(src)
    raw = header.pop("_raw")
    prefix = base64.b64decode(header["nonce"])
    size = int(header["segment"]) + TAG_SIZE
    aead = AESGCM(key)
    index, total = 0, 0
    chunk = src.read(size)
    while True:
        nxt = src.read(size) if len(chunk) == size else b""
        final = not nxt
        try:
            plain = aead.decrypt(_nonce(prefix, index, final), chunk, raw)
        except Exception:  # noqa: BLE001 - InvalidTag: wrong key or damaged data
            raise SealedFormatError(
                f"segment {index} of dataset {header.get('dataset')!r} does not decrypt: wrong key or damaged file"
            ) from None
        dst.write(plain)
        total += len(plain)
        if final:
            header["size"] = total
            return header
        chunk, index = nxt, index + 1


# ---------------------------------------------------------------------------- key unwrapping
def unwrap_rsa_oaep_aes_kwp(private_key, blob: bytes) -> bytes:
    """CKM_RSA_AES_KEY_WRAP as CCF's ``wrapKey`` produces it: an ephemeral AES-256 key wrapped
    with RSA-OAEP (SHA-256), then the payload wrapped with AES-KWP (RFC 5649)."""
    k = private_key.key_size // 8
    aes_key = private_key.decrypt(
        blob[:k], padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    return aes_key_unwrap_with_padding(aes_key, blob[k:])


# ---------------------------------------------------------------------------- refusals
class Refused(Exception):
    """Governance, consent, attestation or the owners' rules do not allow this run. ``code`` is a
    stable name, ``message`` written by this code (no exception text, no data)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# ---------------------------------------------------------------------------- governance
NONCE_HEADER = "X-Request-Nonce"
SIGNATURE_HEADER = "X-Governance-Signature"


def _http(method: str, url: str, body: dict | None, headers: dict, timeout: float = 60):
    """(status, headers, raw body); 5xx and network errors retried a few times."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise Refused("BadEndpoint", "only http(s) endpoints are called")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URLs from our arguments
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 and attempt < 4:
                time.sleep(1 + attempt)
                continue
            return exc.code, exc.headers, exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == 4:
                raise Refused("GovernanceUnreachable", "governance could not be reached") from None
            time.sleep(1 + attempt)
    raise Refused("GovernanceUnreachable", "governance could not be reached")


def _error_code(payload: dict) -> str:
    err = (payload or {}).get("error") if isinstance(payload, dict) else None
    return str((err or {}).get("code") or "Error") if isinstance(err, dict) else "Error"


def _error_text(payload: dict) -> str:
    """Governance's own message (written by governance's code, never data of the parties)."""
    err = (payload or {}).get("error") if isinstance(payload, dict) else None
    return str((err or {}).get("message") or "")[:300] if isinstance(err, dict) else ""


class PinnedGovernance:
    """Calls to governance whose answers must carry the pinned service identity's signature over
    our fresh nonce and the body (a different server, a replayed answer or a changed body is
    refused)."""

    def __init__(self, url: str, public_key_b64: str):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

        self.url = url.rstrip("/")
        try:
            key = serialization.load_pem_public_key(base64.b64decode(public_key_b64, validate=True))
        except (ValueError, TypeError):
            raise Refused("GovernanceKeyInvalid", "the pinned governance key is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise Refused("GovernanceKeyInvalid", "the pinned governance key is not an Ed25519 key")
        self.key = key

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        nonce = os.urandom(16).hex()
        status, headers, raw = _http(method, self.url + path, body, {NONCE_HEADER: nonce})
        try:
            signature = base64.b64decode(headers.get(SIGNATURE_HEADER) or "", validate=True)
            self.key.verify(signature, nonce.encode() + b"\n" + raw)
        except (InvalidSignature, ValueError, TypeError):
            raise Refused(
                "GovernanceNotPinned", "an answer did not carry the signature of the contract's governance service"
            ) from None
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise Refused("GovernanceBadAnswer", "governance sent an answer that is not JSON") from None
        return status, payload


class Runtime:
    """This run's identity towards governance: key pair, attestation, and the attested calls."""

    def __init__(self, governance: PinnedGovernance, contract_id: str):
        self.gov = governance
        self.contract_id = contract_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_b64 = base64.b64encode(pem).decode()
        self.report_data = hashlib.sha256(pem).hexdigest()
        self.attestation = self._attest()

    def _attest(self) -> dict:
        url = os.environ.get("CCR_ATTESTATION_URL")
        if not url:
            raise Refused("NotAttested", "no attestation endpoint: not running in a confidential runtime")
        token = os.environ.get("CCR_ATTESTATION_TOKEN", "")
        status, _, raw = _http(
            "POST", url, {"report_data": self.report_data}, {"Authorization": f"Bearer {token}"} if token else {}
        )
        if status != 200:
            raise Refused("NotAttested", f"the runtime could not produce an attestation report (HTTP {status})")
        body = json.loads(raw)
        return {k: body.get(k, "") for k in ("evidence", "endorsements", "uvmEndorsements")}

    def _post(self, path: str, extra: dict | None = None) -> tuple[int, dict]:
        body = {"attestation": self.attestation, "encrypt": {"publicKey": self.public_key_b64}, **(extra or {})}
        return self.gov.call("POST", f"/contracts/{urllib.parse.quote(self.contract_id)}{path}", body)

    def _refuse(self, code: str, what: str, status: int, payload: dict) -> Refused:
        gov_code = _error_code(payload)
        return Refused(code if gov_code == "Error" else gov_code, f"{what} (HTTP {status}: {_error_text(payload)})")

    def accepted_document(self, document_id: str) -> dict:
        status, body = self._post(f"/acceptedUserDocuments/{urllib.parse.quote(document_id)}")
        if status != 200:
            raise self._refuse("DocumentNotReleased", f"governance does not release query {document_id}", status, body)
        return json.loads(unwrap_rsa_oaep_aes_kwp(self.key, base64.b64decode(body["value"])))

    def consent(self, path: str, what: str) -> None:
        status, body = self._post(path)
        if status != 200:
            raise self._refuse("ConsentCheckFailed", f"consent check of {what} failed", status, body)
        if body.get("status") != "enabled":
            reason = body.get("reason") or {}
            raise Refused(str(reason.get("code") or "ExecutionDisabled"), f"{what} is not enabled: consent revoked")

    def rules(self, dataset: str) -> dict:
        status, body = self._post(f"/datasets/{urllib.parse.quote(dataset)}/analysisrules")
        if status != 200:
            raise self._refuse("AnalysisRulesMissing", f"no analysis rules for dataset {dataset}", status, body)
        return body

    def debit(self, document_id: str, run_id: str, debits: list[dict]) -> dict:
        status, body = self._post("/budget/debit", {"documentId": document_id, "runId": run_id, "debits": debits})
        if status != 200:
            raise self._refuse("BudgetRefused", "governance refused the privacy budget debit", status, body)
        return body

    def secret(self, secret_id: str, document_id: str) -> bytes:
        status, body = self._post(f"/secrets/{urllib.parse.quote(secret_id)}", {"documentId": document_id})
        if status != 200:
            raise self._refuse("KeyNotReleased", f"governance did not release the key {secret_id}", status, body)
        return base64.b64decode(unwrap_rsa_oaep_aes_kwp(self.key, base64.b64decode(body["value"])))

    def event(self, scope: str, event_id: str, data: dict) -> None:
        """An audit event in governance (signed with our key, attested); a failure is only noted."""
        raw = json.dumps(data, sort_keys=True).encode()
        signature = self.key.sign(
            raw, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256()
        )
        body = {
            "attestation": self.attestation,
            "sign": {"signature": base64.b64encode(signature).decode(), "publicKey": self.public_key_b64},
            "data": base64.b64encode(raw).decode(),
            "timestamp": str(int(time.time() * 1000)),
        }
        query = urllib.parse.urlencode({"id": event_id, "scope": scope})
        try:
            status, _ = self.gov.call("PUT", f"/contracts/{urllib.parse.quote(self.contract_id)}/events?{query}", body)
        except Refused as exc:
            say(f"audit event {data.get('event')} not recorded ({exc.code})")
            return
        if status not in (200, 204):
            say(f"audit event {data.get('event')} not recorded (HTTP {status})")


# ---------------------------------------------------------------------------- output
_OUT = None  # the job's own stdout (the pod log): only our structured lines


def say(message: str) -> None:
    print(f"clean room: {message}", file=_OUT or sys.stdout, flush=True)


def silence() -> None:
    """Keep our stdout for our own lines; everything else written to fd 1 and 2 (Python warnings,
    pyspark, py4j, the JVM started below) goes to /dev/null."""
    global _OUT
    if _OUT is not None:
        return
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stderr = sys.stdout


def write_summary(output: Path, summary: dict, result_rows=None, columns=None) -> None:
    """``<output>/summary.json`` (and ``result.csv`` when there are rows), under a temporary name,
    then renamed: a reader sees all of it or nothing."""
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if columns is not None:
        with open(tmp / "result.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in result_rows or []:
                writer.writerow(list(row))
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)


# ---------------------------------------------------------------------------- the run
SPARK_TYPES = {
    "string": "STRING",
    "int": "INT",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
}


def _local_path(uri: str) -> Path:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file", "local"):
        return Path(urllib.parse.unquote(parsed.path))
    raise Refused("UnsupportedLocation", "only file:// dataset locations are supported by this clean room build")


def check_document(doc: dict, contract_id: str, document_id: str, datasets: dict[str, str]) -> dict:
    """The accepted document's rules the clean room enforces itself; returns its data."""
    if doc.get("state") != "Accepted" or doc.get("contractId") != contract_id:
        raise Refused("DocumentNotAccepted", f"query document {document_id} is not accepted for contract {contract_id}")
    data = doc.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data)
    owners = {d["name"]: d["owner"] for d in data.get("datasets") or []}
    accepted = {v.get("approverId") for v in doc.get("finalVotes") or [] if v.get("ballot") == "accepted"}
    missing = sorted(set(owners.values()) - accepted)
    if missing:
        raise Refused(
            "OwnerApprovalMissing", f"query document {document_id} lacks the approval of data owner(s) {missing}"
        )
    if set(owners) != set(datasets):
        raise Refused("DatasetMismatch", f"the run names datasets {sorted(datasets)}, the query reads {sorted(owners)}")
    k = data.get("minGroupSize")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise Refused("DocumentInvalid", "the approved document has no valid minGroupSize")
    return data


def _epsilons(plan) -> dict[str, float]:
    """epsilon to debit per dataset (``include.cleanroom.sql.epsilon_required``)."""
    from include.cleanroom.sql import epsilon_required  # noqa: PLC0415 - from the runtime package

    return {ds: float(eps) for ds, eps in epsilon_required(plan).items() if float(eps) > 0}


def debit_budget(rt: Runtime, document_id: str, run_id: str, epsilons: dict[str, float]) -> list[dict]:
    """Debit every dataset's budget in one call (compare-and-set against what we read); a
    concurrent debit makes us read again, a few times."""
    for _ in range(5):
        debits = []
        for ds, eps in sorted(epsilons.items()):
            spent = float(((rt.rules(ds).get("privacyBudget") or {}).get("spentEpsilon")) or 0.0)
            debits.append({"datasetId": ds, "epsilon": eps, "expectedSpentEpsilon": spent})
        try:
            return rt.debit(document_id, run_id, debits)["debits"]
        except Refused as exc:
            if exc.code != "BudgetConflict":
                raise
    raise Refused("BudgetConflict", "the privacy budget kept changing under concurrent runs; try again")


def unpack_runtime_package() -> Path | None:
    """The runtime package arrives as a zip on ``sys.path`` (``--py-files``); its modules read data
    files next to them (the rules' JSON schema), so it is unpacked into a private directory first,
    which then comes first on ``sys.path``. Returns that directory (None outside a zip)."""
    import zipfile  # noqa: PLC0415

    for entry in list(sys.path):
        if entry.endswith(".zip") and os.path.isfile(entry):
            with zipfile.ZipFile(entry) as zf:
                if "include/cleanroom/sql.py" not in zf.namelist():
                    continue
                target = Path(tempfile.mkdtemp(prefix="cleanroom-pkg-"))
                for info in zf.infolist():
                    dest = (target / info.filename).resolve()
                    if target.resolve() not in dest.parents:
                        raise Refused("RuntimePackageInvalid", "the runtime package holds a path outside itself")
                zf.extractall(target)
            sys.path.insert(0, str(target))
            return target
    return None


def run(args: argparse.Namespace) -> int:  # noqa: C901 - one sequence, read top to bottom
    started = time.time()
    timings: dict[str, float] = {}
    summary: dict = {"contractId": args.contract_id, "status": "refused"}
    output: Path | None = None
    work: Path | None = None
    rt: Runtime | None = None
    document_id = run_id = "?"
    package: Path | None = None
    try:
        package = unpack_runtime_package()
        from include.cleanroom.manifest import parse_run  # noqa: PLC0415 - from the runtime package

        try:
            run_params = parse_run(args.run)
        except Exception:  # noqa: BLE001 - our own validation; the message is ours
            raise Refused("RunInvalid", "the --run argument is not a valid run description") from None
        document_id, run_id = run_params["documentId"], run_params["runId"]
        datasets: dict[str, str] = run_params["datasets"]
        output = Path(run_params["output"])
        summary.update(documentId=document_id, runId=run_id)

        gov = PinnedGovernance(args.cgs_url, args.governance_key)
        rt = Runtime(gov, args.contract_id)
        say(f"attestation report obtained (report data {rt.report_data[:16]}...)")
        doc = rt.accepted_document(document_id)
        data = check_document(doc, args.contract_id, document_id, datasets)
        rt.consent("/consentcheck/execution", f"contract {args.contract_id}")
        rt.consent(f"/userdocuments/{urllib.parse.quote(document_id)}/consentcheck/execution", f"query {document_id}")
        owners = {d["name"]: d["owner"] for d in data["datasets"]}
        say(f"query {document_id} accepted by {', '.join(sorted(set(owners.values())))}; consent enabled")

        # the owners' analysis rules, and the check that counts
        from include.cleanroom.rules import AnalysisRules  # noqa: PLC0415 - from the runtime package
        from include.cleanroom.sql import QueryRefused, check_query  # noqa: PLC0415

        rules = {}
        for ds, owner in sorted(owners.items()):
            view = rt.rules(ds)
            if view.get("ownerId") != owner or view.get("datasetId") != ds:
                raise Refused("AnalysisRulesMismatch", f"the rules of {ds} are not kept by its owner {owner}")
            try:
                rules[ds] = AnalysisRules.from_data(view.get("rules") or {})
            except Exception:  # noqa: BLE001 - the owner's rules do not parse: refuse, say whose
                raise Refused("AnalysisRulesInvalid", f"the analysis rules of dataset {ds} are not valid") from None
        try:
            plan = check_query(str(data.get("query") or ""), rules, int(data["minGroupSize"]))
        except QueryRefused as exc:
            raise Refused(str(exc.code), str(exc.message)) from None
        timings["checkSeconds"] = round(time.time() - started, 3)

        # the privacy budget, before anything is computed or released
        epsilons = _epsilons(plan)
        if epsilons:
            spent = debit_budget(rt, document_id, run_id, epsilons)
            summary["privacyBudget"] = spent
            say(f"privacy budget debited: {', '.join(f'{d}={e:g}' for d, e in sorted(epsilons.items()))}")
        summary["epsilon"] = epsilons

        keys = {}
        for ds, owner in sorted(owners.items()):
            keys[ds] = rt.secret(f"{owner}_{ds}-dek", document_id)
        say(f"keys of {len(keys)} dataset(s) released")
        rt.event(document_id, run_id, {"event": "started", "runId": run_id, "datasets": sorted(datasets)})

        work = Path(tempfile.mkdtemp(prefix="cleanroom-"))
        os.chmod(work, 0o700)
        plain: dict[str, Path] = {}
        for spec in data["datasets"]:
            name = spec["name"]
            target = work / f"{name}.{spec.get('format', 'csv')}"
            try:
                with open(_local_path(datasets[name]), "rb") as src, open(target, "wb") as dst:
                    header = unseal(src, dst, keys[name])
            except (OSError, SealedFormatError):
                raise Refused("SealedDatasetUnreadable", f"the sealed file of {name} cannot be read") from None
            if header.get("dataset") != name:
                raise Refused("SealedDatasetMismatch", f"the sealed file given for {name} holds another dataset")
            plain[name] = target
        keys.clear()
        timings["decryptSeconds"] = round(time.time() - started, 3)

        from pyspark.sql import SparkSession  # noqa: PLC0415 - the refusals above need no JVM

        from include.cleanroom.enforce import run_plan  # noqa: PLC0415

        spark = (
            SparkSession.builder.appName(f"cleanroom-{document_id}")
            .config("spark.sql.runSQLOnFiles", "false")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        try:
            spark.sparkContext.setLogLevel("OFF")
            views = {}
            for spec in data["datasets"]:
                ddl = ", ".join(f"`{c['name']}` {SPARK_TYPES[c['type']]}" for c in spec["schema"])
                reader = spark.read.schema(ddl)
                path = str(plain[spec["name"]])
                df = (
                    reader.parquet(path) if spec.get("format") == "parquet" else reader.option("header", True).csv(path)
                )
                df.createOrReplaceTempView(spec["name"])
                views[spec["name"]] = df
            result = run_plan(spark, plan, views)
            columns, rows = list(result.columns), [list(r) for r in result.rows]
            suppressed = int(result.suppressed_groups)
        finally:
            spark.stop()
        timings["totalSeconds"] = round(time.time() - started, 3)
        summary.update(
            status="completed",
            code="",
            message="",
            columns=columns,
            rows=len(rows),
            suppressedGroups=suppressed,
            minGroupSize=int(data["minGroupSize"]),
            datasets=sorted(plain),
            timings=timings,
        )
        if result.epsilon_spent:
            summary["differentialPrivacy"] = {
                "epsilonSpent": result.epsilon_spent,
                "confidence": result.confidence,
                "noiseScales": dict(result.dp_scales),
                "intervals": {k: [list(iv) for iv in v] for k, v in result.dp_intervals.items()},
            }
        write_summary(output, summary, rows, columns)
        say(f"{len(rows)} result row(s) written, {suppressed} group(s) below the threshold suppressed")
        rt.event(
            document_id,
            run_id,
            {"event": "completed", "runId": run_id, "rows": len(rows), "suppressedGroups": suppressed},
        )
        return 0
    except Refused as exc:
        summary.update(status="refused", code=exc.code, message=exc.message[:500])
        code = EXIT_REFUSED
    except Exception as exc:  # noqa: BLE001 - its text may hold data: only its class leaves
        summary.update(
            status="failed", code="QueryFailed", message=f"the run failed inside the clean room ({type(exc).__name__})"
        )
        code = 1
    finally:
        for directory in (work, package):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
    timings["totalSeconds"] = round(time.time() - started, 3)
    summary["timings"] = timings
    say(f"{summary['status']}: {summary['code']}: {summary['message']}")
    if output is not None:
        try:
            write_summary(output, summary)
        except OSError:
            say("the summary could not be written")
    if rt is not None:
        rt.event(
            document_id,
            run_id,
            {"event": summary["status"], "runId": run_id, "code": summary["code"], "reason": summary["message"]},
        )
    return code


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spark_job.py", description="The confidential clean room's Spark application")
    p.add_argument("--cgs-url", required=True, help="the clean room governance service")
    p.add_argument("--governance-key", required=True, help="governance's service identity (base64 PEM), pinned")
    p.add_argument("--contract-id", required=True)
    p.add_argument("--run", required=True, help="JSON {documentId, runId, datasets: {name: uri}, output}")
    return p.parse_args(argv)


if __name__ == "__main__":
    silence()
    sys.exit(run(parse_args(sys.argv[1:])))
