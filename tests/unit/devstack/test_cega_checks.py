"""The Central EGA stand-in's files.verified rules against the federated schema they come from."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from devstack.cega.checks import accession_request_errors

SHA = "82e4e60e7beb3db2e06a00a079788f7d71f75b61a4b75f28c4c942703dabb6d6"
MD5 = "7ac236b1a8dce2dac89e7cf45d2b48bd"
# reference copy of sda/schemas/federated/ingestion-accession-request.json (read when present)
REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "fega-schemas" / "sda-federated"

CASES = [
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": SHA}]}, True),
    (
        {
            "type": "verified",
            "user": "u",
            "filepath": "f.c4gh",
            "decrypted_checksums": [{"type": "md5", "value": MD5}, {"type": "sha256", "value": SHA.upper()}],
        },
        True,
    ),
    ({"user": "u", "filepath": "f.c4gh"}, False),
    ({"filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": SHA}]}, False),
    ({"user": 7, "filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": SHA}]}, False),
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": [{"type": "md5", "value": MD5}]}, False),
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": []}, False),
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": SHA[:-1]}]}, False),
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": "z" * 64}]}, False),
    (
        {"user": "u", "filepath": "f.c4gh", "decrypted_checksums": [{"type": "sha256", "value": SHA, "x": 1}]},
        False,
    ),
    (
        {
            "user": "u",
            "filepath": "f.c4gh",
            "decrypted_checksums": [{"type": "sha256", "value": SHA}, {"type": "sha1", "value": SHA[:40]}],
        },
        False,
    ),
    ({"user": "u", "filepath": "f.c4gh", "decrypted_checksums": {"type": "sha256", "value": SHA}}, False),
    ([], False),
]


@pytest.mark.parametrize(("message", "valid"), CASES)
def test_accession_request_rules(message, valid):
    errors = accession_request_errors(message)
    assert (errors == []) is valid, errors
    schema_file = REFERENCE / "ingestion-accession-request.json"
    if schema_file.exists():  # the rules agree with the reference schema on every case
        schema = json.loads(schema_file.read_text())
        assert jsonschema.Draft7Validator(schema).is_valid(message) is valid
