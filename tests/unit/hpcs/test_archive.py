import hashlib
import os
import stat
import tracemalloc

import pytest
from crypt4gh import SEGMENT_SIZE

from include.hpcs import archive as archive_mod
from include.hpcs.archive import (
    Crypt4GHWriter,
    HashingSink,
    archive_name,
    prepare_archive,
    public_key_from_pem,
    scan_input,
    sha512_file,
)
from include.hpcs.errors import HpcsUserError

from .conftest import decrypt_bytes, open_tar


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("threaded", [True, False])
def test_round_trip(tree, keys, tmp_path, compression, threaded):
    out = tmp_path / "out"
    out.mkdir()
    result = prepare_archive(
        tree,
        out,
        keys.public,
        secret_name="ds",
        compression=compression,
        staging_root=tree.parent,
        threaded=threaded,
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


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE])
@pytest.mark.parametrize("write_size", [1000, SEGMENT_SIZE, 200_000])
def test_writer_matches_crypt4gh_segmentation(size, write_size, keys):
    import io

    from crypt4gh.lib import decrypt

    data = os.urandom(size)
    buf = io.BytesIO()
    sink = HashingSink(buf)
    w = Crypt4GHWriter(sink, [keys.public])
    for i in range(0, size, write_size):
        w.write(data[i : i + write_size])
    w.close()
    sink.close()
    encrypted = buf.getvalue()
    assert sink.size == len(encrypted)
    assert sink.hexdigest() == hashlib.sha512(encrypted).hexdigest()
    # crypt4gh.lib.encrypt adds 28 bytes per started segment: same layout
    segments = -(-size // SEGMENT_SIZE)
    header_len = len(encrypted) - size - 28 * segments
    assert header_len == 124  # magic, version, one X25519 packet
    out = io.BytesIO()
    decrypt([(0, keys.secret, None)], io.BytesIO(encrypted), out)
    assert out.getvalue() == data


def test_keypair_pem_round_trip(keys, tmp_path):
    from crypt4gh.keys import get_private_key

    (tmp_path / "k.sec").write_bytes(keys.private_pem())
    assert get_private_key(str(tmp_path / "k.sec"), lambda: "") == keys.secret
    assert public_key_from_pem(keys.public_pem()) == keys.public
    assert keys.secret.hex() not in repr(keys) and "secret" not in repr(keys)


def test_memory_stays_flat(tmp_path, keys):
    top = tmp_path / "big"
    top.mkdir()
    with open(top / "large.bin", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    try:
        prepare_archive(top, tmp_path, keys.public, secret_name="big", compression="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} bytes for a 48 MiB input"


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
    with pytest.raises(HpcsUserError, match="outside the staging area"):
        scan_input(tree.parent / ".." / "elsewhere", tree.parent)


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
    """b.bin becomes unreadable while the archive is being written."""
    import tarfile

    real_addfile = tarfile.TarFile.addfile

    def addfile(self, info, fileobj=None, *a, **kw):
        if info.name.endswith("b.bin"):
            raise PermissionError(13, "Permission denied")
        return real_addfile(self, info, fileobj, *a, **kw)

    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile)


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


def test_sink_error_reaches_producer(keys):
    class Broken:
        def write(self, data):
            raise OSError(28, "No space left on device")

    sink = HashingSink(Broken(), threaded=True)
    with pytest.raises(OSError, match="No space"):
        w = Crypt4GHWriter(sink, [keys.public])
        for _ in range(100):
            w.write(b"x" * SEGMENT_SIZE)
        w.close()
        sink.close()


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


def test_threaded_writer_error_reaches_producer(keys):
    class Broken:
        def write(self, data):
            if len(data) > 1000:
                raise OSError(28, "No space left on device")

    w = Crypt4GHWriter(HashingSink(Broken()), [keys.public], threaded=True)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):
            w.write(b"x" * SEGMENT_SIZE)
        w.close()


def test_write_failure_is_reported_and_cleaned(tree, keys, tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare_archive(tree, tmp_path / "no" / "such" / "dir", keys.public, secret_name="ds")
