"""What Central EGA accepts from a node, as the federated message interface documents it.

The rules are those of the SDA federated schema ``ingestion-accession-request.json``
(neicnordic/sensitive-data-archive ``sda/schemas/federated/``: the ``files.verified`` message a
node sends to ask for an accession id), written here as code so that the stand-in depends on no
file outside the project (the schema files are AGPL and only kept as references in ``../shared``;
``tests/unit/devstack/test_cega_checks.py`` checks this code against them).
"""

from __future__ import annotations

import re
from typing import Any

_HEX = {"sha256": re.compile(r"^[a-fA-F0-9]{64}$"), "md5": re.compile(r"^[a-fA-F0-9]{32}$")}


def accession_request_errors(message: Any) -> list[str]:
    """Why ``message`` is not a valid ``files.verified`` (accession request); empty when it is.

    * an object with ``user`` (string), ``filepath`` (string) and ``decrypted_checksums``; other
      top-level fields are allowed (``additionalProperties: true``);
    * ``decrypted_checksums`` is an array whose every item is exactly ``{"type": "sha256",
      "value": <64 hex>}`` or ``{"type": "md5", "value": <32 hex>}`` (no other keys), and which
      contains at least one sha256 item.
    """
    if not isinstance(message, dict):
        return ["the message is not a JSON object"]
    errors = [
        f"{field!r} is a required property"
        for field in ("user", "filepath", "decrypted_checksums")
        if field not in message
    ]
    for field in ("user", "filepath"):
        if field in message and not isinstance(message[field], str):
            errors.append(f"{field}: {message[field]!r} is not of type 'string'")
    sums = message.get("decrypted_checksums")
    if "decrypted_checksums" in message:
        if not isinstance(sums, list):
            errors.append(f"decrypted_checksums: {sums!r} is not of type 'array'")
        else:
            for i, item in enumerate(sums):
                errors.extend(f"decrypted_checksums/{i}: {e}" for e in _checksum_errors(item))
            if not any(isinstance(s, dict) and s.get("type") == "sha256" for s in sums):
                errors.append("decrypted_checksums: does not contain a sha256 checksum")
    return errors


def _checksum_errors(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return [f"{item!r} is not a checksum object"]
    kind = item.get("type")
    if kind not in _HEX:
        return [f"checksum type {kind!r} is neither 'sha256' nor 'md5'"]
    out = []
    extra = sorted(set(item) - {"type", "value"})
    if extra:
        out.append(f"additional properties are not allowed ({', '.join(extra)})")
    value = item.get("value")
    if not isinstance(value, str) or not _HEX[kind].match(value):
        out.append(f"{value!r} is not a {kind} hex digest")
    return out
