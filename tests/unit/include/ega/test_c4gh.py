from __future__ import annotations

import hashlib
import io

import pytest
from crypt4gh import header as c4gh_header

from include.ega import c4gh
from include.ega.errors import UserError
from tests.unit.include.ega.support import encrypt_bytes


def split_bytes(data: bytes, **kw):
    out = io.BytesIO()
    res = c4gh.split(io.BytesIO(data), out, **kw)
    return res, out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536 + 17])
def test_split_then_decrypt_roundtrip(ega_keys, size):
    plain = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    enc = encrypt_bytes(plain, ega_keys["user"], ega_keys["node"])
    res, body = split_bytes(enc, md5=True)
    assert res.header + body == enc
    assert res.file_size == len(enc) and res.body_size == len(body)
    assert res.file_sha256 == hashlib.sha256(enc).hexdigest()
    assert res.file_md5 == hashlib.md5(enc).hexdigest()
    assert res.body_sha256 == hashlib.sha256(body).hexdigest()
    keys = c4gh.session_keys(res.header, [ega_keys["node"].seckey])
    out = c4gh.decrypt_body(io.BytesIO(body), keys)
    assert out.size == size
    assert out.sha256 == hashlib.sha256(plain).hexdigest()
    assert out.md5 == hashlib.md5(plain).hexdigest()


def test_several_private_keys_are_tried(ega_keys):
    enc = encrypt_bytes(b"hello", ega_keys["user"], ega_keys["node"])
    res, _ = split_bytes(enc)
    keys = c4gh.session_keys(res.header, [ega_keys["old"].seckey, ega_keys["node"].seckey])
    assert len(keys) == 1


def test_multi_recipient_header(ega_keys):
    enc = encrypt_bytes(b"hello", ega_keys["user"], ega_keys["other"], ega_keys["node"], ega_keys["user"])
    res, _ = split_bytes(enc)
    assert len(c4gh.read_header(io.BytesIO(res.header)).packets) == 3
    assert len(c4gh.session_keys(res.header, [ega_keys["node"].seckey])) == 1


def test_session_key_checksum_identifies_the_upload(ega_keys):
    enc1 = encrypt_bytes(b"same", ega_keys["user"], ega_keys["node"])
    enc2 = encrypt_bytes(b"same", ega_keys["user"], ega_keys["node"])
    sk = [ega_keys["node"].seckey]
    h1 = c4gh.session_key_checksum(c4gh.session_keys(split_bytes(enc1)[0].header, sk))
    h1b = c4gh.session_key_checksum(c4gh.session_keys(split_bytes(enc1)[0].header, sk))
    h2 = c4gh.session_key_checksum(c4gh.session_keys(split_bytes(enc2)[0].header, sk))
    assert h1 == h1b != h2
    assert c4gh.session_keys(split_bytes(enc1)[0].header, sk)[0].hex() not in h1


def test_not_crypt4gh():
    with pytest.raises(UserError, match="Not a Crypt4GH file"):
        split_bytes(b"just some text, not encrypted at all")
    with pytest.raises(UserError, match="Not a Crypt4GH file"):
        split_bytes(b"")


def test_truncated_header(ega_keys):
    enc = encrypt_bytes(b"hello", ega_keys["user"], ega_keys["node"])
    with pytest.raises(UserError, match="ends inside the header"):
        split_bytes(enc[:40])


def test_unsupported_version():
    with pytest.raises(UserError, match="version"):
        split_bytes(b"crypt4gh" + (2).to_bytes(4, "little") + (1).to_bytes(4, "little"))


def test_encrypted_for_another_key(ega_keys):
    enc = encrypt_bytes(b"hello", ega_keys["user"], ega_keys["other"])
    res, _ = split_bytes(enc)
    with pytest.raises(UserError, match="not encrypted for this node"):
        c4gh.session_keys(res.header, [ega_keys["node"].seckey])


def test_tampered_body_is_a_mac_failure(ega_keys):
    enc = bytearray(encrypt_bytes(b"a" * 200000, ega_keys["user"], ega_keys["node"]))
    res, body = split_bytes(bytes(enc))
    body = bytearray(body)
    body[70000] ^= 1
    keys = c4gh.session_keys(res.header, [ega_keys["node"].seckey])
    with pytest.raises(UserError, match="MAC failure in segment 1"):
        c4gh.decrypt_body(io.BytesIO(bytes(body)), keys)


@pytest.mark.parametrize("cut", [1, 20, 1000])
def test_truncated_body(ega_keys, cut):
    enc = encrypt_bytes(b"a" * 100000, ega_keys["user"], ega_keys["node"])
    res, body = split_bytes(enc)
    keys = c4gh.session_keys(res.header, [ega_keys["node"].seckey])
    with pytest.raises(UserError, match="truncated|MAC failure"):
        c4gh.decrypt_body(io.BytesIO(body[:-cut]), keys)


def test_edit_list_is_refused(ega_keys):
    sk, pk = ega_keys["user"].seckey, ega_keys["node"].pubkey
    packets = list(c4gh_header.encrypt(c4gh_header.make_packet_data_enc(0, b"k" * 32), [(0, sk, pk)]))
    packets += list(c4gh_header.encrypt(c4gh_header.make_packet_data_edit_list([0, 10]), [(0, sk, pk)]))
    raw = c4gh_header.serialize(packets)
    with pytest.raises(UserError, match="edit list"):
        c4gh.session_keys(raw, [ega_keys["node"].seckey])


def test_locked_key_needs_its_passphrase(ega_keys):
    pem = ega_keys["node"].sec_path.read_text()
    assert c4gh.load_private_key(pem, ega_keys["node"].passphrase) == ega_keys["node"].seckey
    with pytest.raises(ValueError):
        c4gh.load_private_key(pem, None)
    with pytest.raises(Exception):  # noqa: B017 - wrong passphrase: the key does not open
        c4gh.load_private_key(pem, "wrong")


def test_memory_stays_bounded_for_large_bodies(ega_keys):
    """The decryptor's queues hold a few chunks at most, whatever the body size."""
    assert c4gh.CHUNK_SEGMENTS * c4gh.CIPHER_SEGMENT_SIZE * (c4gh.QUEUE_DEPTH + 2) * 2 < 64 * 1024 * 1024
    assert c4gh.COPY_CHUNK * (c4gh.QUEUE_DEPTH + 2) * 2 < 64 * 1024 * 1024
