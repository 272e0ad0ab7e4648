"""The block tar writer: headers byte for byte as tarfile's, and files that change while archived."""

from __future__ import annotations

import io
import os
import random
import tarfile

import pytest

from include.hpcs import archive as archive_mod
from include.hpcs.archive import prepare_archive, scan_input
from include.hpcs.errors import HpcsUserError
from include.hpcs.tarblocks import DIRTYPE, LNKTYPE, REGTYPE, SYMTYPE, BlockTar, member_header

from .conftest import decrypt_bytes, open_tar


def _tarfile_header(name, type_, **kw) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = type_
    for key, value in kw.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


NAMES = [
    "a",
    "dataset/sub/file.txt",
    "n" * 99,
    "n" * 100,
    "n" * 101,  # GNU long name
    "données/é" * 5,
    "données/é" * 12,  # over 100 bytes once encoded
    "bad-\udcff-bytes",  # undecodable name kept as its bytes
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("type_", [REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE])
def test_header_is_tarfiles(name, type_):
    fields = {
        "mode": 0o100755,
        "uid": 1000,
        "gid": 100,
        "size": 12345 if type_ == REGTYPE else 0,
        "mtime": 1_700_000_000,
        "linkname": "../target" if type_ in (SYMTYPE, LNKTYPE) else "",
        "uname": "alice",
        "gname": "research",
    }
    assert member_header(name, type=type_, **fields) == _tarfile_header(name, type_, **fields)


def test_header_random_fields_match_tarfile():
    rng = random.Random(4)
    for _ in range(2000):
        fields = {
            "mode": rng.randrange(0o200000),
            "uid": rng.choice([0, 1000, rng.randrange(2**21), 2**21, rng.randrange(2**31)]),
            "gid": rng.choice([0, 100, 2**21 - 1, 2**22]),
            "size": rng.choice([0, 1, 511, 512, 8**11 - 1, 8**11, 20 * 2**30]),
            "mtime": rng.choice([0, 1_700_000_000, 8**11 - 1, 8**11]),
            "linkname": rng.choice(["", "x", "l" * 100, "l" * 101, "liens/ü" * 20]),
            "uname": rng.choice(["", "root", "u" * 32, "u" * 40]),
            "gname": rng.choice(["", "g", "gé" * 20]),
        }
        name = "".join(rng.choice("abc/é-_.") for _ in range(rng.randrange(1, 130)))
        type_ = rng.choice([REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE])
        assert member_header(name, type=type_, **fields) == _tarfile_header(name, type_, **fields), fields


def test_block_tar_stream_reads_back(tmp_path):
    files = {"x/a": os.urandom(1000), "x/b": b"", "x/c": os.urandom(3 * 4096 + 1)}
    blocks: list[bytes] = []
    tar = BlockTar(lambda: bytearray(4096), lambda block, n: blocks.append(bytes(block[:n])), 4096)
    tar.write(member_header("x", type=DIRTYPE, mode=0o755))
    for name, data in files.items():
        (tmp_path / "f").write_bytes(data)
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        tar.write(member_header(name, size=len(data)))
        tar.file_contents(fd, len(data))
        os.close(fd)
    tar.close()
    assert all(len(b) == 4096 for b in blocks[:-1])
    stream = b"".join(blocks)
    assert len(stream) % tarfile.RECORDSIZE == 0 and len(stream) == tar.offset
    with tarfile.open(fileobj=io.BytesIO(stream)) as t:
        assert t.getnames() == ["x", *files]
        for name, data in files.items():
            assert t.extractfile(name).read() == data


def test_block_size_must_be_whole_tar_blocks():
    with pytest.raises(ValueError, match="multiple of 512"):
        BlockTar(bytearray, lambda b, n: None, 1000)


# ----- files that change under the archiver -----------------------------------------------------


def _wrap_file_contents(monkeypatch, before_read):
    real = BlockTar.file_contents

    def wrapped(self, fd, size):
        before_read(fd, size)
        return real(self, fd, size)

    monkeypatch.setattr(BlockTar, "file_contents", wrapped)


def test_file_growing_while_archived_is_an_error(tree, keys, tmp_path, monkeypatch):
    def grow(fd, size):
        if size == 200_000:  # sub/b.bin
            with open(f"/proc/self/fd/{fd}", "ab") as f:
                f.write(b"more")

    _wrap_file_contents(monkeypatch, grow)
    with pytest.raises(HpcsUserError, match=r"'dataset/sub/b\.bin' changed while it was archived"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none")
    assert list(tmp_path.glob("ds.tar*")) == []


def test_file_shrinking_while_archived_is_an_error(tree, keys, tmp_path, monkeypatch):
    def shrink(fd, size):
        if size == 200_000:
            os.truncate(f"/proc/self/fd/{fd}", 1000)

    _wrap_file_contents(monkeypatch, shrink)
    with pytest.raises(HpcsUserError, match=r"'dataset/sub/b\.bin' changed while it was archived \(file shrank"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none")
    assert list(tmp_path.glob("ds.tar*")) == []


def _swap_after_lstat(monkeypatch, target: str, swap):
    """Runs ``swap()`` once, right after the next lstat of ``target`` (the race an attacker wants)."""
    real_lstat = os.lstat
    pending = [swap]

    def lstat(path, *a, **kw):
        result = real_lstat(path, *a, **kw)
        if str(path) == target and pending:
            pending.pop()()
        return result

    monkeypatch.setattr(archive_mod.os, "lstat", lstat)


def test_file_swapped_for_a_link_is_never_followed(tree, keys, tmp_path, monkeypatch):
    victim = tree / "a.txt"

    def swap():
        victim.unlink()
        os.symlink("/etc/passwd", victim)

    summary = scan_input(tree)
    _swap_after_lstat(monkeypatch, str(victim), swap)
    with pytest.raises(HpcsUserError, match=r"cannot read input entry 'dataset/a\.txt': Too many levels"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none", summary=summary)
    assert list(tmp_path.glob("ds.tar*")) == []


def test_file_replaced_by_another_is_an_error(tree, keys, tmp_path, monkeypatch):
    victim = tree / "a.txt"

    def swap():
        (tree / "other").write_text("other content\n")
        os.replace(tree / "other", victim)

    summary = scan_input(tree)
    _swap_after_lstat(monkeypatch, str(victim), swap)
    with pytest.raises(HpcsUserError, match=r"'dataset/a\.txt' was replaced while it was archived"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none", summary=summary)


def test_archive_members_as_gnu_tar_lists_them(tree, keys, tmp_path):
    """GNU tar reads our stream: names, types, sizes and modes of every member."""
    import subprocess

    result = prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none")
    plain = decrypt_bytes(result.path, keys)
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"], input=plain, capture_output=True, check=True
    ).stdout.decode()
    lines = {line.split()[-1] if " -> " not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert lines["dataset/script.sh"].startswith("-rwxr-x---")
    assert lines["dataset/sub/empty/"].startswith("d")
    assert " -> /etc/passwd" in lines["dataset/outside-link"]
    assert f" {200_000} " in lines["dataset/sub/b.bin"]
    with open_tar(plain) as t:
        assert len(t.getmembers()) == len(lines)
