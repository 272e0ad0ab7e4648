"""Crypt4GH streaming for ingestion: split the header off without a key, decrypt with the archive key.

Small functions over file objects, fixed-size segments, nothing held in memory beyond a few
segments; the same code for a 1 KB and a 1 TB file. The format (GA4GH Crypt4GH v1):

    header = "crypt4gh" | version (4, LE) | packet count (4, LE) | packets
    packet = length incl. itself (4, LE) | encryption method (4, LE) | writer public key (32)
             | nonce (12) | ChaCha20-Poly1305(packet data) (+16 MAC)
    body   = segments of nonce (12) | ChaCha20-Poly1305(64 KiB of plaintext) (+16 MAC)

Header packets are decrypted here with PyNaCl rather than ``crypt4gh.header`` so that no key
material reaches a log (crypt4gh logs keys at DEBUG level). Decryption and hashing release the
GIL, so ``decrypt_body`` runs them in parallel threads.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_kx_client_session_keys,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError

from include.ega.errors import UserError

try:  # libsodium through PyNaCl's cffi module: decrypt in place, without PyNaCl's copies
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _sodium
except ImportError:  # pragma: no cover - PyNaCl always ships it; the portable path below still works
    _ffi = _sodium = None

MAGIC = b"crypt4gh"
VERSION = 1
SEGMENT_SIZE = 65536
NONCE_SIZE = 12
MAC_SIZE = 16
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + NONCE_SIZE + MAC_SIZE
MAX_PACKETS = 64  # a header for many recipients, far more than a real upload has
MAX_PACKET_SIZE = 64 * 1024
CHUNK_SEGMENTS = 64  # segments per unit of work handed between threads (about 4 MiB): few GIL hand-offs
COPY_CHUNK = 4 * 1024 * 1024
QUEUE_DEPTH = 4  # chunks waiting per hashing thread: memory is bounded by a few chunks

PACKET_DATA_ENC = 0
PACKET_EDIT_LIST = 1


@dataclass(frozen=True)
class Header:
    raw: bytes  # the whole header, as stored in the database
    packets: tuple[bytes, ...]  # each packet without its length prefix


@dataclass(frozen=True)
class SplitResult:
    header: bytes
    body_size: int
    body_sha256: str
    file_size: int
    file_sha256: str
    file_md5: str | None = None


@dataclass(frozen=True)
class DecryptResult:
    size: int
    sha256: str
    md5: str


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise UserError(f"Not a valid Crypt4GH file: the file ends inside the {what}")
        data += chunk
    return data


def read_header(stream: BinaryIO) -> Header:
    """Read a Crypt4GH header from ``stream`` without any key; leave the stream at the body.

    :raises UserError: not a Crypt4GH file, unsupported version, or a malformed header
    """
    start = stream.read(16)
    if len(start) < 16 or start[:8] != MAGIC:
        raise UserError(
            "Not a Crypt4GH file: the file does not start with the Crypt4GH magic bytes. "
            "Encrypt it with the node's public key (crypt4gh encrypt) and upload it again."
        )
    version = int.from_bytes(start[8:12], "little")
    if version != VERSION:
        raise UserError(f"Unsupported Crypt4GH version {version}; only version {VERSION} is supported")
    count = int.from_bytes(start[12:16], "little")
    if not 0 < count <= MAX_PACKETS:
        raise UserError(f"Not a valid Crypt4GH file: {count} header packets")
    raw = bytearray(start)
    packets = []
    for i in range(count):
        length_bytes = _read_exact(stream, 4, "header")
        length = int.from_bytes(length_bytes, "little")
        if not 4 + 4 < length <= MAX_PACKET_SIZE:
            raise UserError(f"Not a valid Crypt4GH file: header packet {i} has length {length}")
        packet = _read_exact(stream, length - 4, "header")
        raw += length_bytes + packet
        packets.append(packet)
    return Header(raw=bytes(raw), packets=tuple(packets))


class _HashThread:
    """Hash chunks in a thread of its own (hashlib releases the GIL on large updates)."""

    def __init__(self, *algorithms: str, depth: int = QUEUE_DEPTH, done: Callable[[bytearray], None] | None = None):
        self.hashes = [hashlib.new(a) for a in algorithms]
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stopped = False
        self.done = done
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                chunk, owner = item
                if not self.stopped:
                    for h in self.hashes:
                        h.update(chunk)
                del chunk
                if owner is not None and self.done:
                    self.done(owner)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in close()
            self.error = exc

    def close(self) -> list[str]:
        self.queue.put(None)
        self.thread.join()
        if self.error:
            raise self.error
        return [h.hexdigest() for h in self.hashes]

    def abort(self) -> None:
        self.stopped = True
        self.queue.put(None)  # the thread skips what is queued, so this never waits long
        self.thread.join()


class _Hashers:
    """One hashing thread per group of algorithms, fed the same chunks; stopped on any error.

    ``buffer()`` lends one of a few reusable buffers of ``buffer_size`` bytes; ``put_buffer``
    hands its first bytes to the threads, and the buffer comes back once every thread has hashed
    it. Reusing buffers spares a fresh allocation (and its page faults) per chunk; the pool's
    size bounds the memory: ``QUEUE_DEPTH + 2`` buffers.
    """

    def __init__(self, *groups: tuple[str, ...], buffer_size: int = 0):
        self.threads = [_HashThread(*g, done=self._release) for g in groups]
        self._free: queue.Queue = queue.Queue()
        self._pending: dict[int, int] = {}
        self._lock = threading.Lock()
        if buffer_size:
            for _ in range(QUEUE_DEPTH + 2):
                self._free.put(bytearray(buffer_size))

    def buffer(self) -> bytearray:
        return self._free.get()

    def _release(self, buf: bytearray) -> None:
        with self._lock:
            left = self._pending[id(buf)] = self._pending[id(buf)] - 1
            if left == 0:
                del self._pending[id(buf)]
        if left == 0:
            self._free.put(buf)

    def put(self, chunk: bytes) -> None:
        for t in self.threads:
            t.queue.put((chunk, None))

    def put_buffer(self, buf: bytearray, n: int) -> None:
        """Hash ``buf[:n]``; the buffer goes back to the pool afterwards."""
        view = memoryview(buf)[:n]
        with self._lock:
            self._pending[id(buf)] = len(self.threads)
        for t in self.threads:
            t.queue.put((view, buf))

    def close(self) -> list[list[str]]:
        return [t.close() for t in self.threads]

    def __enter__(self) -> _Hashers:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            for t in self.threads:
                t.abort()


def _read_full(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end (pipes, sockets and S3 return short reads)."""
    data = stream.read(n)
    while data and len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


