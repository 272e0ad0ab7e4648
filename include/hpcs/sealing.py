"""Crypt4GH encryption of a block stream, as a chain of threads: (gzip) -> seal -> write -> sha512.

The producer (a tar writer, ``include.hpcs.tarblocks``) fills plain blocks taken from a pool and
submits them; each stage runs in a thread of its own and hands its output to the next:

    producer --plain--> [gzip] --plain--> seal --1 MiB chunks--> write --> sha512

* seal: 64 KiB segments, each sealed as nonce || ChaCha20-Poly1305 ciphertext || MAC under the
  session key (OpenSSL through ``cryptography``, ``encrypt_into`` straight into the chunk), after
  a Crypt4GH v1 header made with ``crypt4gh.header``: the layout ``crypt4gh encrypt`` writes.
* write: ``O_DIRECT`` where the file system allows it (no copy into the page cache and nothing
  left for the final fsync), else buffered with early writeback.
* sha512: of exactly the bytes written.

The heavy work of every stage is C code that releases the GIL (zlib, OpenSSL, ``os.write``,
hashlib), so the stages run side by side on several cores. (``crypt4gh``'s own ``sodium``
extension keeps the GIL while it encrypts and is 2-3x slower than OpenSSL's AVX-512 code.)

Memory is bounded by the pools: a few blocks per stage, whatever the input size. An error in any
stage stops the chain; the producer gets it at its next ``acquire``/``submit`` or at ``finish``,
and no thread is left behind.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import queue
import threading
import zlib
from collections.abc import Callable

from crypt4gh import SEGMENT_SIZE, header
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

NONCE_SIZE = 12
MAC_SIZE = 16
SEALED_SEGMENT = SEGMENT_SIZE + NONCE_SIZE + MAC_SIZE
BLOCK_SEGMENTS = 16  # 1 MiB plain blocks
BLOCK_SIZE = BLOCK_SEGMENTS * SEGMENT_SIZE
POOL_DEPTH = 6  # blocks per stage: enough to smooth out scheduling jitter between the threads
WRITEBACK_EVERY = 32 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024  # sealed output is written in chunks of this size
DIRECT_ALIGN = 4096  # offsets and lengths of direct writes (the largest logical block size in use)
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _try_direct(fd: int) -> bool:
    """Turn on O_DIRECT for ``fd``; False where the platform or file system has no direct I/O."""
    if not _O_DIRECT:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
    except OSError:
        return False
    return True


def _writeback_starter() -> Callable[[int, int, int], None]:
    """``start(fd, offset, length)``: ask the kernel to start writing that range to disk now
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, asynchronous), so that the final
    ``fsync`` finds little left to do and dirty pages never pile up; a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure only means a longer fsync

    return start


_start_writeback = _writeback_starter()
GZIP_LEVEL = 6  # what `gzip` and `tar czf` use

_END = object()


class _Pool:
    """Preallocated buffers; ``get`` blocks while all are in use (back-pressure). ``aligned``
    buffers are anonymous memory maps: page-aligned, as direct I/O needs."""

    def __init__(self, count: int, size: int, aligned: bool = False):
        self.size = size
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(mmap.mmap(-1, size) if aligned else bytearray(size))

    def get(self) -> bytearray:
        return self._free.get()

    def put(self, buf: bytearray) -> None:
        self._free.put(buf)


