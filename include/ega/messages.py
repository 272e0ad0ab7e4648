"""The messages exchanged with Central EGA, validated against our JSON schemas both ways.

Incoming bodies are classified by ``parse_incoming`` (raises ``InvalidMessage``, which sends the
message to the dead-letter queue); outgoing ones are built by the ``*_message`` functions, which
validate what they return, so a message that does not match its schema never leaves the node.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from include.ega.errors import InvalidMessage

SCHEMA_DIR = Path(__file__).with_name("schemas")

# message "type" -> schema name, for each incoming queue
FILES_QUEUE_TYPES = {
    "ingest": "ingestion-trigger",
    "cancel": "ingestion-trigger",
    "mapping": "dataset-mapping",
}
ACCESSION_QUEUE_TYPES = {"accession": "ingestion-accession"}


@cache
def validator(name: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(name: str, message: Any) -> None:
    """Raise ``InvalidMessage`` (naming the first problem) unless ``message`` matches schema ``name``."""
    errors = sorted(validator(name).iter_errors(message), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(message)"
        raise InvalidMessage(f"{name}: {where}: {err.message}")


def parse_incoming(body: bytes | str, types: dict[str, str] = FILES_QUEUE_TYPES) -> tuple[str, dict]:
    """Decode and validate a message from a queue whose allowed types are ``types``.

    :return: (message type, message)
    :raises InvalidMessage: not JSON, not an object, unknown type, or schema mismatch
    """
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise InvalidMessage("not a JSON object")
    kind = message.get("type")
    if kind not in types:
        raise InvalidMessage(f"unknown message type {kind!r}; expected one of {sorted(types)}")
    validate(types[kind], message)
    return kind, message


def checksums_list(**values: str | None) -> list[dict[str, str]]:
    """``checksums_list(sha256="ab..", md5="cd..")`` -> [{"type": "sha256", "value": "ab.."}, ...]."""
    return [{"type": k, "value": v} for k, v in values.items() if v]


def checksums_dict(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {c["type"]: c["value"].lower() for c in items or []}


def accession_request_message(user: str, filepath: str, sha256: str, md5: str) -> dict:
    msg = {"user": user, "filepath": filepath, "decrypted_checksums": checksums_list(sha256=sha256, md5=md5)}
    validate("ingestion-accession-request", msg)
    return msg


def completion_message(user: str, filepath: str, sha256: str, md5: str, accession_id: str) -> dict:
    msg = {
        "user": user,
        "filepath": filepath,
        "accession_id": accession_id,
        "decrypted_checksums": checksums_list(sha256=sha256, md5=md5),
    }
    validate("ingestion-completion", msg)
    return msg


def user_error_message(user: str, filepath: str, reason: str) -> dict:
    msg = {"user": user, "filepath": filepath, "reason": reason}
    validate("ingestion-user-error", msg)
    return msg


def dead_letter_message(body: bytes, reason: str, source_queue: str, correlation_id: str | None) -> dict:
    msg = {
        "reason": reason,
        "source_queue": source_queue,
        "body": body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body),
        "correlation_id": correlation_id,
        "received_at": datetime.now(UTC).isoformat(),
    }
    validate("dead-letter", msg)
    return msg