def split(
    stream: BinaryIO, out: BinaryIO, progress: Callable[[int], None] | None = None, md5: bool = False
) -> SplitResult:
    """Copy the body of the Crypt4GH file ``stream`` to ``out`` and return the header.

    Computes the size and sha256 of the whole uploaded file and of the body (what the archive
    holds) in two hashing threads while the calling thread copies.
    """
    header = read_header(stream)
    size = 0
    with _Hashers(("sha256", "md5") if md5 else ("sha256",), ("sha256",)) as hashers:
        hashers.threads[0].queue.put((header.raw, None))
        while chunk := stream.read(COPY_CHUNK):
            out.write(chunk)
            hashers.put(chunk)
            size += len(chunk)
            if progress:
                progress(size)
        file_sums, (body_sha256,) = hashers.close()
    return SplitResult(
        header=header.raw,
        body_size=size,
        body_sha256=body_sha256,
        file_size=size + len(header.raw),
        file_sha256=file_sums[0],
        file_md5=file_sums[1] if md5 else None,
    )


def _decrypt_packet(packet: bytes, seckey: bytes, pubkey: bytes) -> bytes | None:
    method = int.from_bytes(packet[:4], "little")
    if method != 0 or len(packet) < 4 + 32 + NONCE_SIZE + MAC_SIZE:
        return None
    writer_pubkey = packet[4:36]
    nonce = packet[36:48]
    rx, _tx = crypto_kx_client_session_keys(pubkey, seckey, writer_pubkey)
    try:
        return crypto_aead_chacha20poly1305_ietf_decrypt(packet[48:], None, nonce, rx)
    except CryptoError:
        return None


