"""The clean room's Spark application: run one approved query over the parties' sealed datasets.

Run by the Spark Operator (``spark-submit``) inside the confidential runtime::

    spark_job.py --cgs-url URL --contract-id C --document-id D --run-id R \\
                 --dataset NAME=URI [--dataset ...] --output DIR

This file is what the members approve: governance releases the datasets' keys only to a runtime
whose attestation carries this file's sha256 as its measurement (``host data``). So it depends on
nothing of the project: only the standard library, ``cryptography`` and ``pyspark``; the dataset
format below is also what ``include.cleanroom.datasets`` writes.

Sequence (each refusal ends the run with exit code 3 and a ``CLEANROOM REFUSED:`` line):

1. a fresh RSA key pair; an attestation report whose report data is the sha256 of its public key,
   from the runtime's attestation endpoint (``CCR_ATTESTATION_URL``);
2. the accepted query document from governance (wrapped for our key): the query, the datasets
   with owners and schemas, the count column and the minimum group size; every owner must have
   voted to accept it;
3. consent checks (contract and document): any member's revocation stops the run;
4. each dataset's key (``<owner>_<dataset>-dek``), released against the attestation and wrapped
   (RSA-OAEP-AES-KWP) for our key; each dataset decrypted into a private temporary directory;
5. Spark (``spark.sql.runSQLOnFiles=false``; only the approved datasets are views); the query;
   rows whose group is smaller than the minimum are suppressed; the rest streamed to
   ``<output>/result.csv``, with ``summary.json``; written under a temporary name, then renamed;
6. audit events (started, completed or refused) signed with our key and attested, to governance.

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


# ---------------------------------------------------------------------------- governance
class Refused(Exception):
    """Governance, consent or attestation does not allow this run."""


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 60):
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise Refused(f"{url!r}: only http(s) endpoints are called")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URLs from our arguments
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text.strip() else {})
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                payload = json.loads(text) if text.strip() else {}
            except ValueError:
                payload = {"error": {"code": "NotJson", "message": text[:300]}}
            if exc.code >= 500 and attempt < 4:
                time.sleep(1 + attempt)
                continue
            return exc.code, payload
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    raise RuntimeError("unreachable")


def _error(payload: dict) -> str:
    err = (payload or {}).get("error") or {}
    return f"{err.get('code', 'Error')}: {err.get('message', payload)}"


class Runtime:
    """This run's identity towards governance: key pair, attestation, and the attested calls."""

    def __init__(self, cgs_url: str, contract_id: str):
        self.cgs = cgs_url.rstrip("/")
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
            raise Refused("no attestation endpoint (CCR_ATTESTATION_URL): not running in a confidential runtime")
        token = os.environ.get("CCR_ATTESTATION_TOKEN", "")
        status, body = _http(
            "POST", url, {"report_data": self.report_data}, {"Authorization": f"Bearer {token}"} if token else {}
        )
        if status != 200:
            raise Refused(f"the runtime could not produce an attestation report (HTTP {status}: {_error(body)})")
        return {k: body.get(k, "") for k in ("evidence", "endorsements", "uvmEndorsements")}

    def _post(self, path: str, extra: dict | None = None) -> tuple[int, dict]:
        body = {"attestation": self.attestation, "encrypt": {"publicKey": self.public_key_b64}, **(extra or {})}
        return _http("POST", f"{self.cgs}/contracts/{self.contract_id}{path}", body)

    def accepted_document(self, document_id: str) -> dict:
        status, body = self._post(f"/acceptedUserDocuments/{urllib.parse.quote(document_id)}")
        if status != 200:
            raise Refused(f"governance does not release query document {document_id}: {_error(body)}")
        return json.loads(unwrap_rsa_oaep_aes_kwp(self.key, base64.b64decode(body["value"])))

    def consent(self, path: str, what: str) -> None:
        status, body = self._post(path)
        if status != 200:
            raise Refused(f"consent check of {what} failed: {_error(body)}")
        if body.get("status") != "enabled":
            reason = body.get("reason") or {}
            raise Refused(f"{what} is not enabled: {reason.get('code', '')}: {reason.get('message', '')}")

    def secret(self, secret_id: str, document_id: str) -> bytes:
        status, body = self._post(f"/secrets/{urllib.parse.quote(secret_id)}", {"documentId": document_id})
        if status != 200:
            raise Refused(f"governance did not release secret {secret_id}: {_error(body)}")
        return base64.b64decode(unwrap_rsa_oaep_aes_kwp(self.key, base64.b64decode(body["value"])))

    def event(self, scope: str, event_id: str, data: dict) -> None:
        """An audit event in governance (signed with our key, attested); failures are reported, not fatal."""
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
        status, resp = _http("PUT", f"{self.cgs}/contracts/{self.contract_id}/events?{query}", body)
        if status not in (200, 204):
            print(f"clean room: audit event {data.get('event')} not recorded: {_error(resp)}", flush=True)


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
    raise Refused(f"dataset location {uri!r}: only file:// locations are supported by this clean room build")


