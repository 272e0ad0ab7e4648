from __future__ import annotations

import json

import jsonschema
import pytest

from include.ega import messages
from include.ega.errors import InvalidMessage

SHA = "82e4e60e7beb3db2e06a00a079788f7d71f75b61a4b75f28c4c942703dabb6d6"
MD5 = "7ac236b1a8dce2dac89e7cf45d2b48bd"


def outgoing():
    return {
        "ingestion-accession-request": messages.accession_request_message("user.name", "dir/a.c4gh", SHA, MD5),
        "ingestion-completion": messages.completion_message("user.name", "dir/a.c4gh", SHA, MD5, "EGAF12345678901"),
        "ingestion-user-error": messages.user_error_message("user.name", "dir/a.c4gh", "Not a Crypt4GH file"),
    }


def incoming():
    return {
        "ingestion-trigger": {
            "type": "ingest",
            "user": "user.name",
            "filepath": "dir/a.c4gh",
            "encrypted_checksums": [{"type": "sha256", "value": SHA}, {"type": "md5", "value": MD5}],
        },
        "ingestion-accession": {
            "type": "accession",
            "user": "user.name",
            "filepath": "dir/a.c4gh",
            "accession_id": "EGAF12345678901",
            "decrypted_checksums": [{"type": "sha256", "value": SHA}],
        },
        "dataset-mapping": {
            "type": "mapping",
            "dataset_id": "EGAD12345678901",
            "accession_ids": ["EGAF12345678901"],
        },
    }


@pytest.mark.parametrize(
    "name",
    [
        "ingestion-accession-request",
        "ingestion-completion",
        "ingestion-user-error",
        "ingestion-trigger",
        "ingestion-accession",
        "dataset-mapping",
    ],
)
def test_our_messages_validate_against_the_reference_sda_federated_schemas(shared_dir, name):
    ref = json.loads((shared_dir / "fega-schemas" / "sda-federated" / f"{name}.json").read_text())
    msg = {**outgoing(), **incoming()}[name]
    jsonschema.Draft7Validator(ref).validate(msg)
    messages.validate(name, msg)


def test_our_schemas_are_not_copies_of_the_reference(shared_dir):
    for path in messages.SCHEMA_DIR.glob("*.json"):
        ref = shared_dir / "fega-schemas" / "sda-federated" / path.name
        if ref.exists():
            assert json.loads(path.read_text()) != json.loads(ref.read_text())


def test_parse_incoming_classifies():
    for name, msg in incoming().items():
        types = messages.ACCESSION_QUEUE_TYPES if name == "ingestion-accession" else messages.FILES_QUEUE_TYPES
        kind, parsed = messages.parse_incoming(json.dumps(msg).encode(), types)
        assert kind == msg["type"] and parsed == msg


@pytest.mark.parametrize(
    "body, match",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "reticulate", "user": "ab", "filepath": "cd"}', "unknown message type"),
        (b'{"type": "ingest", "user": "ab"}', "filepath"),
        (
            b'{"type": "ingest", "user": "ab", "filepath": "cd", '
            b'"encrypted_checksums": [{"type": "sha256", "value": "x"}]}',
            "encrypted_checksums",
        ),
        (b'{"type": "mapping", "dataset_id": "EGAD1", "accession_ids": ["EGAF12345678901"]}', "dataset_id"),
        (b'{"type": "mapping", "dataset_id": "EGAD12345678901", "accession_ids": []}', "accession_ids"),
    ],
)
def test_invalid_messages(body, match):
    with pytest.raises(InvalidMessage, match=match):
        messages.parse_incoming(body)


def test_accession_id_pattern():
    msg = incoming()["ingestion-accession"] | {"accession_id": "EGAF123"}
    with pytest.raises(InvalidMessage, match="accession_id"):
        messages.parse_incoming(json.dumps(msg), messages.ACCESSION_QUEUE_TYPES)


def test_outgoing_messages_are_validated():
    with pytest.raises(InvalidMessage):
        messages.completion_message("u", "dir/a.c4gh", SHA, MD5, "not-an-accession")
    with pytest.raises(InvalidMessage):
        messages.accession_request_message("user", "dir/a.c4gh", "zz", MD5)


def test_dead_letter_record_keeps_the_body():
    rec = messages.dead_letter_message(b"\xffbad", "not JSON", "files", "cid-1")
    assert rec["body"].endswith("bad") and rec["source_queue"] == "files" and rec["correlation_id"] == "cid-1"