def session_keys(header: bytes | Header, private_keys: Iterable[bytes]) -> list[bytes]:
    """The session key(s) of a header, trying each private key on each packet (as SDA does).

    :raises UserError: no packet could be decrypted (encrypted for another key), edit lists,
        or an unsupported method
    """
    if isinstance(header, bytes | bytearray):
        header = read_header(io.BytesIO(header))
    keys = [(sk, crypto_scalarmult_base(sk)) for sk in private_keys]
    found: list[bytes] = []
    for packet in header.packets:
        for sk, pk in keys:
            data = _decrypt_packet(packet, sk, pk)
            if data is None:
                continue
            kind = int.from_bytes(data[:4], "little")
            if kind == PACKET_EDIT_LIST:
                raise UserError(
                    "The Crypt4GH header holds an edit list, which ingestion does not accept: "
                    "encrypt the whole file without --range"
                )
            if kind != PACKET_DATA_ENC:
                raise UserError(f"Unsupported Crypt4GH header packet type {kind}")
            if int.from_bytes(data[4:8], "little") != 0:
                raise UserError("Unsupported Crypt4GH data encryption method (only ChaCha20-Poly1305)")
            key = bytes(data[8:40])
            if len(key) != 32:
                raise UserError("Invalid Crypt4GH session key length")
            if key not in found:
                found.append(key)
            break
    if not found:
        raise UserError(
            "The file was not encrypted for this node: no header packet opens with the "
            "archive key. Encrypt it with the node's public key and upload it again."
        )
    return found


def session_key_checksum(keys: Iterable[bytes]) -> str:
    """A digest that identifies the session key(s) without revealing them (duplicate detection)."""
    h = hashlib.sha256(b"crypt4gh-session-key\0")
    for k in sorted(keys):
        h.update(k)
    return h.hexdigest()


def _decrypt_segment(data: bytes, start: int, end: int, keys: list[bytes], index: int) -> bytes:
    if end - start <= NONCE_SIZE + MAC_SIZE:
        raise UserError(f"The encrypted data is truncated or corrupt (segment {index} is too short)")
    nonce = data[start : start + NONCE_SIZE]
    cipher = data[start + NONCE_SIZE : end]  # PyNaCl takes bytes only (one copy of 64 KiB)
    for key in keys:
        try:
            return crypto_aead_chacha20poly1305_ietf_decrypt(cipher, None, nonce, key)
        except CryptoError:
            continue
    raise UserError(
        f"The encrypted data does not verify (MAC failure in segment {index}): the file is "
        "corrupt, truncated or was modified after encryption. Upload it again."
    )