def check_document(doc: dict, contract_id: str, document_id: str, datasets: dict[str, str]) -> dict:
    """The accepted document's rules the clean room enforces itself; returns its data."""
    if doc.get("state") != "Accepted" or doc.get("contractId") != contract_id:
        raise Refused(f"query document {document_id} is not accepted for contract {contract_id}")
    data = doc.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data)
    owners = {d["name"]: d["owner"] for d in data.get("datasets") or []}
    accepted = {v.get("approverId") for v in doc.get("finalVotes") or [] if v.get("ballot") == "accepted"}
    missing = sorted(set(owners.values()) - accepted)
    if missing:
        raise Refused(f"query document {document_id} lacks the approval of data owner(s) {', '.join(missing)}")
    if set(owners) != set(datasets):
        raise Refused(f"the run names datasets {sorted(datasets)} but the approved query reads {sorted(owners)}")
    query = str(data.get("query") or "").strip().rstrip(";")
    if not query.upper().startswith(("SELECT", "WITH")) or ";" in query:
        raise Refused("the approved document does not hold a single SELECT query")
    k = data.get("minGroupSize")
    if not isinstance(k, int) or k < 2:
        raise Refused("the approved document has no valid minGroupSize")
    return data


def run(args: argparse.Namespace) -> int:
    datasets = dict(item.split("=", 1) for item in args.dataset)
    started = time.time()
    work: Path | None = None
    rt: Runtime | None = None
    try:
        rt = Runtime(args.cgs_url, args.contract_id)
        print(f"clean room: attestation report obtained (report data {rt.report_data[:16]}...)", flush=True)
        doc = rt.accepted_document(args.document_id)
        data = check_document(doc, args.contract_id, args.document_id, datasets)
        rt.consent("/consentcheck/execution", f"contract {args.contract_id}")
        rt.consent(f"/userdocuments/{args.document_id}/consentcheck/execution", f"query document {args.document_id}")
        owners = ", ".join(sorted({d["owner"] for d in data["datasets"]}))
        print(f"clean room: query document {args.document_id} accepted by {owners}; consent enabled", flush=True)
        keys = {}
        for spec in data["datasets"]:
            keys[spec["name"]] = rt.secret(f"{spec['owner']}_{spec['name']}-dek", args.document_id)
            print(f"clean room: key of dataset {spec['name']} released", flush=True)
        rt.event(
            args.document_id, args.run_id, {"event": "started", "runId": args.run_id, "datasets": sorted(datasets)}
        )
    except Refused as exc:
        print(f"CLEANROOM REFUSED: {exc}", file=sys.stderr, flush=True)
        if rt is not None:
            rt.event(
                args.document_id, args.run_id, {"event": "refused", "runId": args.run_id, "reason": str(exc)[:500]}
            )
        return EXIT_REFUSED

    try:
        work = Path(tempfile.mkdtemp(prefix="cleanroom-"))
        os.chmod(work, 0o700)
        plain: dict[str, Path] = {}
        for spec in data["datasets"]:
            name = spec["name"]
            target = work / f"{name}.{spec.get('format', 'csv')}"
            with open(_local_path(datasets[name]), "rb") as src, open(target, "wb") as dst:
                header = unseal(src, dst, keys[name])
            if header.get("dataset") != name:
                raise Refused(f"the sealed file given for {name} holds dataset {header.get('dataset')!r}")
            plain[name] = target
            print(f"clean room: dataset {name}: {header['size']} bytes decrypted", flush=True)
        keys.clear()

        from pyspark.sql import SparkSession  # noqa: PLC0415 - the refusals above need no JVM
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        spark = (
            SparkSession.builder.appName(f"cleanroom-{args.document_id}")
            .config("spark.sql.runSQLOnFiles", "false")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        try:
            spark.sparkContext.setLogLevel("WARN")
            for spec in data["datasets"]:
                ddl = ", ".join(f"`{c['name']}` {SPARK_TYPES[c['type']]}" for c in spec["schema"])
                reader = spark.read.schema(ddl)
                path = str(plain[spec["name"]])
                df = (
                    reader.parquet(path) if spec.get("format") == "parquet" else reader.option("header", True).csv(path)
                )
                df.createOrReplaceTempView(spec["name"])
            result = spark.sql(data["query"])
            count_column = data.get("countColumn") or "n"
            if count_column not in result.columns:
                raise Refused(f"the query's result has no group-size column {count_column!r}")
            k = int(data["minGroupSize"])
            flagged = result.withColumn("__keep", F.coalesce(F.col(count_column) >= F.lit(k), F.lit(False))).cache()
            suppressed = flagged.filter(~F.col("__keep")).count()
            kept = flagged.filter(F.col("__keep")).drop("__keep")
            out = Path(args.output)
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            rows = 0
            with open(tmp / "result.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(kept.columns)
                for row in kept.coalesce(1).toLocalIterator():
                    writer.writerow(list(row))
                    rows += 1
            summary = {
                "contractId": args.contract_id,
                "documentId": args.document_id,
                "runId": args.run_id,
                "columns": kept.columns,
                "rows": rows,
                "suppressedGroups": suppressed,
                "minGroupSize": k,
                "countColumn": count_column,
                "datasets": sorted(plain),
                "seconds": round(time.time() - started, 1),
            }
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        finally:
            spark.stop()
        print(f"clean room: {rows} result rows written, {suppressed} group(s) below {k} suppressed", flush=True)
        rt.event(
            args.document_id,
            args.run_id,
            {
                "event": "completed",
                "runId": args.run_id,
                "rows": rows,
                "suppressedGroups": suppressed,
                "minGroupSize": k,
            },
        )
        return 0
    except Refused as exc:
        print(f"CLEANROOM REFUSED: {exc}", file=sys.stderr, flush=True)
        rt.event(args.document_id, args.run_id, {"event": "refused", "runId": args.run_id, "reason": str(exc)[:500]})
        return EXIT_REFUSED
    except Exception as exc:
        rt.event(args.document_id, args.run_id, {"event": "failed", "runId": args.run_id, "error": type(exc).__name__})
        raise
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spark_job.py", description="The confidential clean room's Spark application")
    p.add_argument("--cgs-url", required=True, help="the clean room governance service")
    p.add_argument("--contract-id", required=True)
    p.add_argument("--document-id", required=True, help="the accepted query document")
    p.add_argument("--run-id", required=True, help="the id of this run in the audit log")
    p.add_argument("--dataset", action="append", default=[], help="NAME=URI of a sealed dataset (repeat)")
    p.add_argument("--output", required=True, help="the result directory (created; replaced atomically)")
    args = p.parse_args(argv)
    for item in args.dataset:
        if "=" not in item:
            p.error(f"--dataset {item!r}: give NAME=URI")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
