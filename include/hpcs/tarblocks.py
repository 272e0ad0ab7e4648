"""A tar stream (GNU format) written straight into fixed-size blocks.

``tarfile`` builds each member header through a ``TarInfo`` (about 20 µs) and copies every file
through a chain of ``write`` calls. With tens of thousands of small files that Python work is what
limits the archive, so this writer

* builds the header of the common member (name and link target of at most 100 bytes, numbers that
  fit their octal fields) itself, byte for byte what ``tarfile`` writes (tested against it), and
  falls back to ``TarInfo.tobuf`` for everything else (long names, huge sizes or ids);
* reads file contents with ``readinto`` directly into the block being filled: no intermediate
  copy, and the read releases the GIL.

Full blocks are handed to ``emit(block, length)``; the block comes from ``acquire()`` and belongs
to the consumer until it gives it back (see ``include.hpcs.sealing``). Only the last block may be
shorter than the block size.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable

BLOCKSIZE = tarfile.BLOCKSIZE  # 512
RECORDSIZE = tarfile.RECORDSIZE  # 20 blocks: the archive is padded to a whole record, as tar -b20
_NAME_MAX = tarfile.LENGTH_NAME  # 100
_LINK_MAX = tarfile.LENGTH_LINK  # 100
_ZEROS = bytes(RECORDSIZE)
_ENCODING, _ERRORS = "utf-8", "surrogateescape"

REGTYPE, LNKTYPE, SYMTYPE, DIRTYPE = tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE


class FileChangedError(Exception):
    """A file's size changed between its header and the end of its contents."""


def _field(value: bytes, length: int) -> bytes:
    return value[:length] + bytes(length - len(value[:length]))


def member_header(
    name: str,
    *,
    type: bytes = REGTYPE,  # noqa: A002 - the tar field's name
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: str = "",
    uname: str = "",
    gname: str = "",
) -> bytes:
    """The header block(s) of one member, as ``TarInfo.tobuf(GNU_FORMAT, "utf-8", "surrogateescape")``."""
    if type == DIRTYPE and not name.endswith("/"):
        name += "/"
    raw_name = name.encode(_ENCODING, _ERRORS)
    raw_link = linkname.encode(_ENCODING, _ERRORS)
    if (
        len(raw_name) > _NAME_MAX
        or len(raw_link) > _LINK_MAX
        or not (0 <= uid < 0o10000000 and 0 <= gid < 0o10000000)
        or not (0 <= size < 0o100000000000 and 0 <= mtime < 0o100000000000)
    ):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = type, mode, uid, gid
        info.size, info.mtime, info.linkname, info.uname, info.gname = size, mtime, linkname, uname, gname
        return info.tobuf(tarfile.GNU_FORMAT, _ENCODING, _ERRORS)
    buf = b"".join(
        (
            raw_name + bytes(_NAME_MAX - len(raw_name)),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0        " % (mode & 0o7777, uid, gid, size, mtime),
            type,
            raw_link + bytes(_LINK_MAX - len(raw_link)),
            tarfile.GNU_MAGIC,
            _field(uname.encode(_ENCODING, _ERRORS), 32),
            _field(gname.encode(_ENCODING, _ERRORS), 32),
            bytes(16 + 155 + 12),  # devmajor, devminor (empty: not a device), prefix, padding to 512
        )
    )
    return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]


class BlockTar:
    """Writes a tar stream into blocks of ``block_size`` bytes taken from ``acquire()``.

    :param acquire: returns an empty ``bytearray`` of at least ``block_size`` bytes (may block)
    :param emit: takes ``(block, length)`` once a block is full, and the last one at ``close``
    """

    def __init__(
        self,
        acquire: Callable[[], bytearray],
        emit: Callable[[bytearray, int], None],
        block_size: int,
    ):
        if block_size % BLOCKSIZE:
            raise ValueError("block_size must be a multiple of 512")
        self._acquire = acquire
        self._emit = emit
        self._size = block_size
        self._block: bytearray | None = None
        self._view: memoryview | None = None
        self._pos = 0
        self.offset = 0  # tar bytes written so far

    def _room(self) -> memoryview:
        """The free part of the current block (taking a new one when needed)."""
        if self._view is None:
            self._block = self._acquire()
            self._view = memoryview(self._block)
            self._pos = 0
        return self._view[self._pos : self._size]

    def _advance(self, n: int) -> None:
        self._pos += n
        self.offset += n
        if self._pos == self._size:
            block = self._block
            self._view.release()
            self._block = self._view = None
            self._emit(block, self._size)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self._room()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            room.release()
            view = view[n:]
            self._advance(n)

    def zeros(self, n: int) -> None:
        while n:
            room = self._room()
            k = min(len(room), n)
            room[:k] = _ZEROS[:k] if k <= len(_ZEROS) else bytes(k)
            room.release()
            n -= k
            self._advance(k)

    def file_contents(self, fd: int, size: int) -> None:
        """Read exactly ``size`` bytes of ``fd`` into the stream, then pad to 512 bytes.

        :raises FileChangedError: when the file holds fewer than ``size`` bytes
        """
        left = size
        while left:
            room = self._room()
            want = min(len(room), left)
            got = os.readv(fd, [room[:want]])
            room.release()
            if got == 0:
                raise FileChangedError(f"file shrank by {left} bytes while it was archived")
            left -= got
            self._advance(got)
        if size % BLOCKSIZE:
            self.zeros(BLOCKSIZE - size % BLOCKSIZE)

    def close(self) -> None:
        """End of archive: two zero blocks, padding to a whole record, and the last block."""
        self.zeros(2 * BLOCKSIZE)
        if self.offset % RECORDSIZE:
            self.zeros(RECORDSIZE - self.offset % RECORDSIZE)
        if self._view is not None:
            block, n = self._block, self._pos
            self._view.release()
            self._block = self._view = None
            self._emit(block, n)
