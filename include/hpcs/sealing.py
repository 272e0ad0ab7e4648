"""Crypt4GH encryption of a block stream, as a chain of threads: (gzip) -> seal + write -> sha512.

The producer (a tar writer, ``include.hpcs.tarblocks``) fills plain blocks taken from a pool and
submits them; each stage runs in a thread of its own and hands its output to the next:

    producer --plain--> [gzip] --plain--> seal (ChaCha20-Poly1305) + write --cipher--> sha512

Every stage's heavy work is C code that releases the GIL (zlib, libsodium through PyNaCl's cffi
binding, ``os.write``, OpenSSL's sha512), so on a machine with several cores the stages run side
by side. (``crypt4gh``'s own ``sodium`` extension keeps the GIL while it encrypts, which would
serialise encryption with everything else; the layout written is the same: a Crypt4GH v1 header
made with ``crypt4gh.header``, then 64 KiB segments each sealed as nonce || ciphertext || MAC.)

Memory is bounded by the pools: a few blocks per stage, whatever the input size. An error in any
stage stops the chain; the producer gets it at its next ``acquire``/``submit`` or at ``finish``,
and no thread is left behind.
"""

from __future__ import annotations

import ctypes
import hashlib
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
    """Preallocated buffers; ``get`` blocks while all are in use (back-pressure)."""

    def __init__(self, count: int, size: int):
        self.size = size
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(bytearray(size))

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
    """Seals each 64 KiB segment under the session key, writes the sealed block to the file."""

    def __init__(self, chain: SealingChain, session_key: bytes, fd: int):
        super().__init__(chain, "seal")
        self._aead = ChaCha20Poly1305(session_key)
        self._fd = fd
        self._written = self._synced = 0
        self.pool = _Pool(POOL_DEPTH, BLOCK_SEGMENTS * SEALED_SEGMENT)

    def _seal_write(self, block: bytearray, n: int, out: bytearray) -> int:
        """Seal ``block[:n]`` segment by segment into ``out``, writing each sealed segment at once
        (while it is still in the CPU cache); return the sealed length."""
        src, dst = memoryview(block), memoryview(out)
        try:
            i = o = 0
            while i < n:
                m = min(SEGMENT_SIZE, n - i)
                nonce = dst[o : o + NONCE_SIZE]
                nonce[:] = os.urandom(NONCE_SIZE)
                end = o + NONCE_SIZE + m + MAC_SIZE
                self._aead.encrypt_into(nonce, src[i : i + m], None, dst[o + NONCE_SIZE : end])
                while o < end:
                    o += os.write(self._fd, dst[o:end])
                i += m
            return o
        finally:
            src.release()
            dst.release()

    def handle(self, item) -> None:
        block, n, pool = item
        out = self.pool.get()
        try:
            o = self._seal_write(block, n, out)
        except BaseException:
            self.pool.put(out)
            raise
        finally:
            pool.put(block)
        self._written += o
        if self._written - self._synced >= WRITEBACK_EVERY:
            _start_writeback(self._fd, self._synced, self._written - self._synced)
            self._synced = self._written
        self.chain.forward(self, (out, o, self.pool))

    def wipe(self) -> None:
        self._aead = None  # the session key lives only in the cipher object


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


def _write_all(fd: int, buf: bytearray, n: int) -> None:
    with memoryview(buf) as view:
        done = 0
        while done < n:
            done += os.write(fd, view[done:n])


class SealingChain:
    """Encrypts what the producer submits into the open file ``fd``, as Crypt4GH for ``recipients``.

    ``acquire()`` gives an empty plain block of ``BLOCK_SIZE`` bytes; ``submit(block, length)``
    hands it over (every block but the last must be full). ``finish()`` returns
    ``(bytes written, sha512 hex)``. ``abort()`` stops the threads after an error of the producer.
    """

    def __init__(self, fd: int, recipients: list[bytes], *, gzip: bool = False):
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._fd = fd
        self._sha = hashlib.sha512()
        session_key = os.urandom(32)
        sender_sk = os.urandom(32)  # ephemeral, as `crypt4gh encrypt` without --sk
        packet = header.make_packet_data_enc(0, session_key)
        head = header.serialize(header.encrypt(packet, [(0, sender_sk, pk) for pk in recipients]))
        _write_all(fd, bytearray(head), len(head))
        self._sha.update(head)
        self.size = len(head)
        self._plain = _Pool(POOL_DEPTH, BLOCK_SIZE)
        self._seal = _SealStage(self, session_key, fd)
        self._seal._written = self._seal._synced = len(head)
        del session_key
        stages: list[_Stage] = [self._seal, _HashStage(self, self._sha)]
        if gzip:
            stages.insert(0, _GzipStage(self))
        self._stages = stages
        self._next = {id(a): b for a, b in zip(stages, stages[1:], strict=False)}
        self._counted = stages[stages.index(self._seal) + 1]
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
