import hashlib
import os
import stat
import tracemalloc

import pytest
from crypt4gh import SEGMENT_SIZE

from include.hpcs import archive as archive_mod
from include.hpcs.archive import (
    archive_name,
    prepare_archive,
    public_key_from_pem,
    scan_input,
    sha512_file,
)
from include.hpcs.errors import HpcsUserError
from include.hpcs.sealing import BLOCK_SIZE, SealingChain

from .conftest import decrypt_bytes, open_tar


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_round_trip(tree, keys, tmp_path, compression):
    out = tmp_path / "out"
    out.mkdir()
    result = prepare_archive(
        tree,
        out,
        keys.public,
        secret_name="ds",
        compression=compression,
        staging_root=tree.parent,
    )
    assert result.name == archive_name("ds", compression)
    assert result.size == os.path.getsize(result.path)
    assert result.sha512 == sha512_file(result.path)
    assert not (out / (result.name + ".part")).exists()
    plain = decrypt_bytes(result.path, keys)
    if compression == "gzip":
        assert plain[:2] == b"\x1f\x8b"
    with open_tar(plain) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {
            "dataset",
            "dataset/a.txt",
            "dataset/exact.bin",
            "dataset/outside-link",
            "dataset/script.sh",
            "dataset/sub",
            "dataset/sub/b.bin",
            "dataset/sub/empty",
            "dataset/sub/inside-link",
            "dataset/sub/relative-outside",
        }
        assert tar.extractfile("dataset/sub/b.bin").read() == (tree / "sub" / "b.bin").read_bytes()
        assert members["dataset/outside-link"].issym() and members["dataset/outside-link"].linkname == "/etc/passwd"
        assert members["dataset/sub/empty"].isdir()
        assert stat.S_IMODE(members["dataset/script.sh"].mode) == 0o750
    assert sorted(result.outside_links) == ["outside-link", "sub/relative-outside"]
    assert (result.files, result.dirs, result.links) == (4, 2, 3)


def test_single_file_input(tmp_path, keys):
    f = tmp_path / "one.csv"
    f.write_text("a,b\n1,2\n")
    result = prepare_archive(f, tmp_path, keys.public, secret_name="one.csv", compression="none")
    with open_tar(decrypt_bytes(result.path, keys)) as tar:
        assert tar.getnames() == ["one.csv"]
        assert tar.extractfile("one.csv").read() == b"a,b\n1,2\n"


