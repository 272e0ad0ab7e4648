from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from crypt4gh.lib import decrypt

from include.hpcs.archive import KeyPair


def make_tree(root: Path) -> Path:
    """A small input tree with files, an empty directory, modes, and links in and out."""
    top = root / "dataset"
    (top / "sub" / "empty").mkdir(parents=True)
    (top / "a.txt").write_text("hello\n")
    (top / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (top / "exact.bin").write_bytes(os.urandom(65536))
    (top / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(top / "script.sh", 0o750)
    os.symlink("../a.txt", top / "sub" / "inside-link")
    os.symlink("/etc/passwd", top / "outside-link")
    os.symlink("../../outside.txt", top / "sub" / "relative-outside")
    return top


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "staging")


@pytest.fixture
def keys() -> KeyPair:
    return KeyPair.generate()


def decrypt_bytes(path: Path, keys: KeyPair) -> bytes:
    out = io.BytesIO()
    with open(path, "rb") as f:
        decrypt([(0, keys.secret, None)], f, out)
    return out.getvalue()


def open_tar(plain: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(plain), mode="r:*")