class _Stage(threading.Thread):
    """Runs ``handle(item)`` for each item of its inbox, in order; after the first error anywhere
    in the chain it only gives buffers back (``drop``) so that nobody waits forever.

    An item is ``(buffer, length, pool)``; ``handle`` gives the buffer back to its pool whatever
    happens (the stage's own output buffers too, when it fails).
    """

    def __init__(self, chain: SealingChain, name: str):
        super().__init__(name=f"hpcs-{name}", daemon=True)
        self.chain = chain
        self.inbox: queue.Queue = queue.Queue(maxsize=POOL_DEPTH + 1)

    def handle(self, item) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """At the end of a successful stream."""

    def run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is _END:
                if self.chain.error is None:
                    try:
                        self.finish()
                    except BaseException as exc:  # noqa: BLE001 - handed to the producer
                        self.chain.fail(exc)
                self.chain.forward(self, _END)
                return
            if self.chain.error is not None:
                self.drop(item)
                continue
            try:
                self.handle(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                self.chain.fail(exc)

    @staticmethod
    def drop(item) -> None:
        item[2].put(item[0])


class _GzipStage(_Stage):
    """Compresses plain blocks into new, full plain blocks (a gzip member, as ``gzip -6``)."""

    def __init__(self, chain: SealingChain):
        super().__init__(chain, "gzip")
        self._zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 16 + 15: gzip wrapper
        self._pool = _Pool(POOL_DEPTH, BLOCK_SIZE)
        self._block: bytearray | None = None
        self._pos = 0

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._block is None:
                self._block, self._pos = self._pool.get(), 0
            n = min(BLOCK_SIZE - self._pos, len(view))
            self._block[self._pos : self._pos + n] = view[:n]
            self._pos += n
            view = view[n:]
            if self._pos == BLOCK_SIZE:
                block, self._block = self._block, None
                self.chain.forward(self, (block, BLOCK_SIZE, self._pool))

    def handle(self, item) -> None:
        block, n, pool = item
        try:
            with memoryview(block) as view:
                data = self._zip.compress(view[:n])
        finally:
            pool.put(block)
        if data:
            self._append(data)

    def finish(self) -> None:
        self._append(self._zip.flush())
        if self._block is not None:
            block, self._block = self._block, None
            self.chain.forward(self, (block, self._pos, self._pool))


class _SealStage(_Stage):
    """Seals each 64 KiB segment under the session key into page-aligned output chunks.

    A sealed segment (64 KiB + 28 bytes) is written straight into the chunk when it fits, else
    through a small scratch buffer split across two chunks; the header starts the first chunk.
    """

    def __init__(self, chain: SealingChain, session_key: bytes, head: bytes):
        super().__init__(chain, "seal")
        self._aead = ChaCha20Poly1305(session_key)
        self.pool = _Pool(POOL_DEPTH, CHUNK_SIZE, aligned=True)
        self._scratch = bytearray(SEALED_SEGMENT)
        self._chunk = self.pool.get()
        self._chunk[: len(head)] = head
        self._pos = len(head)

    def _emit(self, data) -> None:
        """Copy sealed bytes into the chunks, forwarding each chunk once full."""
        view = memoryview(data)
        while view:
            n = min(CHUNK_SIZE - self._pos, len(view))
            self._chunk[self._pos : self._pos + n] = view[:n]
            self._pos += n
            view = view[n:]
            if self._pos == CHUNK_SIZE:
                self._forward_chunk()

    def _forward_chunk(self) -> None:
        chunk, n = self._chunk, self._pos
        self._chunk, self._pos = None, 0
        self.chain.forward(self, (chunk, n, self.pool))
        self._chunk = self.pool.get()

    def handle(self, item) -> None:
        block, n, pool = item
        try:
            with memoryview(block) as src:
                i = 0
                while i < n:
                    m = min(SEGMENT_SIZE, n - i)
                    sealed = m + NONCE_SIZE + MAC_SIZE
                    if CHUNK_SIZE - self._pos >= sealed:  # fits: seal in place
                        with memoryview(self._chunk) as dst:
                            dst[self._pos : self._pos + NONCE_SIZE] = os.urandom(NONCE_SIZE)
                            self._aead.encrypt_into(
                                dst[self._pos : self._pos + NONCE_SIZE],
                                src[i : i + m],
                                None,
                                dst[self._pos + NONCE_SIZE : self._pos + sealed],
                            )
                        self._pos += sealed
                        if self._pos == CHUNK_SIZE:
                            self._forward_chunk()
                    else:
                        with memoryview(self._scratch) as tmp:
                            tmp[:NONCE_SIZE] = os.urandom(NONCE_SIZE)
                            self._aead.encrypt_into(tmp[:NONCE_SIZE], src[i : i + m], None, tmp[NONCE_SIZE:sealed])
                            self._emit(tmp[:sealed])
                    i += m
        finally:
            pool.put(block)

    def finish(self) -> None:
        if self._pos:
            chunk, n = self._chunk, self._pos
            self._chunk = None
            self.chain.forward(self, (chunk, n, self.pool))

    def wipe(self) -> None:
        self._aead = None  # the session key lives only in the cipher object


class _WriteStage(_Stage):
    """Writes chunks to the file: with ``O_DIRECT`` where the file system allows it (no copy into
    the page cache, no dirty pages left for the final fsync), else buffered, starting the
    writeback early. Only the last chunk may be partial; its unaligned tail is written buffered."""

    def __init__(self, chain: SealingChain, fd: int, direct: bool):
        super().__init__(chain, "write")
        self._fd = fd
        self.direct = direct
        self._written = self._synced = 0

    def _buffered(self) -> None:
        if self.direct:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
            self.direct = False

    def _write(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            if self.direct:
                aligned = (len(view) - done) // DIRECT_ALIGN * DIRECT_ALIGN
                if not aligned:
                    self._buffered()
                    continue
                try:
                    done += os.write(self._fd, view[done : done + aligned])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._buffered()  # the file system refuses direct I/O after all
            else:
                done += os.write(self._fd, view[done:])

    def handle(self, item) -> None:
        chunk, n, pool = item
        try:
            with memoryview(chunk) as view:
                self._write(view[:n])
        except BaseException:
            pool.put(chunk)
            raise
        self._written += n
        if not self.direct and self._written - self._synced >= WRITEBACK_EVERY:
            _start_writeback(self._fd, self._synced, self._written - self._synced)
            self._synced = self._written
        self.chain.forward(self, item)


class _HashStage(_Stage):
    def __init__(self, chain: SealingChain, sha512):
        super().__init__(chain, "sha512")
        self._sha = sha512

    def handle(self, item) -> None:
        block, n, pool = item
        try:
            with memoryview(block) as view:
                self._sha.update(view[:n])
        finally:
            pool.put(block)


class SealingChain:
    """Encrypts what the producer submits into the open file ``fd``, as Crypt4GH for ``recipients``.

    ``acquire()`` gives an empty plain block of ``BLOCK_SIZE`` bytes; ``submit(block, length)``
    hands it over (every block but the last must be full). ``finish()`` returns
    ``(bytes written, sha512 hex)``. ``abort()`` stops the threads after an error of the producer.

    ``fd`` must be open for writing at offset 0; with ``direct_io`` the chain turns ``O_DIRECT``
    on where the file system supports it (and off again for the unaligned tail).
    """

    def __init__(self, fd: int, recipients: list[bytes], *, gzip: bool = False, direct_io: bool = True):
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._fd = fd
        self._sha = hashlib.sha512()
        session_key = os.urandom(32)
        sender_sk = os.urandom(32)  # ephemeral, as `crypt4gh encrypt` without --sk
        packet = header.make_packet_data_enc(0, session_key)
        head = header.serialize(header.encrypt(packet, [(0, sender_sk, pk) for pk in recipients]))
        self.size = 0
        self._plain = _Pool(POOL_DEPTH, BLOCK_SIZE)
        self._seal = _SealStage(self, session_key, head)
        del session_key
        self._writer = _WriteStage(self, fd, _try_direct(fd) if direct_io else False)
        stages: list[_Stage] = [self._seal, self._writer, _HashStage(self, self._sha)]
        if gzip:
            stages.insert(0, _GzipStage(self))
        self._stages = stages
        self._next = {id(a): b for a, b in zip(stages, stages[1:], strict=False)}
        self._counted = self._writer
        for stage in stages:
            stage.start()
        self._done = False

    # -- used by the stages
    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc

    def forward(self, stage: _Stage, item) -> None:
        after = self._next.get(id(stage))
        if after is None:
            return
        if after is self._counted and item is not _END:
            self.size += item[1]
        after.inbox.put(item)

    # -- used by the producer
    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def acquire(self) -> bytearray:
        self._check()
        return self._plain.get()

    def submit(self, block: bytearray, n: int) -> None:
        if self.error is not None:
            self._plain.put(block)
            raise self.error
        self._stages[0].inbox.put((block, n, self._plain))

    def _stop(self) -> None:
        if self._done:
            return
        self._done = True
        self._stages[0].inbox.put(_END)
        for stage in self._stages:
            stage.join()
        self._seal.wipe()

    def finish(self) -> tuple[int, str]:
        self._stop()
        self._check()
        return self.size, self._sha.hexdigest()

    def abort(self, reason: BaseException | None = None) -> None:
        self.fail(reason or RuntimeError("aborted"))
        self._stop()
