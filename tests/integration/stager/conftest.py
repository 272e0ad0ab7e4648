"""Fixtures of the stager's integration tests: the iRODS stand-in, accounts and file trees."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from include.stager.irods import IrodsAccount, IrodsClient

ZONE = "nl.ru.donders"


@pytest.fixture(scope="session")
def irods_vars(devstack):
    return devstack.start("irods")


@pytest.fixture(scope="session")
def alice(irods_vars) -> IrodsAccount:
    return IrodsAccount("127.0.0.1", int(irods_vars["SDP_IRODS_PORT"]), ZONE, "alice", "alice-secret")


@pytest.fixture
def coll(alice) -> str:
    """A fresh collection path (not created) in alice's home."""
    return f"/{ZONE}/home/alice/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(alice):
    with IrodsClient(alice) as c:
        yield c


def make_tree(root: Path, small_files: int = 0, big_mb: int = 0) -> dict[str, bytes | int]:
    """Nested and empty directories, empty files, unicode and space names; returns rel -> content."""
    files: dict[str, bytes | int] = {
        "a.txt": b"alpha\n",
        "empty file": b"",
        "sub dir/ünïcødé ✓.txt": "grüße\n".encode(),
        "sub dir/deeper/nested/x.bin": os.urandom(70_000),
    }
    for i in range(small_files):
        files[f"many/{i // 100:02d}/f{i:04d}.dat"] = f"file {i}\n".encode() * (1 + i % 7)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "empty dir").mkdir(parents=True, exist_ok=True)
    (root / "sub dir" / "empty inner").mkdir(parents=True, exist_ok=True)
    if big_mb:
        with open(root / "big.bin", "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(big_mb):
                fh.write(block)
        files["big.bin"] = big_mb << 20
    return files


def tree_listing(root: Path) -> tuple[set[str], dict[str, bytes]]:
    dirs, files = set(), {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            dirs.add(os.path.normpath(os.path.join(rel, d)))
        for f in filenames:
            files[os.path.normpath(os.path.join(rel, f))] = (Path(dirpath) / f).read_bytes()
    return dirs, files
