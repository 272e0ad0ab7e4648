"""Interop with the crypt4gh CLI: files it encrypts are ingested to ready, and the stored header
joined to the archived body decrypts with the CLI to the original bytes."""

from __future__ import annotations

import filecmp
import hashlib
import os

import pytest

from tests.unit.include.ega.support import cli_decrypt, cli_encrypt

pytestmark = pytest.mark.integration

U = "interop.user"
MB = 1024 * 1024


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MB)
            f.write(os.urandom(n))
            left -= n


@pytest.mark.parametrize(
    "name, size, recipients",
    [
        ("empty", 0, ["node"]),
        ("exactly_64k", 65536, ["node"]),
        ("64k_plus_1", 65537, ["node"]),
        ("multi_recipient", 300000, ["user", "other", "node"]),
        ("200MB", 200 * MB, ["node"]),
    ],
)
def test_cli_encrypted_file_is_ingested_and_restorable(node, tmp_path, name, size, recipients):
    keys = node.keys
    plain = tmp_path / f"{name}.bin"
    write_random(plain, size)
    target = node.inbox_dir / U / "interop" / f"{name}.c4gh"
    target.parent.mkdir(parents=True, exist_ok=True)
    cli_encrypt(plain, target, keys["user"], *[keys[r] for r in recipients])
    enc_sha = hashlib.sha256(target.read_bytes()).hexdigest() if size < 10 * MB else None
    extra = {"encrypted_checksums": [{"type": "sha256", "value": enc_sha}]} if enc_sha else {}
    node.cega.trigger(U, f"interop/{name}.c4gh", **extra)
    node.run()
    [rec] = node.file(U, f"interop/{name}.c4gh")
    assert rec.status == "ready", rec.error_reason
    assert rec.decrypted_size == size
    h = hashlib.sha256()
    with open(plain, "rb") as f:
        while chunk := f.read(8 * MB):
            h.update(chunk)
    assert rec.checksums["decrypted"]["sha256"] == h.hexdigest()

    rebuilt = tmp_path / "rebuilt.c4gh"
    with open(rebuilt, "wb") as out, open(node.archive_dir / rec.archive_path, "rb") as body:
        out.write(rec.header)
        while chunk := body.read(8 * MB):
            out.write(chunk)
    restored = tmp_path / "restored.bin"
    cli_decrypt(rebuilt, restored, keys["node"])
    assert filecmp.cmp(plain, restored, shallow=False)