def _seal(data: bytes, keys, tmp_path, *, gzip: bool = False, direct_io: bool = True) -> tuple[bytes, int, str]:
    """Feed ``data`` through a SealingChain the way the tar writer does (full blocks, last partial)."""
    out = tmp_path / "sealed.c4gh"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chain = SealingChain(fd, [keys.public], gzip=gzip, direct_io=direct_io)
        for i in range(0, len(data), BLOCK_SIZE):
            part = data[i : i + BLOCK_SIZE]
            block = chain.acquire()
            block[: len(part)] = part
            chain.submit(block, len(part))
        size, digest = chain.finish()
    finally:
        os.close(fd)
    return out.read_bytes(), size, digest


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        SEGMENT_SIZE - 1,
        SEGMENT_SIZE,
        SEGMENT_SIZE + 1,
        3 * SEGMENT_SIZE,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        2 * BLOCK_SIZE + 7,
    ],
)
@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "buffered"])
def test_sealing_matches_crypt4gh_layout(size, direct_io, keys, tmp_path):
    import io

    from crypt4gh.lib import decrypt

    data = os.urandom(size)
    encrypted, written, digest = _seal(data, keys, tmp_path, direct_io=direct_io)
    assert written == len(encrypted)
    assert digest == hashlib.sha512(encrypted).hexdigest()
    # crypt4gh.lib.encrypt adds 28 bytes (nonce, MAC) per started 64 KiB segment: same layout
    segments = -(-size // SEGMENT_SIZE)
    assert len(encrypted) - size - 28 * segments == 124  # magic, version, one X25519 packet
    out = io.BytesIO()
    decrypt([(0, keys.secret, None)], io.BytesIO(encrypted), out)
    assert out.getvalue() == data


def test_sealing_with_gzip(keys, tmp_path):
    import gzip as gz
    import io

    from crypt4gh.lib import decrypt

    data = (b"ACGT" * 1000 + b"\n") * 700 + os.urandom(3 * BLOCK_SIZE)
    encrypted, _, _ = _seal(data, keys, tmp_path, gzip=True)
    out = io.BytesIO()
    decrypt([(0, keys.secret, None)], io.BytesIO(encrypted), out)
    assert gz.decompress(out.getvalue()) == data


def test_direct_io_is_used_where_the_file_system_has_it(keys, tmp_path):
    """tmp_path is on a disk file system (ext4 here): the chunks bypass the page cache, the
    unaligned tail is written buffered."""
    import fcntl

    fd = os.open(tmp_path / "d.c4gh", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chain = SealingChain(fd, [keys.public])
        assert chain._writer.direct and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        for _ in range(3):
            chain.submit(chain.acquire(), BLOCK_SIZE)
        block = chain.acquire()
        chain.submit(block, 1000)
        size, _ = chain.finish()
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT  # turned off for the tail
    finally:
        os.close(fd)
    assert size == os.path.getsize(tmp_path / "d.c4gh") == 124 + 3 * 16 * (SEGMENT_SIZE + 28) + 1028


def test_direct_io_refused_at_write_falls_back_to_buffered(keys, tmp_path, monkeypatch):
    import errno
    import fcntl

    from include.hpcs import sealing

    real_write = os.write
    refused = []

    def write(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(sealing.os, "write", write)
    data = os.urandom(2 * BLOCK_SIZE + 5)
    encrypted, written, digest = _seal(data, keys, tmp_path)
    assert refused == [sealing.CHUNK_SIZE]  # one refusal, then buffered
    assert written == len(encrypted) and digest == hashlib.sha512(encrypted).hexdigest()
    assert decrypt_bytes(tmp_path / "sealed.c4gh", keys) == data


def test_nonces_are_unique(keys, tmp_path):
    encrypted, _, _ = _seal(bytes(8 * SEGMENT_SIZE), keys, tmp_path)
    body = encrypted[124:]
    nonces = {body[i : i + 12] for i in range(0, len(body), SEGMENT_SIZE + 28)}
    assert len(nonces) == 8
    # equal clear-text segments give different sealed segments
    assert len({body[i : i + SEGMENT_SIZE + 28] for i in range(0, len(body), SEGMENT_SIZE + 28)}) == 8


def test_keypair_pem_round_trip(keys, tmp_path):
    from crypt4gh.keys import get_private_key

    (tmp_path / "k.sec").write_bytes(keys.private_pem())
    assert get_private_key(str(tmp_path / "k.sec"), lambda: "") == keys.secret
    assert public_key_from_pem(keys.public_pem()) == keys.public
    assert keys.secret.hex() not in repr(keys) and "secret" not in repr(keys)


def _peak_traced(tmp_path, keys, mib: int) -> int:
    top = tmp_path / f"big{mib}"
    top.mkdir()
    with open(top / "large.bin", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    try:
        prepare_archive(top, tmp_path, keys.public, secret_name=f"big{mib}", compression="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_memory_stays_flat(tmp_path, keys):
    small = _peak_traced(tmp_path, keys, 12)
    large = _peak_traced(tmp_path, keys, 60)
    # the stage pools (6 x 1 MiB per stage, three stages with gzip) and zlib's state, whatever the input size
    assert large < 24 * 1024 * 1024, f"peak traced memory {large} bytes for a 60 MiB input"
    assert large < small + 1024 * 1024, f"peak grew with the input: {small} -> {large} bytes"


def test_progress_reports(tree, keys, tmp_path):
    seen = []
    prepare_archive(tree, tmp_path, keys.public, secret_name="ds", progress=lambda *a: seen.append(a))
    assert seen and seen[-1][1] > 200_000
    assert all(b[1] >= a[1] for a, b in zip(seen, seen[1:], strict=False))


# ----- bad input -----------------------------------------------------------------------------


def test_missing_input(tmp_path):
    with pytest.raises(HpcsUserError, match="does not exist"):
        scan_input(tmp_path / "nope")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HpcsUserError, match="is empty"):
        scan_input(tmp_path / "empty")


def test_empty_file(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(HpcsUserError, match="is empty"):
        scan_input(tmp_path / "f")


def test_input_outside_staging(tmp_path, tree):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x").write_text("x")
    with pytest.raises(HpcsUserError, match="outside the staging area"):
        scan_input(other, tree.parent)
    with pytest.raises(HpcsUserError, match="'..' is not allowed"):
        scan_input(tree.parent / ".." / "elsewhere", tree.parent)


def test_input_through_a_link_in_the_staging_area(tmp_path, tree):
    """No symbolic link between the staging area and the input (include.common.paths.confine),
    not even one that points back inside: the path checked is the path read."""
    staging = tree.parent
    (staging / "via").symlink_to(tree, target_is_directory=True)
    with pytest.raises(HpcsUserError, match="goes through a symbolic link"):
        scan_input(staging / "via" / "sub", staging)
    assert scan_input(staging / "dataset" / "sub", staging).bytes > 0  # the same input, reached directly
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "secret").write_text("x")
    (staging / "out").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(HpcsUserError, match="goes through a symbolic link|'..' is not allowed"):
        scan_input(staging / "out" / ".." / "out" / "secret", staging)
    with pytest.raises(HpcsUserError, match="goes through a symbolic link"):
        scan_input(staging / "out" / "secret", staging)


def test_input_itself_a_link(tmp_path, tree):
    os.symlink(tree, tree.parent / "alias")
    with pytest.raises(HpcsUserError, match="symbolic link"):
        scan_input(tree.parent / "alias", tree.parent)


def test_unreadable_entries_listed(tree, monkeypatch):
    real_access = os.access
    bad = {str(tree / "a.txt"), str(tree / "sub" / "b.bin")}
    monkeypatch.setattr(archive_mod.os, "access", lambda p, m: str(p) not in bad and real_access(p, m))
    with pytest.raises(HpcsUserError, match=r"cannot read 2 input entries: a\.txt, sub/b\.bin"):
        scan_input(tree)


@pytest.fixture
def unreadable_mid_stream(monkeypatch):
    """b.bin becomes unreadable while the archive is being written (the tests run as root, for
    whom permissions do not count: the refusal is simulated at the open)."""
    real_open = os.open

    def refusing_open(path, flags, *a, **kw):
        if str(path).endswith("b.bin"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(archive_mod.os, "open", refusing_open)


def test_unreadable_during_stream(tree, keys, tmp_path, unreadable_mid_stream):
    with pytest.raises(HpcsUserError, match="cannot read input entry 'dataset/sub/b.bin': Permission denied"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds")
    assert not (tmp_path / "ds.tar.gz.c4gh").exists()
    assert not (tmp_path / "ds.tar.gz.c4gh.part").exists()


def test_special_files_rejected(tree):
    os.mkfifo(tree / "pipe")
    with pytest.raises(HpcsUserError, match="special file"):
        scan_input(tree)


def test_fingerprint_changes_with_content(tree):
    first = scan_input(tree).fingerprint
    assert scan_input(tree).fingerprint == first
    (tree / "a.txt").write_text("changed, longer\n")
    assert scan_input(tree).fingerprint != first


def test_bad_compression():
    with pytest.raises(HpcsUserError, match="compression"):
        archive_name("x", "zstd")


def test_private_key_never_in_archive_or_result(tree, keys, tmp_path):
    result = prepare_archive(tree, tmp_path, keys.public, secret_name="ds")
    blob = open(result.path, "rb").read()
    assert keys.secret not in blob
    assert keys.secret.hex() not in repr(result.to_dict())


def test_disk_full_reaches_producer_and_stops_every_thread(keys):
    import threading

    before = threading.active_count()
    fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    try:
        with pytest.raises(OSError, match="No space"):
            chain = SealingChain(fd, [keys.public])
            try:
                for _ in range(50):
                    chain.submit(chain.acquire(), BLOCK_SIZE)
                chain.finish()
            except BaseException as exc:
                chain.abort(exc)
                raise
    finally:
        os.close(fd)
    assert threading.active_count() == before


def test_disk_full_during_prepare_leaves_nothing(tree, keys, tmp_path, monkeypatch):
    from include.hpcs import sealing

    def failing_write(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sealing.os, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none")
    assert list(tmp_path.glob("ds.tar*")) == []


def test_hard_links_stored_once(tmp_path, keys):
    top = tmp_path / "hl"
    top.mkdir()
    (top / "a").write_bytes(b"same content")
    os.link(top / "a", top / "b")
    result = prepare_archive(top, tmp_path, keys.public, secret_name="hl", compression="none")
    with open_tar(decrypt_bytes(result.path, keys)) as tar:
        b = tar.getmember("hl/b")
        assert b.islnk() and b.linkname == "hl/a"
        assert tar.extractfile("hl/a").read() == b"same content"


def test_non_ascii_names(tmp_path, keys):
    top = tmp_path / "names"
    top.mkdir()
    (top / "données-é.txt").write_text("x")
    (top / ("long-" + "n" * 150)).write_text("y")
    result = prepare_archive(top, tmp_path, keys.public, secret_name="names", compression="none")
    with open_tar(decrypt_bytes(result.path, keys)) as tar:
        assert sorted(tar.getnames()) == sorted(["names", "names/données-é.txt", "names/long-" + "n" * 150])


def test_failed_stream_leaves_no_thread(tree, keys, tmp_path, unreadable_mid_stream):
    import threading

    before = threading.active_count()
    for _ in range(3):
        with pytest.raises(HpcsUserError):
            prepare_archive(tree, tmp_path, keys.public, secret_name="ds")
    assert threading.active_count() == before


def test_write_failure_is_reported_and_cleaned(tree, keys, tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare_archive(tree, tmp_path / "no" / "such" / "dir", keys.public, secret_name="ds")


# ----- the input scan beside the archive (no summary given) ----------------------------------


def test_scan_beside_archive_reports_special_files_and_leaves_nothing(tree, keys, tmp_path):
    os.mkfifo(tree / "sub" / "pipe")
    with pytest.raises(HpcsUserError, match=r"special file\(s\).*sub/pipe"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds", compression="none")
    assert list(tmp_path.glob("ds.tar*")) == []


def test_scan_beside_archive_lists_every_unreadable_entry(tree, keys, tmp_path, monkeypatch):
    real_access = os.access
    bad = {str(tree / "a.txt"), str(tree / "sub" / "b.bin")}
    monkeypatch.setattr(archive_mod.os, "access", lambda p, m: str(p) not in bad and real_access(p, m))
    with pytest.raises(HpcsUserError, match=r"cannot read 2 input entries: a\.txt, sub/b\.bin"):
        prepare_archive(tree, tmp_path, keys.public, secret_name="ds")
    assert list(tmp_path.glob("ds.tar*")) == []


def test_scan_beside_archive_gives_the_summary(tree, keys, tmp_path):
    seen = []
    result = prepare_archive(tree, tmp_path, keys.public, secret_name="ds", progress=lambda *a: seen.append(a))
    expected = scan_input(tree)
    assert (result.files, result.dirs, result.links, result.input_bytes) == (
        expected.files,
        expected.dirs,
        expected.links,
        expected.bytes,
    )
    assert result.input_fingerprint == expected.fingerprint
    assert seen[-1][2] >= seen[-1][1] > 0  # the total is known by the end


def test_input_checks_before_anything_is_written(tmp_path, keys):
    with pytest.raises(HpcsUserError, match="does not exist"):
        prepare_archive(tmp_path / "nope", tmp_path, keys.public, secret_name="x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("x")
    (tmp_path / "staging").mkdir()
    with pytest.raises(HpcsUserError, match="outside the staging area"):
        prepare_archive(outside, tmp_path, keys.public, secret_name="x", staging_root=tmp_path / "staging")
    assert list(tmp_path.glob("x.tar*")) == []