def _readinto_full(stream: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` (fewer bytes only at the end); returns the count."""
    readinto = getattr(stream, "readinto", None)
    n = 0
    while n < len(buf):
        if readinto is not None:
            got = readinto(buf[n:])
        else:
            data = stream.read(len(buf) - n)
            got = len(data)
            buf[n : n + got] = data
        if not got:
            break
        n += got
    return n


def _decrypt_chunk_sodium(data: memoryview, length: int, keys: list[bytes], index: int, out: bytearray) -> int:
    """Decrypt the segments in ``data[:length]`` straight into ``out`` (libsodium via cffi); returns the size."""
    src = _ffi.from_buffer("unsigned char[]", data)
    dst = _ffi.from_buffer("unsigned char[]", out)
    mlen = _ffi.new("unsigned long long *")
    decrypt = _sodium.crypto_aead_chacha20poly1305_ietf_decrypt
    size = 0
    for off in range(0, length, CIPHER_SEGMENT_SIZE):
        clen = min(CIPHER_SEGMENT_SIZE, length - off) - NONCE_SIZE
        if clen <= MAC_SIZE:
            raise UserError(f"The encrypted data is truncated or corrupt (segment {index} is too short)")
        for key in keys:
            if decrypt(dst + size, mlen, _ffi.NULL, src + off + NONCE_SIZE, clen, _ffi.NULL, 0, src + off, key) == 0:
                break
        else:
            raise UserError(
                f"The encrypted data does not verify (MAC failure in segment {index}): the file is "
                "corrupt, truncated or was modified after encryption. Upload it again."
            )
        size += mlen[0]
        index += 1
    del src, dst
    return size


def decrypt_body(body: BinaryIO, keys: list[bytes], progress: Callable[[int], None] | None = None) -> DecryptResult:
    """Decrypt the body segment by segment, computing sha256 and md5 of the plaintext.

    The plaintext never leaves memory (a few MiB at most). The calling thread reads and decrypts
    (libsodium, straight from the read buffer into a pooled plaintext buffer), two threads hash,
    so the work uses every core.

    :raises UserError: MAC failure (tampered, truncated or corrupt body)
    """
    size = 0
    index = 0
    chunk_size = CIPHER_SEGMENT_SIZE * CHUNK_SEGMENTS
    with _Hashers(("sha256",), ("md5",), buffer_size=SEGMENT_SIZE * CHUNK_SEGMENTS if _sodium else 0) as hashers:
        if _sodium is not None:
            view = memoryview(bytearray(chunk_size))  # reused: only this thread reads into it
            while n := _readinto_full(body, view):
                out = hashers.buffer()
                plain = _decrypt_chunk_sodium(view, n, keys, index, out)
                index += -(-n // CIPHER_SEGMENT_SIZE)
                hashers.put_buffer(out, plain)
                size += plain
                if progress:
                    progress(size)
        else:
            while data := _read_full(body, chunk_size):
                chunks = []
                for off in range(0, len(data), CIPHER_SEGMENT_SIZE):
                    end = min(off + CIPHER_SEGMENT_SIZE, len(data))
                    chunks.append(_decrypt_segment(data, off, end, keys, index))
                    index += 1
                chunk = b"".join(chunks)
                hashers.put(chunk)
                size += len(chunk)
                if progress:
                    progress(size)
        (sha256,), (md5sum,) = hashers.close()
    return DecryptResult(size=size, sha256=sha256, md5=md5sum)


@contextmanager
def _quiet_crypt4gh():
    """crypt4gh logs key material at DEBUG while loading keys: silence it meanwhile."""
    log = logging.getLogger("crypt4gh")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def load_private_key(pem: str | bytes, passphrase: str | None = None) -> bytes:
    """A Crypt4GH (or OpenSSH ed25519) private key from its PEM text; returns the X25519 secret key."""
    import base64

    from crypt4gh.keys import c4gh, ssh

    text = pem.decode() if isinstance(pem, bytes) else pem
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("not a PEM private key")
    data = base64.b64decode("".join(lines[1:-1]))
    stream = io.BytesIO(data)

    def callback() -> str:
        if passphrase is None:
            raise ValueError("the private key is locked and no passphrase was given")
        return passphrase

    # crypt4gh's parsers call sys.exit() on a wrong passphrase: turn that into an exception
    try:
        with _quiet_crypt4gh():
            if data.startswith(c4gh.MAGIC_WORD):
                stream.read(len(c4gh.MAGIC_WORD))
                key = c4gh.parse_private_key(stream, callback)
            elif data.startswith(ssh.MAGIC_WORD):
                stream.read(len(ssh.MAGIC_WORD))
                key = ssh.parse_private_key(stream, callback)[0]
            else:
                raise ValueError("unsupported private key format")
    except SystemExit:
        raise ValueError("the private key could not be opened: wrong passphrase or damaged key") from None
    if len(key) != 32:
        raise ValueError("unexpected private key length")
    return bytes(key)


def public_key(seckey: bytes) -> bytes:
    return crypto_scalarmult_base(seckey)
